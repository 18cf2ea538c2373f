"""Fingerprinting a data set with the autoencoder, and decoding images with its decoder.

``fingerprint_images`` reads every image of a source (a folder of PNG/JPEG files, recursive; a
dataset zip; or an LMDB), brings it to the autoencoder's resolution (largest centred square,
Lanczos/bicubic resize: the generic recipe; a no-op for data prepared at that size), embeds a
fingerprint (the same one for all images, or one per image), and writes PNGs,
``fingerprints.csv`` (``file,bits``) and ``fingerprint_report.json`` into a new folder, atomically
(built beside the destination and renamed into place at the end). It then reads the PNGs back and
reports bit accuracy and PSNR on exactly what was written (after 8-bit quantisation).
``decode_images`` decodes the bits of every image of a source; ``majority_vote``, ``release_text`` and
``write_decoded`` serve ``detect_attribute.py decode`` (bits of a folder without a registry).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.dataset_writer import DatasetError
from data.prepare import Recipe, SkipImage, to_rgb
from data.sources import (
    IMAGE_EXTENSIONS,
    SourceItem,
    decode_image,
    is_lmdb,
    list_image_files,
    read_image_files,
    read_lsun_lmdb,
)
from dnnlib.util import atomic_dir, atomic_path, csv_header_is, file_head
from torch_utils.images import to_uint8

CSV_NAME = "fingerprints.csv"
REPORT_NAME = "fingerprint_report.json"


def bits_to_str(bits: torch.Tensor | np.ndarray) -> str:
    return "".join("1" if b > 0.5 else "0" for b in np.asarray(bits).reshape(-1))


def parse_bits(text: str, n: int) -> torch.Tensor:
    """'0110...' (exactly ``n`` characters of 0/1) -> float tensor [n]."""
    text = text.strip()
    if len(text) != n or set(text) - {"0", "1"}:
        raise ValueError(f"a fingerprint must be {n} characters of 0 and 1, got {len(text)} characters"
                         f"{'' if not set(text) - {'0', '1'} else ' with others than 0/1'}")
    return torch.tensor([float(ch) for ch in text])


def iter_source(source: str | Path) -> Iterator[SourceItem]:
    """(name, decoded image or exception) for every image of a folder, dataset zip or LMDB, in sorted order."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder")
    if is_lmdb(source):
        yield from read_lsun_lmdb(source)
    elif source.is_dir():
        yield from read_image_files(source, list_image_files(source))
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in (".png", ".jpg", ".jpeg"))
            for name in names:
                try:
                    yield name, decode_image(zf.read(name))
                except Exception as e:
                    yield name, e
    else:
        raise DatasetError(f"{source}: not a folder of images, a dataset zip or an LMDB")


def _batches(source, resolution: int, batch: int, skipped: list[tuple[str, str]]):
    recipe = Recipe(crop="center", resolution=resolution)
    names, arrays = [], []
    for name, img in iter_source(source):
        try:
            if isinstance(img, Exception):
                raise img
            arr = np.asarray(recipe(img), dtype=np.uint8)
        except Exception as e:
            skipped.append((name, str(e) if isinstance(e, SkipImage) else f"cannot decode ({type(e).__name__}: {e})"))
            continue
        names.append(name)
        arrays.append(arr)
        if len(names) == batch:
            yield names, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            names, arrays = [], []
    if names:
        yield names, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _out_name(name: str) -> str:
    p = Path(name.replace("\\", "/"))
    parts = [q for q in p.parts if q not in ("", ".", "..", "/")]
    return str(Path(*parts).with_suffix(".png")) if parts else "image.png"


@dataclass
class FingerprintReport:
    dest: Path
    num_images: int
    bit_acc: float            # decoded from the written PNGs
    bit_acc_min: float
    psnr: float               # dB, mean over images, written PNG vs the prepared original
    skipped: list[tuple[str, str]] = field(default_factory=list)


