"""The scalable-fingerprints release's ``run_training.py``, run by ``train_stylegan2_fp.py`` (README, "The
releases' commands"):

  python run_training.py --num-gpus=2 --data-dir=datasets --config=config-e-Gskip-Dresnet --dataset=celeba \\
      --total-kimg=1000 --watermark-size=128 --res-modulated-range=4-128

does what this port's

  python train_stylegan2_fp.py --gpus 2 --data datasets/celeba --preset celeba128 --total-kimg 1000 --bits 128 \\
      --res-modulated-range 4-128 --outdir results

does, naming this port's form on stderr. The release's network (config-e: skip G, resnet D) is this port's
preset at the data's resolution (celeba128 at 128, cat256 at 256) unless --preset is given; the release's
--result-dir defaults to results. train_stylegan2_fp.py's own options (--dry-run, --cfg, --inception, ...) may
be added.
"""

from __future__ import annotations

import json
import sys
import zipfile

import train_stylegan2_fp
from data.dataset import ImageDataset
from data.dataset_writer import DatasetError
from dnnlib import release_cli as rc

# The release's network at each resolution: this port's presets (celeba128 and bedroom128 are the same network).
RELEASE_PRESETS = {128: "celeba128", 256: "cat256"}


def _config(value: str | None) -> tuple[list[str], str]:
    rc.check_config(value)
    return ["--config", value], ""


FORMS = {
    "--num-gpus": rc.rename("--gpus"),
    "--result-dir": rc.rename("--outdir"),
    "--data-dir": rc.rename("--data-dir"),
    "--dataset": rc.rename("--dataset"),
    "--config": rc.Form(True, _config),
    "--preset": rc.rename("--preset"),
    "--data": rc.rename("--data"),          # this port's own options, written as "--x VALUE" for the checks below
    "--outdir": rc.rename("--outdir"),
    "--watermark-size": rc.rename("--bits"),
    "--decoupleL2-weight": rc.rename("--consistency-weight"),
    "--latentsRecL2-weight": rc.rename("--latent-rec-weight"),
    "--watermarkCls-weight": rc.rename("--fp-weight"),
    "--mirror-augment": rc.rename("--mirror"),
    **rc.METRICS_FORMS,
}


def data_resolution(path: str) -> int | None:
    """The side of the data set's images (None: unreadable, left to train_stylegan2_fp.py to report)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return int(json.loads(zf.read("dataset.json"))["resolution"])
        return ImageDataset(path, check=False).resolution
    except (DatasetError, OSError, KeyError, ValueError, TypeError):
        return None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    t = rc.entry_translate(argv, FORMS)
    args, notes = t.args, t.notes
    rc.take_data(args, notes)
    config = rc.pop(args, "--config")
    if "--preset" not in args and "--data" in args:
        res = data_resolution(args[args.index("--data") + 1])
        if res is not None:
            if res not in RELEASE_PRESETS:
                rc.fail(f"the data are {res}x{res}; the release's network is this port's --preset celeba128 or "
                        "bedroom128 (128) or cat256 (256): give --preset for another resolution (e.g. tiny32)")
            preset = ["--preset", RELEASE_PRESETS[res]]
            args += preset
            notes.append(rc.note(f"--config={config}" if config else "(no --config)", preset,
                                 f"the release's config-e network at the data's {res}x{res}"))
    elif config is not None:
        notes.append(rc.note(f"--config={config}", [], "the only architecture; its size is --preset"))
    if "--outdir" not in args:
        args += ["--outdir", "results"]
        notes.append(rc.note("(no --result-dir)", ["--outdir", "results"], "the release's default"))
    rc.run_entry_point(["run_training.py", *argv], args, notes, train_stylegan2_fp.main, "train_stylegan2_fp.py")


if __name__ == "__main__":
    main()
