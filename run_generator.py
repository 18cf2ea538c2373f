"""The scalable-fingerprints release's ``run_generator.py generate-images``, run by ``generate.py images``
(README, "The releases' commands"):

  python run_generator.py generate-images --network=network-snapshot.pkl --seeds=0-9 --result-dir=out \\
      --identical-latent=False --identical-watermark=True

does what this port's

  python legacy.py --source network-snapshot.pkl --dest network-snapshot.safetensors
  python generate.py images --network network-snapshot.safetensors --seeds 0-9 --outdir out

does (a release pickle is converted into a temporary file, never beside it), naming this port's form on
stderr. generate.py images' own options (--device, --noise-mode, --force, ...) may be added.
"""

from __future__ import annotations

import sys
from pathlib import Path

import generate
import legacy
from dnnlib import release_cli as rc

SUBCOMMANDS = ("generate-images", "generate_images")


def check_psi(value: str | None) -> None:
    try:
        psi = float(value)
    except (TypeError, ValueError):
        psi = None
    if psi != 1.0:
        raise rc.ReleaseFormError(f"--truncation-psi={value}: this port generates without truncation "
                                  "(--truncation-psi=1, the release's generation of the paper)")


FORMS = {
    "--network": rc.rename("--network"),
    "--seeds": rc.rename("--seeds"),
    "--result-dir": rc.rename("--outdir", why="a new or empty folder: the images go straight into it"),
    "--truncation-psi": rc.dropped("no truncation", check_psi),
}
FLAGS = {"--identical-latent": ("--identical-latent", None), "--identical-watermark": ("--identical-fingerprint", None)}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return
    if not argv or argv[0] not in SUBCOMMANDS:
        rc.fail(f"run_generator.py {argv[0] if argv else ''}: this port runs the release's generate-images only "
                "(python run_generator.py generate-images --network=... --seeds=...)")
    t = rc.entry_translate(argv[1:], FORMS, flags=FLAGS)
    args = t.args
    if "--outdir" not in args:
        args += ["--outdir", "results"]
        t.notes.append(rc.note("(no --result-dir)", ["--outdir", "results"], "the release's default"))
    network = rc.pop(args, "--network")
    if network is None:
        rc.fail("run_generator.py generate-images: give --network=FILE (a release .pkl or this port's .safetensors)")
    with rc.converted(network, (".pkl",), legacy.convert_file) as path:
        shown = network if path == network else Path(path).name   # what the noted legacy.py command writes
        rc.run_entry_point(["run_generator.py", *argv], ["images", "--network", path, *args], t.notes, generate.cli,
                           "generate.py", ["images", "--network", shown, *args])


if __name__ == "__main__":
    main()
