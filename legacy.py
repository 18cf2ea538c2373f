"""Convert the reference release's TensorFlow network pickles, NVlabs' stylegan2-ada-pytorch network
pickles, and the artificial-fingerprinting release's pretrained autoencoders, into this project's format.

Examples:

\b
  # A training snapshot (E, G, D, Gs) -> a snapshot with F, G, D, G_ema:
  python legacy.py --source network-snapshot-celeba.pkl --dest celeba128.safetensors
\b
  # A bare Gs pickle -> a generator file holding G_ema:
  python legacy.py --source Gs.pkl --dest gs.safetensors
\b
  # A stylegan2-ada-pytorch pickle (G, D, G_ema) -> a standard StyleGAN2 (SG2Generator, SG2Discriminator):
  python legacy.py --source network-snapshot-001000.pkl --dest ffhq-sg2.safetensors
\b
  # An artificial-fingerprinting encoder (its <name>_decoder.pth beside it is taken too)
  # -> an autoencoder file, as train_fingerprint_ae.py writes (embed, detect, --fp-decoder):
  python legacy.py --source celeba_encoder.pth --dest celeba-ae.safetensors
\b
  # A decoder alone (detection, --fp-decoder); an encoder alone needs --resolution:
  python legacy.py --source celeba_decoder.pth --dest celeba-dec.safetensors

The pickle is read by a restricted unpickler: nothing in the file is executed (the embedded
module source is ignored), and a file holding anything but network states, tensors and arrays
is refused. Which kind of pickle it is comes from its first global. A .pth file is read by
torch's weights-only loader, which builds tensors only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import click

from dnnlib.cli import fail
from dnnlib.util import OutputPathError, check_outputs, sha256_file
from interop.art_import import ArtImportError, import_release, paired_decoder
from interop.sg2ada_import import SG2ADAImportError, convert_sg2ada
from interop.sg2ada_pickle import SG2ADAPickleError, load_sg2ada_pickle, pickle_kind
from interop.tf_import import TFImportError, convert_release
from interop.tf_pickle import TFPickleError, load_tf_pickle
from networks.checkpoint import save_network
from torch_utils.misc import count_params


class DestinationError(OSError):
    """The destination could not be written (read-only or full folder, ...); nothing was left behind."""


class SourceError(OSError):
    """The source could not be read (again) to record its hash."""


def convert_file(source: str | Path, dest: str | Path) -> dict:
    """Convert ``source`` (a release .pkl or a stylegan2-ada-pytorch .pkl) to ``dest`` (.safetensors); returns
    the networks.

    ``dest`` is written atomically: on any error it is left as it was. Raises ``OutputPathError`` when
    ``dest`` is ``source`` (also through a link), ``TFPickleError`` / ``TFImportError`` (release pickles) or
    ``SG2ADAPickleError`` / ``SG2ADAImportError`` (stylegan2-ada-pytorch pickles) for a source that cannot be
    read or converted (``SourceError`` when it cannot be read to be hashed), and ``DestinationError`` when
    ``dest`` cannot be written.
    """
    check_outputs({"--dest": dest}, {"--source": source})
    extra: dict = {"converted_from": "tf-release-pickle"}
    if pickle_kind(source) == "sg2ada":
        try:
            nets, notes = convert_sg2ada(load_sg2ada_pickle(source))
        except SG2ADAImportError as e:
            raise SG2ADAImportError(f"{source}: {e}") from e
        extra = {"converted_from": "sg2ada-pytorch-pickle", **notes}
    else:
        try:
            nets = convert_release(load_tf_pickle(source))
        except TFImportError as e:
            raise TFImportError(f"{source}: {e}") from e
    try:
        digest = sha256_file(source)
    except OSError as e:
        raise SourceError(f"cannot read {source} ({e.strerror or e}); check that it is readable") from e
    order = [k for k in ("G", "G_ema", "D", "F") if k in nets]
    _save(dest, {**extra, "source": Path(source).name, "source_sha256": digest}, {k: nets[k] for k in order})
    return nets


def is_art_release(source: str | Path) -> bool:
    """A ``torch.save`` file (the artificial-fingerprinting release's .pth) rather than a TensorFlow pickle."""
    return Path(source).suffix in (".pth", ".pt") or zipfile.is_zipfile(source)


def convert_art_file(source: str | Path, dest: str | Path, resolution: int | None = None
                     ) -> tuple[dict, dict[str, Path]]:
    """Convert a release ``<name>_encoder.pth`` (with ``<name>_decoder.pth`` beside it, when there) or a
    ``<name>_decoder.pth`` to ``dest``, holding networks ``encoder`` and/or ``decoder`` like an autoencoder
    snapshot (ae-snapshot-*.safetensors). Returns the networks and the file each came from.

    Raises ``ArtImportError`` for a file that is not the release's (or an encoder alone without
    ``resolution``), and otherwise as ``convert_file``.
    """
    check_outputs({"--dest": dest}, {"--source": source, "the decoder beside --source": paired_decoder(source)})
    nets, files = import_release(source, resolution)
    sources = {}
    for role, path in files.items():
        try:
            sources[role] = {"file": path.name, "sha256": sha256_file(path)}
        except OSError as e:
            raise SourceError(f"cannot read {path} ({e.strerror or e}); check that it is readable") from e
    source_role = next(iter(files))   # the role of --source itself comes first
    _save(dest, {"converted_from": "art-release-pth", "source": Path(source).name,
                 "source_sha256": sources[source_role]["sha256"], "sources": sources}, nets)
    return nets, files


def _save(dest: str | Path, extra: dict, nets: dict) -> None:
    try:
        save_network(dest, extra=extra, **nets)
    except OSError as e:
        where = f": {e.filename}" if e.filename and Path(e.filename).name != Path(dest).name else ""
        raise DestinationError(f"cannot write {dest} ({e.strerror or e}{where}); check that its folder is writable "
                               "and has free space, or choose another --dest (nothing was written)") from e


def _one_line(error: Exception) -> str:
    return " ".join(str(error).splitlines())


@click.command(help=__doc__)
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Release or stylegan2-ada-pytorch network pickle (.pkl), or an artificial-fingerprinting "
                   "encoder or decoder (.pth).")