@torch.no_grad()
def fingerprint_images(encoder, decoder, source: str | Path, dest: str | Path, *,
                       fingerprint: torch.Tensor | None = None, seed: int = 0, batch: int = 32,
                       force: bool = False, device: torch.device | str = "cpu",
                       log=None, progress: bool = True) -> FingerprintReport:
    """Fingerprint every image of ``source`` into the new folder ``dest``.

    ``fingerprint`` [n]: the same bits for every image; None: fresh random bits per image (from ``seed``).
    """
    from tqdm import tqdm

    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        if not force:
            raise DatasetError(f"{dest} exists; pass --force to replace it if embed wrote it, or choose another "
                               "--dest")
        if not is_embed_output(dest):
            raise DatasetError(f"{dest} is not a folder that embed wrote (fingerprinted PNGs with {CSV_NAME} and "
                               f"{REPORT_NAME}); --force replaces only such a folder: choose another --dest")
    n_bits, res = encoder.n_bits, encoder.img_resolution
    if fingerprint is not None and fingerprint.shape != (n_bits,):
        raise ValueError(f"the fingerprint has {fingerprint.numel()} bits, the autoencoder {n_bits}")
    gen = torch.Generator().manual_seed(seed)
    skipped: list[tuple[str, str]] = []
    written: set[str] = set()
    acc_all, psnr_all = [], []
    with atomic_dir(dest) as tmp:  # dest appears, or is replaced, only once everything is written
        with open(tmp / CSV_NAME, "w", newline="", encoding="utf-8") as fcsv:
            writer = csv.writer(fcsv)
            writer.writerow(["file", "bits"])
            batches = _batches(source, res, batch, skipped)
            for names, images in tqdm(batches, unit="batch", disable=None if progress else True):
                x = images.to(device).float() / 127.5 - 1
                if fingerprint is None:
                    c = torch.randint(0, 2, (x.shape[0], n_bits), generator=gen).float()
                else:
                    c = fingerprint.float().expand(x.shape[0], n_bits)
                fp = encoder(x, c.to(device))
                arr = to_uint8(fp)
                back = []
                for name, a, bits in zip(names, arr, c):
                    out = _out_name(name)
                    if out in written:
                        raise DatasetError(f"two source images map to the same output file {out}")
                    written.add(out)
                    (tmp / out).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(a).save(tmp / out, format="PNG")
                    writer.writerow([out, bits_to_str(bits)])
                    # Read back exactly what was written.
                    back.append(np.asarray(Image.open(io.BytesIO((tmp / out).read_bytes())).convert("RGB")))
                y = torch.from_numpy(np.stack(back)).permute(0, 3, 1, 2).to(device).float() / 127.5 - 1
                acc_all.append(((decoder(y) > 0).float().cpu() == c).float().mean(dim=1))
                mse = ((y - x) / 2).square().flatten(1).mean(dim=1).clamp(min=1e-12)
                psnr_all.append((10 * torch.log10(1 / mse)).cpu())
        if not written:
            raise DatasetError(f"no image of {source} could be read ({len(skipped)} skipped); nothing written")
        if log is not None:
            for name, reason in skipped:
                log(f"skipped {name}: {reason}")
        acc, psnr = torch.cat(acc_all), torch.cat(psnr_all)
        report = FingerprintReport(dest, len(written), float(acc.mean()), float(acc.min()), float(psnr.mean()),
                                   skipped)
        (tmp / REPORT_NAME).write_text(json.dumps({
            "source": str(source), "num_images": report.num_images, "bits": n_bits, "resolution": res,
            "fingerprint": "per-image random" if fingerprint is None else bits_to_str(fingerprint),
            "measured_on": "the written 8-bit PNGs", "bit_acc": report.bit_acc, "bit_acc_min": report.bit_acc_min,
            "psnr": report.psnr, "skipped": [{"name": n, "reason": r} for n, r in skipped]}, indent=2) + "\n")
    return report


