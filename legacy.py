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
  # An NVlabs state dict (torch.save(G.state_dict()), or of {'G': ..., 'G_ema': ..., 'D': ...}) -> the same:
  python legacy.py --source G.pt --dest g-sg2.safetensors
\b
  # And back: a standard StyleGAN2 of this project (an issued user's generator, an import, a plain sg2 run's
  # snapshot) -> NVlabs state dicts; one generator loads with G.load_state_dict(torch.load("alice.pt")):
  python legacy.py --source issued/alice.safetensors --dest alice.pt
\b
  # An artificial-fingerprinting encoder (its <name>_decoder.pth beside it is taken too)
  # -> an autoencoder file, as train_fingerprint_ae.py writes (embed, detect, --fp-decoder):
  python legacy.py --source celeba_encoder.pth --dest celeba-ae.safetensors
\b
  # A decoder alone (detection, --fp-decoder); an encoder alone needs --resolution:
  python legacy.py --source celeba_decoder.pth --dest celeba-dec.safetensors

The pickle is read by a restricted unpickler: nothing in the file is executed (the embedded
module source is ignored), and a file holding anything but network states, tensors and arrays
is refused. Which kind of pickle it is comes from its first global. A .pth or .pt file is read by
torch's weights-only loader, which builds tensors only; its keys tell an NVlabs state dict from an autoencoder.
An existing --dest is replaced only if it is a file of the same kind (a network file of this project, or a
torch.save of state dicts), atomically.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import click

from dnnlib.cli import fail
from dnnlib.util import OutputPathError, check_outputs, refuse_foreign, sha256_file
from interop.art_import import ArtImportError, import_release, paired_decoder
from interop.sg2ada_import import SG2ADAImportError, convert_sg2ada
from interop.sg2ada_pickle import SG2ADAPickleError, load_sg2ada_pickle, pickle_kind
from interop.sg2ada_state_dict import (
    WHAT as STATE_DICT_WHAT,
)
from interop.sg2ada_state_dict import (
    StateDictImportError,
    export_state_dicts,
    import_state_dicts,
    is_nvlabs_state,
)
from interop.tf_import import TFImportError, convert_release
from interop.tf_pickle import TFPickleError, load_tf_pickle
from interop.torch_file import read_weights_only
from networks.checkpoint import CheckpointError, load_network, read_header, save_network
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


def _is_network_file(path: Path) -> bool:
    try:
        read_header(path)
    except (CheckpointError, OSError):
        return False
    return True


def _is_state_dict_file(path: Path) -> bool:
    try:
        return is_nvlabs_state(read_weights_only(path, StateDictImportError, STATE_DICT_WHAT))
    except StateDictImportError:
        return False


def refuse_foreign_dest(dest: str | Path) -> None:
    """An existing --dest is replaced only when it is of the kind written (checked before anything is read)."""
    if Path(dest).suffix in (".pt", ".pth"):
        refuse_foreign(dest, "--dest", "torch.save of NVlabs state dicts", _is_state_dict_file)
    else:
        refuse_foreign(dest, "--dest", "network file of this project", _is_network_file)


def read_nvlabs_state(source: str | Path):
    """The content of a .pt/.pth ``source`` when it is an NVlabs state dict, else None (an autoencoder file)."""
    try:
        obj = read_weights_only(source, StateDictImportError, STATE_DICT_WHAT)
    except StateDictImportError:
        return None           # the autoencoder path reads it again and says what is wrong
    return obj if is_nvlabs_state(obj) else None


def convert_state_dict_file(source: str | Path, dest: str | Path, obj) -> dict:
    """Import an NVlabs state dict (``obj``, read from ``source``) into ``dest`` (.safetensors)."""
    check_outputs({"--dest": dest}, {"--source": source})
    nets = import_state_dicts(source, obj)
    try:
        digest = sha256_file(source)
    except OSError as e:
        raise SourceError(f"cannot read {source} ({e.strerror or e}); check that it is readable") from e
    _save(dest, {"converted_from": "nvlabs-state-dict", "source": Path(source).name, "source_sha256": digest,
                 "assumed": "mapping_lr_multiplier 0.01, conv_clamp none, mbstd group 4"}, nets)
    return nets


def export_file(source: str | Path, dest: str | Path) -> dict:
    """Write the standard StyleGAN2 networks of our network file ``source`` as NVlabs state dicts to ``dest``."""
    check_outputs({"--dest": dest}, {"--source": source})
    header = read_header(source)
    names = [n for n, spec in header["networks"].items() if spec["class"] in ("SG2Generator", "SG2Discriminator")]
    if not names:
        held = ", ".join(f"{n} ({spec['class']})" for n, spec in header["networks"].items())
        hint = (" (bake it for a user first: generate.py issue)" if "SG2FingerprintedGenerator" in held else "")
        raise StateDictImportError(f"{source} holds {held}: no plain standard StyleGAN2 to write in NVlabs' layout"
                                   f"{hint}")
    nets = load_network(source, names=names)
    try:
        export_state_dicts(nets, dest)
    except OSError as e:
        raise DestinationError(f"cannot write {dest} ({e.strerror or e}); check that its folder is writable and "
                               "has free space, or choose another --dest (nothing was written)") from e
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
              help="Release or stylegan2-ada-pytorch network pickle (.pkl), an NVlabs state dict (.pt), an "
                   "artificial-fingerprinting encoder or decoder (.pth), or (to write NVlabs state dicts) this "
                   "project's network file of a standard StyleGAN2 (.safetensors).")
@click.option("--dest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output network file (.safetensors), or NVlabs state dicts (.pt) from a .safetensors --source.")
@click.option("--resolution", type=click.IntRange(min=1),
              help="With an artificial-fingerprinting encoder converted alone: the image size it works at.")
def main(source: Path, dest: Path, resolution: int | None) -> None:
    try:
        check_outputs({"--dest": dest}, {"--source": source})
        refuse_foreign_dest(dest)
    except OutputPathError as e:
        fail(_one_line(e))
    if source.suffix == ".safetensors":
        if dest.suffix not in (".pt", ".pth"):
            fail(f"--source {source} is already this project's network file; give --dest NAME.pt to write its "
                 "standard StyleGAN2 in NVlabs' state-dict layout")
        try:
            nets = export_file(source, dest)
        except (CheckpointError, StateDictImportError, OutputPathError, DestinationError) as e:
            fail(_one_line(e))
        for name, net in nets.items():
            click.echo(f"{name:6s} {type(net).__name__:20s} {count_params(net):>12,d} parameters")
        load = ('G.load_state_dict(torch.load(PATH, weights_only=True))' if len(nets) == 1 else
                'G.load_state_dict(torch.load(PATH, weights_only=True)["G_ema"])')
        click.echo(f"wrote {dest} (NVlabs' layout; in stylegan2-ada-pytorch: {load})")
        return
    if dest.suffix in (".pt", ".pth"):
        fail(f"--dest {dest}: NVlabs state dicts are written from this project's network files (.safetensors); "
             "convert --source to a .safetensors first")
    obj = read_nvlabs_state(source) if is_art_release(source) else None
    if obj is not None:
        if resolution is not None:
            fail("--resolution goes with an artificial-fingerprinting encoder only; an NVlabs state dict's "
                 "shapes give its resolution")
        try:
            nets = convert_state_dict_file(source, dest, obj)
        except (StateDictImportError, OutputPathError, SourceError, DestinationError) as e:
            fail(_one_line(e))
        for name, net in nets.items():
            click.echo(f"{name:6s} {type(net).__name__:20s} {count_params(net):>12,d} parameters")
        click.echo(f"wrote {dest}")
        return
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
