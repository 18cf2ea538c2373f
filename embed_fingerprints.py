"""The artificial-fingerprints release's ``embed_fingerprints.py``, run by ``train_fingerprint_ae.py embed``
(README, "The releases' commands"):

  python embed_fingerprints.py --encoder_path celeba_encoder.pth --data_dir images/ --image_resolution 128 \\
      --output_dir out --identical_fingerprints --batch_size 64

does what this port's

  python legacy.py --source celeba_encoder.pth --dest celeba_encoder.safetensors
  python train_fingerprint_ae.py embed --network celeba_encoder.safetensors --source images/ \\
      --dest out/fingerprinted_images --fingerprint 0110... --batch 64

does (the release's encoder, with its celeba_decoder.pth beside it, is converted into a temporary file, never
beside it; this port's snapshots are taken as they are), naming this port's form on stderr. The images are
centre-cropped and resized to the encoder's resolution; out/fingerprinted_images holds them with
fingerprints.csv (file, bits) and the bit accuracy measured on them, and out/embedded_fingerprints.txt lists them as
the release does, a line ``<file name> <bits>`` per image (replaced only if it is such a list).
--identical_fingerprints: one fingerprint for every image, drawn from --seed (default 0) and written in the noted
command; without it, one per image.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

import legacy
import train_fingerprint_ae
from data.fingerprint_dataset import CSV_NAME, bits_to_str, read_release, release_text
from dnnlib import release_cli as rc
from dnnlib.util import OutputPathError, atomic_path, refuse_foreign
from interop.art_import import paired_decoder
from networks.checkpoint import CheckpointError, read_header

FORMS = {
    "--encoder_path": rc.rename("--network"),
    "--decoder_path": rc.rename("--decoder_path"),
    "--data_dir": rc.rename("--source"),
    "--output_dir": rc.rename("--output_dir"),
    "--image_resolution": rc.rename("--image_resolution"),
    "--batch_size": rc.rename("--batch"),
    "--seed": rc.rename("--seed"),
    "--identical_fingerprints": rc.rename("--identical_fingerprints", takes_value=False),
    "--check": rc.dropped("embed always measures the bit accuracy on the images it wrote", takes_value=False),
    "--use_celeba_preprocessing": rc.crop_refused("embed"),
}


def encoder_spec(path: str) -> dict:
    """The encoder's constructor arguments (n_bits, img_resolution), read from the file's header."""
    try:
        nets = read_header(path)["networks"]
    except (CheckpointError, OSError, ValueError) as e:
        rc.fail(e)
    if "encoder" not in nets or "decoder" not in nets:
        rc.fail(f"{path}: holds no {'encoder' if 'encoder' not in nets else 'decoder'}; embed needs an autoencoder "
                "(an ae-snapshot, or the release's <name>_encoder.pth with its <name>_decoder.pth beside it)")
    return nets["encoder"]["kwargs"]


def convert(resolution: int | None):
    def run(source: Path, dest: Path) -> None:
        if paired_decoder(source) is None:
            raise ValueError(f"{source}: no {source.name.replace('_encoder', '_decoder')} beside it; this port's embed "
                             "also measures the bit accuracy of what it writes: put the release's decoder there")
        legacy.convert_art_file(source, dest, resolution)
    return run


RELEASE_LIST = "embedded_fingerprints.txt"


def _is_release_list(path: Path) -> bool:
    try:
        read_release(path)
    except (ValueError, OSError, UnicodeDecodeError):
        return False
    return True


def write_release_list(images: Path, dest: Path) -> None:
    """``dest``: the release's list of embedded fingerprints, from the ``fingerprints.csv`` that embed wrote in
    ``images``."""
    with open(images / CSV_NAME, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    text = release_text([Path(r["file"]).name for r in rows], [r["bits"] for r in rows])
    with atomic_path(dest) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    t = rc.entry_translate(argv, FORMS)
    args, notes = t.args, t.notes
    network, out = rc.pop(args, "--network"), rc.pop(args, "--output_dir")
    res, decoder = rc.pop(args, "--image_resolution"), rc.pop(args, "--decoder_path")
    identical = rc.take(args, "--identical_fingerprints")
    if network is None or out is None:
        rc.fail("embed_fingerprints.py: give --encoder_path, --data_dir and --output_dir")
    if res is not None and not res.isdigit():
        rc.fail(f"--image_resolution {res}: not a number")
    beside = paired_decoder(network)
    if decoder is not None and (beside is None or beside.resolve() != Path(decoder).resolve()):
        rc.fail(f"--decoder_path {decoder}: this port reads the release's decoder beside the encoder, as "
                f"{Path(network).name.replace('_encoder', '_decoder')}: put it there")
    dest = str(Path(out) / "fingerprinted_images")
    listing = Path(out) / RELEASE_LIST
    try:
        refuse_foreign(listing, "--output_dir", f"list of embedded fingerprints ({RELEASE_LIST})", _is_release_list)
    except OutputPathError as e:
        rc.fail(e)
    args += ["--dest", dest]
    notes.append(rc.note(f"--output_dir {out}", ["--dest", dest], "the release's folder of images"))
    extra = [] if res is None else ["--resolution", res]
    with rc.converted(network, (".pth", ".pt"), convert(None if res is None else int(res)), extra) as path:
        spec = encoder_spec(path)
        if res is not None and int(res) != spec["img_resolution"]:
            rc.fail(f"--image_resolution {res}: the encoder works at {spec['img_resolution']}x"
                    f"{spec['img_resolution']}")
        if identical:
            seed = int(rc.pop(args, "--seed") or 0)
            bits = bits_to_str(torch.randint(0, 2, (spec["n_bits"],), generator=torch.Generator().manual_seed(seed)))
            args += ["--fingerprint", bits]
            notes.append(rc.note("--identical_fingerprints", ["--fingerprint", bits],
                                 f"one fingerprint for every image, drawn from seed {seed}"))
        else:
            args += ["--random-per-image"]
            notes.append(rc.note("(no --identical_fingerprints)", ["--random-per-image"], "one per image"))
        shown = network if path == network else Path(path).name
        try:
            rc.run_entry_point(["embed_fingerprints.py", *argv], ["embed", "--network", path, *args], notes,
                               train_fingerprint_ae.cli, "train_fingerprint_ae.py",
                               ["embed", "--network", shown, *args])
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        try:
            write_release_list(Path(dest), listing)
        except (OSError, ValueError) as e:
            rc.fail(f"the images are in {dest}, but {listing} could not be written: {e}")
        print(f"wrote {listing} (the release's list: <file name> <bits> per image)", file=sys.stderr)
        sys.exit(0)


if __name__ == "__main__":
    main()
