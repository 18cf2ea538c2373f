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
aligned images, resized) prepares the data set in --output_dir once; a rerun uses it again. The training length
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


def prepared(source: Path, dest: Path, resolution: int) -> bool:
    """Whether ``dest`` is the data set that the preprocessing step writes for ``source`` (then it is reused)."""
    try:
        with zipfile.ZipFile(dest) as zf:
            meta = json.loads(zf.read("dataset.json"))
        recipe, src = meta["recipe"], meta["source"]
        selection = meta.get("selection", {})
        return (src.get("path") == str(source) and recipe.get("crop") == "box"
                and recipe.get("resolution") == resolution and all(recipe.get(k) == v for k, v in CELEBA_CROP.items())
                and selection.get("max_images") is None and not selection.get("skip"))
    except (OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile):
        return False


def preprocess(args: list[str], notes: list[str]) -> None:
    """--use_celeba_preprocessing: prepare --data with the release's crop into --outdir; --data becomes it."""
    data, outdir = rc.pop(args, "--data"), rc.pop(args, "--outdir")
    if data is None or outdir is None:
        rc.fail("train.py: give --data_dir and --output_dir")
    res = rc.pop(args, "--resolution") or "128"
    args += ["--outdir", outdir, "--resolution", res]
    if not res.isdigit():
        rc.fail(f"--image_resolution {res}: not a number")
    source, dest = Path(data).resolve(), Path(outdir) / f"celeba{res}_crop148.zip"
    step = ["create_celeba", "--source", str(source), "--dest", str(dest), "--cx", "89", "--cy", "109", "--size",
            "148", "--resolution", res, "--max-images", "all"]
    notes.append(rc.note("--use_celeba_preprocessing", ["python", "dataset_tool.py", *step, "then", "--data",
                                                        str(dest)],
                         "the release's 148x148 centre crop, resized, of every image; once"))
    args += ["--data", str(dest)]
    if dest.exists() or dest.is_symlink():
        if not prepared(source, dest, int(res)):
            rc.fail(f"{dest} exists and is not the data set that --use_celeba_preprocessing makes from {source}: "
                    "move it away, or choose another --output_dir")
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
        preprocess(args, notes)
    rc.run_entry_point(["train.py", *argv], ["train", *args], notes, train_fingerprint_ae.cli,
                       "train_fingerprint_ae.py")


if __name__ == "__main__":
    main()
