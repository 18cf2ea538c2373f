"""The artificial-fingerprints release's ``train.py`` (the fingerprint autoencoder), run by
``train_fingerprint_ae.py train`` (README, "The releases' commands"):

  python train.py --data_dir ~/celeba/img_align_celeba --use_celeba_preprocessing --image_resolution 128 \\
      --output_dir runs/ae --fingerprint_length 100 --batch_size 64

does what this port's

  python dataset_tool.py create_celeba --source ~/celeba/img_align_celeba --dest runs/ae/celeba128_crop148.zip \\
      --cx 89 --cy 109 --size 148 --resolution 128 --max-images all
  python train_fingerprint_ae.py train --data runs/ae/celeba128_crop148.zip --resolution 128 --outdir runs/ae \\
      --bits 100 --batch 64

does, naming this port's form on stderr. --use_celeba_preprocessing (the release's 148x148 centre crop of the
aligned images, resized) prepares the data set in --output_dir once; a rerun uses it again. Without it, a
--data_dir of images of any size (the release resized and centre-cropped each one as it read it) is prepared the
same way by ``dataset_tool.py create_from_images`` (the largest centred square, resized), into
--output_dir/images<R>.zip; a data set that dataset_tool.py wrote (a zip, or a folder with its dataset.json) is
used as it is. The training length
is this port's --total-kimg (default 4000: about the release's 20 epochs of CelebA); --num_epochs is refused.
train_fingerprint_ae.py train's own options (--dry-run, --total-kimg, --device, ...) may be added.
"""

from __future__ import annotations

import contextlib
import json
import sys
import zipfile
from pathlib import Path

import click

import dataset_tool
import train_fingerprint_ae
from dnnlib import release_cli as rc

FORMS = {
    "--data_dir": rc.rename("--data"),
    "--output_dir": rc.rename("--outdir"),
    "--fingerprint_length": rc.rename("--bits"),
    "--image_resolution": rc.rename("--resolution"),
    "--batch_size": rc.rename("--batch"),
    "--lr": rc.rename("--lr"),
    "--l2_loss_weight": rc.rename("--l2-weight"),
    "--l2_loss_await": rc.rename("--l2-wait-steps"),
    "--l2_loss_ramp": rc.rename("--l2-ramp-steps"),
    "--num_epochs": rc.refused("--num_epochs: this port counts training in images: give --total-kimg (epochs x "
                               "images / 1000; the default 4000 is about 20 epochs of CelebA's 202,599 images)"),
    "--use_celeba_preprocessing": rc.rename("--use_celeba_preprocessing", takes_value=False),
    "--data": rc.rename("--data"),            # this port's own options, written as "--x VALUE" for the steps below
    "--outdir": rc.rename("--outdir"),
    "--resolution": rc.rename("--resolution"),
}

# The release's CelebA preprocessing: the 148x148 centre crop of the 178x218 aligned images, resized.
CELEBA_CROP = {"cx": 89.0, "cy": 109.0, "size": 148}


def prepared(source: Path, dest: Path, resolution: int, celeba: bool) -> bool:
    """Whether ``dest`` is the data set that the preprocessing step writes for ``source`` (then it is reused)."""
    try:
        with zipfile.ZipFile(dest) as zf:
            meta = json.loads(zf.read("dataset.json"))
        recipe, src = meta["recipe"], meta["source"]
        selection = meta.get("selection", {})
        crop = (recipe.get("crop") == "box" and all(recipe.get(k) == v for k, v in CELEBA_CROP.items()) if celeba
                else recipe.get("crop") == "center" and selection.get("order") == "sorted")
        return (src.get("path") == str(source) and crop and recipe.get("resolution") == resolution
                and selection.get("max_images") is None and not selection.get("skip"))
    except (OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile):
        return False


def needs_preparing(data: str) -> bool:
    """A folder of images that dataset_tool.py did not write (it has no dataset.json): the release read such a
    folder as it was, resizing each image; this port prepares it once."""
    return Path(data).is_dir() and not (Path(data) / "dataset.json").is_file()


def preprocess(args: list[str], notes: list[str], celeba: bool) -> None:
    """Prepare --data into --outdir once (the release's CelebA crop, or any images' centred square); --data
    becomes the prepared zip."""
    data, outdir = rc.pop(args, "--data"), rc.pop(args, "--outdir")
    if data is None or outdir is None:
        rc.fail("train.py: give --data_dir and --output_dir")
    res = rc.pop(args, "--resolution") or "128"
    args += ["--outdir", outdir, "--resolution", res]
    if not res.isdigit():
        rc.fail(f"--image_resolution {res}: not a number")
    source = Path(data).resolve()
    if celeba:
        dest, flag, why = Path(outdir) / f"celeba{res}_crop148.zip", "--use_celeba_preprocessing", \
            "the release's 148x148 centre crop, resized, of every image; once"
        step = ["create_celeba", "--source", str(source), "--dest", str(dest), "--cx", "89", "--cy", "109", "--size",
                "148", "--resolution", res, "--max-images", "all"]
    else:
        dest, flag, why = Path(outdir) / f"images{res}.zip", "--data_dir", \
            "the release resized and centre-cropped each image as it read it; this port prepares them once"
        step = ["create_from_images", "--source", str(source), "--dest", str(dest), "--resolution", res,
                "--max-images", "all"]
    notes.append(rc.note(flag, ["python", "dataset_tool.py", *step, "then", "--data", str(dest)], why))
    args += ["--data", str(dest)]
    if dest.exists() or dest.is_symlink():
        if not prepared(source, dest, int(res), celeba):
            rc.fail(f"{dest} exists and is not the data set that train.py prepares from {source}: move it away, or "
                    "choose another --output_dir")
        rc.echo_notes(notes)
        notes.clear()
        click.echo(f"using {dest}, prepared from {source} before", err=True)
        return
    rc.echo_notes(notes)
    notes.clear()
    try:
        with contextlib.redirect_stdout(sys.stderr):        # stdout stays the training's (--dry-run's JSON)
            dataset_tool.cli.main(args=step, prog_name="dataset_tool.py")
    except SystemExit as e:
        if e.code:
            raise


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    t = rc.entry_translate(argv, FORMS)
    args, notes = t.args, t.notes
    if rc.take(args, "--use_celeba_preprocessing"):
        preprocess(args, notes, celeba=True)
    elif (data := rc.peek(args, "--data")) is not None and needs_preparing(data):
        preprocess(args, notes, celeba=False)
    rc.run_entry_point(["train.py", *argv], ["train", *args], notes, train_fingerprint_ae.cli,
                       "train_fingerprint_ae.py")


if __name__ == "__main__":
    main()