def is_embed_output(folder: Path) -> bool:
    """A folder that ``fingerprint_images`` wrote: its CSV (columns file,bits), its report, and PNGs only."""
    if folder.is_symlink() or not folder.is_dir() or not (folder / REPORT_NAME).is_file():
        return False
    if not csv_header_is(("file", "bits"))(folder / CSV_NAME):
        return False
    return all(p.is_dir() or (p.is_file() and not p.is_symlink() and (p.suffix == ".png" or p.parent == folder
                                                                      and p.name in (CSV_NAME, REPORT_NAME)))
               for p in folder.rglob("*"))


@torch.no_grad()
def decode_images(decoder, source: str | Path, *, batch: int = 64, device: torch.device | str = "cpu",
                  skipped: list[tuple[str, str]] | None = None) -> Iterator[tuple[str, str, torch.Tensor]]:
    """Yield ``(name, bits as '0101...', logits [n])`` for every readable image of ``source``."""
    skipped = [] if skipped is None else skipped
    for names, images in _batches(source, decoder.img_resolution, batch, skipped):
        logits = decoder(images.to(device).float() / 127.5 - 1).cpu()
        for name, lg in zip(names, logits):
            yield name, bits_to_str(lg > 0), lg


def iter_inputs(paths: list[str | Path]) -> Iterator[SourceItem]:
    """(display path, decoded image or exception) for image files, folders (recursive), dataset zips and
    LMDBs given on a command line, in the given order (each folder / archive in sorted order).

    A folder's images are shown as ``folder/relative/name.png``, an archive's as ``archive.zip:member``.
    """
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            try:
                yield str(path), decode_image(path.read_bytes())
            except Exception as e:
                yield str(path), e
        elif path.is_dir() and not is_lmdb(path):
            for name, img in iter_source(path):
                yield (path / name).as_posix(), img
        else:
            for name, img in iter_source(path):
                yield f"{path}:{name if isinstance(name, str) else name.decode(errors='replace')}", img


def prepare_for_decoder(img: Image.Image, resolution: int, resize: bool) -> np.ndarray:
    """An RGB uint8 [R, R, 3] array for a decoder reading R x R images.

    Without ``resize`` an image of another size is an error that names both sizes; with it, the largest
    centred square is taken and resized (Lanczos down, bicubic up).
    """
    if resize:
        return np.asarray(Recipe(crop="center", resolution=resolution)(img), dtype=np.uint8)
    if img.size != (resolution, resolution):
        raise SkipImage(f"is {img.size[0]}x{img.size[1]}; the decoder reads {resolution}x{resolution} "
                        "(pass --resize to centre-crop and resize)")
    return np.asarray(to_rgb(img), dtype=np.uint8)


# --- decoding a folder without a registry (detect_attribute.py decode) -----------------------------------------

DECODED_COLUMNS = ("path", "kind", "bits", "mean_abs_logit", "images", "agreement")
DECODED_FORMATS = ("csv", "release")


def majority_vote(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The data-set fingerprint of images decoded as ``logits`` [N, n]: (bits int [n], agreement float [n]).

    Bit j is the value most images read (a tie goes by the sign of the summed logits, then to 0); its
    agreement is the fraction of the images that read it (>= 0.5).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"majority_vote needs logits [N >= 1, n], got shape {logits.shape}")
    ones = (logits > 0).mean(axis=0)
    bits = np.where(ones == 0.5, logits.sum(axis=0) > 0, ones > 0.5).astype(np.int64)
    return bits, np.where(bits == 1, ones, 1 - ones)


def name_in_input(shown: str, source: str | Path) -> str:
    """An image's name within the input it came from, given its path as ``iter_inputs`` shows it
    (``folder/sub/a.png`` -> ``sub/a.png``, ``data.zip:m/a.png`` -> ``m/a.png``, a file -> its name)."""
    source = Path(source)
    for prefix in (source.as_posix() + "/", f"{source}:"):
        if shown.startswith(prefix) and len(shown) > len(prefix):
            return shown[len(prefix):]
    return Path(shown).name


