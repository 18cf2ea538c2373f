"""Convert the reference release's TensorFlow network pickles into this project's format.

Examples:

\b
  # A training snapshot (E, G, D, Gs) -> a snapshot with F, G, D, G_ema:
  python legacy.py --source network-snapshot-celeba.pkl --dest celeba128.safetensors
\b
  # A bare Gs pickle -> a generator file holding G_ema:
  python legacy.py --source Gs.pkl --dest gs.safetensors

The pickle is read by a restricted unpickler: nothing in the file is executed (the embedded
module source is ignored), and a file holding anything but network states and numpy arrays
is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dnnlib.util import sha256_file
from torch_utils.misc import count_params
from training.checkpoint import save_network
from training.tf_import import TFImportError, convert_release
from training.tf_pickle import TFPickleError, load_tf_pickle


def convert_file(source: str | Path, dest: str | Path) -> dict:
    """Convert ``source`` (a release .pkl) to ``dest`` (.safetensors); returns the networks."""
    try:
        nets = convert_release(load_tf_pickle(source))
    except TFImportError as e:
        raise TFImportError(f"{source}: {e}") from e
    order = [k for k in ("G", "G_ema", "D", "F") if k in nets]
    save_network(dest, extra={"converted_from": "tf-release-pickle", "source": Path(source).name,
                              "source_sha256": sha256_file(source)}, **{k: nets[k] for k in order})
    return nets


@click.command(help=__doc__)
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Release network pickle (.pkl).")
@click.option("--dest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output network file (.safetensors).")
def main(source: Path, dest: Path) -> None:
    try:
        nets = convert_file(source, dest)
    except (TFPickleError, TFImportError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    for name, net in nets.items():
        click.echo(f"{name:6s} {type(net).__name__:20s} {count_params(net):>12,d} parameters")
    click.echo(f"wrote {dest}")


if __name__ == "__main__":
    main()
