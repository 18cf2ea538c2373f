"""Importing the artificial-fingerprinting release's pretrained autoencoders (``<name>_encoder.pth`` and
``<name>_decoder.pth``: ``torch.save`` of a module's ``state_dict``) into this project's networks.

The files are read with ``torch.load(..., weights_only=True)``, whose unpickler builds only tensors and plain
containers and refuses anything else (no code in the file runs), after a bound on the file's size. Every key
and shape is checked against what the release's modules hold (docs: shared spec ART_CHECKPOINTS.md); the bit
count, image size and channel count are read from the shapes, never guessed.

How the release's modules map onto ours:
  * the encoder is our ``FingerprintEncoder`` with ``RELEASE_ENCODER`` (2x2 up-sampling convs after padding
    right and bottom; the network's input concatenated into the last skip fusion). Its keys: ``secret_dense``
    -> ``fingerprint_dense``, ``conv1..5`` -> ``down.0..4``, ``up6..9`` -> ``up_proj.0..3``, ``conv6..9`` ->
    ``up_fuse.0..3``, ``conv10`` -> ``final.0``, ``residual`` -> ``to_rgb`` (the release's name; its output is
    the whole image, i.e. our ``residual=False``);
  * the decoder is our ``AutoencoderDecoder`` as it is: ``decoder.{0..12}`` -> ``convs.{0..12}``,
    ``dense.0`` -> ``hidden``, ``dense.2`` -> ``out``.
The release works on images in [0, 1]; ours take and return [-1, 1] and map to [0, 1] inside, exactly the
release's computation, so the imported weights are used unchanged.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from interop.torch_file import read_weights_only
from networks import checkpoint_checks as checks
from networks.autoencoder import RELEASE_ENCODER, AutoencoderDecoder, FingerprintEncoder
from torch_utils.misc import empty_module

WHAT = ("--source must be an encoder or decoder of the artificial-fingerprinting release "
        "(<name>_encoder.pth or <name>_decoder.pth, a torch.save of the module's state_dict)")


class ArtImportError(ValueError):
    """A release autoencoder file that cannot be read or does not hold the release's modules."""


def _encoder_keys() -> dict[str, str]:
    """Release key prefix -> ours, for the encoder."""
    names = {"secret_dense": "fingerprint_dense", "conv10": "final.0", "residual": "to_rgb"}
    names.update({f"conv{k}": f"down.{k - 1}" for k in range(1, 6)})
    names.update({f"up{k}": f"up_proj.{k - 6}" for k in range(6, 10)})
    names.update({f"conv{k}": f"up_fuse.{k - 6}" for k in range(6, 10)})
    return names


ENCODER_KEYS = _encoder_keys()
DECODER_KEYS = {**{f"decoder.{k}": f"convs.{k}" for k in range(0, 14, 2)}, "dense.0": "hidden", "dense.2": "out"}


