"""The artificial-fingerprints release's ``detect_fingerprints.py``, run by ``detect_attribute.py decode``
(README, "The releases' commands"):

  python detect_fingerprints.py --decoder_path celeba_decoder.pth --data_dir fingerprinted/ \\
      --image_resolution 128 --output_dir out --batch_size 64

does what this port's

  python legacy.py --source celeba_decoder.pth --dest celeba_decoder.safetensors
  python detect_attribute.py decode --network celeba_decoder.safetensors --images fingerprinted/ \\
      --out out/detected_fingerprints.txt --format release --resize --batch 64

does (the release's decoder is converted into a temporary file, never beside it; this port's decoder,
autoencoder and training-snapshot files are taken as they are), naming this port's form on stderr: the bits
of every image, one '<file name> <bits>' line each. Images are centre-cropped and resized to the decoder's
resolution, as the release resized them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import detect_attribute
import legacy
from dnnlib import release_cli as rc
from networks.checkpoint import CheckpointError, load_decoder

FORMS = {
    "--decoder_path": rc.rename("--network"),
    "--data_dir": rc.rename("--images"),
    "--output_dir": rc.rename("--output_dir"),
    "--image_resolution": rc.rename("--image_resolution"),
    "--batch_size": rc.rename("--batch"),
    "--seed": rc.dropped("decoding draws nothing"),
    "--use_celeba_preprocessing": rc.crop_refused("decode"),
}


def convert(source: Path, dest: Path) -> None:
    legacy.convert_art_file(source, dest)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    t = rc.entry_translate(argv, FORMS)
    args, notes = t.args, t.notes
    network, out, res = rc.pop(args, "--network"), rc.pop(args, "--output_dir"), rc.pop(args, "--image_resolution")
    if network is None or out is None:
        rc.fail("detect_fingerprints.py: give --decoder_path, --data_dir and --output_dir")
    if res is not None and not res.isdigit():
        rc.fail(f"--image_resolution {res}: not a number")
    bits_file = str(Path(out) / "detected_fingerprints.txt")
    args += ["--out", bits_file, "--format", "release", "--resize"]
    notes.append(rc.note(f"--output_dir {out}", ["--out", bits_file, "--format", "release"],
                         "the release's file of '<file name> <bits>' lines"))
    with rc.converted(network, (".pth", ".pt"), convert) as path:
        try:
            found = load_decoder(path).resolution
        except (CheckpointError, OSError, ValueError) as e:
            rc.fail(e)
        if res is not None and int(res) != found:
            rc.fail(f"--image_resolution {res}: the decoder reads {found}x{found} images")
        notes.append(rc.note(f"--image_resolution {res or found}", ["--resize"],
                             f"centre crop and resize to the decoder's {found}x{found}, as the release resized"))
        if not Path(out).is_dir():
            try:
                Path(out).mkdir(parents=True)           # as the release made its output folder
            except OSError as e:
                rc.fail(f"cannot create --output_dir {out}: {e.strerror or e}")
        shown = network if path == network else Path(path).name
        rc.run_entry_point(["detect_fingerprints.py", *argv], ["decode", "--network", path, *args], notes,
                           detect_attribute.cli, "detect_attribute.py", ["decode", "--network", shown, *args])


if __name__ == "__main__":
    main()