@click.option("--dest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output network file (.safetensors).")
@click.option("--resolution", type=click.IntRange(min=1),
              help="With an artificial-fingerprinting encoder converted alone: the image size it works at.")
def main(source: Path, dest: Path, resolution: int | None) -> None:
    if is_art_release(source):
        try:
            nets, files = convert_art_file(source, dest, resolution)
        except (ArtImportError, OutputPathError, SourceError, DestinationError) as e:
            fail(_one_line(e))
        for name, net in nets.items():
            click.echo(f"{name:7s} {type(net).__name__:20s} {count_params(net):>12,d} parameters  "
                       f"from {files[name].name}")
        click.echo(f"wrote {dest}")
        return
    if resolution is not None:
        fail("--resolution goes with an artificial-fingerprinting encoder (.pth) only; leave it out for a .pkl")
    try:
        nets = convert_file(source, dest)
    except TFPickleError as e:
        fail(f"{_one_line(e)}; --source must be a network pickle of the reference release")
    except TFImportError as e:
        fail(f"{_one_line(e)}; this port converts only the release's networks and configurations")
    except SG2ADAPickleError as e:
        fail(f"{_one_line(e)}; --source must be a network pickle of stylegan2-ada-pytorch (or of the reference "
             "release)")
    except SG2ADAImportError as e:
        fail(f"{_one_line(e)}; this port converts unconditional StyleGAN2 networks (skip G, resnet D)")
    except (OutputPathError, SourceError, DestinationError) as e:
        fail(_one_line(e))
    for name, net in nets.items():
        click.echo(f"{name:6s} {type(net).__name__:20s} {count_params(net):>12,d} parameters")
    click.echo(f"wrote {dest}")


if __name__ == "__main__":
    main()
