"""Data sets: image preparation, source readers, the dataset writer and the training ``Dataset``.

The project's dataset format and its writer (``DatasetWriter``: atomic, replaces only what it
wrote, cleans up after killed runs) live in ``data/dataset_writer.py``; the check run when a
data set is opened (every image decoded once, good results cached) in ``data/dataset_check.py``.

Preparation (``Recipe``) mirrors the paper's recipes (``shared/spec/PAPER.md``, "Dataset
preparation"): CelebA crops a ``size x size`` box centred at ``(cx, cy)`` (128 at (89, 121) on the
178x218 aligned images); other sources are centre-cropped to a square and resized. Resizing uses
Pillow's LANCZOS filter when down-sampling (Pillow widens the kernel by the scale factor, so it
is properly anti-aliased) and BICUBIC when up-sampling (no LANCZOS ringing); boxes with
fractional corners are resampled directly from the source (one filter pass, no rounding).

Readers of sources yield ``(name, image)`` lazily, where ``image`` is a decoded PIL image or the
exception that decoding raised, so that a tool can report and skip bad files. The built-in data
set (``make_builtin_images``) is procedural: toy faces drawn from code, deterministic from a seed.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from data import dataset_check
from data.builtin_faces import make_builtin_images
from data.dataset_check import BadImagesError, ImageTooLarge  # noqa: F401 (re-exported)
from data.dataset_writer import (  # noqa: F401 (re-exported)
    DATASET_FORMAT,
    DATASET_FORMAT_VERSION,
    IMAGES_PER_FOLDER,
    MAX_META_BYTES,
    ZIP_DATE_TIME,
    DatasetError,
    DatasetWriter,
    check_replaceable,
    image_archive_name,
    remove_stale_temporaries,
)
from dnnlib.util import seed_for

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

SourceItem = tuple[str, "Image.Image | Exception"]


class SkipImage(ValueError):
    """One source image cannot be prepared (e.g. it is smaller than the crop box)."""


# --- image preparation (pure functions) ------------------------------------------------------------

def decode_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes fully (truncated files raise here) and apply EXIF orientation."""
    img = Image.open(io.BytesIO(data))
    img.load()
    ImageOps.exif_transpose(img, in_place=True)
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB.

    Grayscale and palette images are expanded; 16-bit grayscale is scaled (65535 -> 255); images
    with transparency (RGBA, LA, PA, palette with a transparent colour) are composited on black,
    i.e. premultiplied by alpha, so fully transparent pixels become black whatever colour they hide.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float64) / 257.0
        img = Image.fromarray(np.round(arr).astype(np.uint8), "L")
    elif img.mode in ("I", "F"):
        arr = np.clip(np.asarray(img, dtype=np.float64), 0, 255)
        img = Image.fromarray(np.round(arr).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def center_crop_square(img: Image.Image) -> Image.Image:
    """The largest centred square (the odd pixel of an odd difference goes to the right/bottom)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img if (w, h) == (side, side) else img.crop((left, top, left + side, top + side))


def resize_square(img: Image.Image, resolution: int, box: Sequence[float] | None = None) -> Image.Image:
    """Resize ``img`` (or its region ``box = (x0, y0, x1, y1)``, fractional allowed) to ``resolution``².

    LANCZOS when down-sampling or at equal size, BICUBIC when up-sampling. A square image already
    at ``resolution`` is returned as is.
    """
    if box is None:
        if img.size == (resolution, resolution):
            return img
        box = (0, 0, *img.size)
    src_side = min(box[2] - box[0], box[3] - box[1])
    resample = Image.Resampling.LANCZOS if resolution <= src_side else Image.Resampling.BICUBIC
    return img.resize((resolution, resolution), resample, box=tuple(float(v) for v in box))


def crop_box(img: Image.Image, cx: float, cy: float, size: int, resolution: int | None = None) -> Image.Image:
    """The ``size x size`` box centred at ``(cx, cy)``: x in [cx - size/2, cx + size/2), same for y.

    Integer corners and no resize: an exact pixel crop. Otherwise the box is resampled to
    ``resolution`` (default ``size``) in one pass. Raises ``SkipImage`` when the box leaves the image.
    """
    half = size / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    w, h = img.size
    if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
        raise SkipImage(f"image is {w}x{h}, smaller than the crop box x [{box[0]:g}, {box[2]:g}) "
                        f"y [{box[1]:g}, {box[3]:g})")
    out = resolution or size
    if out == size and all(float(v).is_integer() for v in box):
        return img.crop(tuple(int(v) for v in box))
    return resize_square(img, out, box=box)


@dataclass(frozen=True)
class Recipe:
    """How a decoded source image becomes a dataset image (stored in ``dataset.json``).

    ``crop='center'``: largest centred square, resized to ``resolution``. ``crop='box'``: the
    ``size x size`` box centred at ``(cx, cy)``, resized to ``resolution`` (CelebA).
    """

    crop: str                       # 'center' | 'box'
    resolution: int                 # side of the stored images
    cx: float | None = None         # box centre, x (crop='box')
    cy: float | None = None         # box centre, y (crop='box')
    size: int | None = None         # box side (crop='box')

    def __post_init__(self) -> None:
        if self.crop not in ("center", "box"):
            raise ValueError(f"crop must be 'center' or 'box', got {self.crop!r}")
        if self.crop == "box" and None in (self.cx, self.cy, self.size):
            raise ValueError("crop='box' needs cx, cy and size")
        if self.resolution < 1:
            raise ValueError(f"resolution must be positive, got {self.resolution}")

    def __call__(self, img: Image.Image) -> Image.Image:
        img = to_rgb(img)
        if self.crop == "box":
            return crop_box(img, self.cx, self.cy, self.size, self.resolution)
        return resize_square(center_crop_square(img), self.resolution)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["filter"] = "lanczos (down-sampling), bicubic (up-sampling)"
        d["alpha"] = "composited on black"
        return d


# --- source readers --------------------------------------------------------------------------------

def list_image_files(root: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the PNG/JPEG files under ``root`` (recursive), sorted; others ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image_files(root: str | os.PathLike, names: Iterable[str]) -> Iterator[SourceItem]:
    """Yield ``(name, image or exception)`` for ``root / name``, in the given order, lazily."""
    root = Path(root)
    for name in names:
        try:
            yield name, decode_image((root / name).read_bytes())
        except Exception as e:
            yield name, e


def _open_lmdb(path: Path):
    import lmdb  # Imported here: only LMDB sources need it.

    if not path.exists():
        raise DatasetError(f"{path}: no such LMDB")
    return lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir(), max_readers=256)


def _key_name(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


def lmdb_num_entries(path: str | os.PathLike) -> int:
    """Number of records in an LMDB environment."""
    env = _open_lmdb(Path(path))
    try:
        return int(env.stat()["entries"])
    finally:
        env.close()


def read_lsun_lmdb(path: str | os.PathLike) -> Iterator[SourceItem]:
    """Yield ``(key, image or exception)`` from an LSUN LMDB (values: encoded images), in key order."""
    env = _open_lmdb(Path(path))
    try:
        with env.begin(write=False) as txn:
            for key, value in txn.cursor():
                try:
                    yield _key_name(key), decode_image(bytes(value))
                except Exception as e:
                    yield _key_name(key), e
    finally:
        env.close()


# --- the built-in data set (data/builtin_faces.py) ------------------------------------------------

def read_builtin(n: int, resolution: int = 32, seed: int = 0) -> Iterator[SourceItem]:
    """The built-in data set as a source: ``(f"toyface{index:08d}", image)``."""
    for index, img in enumerate(make_builtin_images(n, resolution, seed)):
        yield f"toyface{index:08d}", img


# --- preparing a data set --------------------------------------------------------------------------

@dataclass
class PrepareReport:
    """What ``prepare_dataset`` wrote."""

    dest: Path
    num_images: int
    resolution: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source name, reason)


def _reason(err: Exception) -> str:
    if isinstance(err, SkipImage):
        return str(err)
    return f"cannot decode ({type(err).__name__}: {err})"


def prepare_dataset(
    items: Iterable[SourceItem],            # (name, decoded image or decoding exception), e.g. read_image_files
    dest: str | os.PathLike,                # output zip (.zip) or folder
    recipe: Recipe,                         # preparation of each image
    *,
    source: dict[str, Any],                 # description of the source for dataset.json
    selection: dict[str, Any] | None = None,  # max images, shuffle, seed: for dataset.json
    max_images: int | None = None,          # stop after writing this many images
    total: int | None = None,               # number of source items, for the progress bar
    force: bool = False,                    # replace an existing dest
    progress: bool = True,                  # tqdm progress bar on stderr (when it is a terminal)
    log: Callable[[str], None] | None = None,  # receives one message per skipped image (and stale clean-up)
) -> PrepareReport:
    """Prepare source images with ``recipe`` and write them to ``dest`` atomically.

    Undecodable images and images the recipe cannot use are reported through ``log`` (name and
    reason) and skipped; the next source images take their places, so ``max_images`` counts
    written images. Raises ``DatasetError`` (and leaves nothing at ``dest``) if none was written.
    """
    from tqdm import tqdm

    skipped: list[tuple[str, str]] = []
    known = [x for x in (max_images, total) if x is not None]
    bar_total = min(known) if known else None
    bar = tqdm(total=bar_total, unit="img", disable=None if progress else True, dynamic_ncols=True)
    try:
        with DatasetWriter(dest, force=force, log=log) as writer:
            for name, img in items:
                try:
                    if isinstance(img, Exception):
                        raise img
                    out = recipe(img)
                except Exception as e:
                    skipped.append((name, _reason(e)))
                    if log is not None:
                        log(f"skipped {name}: {skipped[-1][1]}")
                    bar.set_postfix(skipped=len(skipped))
                    continue
                writer.add(out, name)
                bar.update(1)
                if max_images is not None and writer.num_images >= max_images:
                    break
            if writer.num_images == 0:
                raise DatasetError(f"no image could be written ({len(skipped)} skipped); nothing written to {dest}")
            writer.metadata.update(source=source, recipe=recipe.to_json(), selection=selection or {},
                                   skipped=[{"name": n, "reason": r} for n, r in skipped])
    finally:
        bar.close()
        if hasattr(items, "close"):
            items.close()  # Generators: release file / LMDB handles now.
    return PrepareReport(Path(dest), writer.num_images, writer.resolution, skipped)


# --- the training data set -------------------------------------------------------------------------

def is_lmdb(path: Path) -> bool:
    return (path.is_dir() and (path / "data.mdb").is_file()) or (path.is_file() and path.suffix == ".mdb")


class ImageDataset(torch.utils.data.Dataset):
    """Square RGB images from a dataset zip, a folder of PNG/JPEG files (recursive) or an LMDB.

    ``dataset[i]`` is ``(image, i)``: ``image`` a ``uint8`` tensor ``[3, R, R]`` (CHW, values
    0..255). With ``xflip=True`` the data set has ``2N`` items; item ``i >= N`` is item ``i - N``
    mirrored left-right. ``max_size`` keeps the first images (sorted names / key order).

    Files are opened lazily and per process (the zip or LMDB handle is reopened when ``os.getpid()``
    changes and is never pickled), so the object works with ``DataLoader(num_workers > 0)``.
    Opening checks every image (``check=True``, the default; ``data/dataset_check.py``): each one
    is decoded once, must be square, of one size (``dataset.json``'s resolution when there is one,
    else the most common side) and, in the project's own format, stored as RGB; every bad image is
    named in one ``BadImagesError``. A good result is cached by content hash, so opening the same
    data again costs no decoding. The check runs in the constructor only, never in DataLoader
    workers (they receive a copy). Every image is checked again when loaded.
    """

    def __init__(
        self,
        path: str | os.PathLike,            # dataset zip, folder or LMDB (folder with data.mdb, or a .mdb file)
        *,
        resolution: int | None = None,      # expected resolution (checked); None: whatever the data has
        max_size: int | None = None,        # keep only the first max_size images
        xflip: bool = False,                # append mirrored copies (doubles the length)
        check: bool = True,                 # decode every image now (cached); False: read sizes only
    ):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such file or folder")
        if is_lmdb(self.path):
            self.kind = "lmdb"
        elif self.path.is_dir():
            self.kind = "folder"
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
        else:
            raise DatasetError(f"{self.path}: not a dataset zip, a folder of images or an LMDB")
        self.xflip = bool(xflip)
        self._pid: int | None = None
        self._zip: zipfile.ZipFile | None = None
        self._env = None
        try:
            keys = self._list_keys()
            meta = self._read_meta()
            if not keys:
                raise DatasetError(f"{self.path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}"
                                   f"{' or LMDB records' if self.kind == 'lmdb' else ''})")
            if meta is not None and meta.get("num_images") != len(keys):
                raise DatasetError(f"{self.path}: dataset.json says {meta.get('num_images')} images, "
                                   f"found {len(keys)}")
            if max_size is not None and max_size < 1:
                raise DatasetError(f"max_size must be >= 1, got {max_size}")
            self._keys = keys[:max_size]
            expected = int(meta["resolution"]) if meta is not None else None
            if check:
                self._resolution = self._check(keys, expected, require_rgb=meta is not None)
            else:
                self._resolution = expected if expected is not None else self._scan_sizes()
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise DatasetError(f"{self.path}: cannot be read ({type(e).__name__}: {e}); check the file, or prepare "
                               f"the data set again with dataset_tool.py") from e
        finally:
            self.close()  # Workers open their own handles.
        if resolution is not None and resolution != self._resolution:
            raise DatasetError(f"{self.path}: images are {self._resolution}x{self._resolution}, "
                               f"expected {resolution}x{resolution}")

    # Handles, per process.
    def _open(self) -> None:
        if self._pid == os.getpid():
            return
        self._zip, self._env = None, None  # Inherited from a parent process: never use them here.
        if self.kind == "zip":
            self._zip = zipfile.ZipFile(self.path)
        elif self.kind == "lmdb":
            self._env = _open_lmdb(self.path)
        self._pid = os.getpid()

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._zip is not None:
                self._zip.close()
            if self._env is not None:
                self._env.close()
        self._zip, self._env, self._pid = None, None, None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zip": None, "_env": None, "_pid": None}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _list_keys(self) -> list:
        if self.kind == "folder":
            return list_image_files(self.path)
        if self.kind == "zip":
            self._open()
            return sorted(n for n in self._zip.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        self._open()
        with self._env.begin(write=False) as txn:
            return [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            if self.kind == "folder" and (self.path / "dataset.json").is_file():
                size = (self.path / "dataset.json").stat().st_size
                read = (self.path / "dataset.json").read_bytes
            elif self.kind == "zip" and "dataset.json" in self._zip.namelist():
                size = self._zip.getinfo("dataset.json").file_size
                read = lambda: self._zip.read("dataset.json")  # noqa: E731
            else:
                return None
            if size > MAX_META_BYTES:
                raise ValueError(f"{size} bytes, more than the {MAX_META_BYTES >> 20} MiB allowed")
            meta = json.loads(read())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{self.path}: unreadable dataset.json ({e}); prepare the data set again with "
                               f"dataset_tool.py") from e
        if meta.get("format") != DATASET_FORMAT:
            return None  # Someone else's dataset.json (e.g. StyleGAN2-ADA labels): check the images instead.
        if meta.get("channels") != 3 or not isinstance(meta.get("resolution"), int):
            raise DatasetError(f"{self.path}: dataset.json has channels={meta.get('channels')!r}, "
                               f"resolution={meta.get('resolution')!r}; expected 3 channels and an integer resolution")
        return meta

    def _key_name(self, key) -> str:
        return _key_name(key) if isinstance(key, bytes) else key

    def _read_bytes(self, key) -> bytes:
        """The encoded image ``key``; files over ``dataset_check.MAX_IMAGE_BYTES`` are refused unread."""
        self._open()
        if self.kind == "folder":
            size = (self.path / key).stat().st_size
        elif self.kind == "zip":
            size = self._zip.getinfo(key).file_size
        else:
            with self._env.begin(write=False, buffers=True) as txn:
                value = txn.get(key)
                if value is None:
                    raise DatasetError(f"{self.path}: LMDB record {self._key_name(key)} disappeared")
                size = len(value)
                if size <= dataset_check.MAX_IMAGE_BYTES:
                    return bytes(value)
        if size > dataset_check.MAX_IMAGE_BYTES:
            raise ImageTooLarge(f"{self.path}: {self._key_name(key)} is {size} bytes, more than the "
                                f"{dataset_check.MAX_IMAGE_BYTES >> 20} MiB an image may have")
        return (self.path / key).read_bytes() if self.kind == "folder" else self._zip.read(key)

    def _fingerprint(self, all_keys: list) -> str:
        self._open()
        if self.kind == "zip":
            return dataset_check.zip_fingerprint(self._zip)
        if self.kind == "folder":
            return dataset_check.folder_fingerprint(self.path, all_keys)
        data_file = self.path / "data.mdb" if self.path.is_dir() else self.path
        return dataset_check.lmdb_fingerprint(data_file, self._env)

    def _check(self, all_keys: list, expected: int | None, require_rgb: bool) -> int:
        """Check every kept image (or find a cached good result); return the common side."""
        key = dataset_check.cache_key(kind=self.kind, fingerprint=self._fingerprint(all_keys), expected=expected,
                                      require_rgb=require_rgb)
        hit = dataset_check.load_check(key)
        if hit is not None and hit["checked"] >= len(self._keys):
            return hit["resolution"]
        side = dataset_check.check_images(self.path, self._keys, self._read_bytes, self._key_name,
                                          lambda data: to_rgb(decode_image(data)), expected, require_rgb)
        dataset_check.save_check(key, side, max(len(self._keys), hit["checked"] if hit else 0))
        return side

    def _scan_sizes(self) -> int:
        first: tuple[str, int] | None = None
        for key in self._keys:
            name = self._key_name(key)
            try:
                w, h = Image.open(io.BytesIO(self._read_bytes(key))).size
            except Exception as e:
                raise DatasetError(f"{self.path}: {name}: cannot decode ({type(e).__name__}: {e})") from e
            if w != h:
                raise DatasetError(f"{self.path}: all images must be square; {name} is {w}x{h}")
            if first is None:
                first = (name, w)
            elif w != first[1]:
                raise DatasetError(f"{self.path}: all images must be {first[1]}x{first[1]} (like {first[0]}); "
                                   f"{name} is {w}x{h}")
        return first[1]

    # Public interface.
    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def num_channels(self) -> int:
        return 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self._resolution, self._resolution)

    @property
    def num_images(self) -> int:
        """Distinct images (without the mirrored copies)."""
        return len(self._keys)

    @property
    def names(self) -> list[str]:
        return [self._key_name(k) for k in self._keys]

    def __len__(self) -> int:
        return len(self._keys) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        n = len(self._keys)
        key = self._keys[index % n]
        name = self._key_name(key)
        try:
            img = to_rgb(decode_image(self._read_bytes(key)))
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"{self.path}: {name}: cannot decode ({type(e).__name__}: {e})") from e
        R = self._resolution
        if img.size != (R, R):
            raise DatasetError(f"{self.path}: all images must be {R}x{R}; {name} is {img.width}x{img.height}")
        arr = np.asarray(img)
        if index >= n:
            arr = arr[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), index


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless shuffled indices; the order depends only on (seed, position), so it can restart anywhere."""

    def __init__(self, size: int, seed: int, start: int = 0):
        self.size, self.seed, self.start = size, seed, start

    def __iter__(self):
        pos = self.start
        while True:
            epoch, offset = divmod(pos, self.size)
            order = np.random.default_rng(seed_for(self.seed, epoch)).permutation(self.size)
            for i in order[offset:]:
                yield int(i)
                pos += 1
