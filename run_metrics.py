"""The scalable-fingerprints release's ``run_metrics.py``, run by ``calc_metrics.py`` (README, "The releases'
commands"):

  python run_metrics.py --data-dir=datasets --network=network-snapshot.pkl --metrics=fid50k --dataset=celeba \\
      --result-dir=out

does what this port's

  python legacy.py --source network-snapshot.pkl --dest network-snapshot.safetensors
  python calc_metrics.py --network network-snapshot.safetensors --metrics fid50k_full --data datasets/celeba \\
      --run-dir out

does (a release pickle is converted into a temporary file, never beside it; --result-dir is created as the
release did, and defaults to results for a release pickle), naming this port's form on stderr. FID needs this
port's --inception (a TorchScript Inception-v3 file): add it. calc_metrics.py's own options may be added.
"""

from __future__ import annotations

import sys
from pathlib import Path

import calc_metrics
import legacy
from dnnlib import release_cli as rc

FORMS = {
    "--network": rc.rename("--network"),
    "--data-dir": rc.rename("--data-dir"),
    "--dataset": rc.rename("--dataset"),
    "--result-dir": rc.rename("--run-dir", why="the metric-<name>.jsonl files are appended there"),
    "--run-dir": rc.rename("--run-dir"),
    "--mirror-augment": rc.flag(["--mirror"], [], "the reals' statistics include x-flips", "leave out --mirror"),
    "--num-gpus": rc.dropped("calc_metrics.py runs in one process, with the same results"),
    **rc.METRICS_FORMS,
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    t = rc.entry_translate(argv, FORMS)
    args, notes = t.args, t.notes
    rc.take_data(args, notes)
    network = rc.pop(args, "--network")
    if network is None:
        rc.fail("run_metrics.py: give --network=FILE (a release .pkl or this port's .safetensors)")
    run_dir = rc.pop(args, "--run-dir")
    if run_dir is None and Path(network).suffix == ".pkl":
        run_dir = "results"
        notes.append(rc.note("(no --result-dir)", ["--run-dir", run_dir], "the release's default"))
    if run_dir is not None:
        args += ["--run-dir", run_dir]
    with rc.converted(network, (".pkl",), legacy.convert_file) as path:
        made = run_dir is not None and not Path(run_dir).exists()
        if made:
            try:
                Path(run_dir).mkdir(parents=True)       # as the release made its result folder
            except OSError as e:
                rc.fail(f"cannot create --result-dir {run_dir}: {e.strerror or e}")
        shown = network if path == network else Path(path).name   # what the noted legacy.py command writes
        try:
            rc.run_entry_point(["run_metrics.py", *argv], ["--network", path, *args], notes, calc_metrics.main,
                               "calc_metrics.py", ["--network", shown, *args])
        finally:
            if made and not any(Path(run_dir).iterdir()):
                Path(run_dir).rmdir()                   # a failed run leaves nothing behind


if __name__ == "__main__":
    main()