def _few(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The float32 tensors of a ``torch.save``d state dict, read without running anything in the file."""
    path = Path(path)
    state = read_weights_only(path, ArtImportError, WHAT)
    if not isinstance(state, dict):
        raise ArtImportError(f"{path}: holds a {type(state).__name__}, not a state dict; {WHAT}")
    out = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise ArtImportError(f"{path}: key {key!r} is not a string, so this is not a state dict; {WHAT}")
        if not isinstance(value, torch.Tensor):
            raise ArtImportError(f"{path}: {key!r} holds a {type(value).__name__}, not a tensor; {WHAT}")
        if value.layout != torch.strided or not value.is_floating_point() or value.is_quantized:
            raise ArtImportError(f"{path}: {key!r} is a {value.dtype} {value.layout} tensor, not dense floating "
                                 f"point; {WHAT}")
        out[key] = value.to(torch.float32)
    return out


def _shape(path: Path, state: dict[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise ArtImportError(f"{path}: no {key!r}; {WHAT}")
    if state[key].ndim != ndim:
        raise ArtImportError(f"{path}: {key!r} has shape {list(state[key].shape)}, expected {ndim} dimensions; "
                             f"{WHAT}")
    return tuple(state[key].shape)


def role(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> str:
    """``"encoder"`` or ``"decoder"``: which of the release's modules ``state`` is."""
    if "secret_dense.weight" in state:
        return "encoder"
    if "dense.2.weight" in state or "decoder.0.weight" in state:
        return "decoder"
    raise ArtImportError(f"{path}: neither the release's encoder (no 'secret_dense.weight') nor its decoder "
                         f"(no 'dense.2.weight'); its keys: {_few(sorted(state))}; {WHAT}")


def _build(path: Path, cls: type[nn.Module], kwargs: dict) -> nn.Module:
    """``cls(**kwargs)`` on the meta device, after the kwargs are checked as a network file's would be."""
    try:
        checks.check_kwargs(cls.__name__, kwargs)
    except ValueError as e:
        raise ArtImportError(f"{path}: its shapes describe a network outside what {cls.__name__} supports ({e}); "
                             "this project's networks take power-of-two image sizes, 1 to 4096 bits and 1 to 4 "
                             "channels") from None
    return empty_module(cls, **kwargs)


def _fill(path: Path, net: nn.Module, state: dict[str, torch.Tensor], names: dict[str, str]) -> nn.Module:
    """Load the release's ``state`` (keys renamed by prefix) into ``net``, every key and shape checked."""
    ours_to_theirs = {}
    for key in state:
        prefix, _, leaf = key.rpartition(".")
        if prefix not in names:
            raise ArtImportError(f"{path}: unexpected key {key!r}; {WHAT}")
        ours_to_theirs[f"{names[prefix]}.{leaf}"] = key
    expected = net.state_dict()
    missing = sorted(k for k in expected if k not in ours_to_theirs)
    unexpected = sorted(theirs for ours, theirs in ours_to_theirs.items() if ours not in expected)
    if missing or unexpected:
        theirs_of = {ours: theirs for theirs, ours in names.items()}
        missing = [f"{theirs_of[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}" for k in missing]
        problem = "; ".join(filter(None, [missing and f"missing {_few(missing)}",
                                          unexpected and f"unexpected {_few(unexpected)}"]))
        raise ArtImportError(f"{path}: {problem}; {WHAT}")
    for ours, theirs in ours_to_theirs.items():
        if state[theirs].shape != expected[ours].shape:
            raise ArtImportError(f"{path}: {theirs!r} has shape {list(state[theirs].shape)}, expected "
                                 f"{list(expected[ours].shape)} (from the other keys' shapes); {WHAT}")
        if not bool(torch.isfinite(state[theirs]).all()):
            raise ArtImportError(f"{path}: {theirs!r} holds NaN or infinite values; use an intact copy of the file")
    net.load_state_dict({ours: state[theirs].contiguous() for ours, theirs in ours_to_theirs.items()},
                        strict=True, assign=True)
    return net.eval()


def decoder_from_state(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> AutoencoderDecoder:
    """Our ``AutoencoderDecoder`` holding the release decoder's weights; its size read from the shapes."""
    path = Path(path)
    n_bits = _shape(path, state, "dense.2.weight", 2)[0]
    hidden, flat = _shape(path, state, "dense.0.weight", 2)
    channels = _shape(path, state, "decoder.0.weight", 4)[1]
    cells = flat / 128
    side = math.isqrt(int(cells)) if cells == int(cells) else 0
    if side < 1 or side * side != cells:
        raise ArtImportError(f"{path}: 'dense.0.weight' reads {flat} features, not 128 x (R/32)^2 for an image "
                             f"size R; {WHAT}")
    kwargs = dict(n_bits=n_bits, img_resolution=32 * side, img_channels=channels, hidden=hidden)
    return _fill(path, _build(path, AutoencoderDecoder, kwargs), state, DECODER_KEYS)


def encoder_from_state(path: str | os.PathLike, state: dict[str, torch.Tensor], resolution: int) -> FingerprintEncoder:
    """Our ``FingerprintEncoder`` (``RELEASE_ENCODER`` layout) holding the release encoder's weights.

    The encoder's weights do not depend on the image size (only its fingerprint map's up-sampling does), so
    ``resolution`` comes from the decoder or the user.
    """
    path = Path(path)
    map_size, n_bits = _shape(path, state, "secret_dense.weight", 2)
    if map_size % 256:
        raise ArtImportError(f"{path}: 'secret_dense.weight' has shape {[map_size, n_bits]}, expected "
                             f"[channels x 16 x 16, bits]; {WHAT}")
    kwargs = dict(n_bits=n_bits, img_resolution=resolution, img_channels=map_size // 256, residual=False,
                  **RELEASE_ENCODER)
    return _fill(path, _build(path, FingerprintEncoder, kwargs), state, ENCODER_KEYS)


def paired_decoder(path: str | os.PathLike) -> Path | None:
    """``<name>_decoder.pth`` beside ``<name>_encoder.pth``, if there is one."""
    path = Path(path)
    stem, sep, rest = path.name.rpartition("_encoder")
    if not sep or not stem or rest != path.suffix:
        return None
    other = path.with_name(f"{stem}_decoder{rest}")
    return other if other.is_file() else None


def import_release(source: str | os.PathLike, resolution: int | None = None
                   ) -> tuple[dict[str, nn.Module], dict[str, Path]]:
    """The networks of a release file (and of the decoder beside an encoder): ``({"encoder": ..., "decoder":
    ...}, {role: file})``, with one or both roles. ``resolution`` is needed for an encoder alone and checked
    against the decoder's otherwise."""
    source = Path(source)
    state = load_state(source)
    first = role(source, state)
    files, states = {first: source}, {first: state}
    if "encoder" in files and (other := paired_decoder(source)) is not None:
        other_state = load_state(other)
        if role(other, other_state) != "decoder":
            raise ArtImportError(f"{other} (beside {source.name}) holds an encoder, not a decoder; move it away "
                                 "to convert the encoder alone")
        files["decoder"], states["decoder"] = other, other_state
    nets: dict[str, nn.Module] = {}
    if "decoder" in states:
        nets["decoder"] = decoder_from_state(files["decoder"], states["decoder"])
        found = nets["decoder"].img_resolution
        if resolution is not None and resolution != found:
            raise ArtImportError(f"--resolution {resolution} but {files['decoder']} reads {found}x{found} images; "
                                 "leave --resolution out")
        resolution = found
    if "encoder" in states:
        if resolution is None:
            encoder_from_state(source, states["encoder"], 32)   # its shapes do not depend on it: check them first
            raise ArtImportError(f"{source}: an encoder's weights do not tell the image size; give --resolution "
                                 "(the size it was trained at) or put its <name>_decoder.pth beside it")
        nets["encoder"] = encoder_from_state(source, states["encoder"], resolution)
        if "decoder" in nets:
            enc, dec = nets["encoder"], nets["decoder"]
            if (enc.n_bits, enc.img_channels) != (dec.n_bits, dec.img_channels):
                raise ArtImportError(f"{source} embeds {enc.n_bits} bits in {enc.img_channels}-channel images but "
                                     f"{files['decoder']} reads {dec.n_bits} bits from {dec.img_channels} channels: "
                                     "not a pair; convert them one at a time")
    return {k: nets[k] for k in ("encoder", "decoder") if k in nets}, files