def release_text(names: list[str], bits: list[str]) -> str:
    """The artificial-fingerprinting release's text format: a line ``<file name> <bits>`` per image.

    A name the format cannot hold (a line break) or two images of the same name are a ``DatasetError``.
    """
    seen: set[str] = set()
    for name in names:
        if "\n" in name or "\r" in name or not name.strip():
            raise DatasetError(f"{name!r}: a file name with a line break (or none) cannot be written in the release "
                               "format; rename the file or use --format csv")
        if name in seen:
            raise DatasetError(f"two images are named {name} (from different inputs?); the release format keeps "
                               "only file names: decode one folder at a time or use --format csv")
        seen.add(name)
    return "".join(f"{name} {b}\n" for name, b in zip(names, bits))


def read_release(path: str | Path) -> list[tuple[str, str]]:
    """(file name, bits) of every line of a file in the release's text format (a name may hold spaces)."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        name, _, bits = line.rpartition(" ")
        if not name or not bits or set(bits) - {"0", "1"}:
            raise DatasetError(f"{path}, line {i}: not '<file name> <bits of 0/1>'")
        out.append((name, bits))
    return out


def is_decode_output(path: Path, head_size: int = 4096) -> bool:
    """A file ``detect_attribute.py decode`` wrote: its CSV, or lines ``<name> <bits>`` of one bit count."""
    if csv_header_is(DECODED_COLUMNS)(path):
        return True
    head = file_head(path, head_size)
    lines = head.splitlines()[:-1] if len(head) == head_size else head.splitlines()  # the last may be cut short
    found = [re.fullmatch(rb"[^\r\n]+ ([01]+)", line) for line in lines]
    return bool(found) and all(found) and len({len(m.group(1)) for m in found}) == 1


def decoded_rows(names: list[str], logits: np.ndarray, inputs: list, origins: list[int], *,
                 majority: bool = False) -> tuple[list[dict], list[dict]]:
    """Rows of ``DECODED_COLUMNS`` (plus ``name``: the name within its input) for images decoded as ``logits``
    [N, n], ``origins[i]`` the index in ``inputs`` of image i's input; with ``majority``, then a row of kind
    'majority' per input (also returned alone, with the mean and least agreement). An input without a
    decoded image has no majority: a ``DatasetError``."""
    logits = np.asarray(logits)
    rows = [{"path": name, "kind": "image", "bits": bits_to_str(lg > 0), "mean_abs_logit": f"{np.abs(lg).mean():.4f}",
             "images": 1, "name": name_in_input(name, inputs[k])} for name, lg, k in zip(names, logits, origins)]
    votes = []
    for k, source in enumerate(inputs if majority else []):
        mine = [i for i, o in enumerate(origins) if o == k]
        if not mine:
            raise DatasetError(f"{source}: no readable image to take the majority vote of; drop it from the inputs")
        voted, agree = majority_vote(logits[mine])
        votes.append({"path": str(source), "kind": "majority", "bits": bits_to_str(voted),
                      "mean_abs_logit": f"{np.abs(logits[mine]).mean():.4f}", "images": len(mine),
                      "agreement": " ".join(f"{a:.3f}" for a in agree),
                      "agreement_mean": float(agree.mean()), "agreement_min": float(agree.min())})
    return rows + votes, votes


def write_decoded(out: str | Path, rows: list[dict], fmt: str = "csv") -> None:
    """Write ``rows`` (dicts of ``DECODED_COLUMNS``; release: the image rows' ``name`` and ``bits``) atomically."""
    if fmt not in DECODED_FORMATS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(DECODED_FORMATS)}")
    if fmt == "release":
        images = [r for r in rows if r["kind"] == "image"]
        text = release_text([r["name"] for r in images], [r["bits"] for r in images])
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        if fmt == "release":
            f.write(text)
        else:
            writer = csv.DictWriter(f, fieldnames=DECODED_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
