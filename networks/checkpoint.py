"""Network files: safetensors tensors plus a JSON header; loading never executes code.

Layout of a file written by ``save_network(path, G=..., G_ema=..., D=..., F=...)``:
  * tensors: every parameter and persistent buffer, named ``<network>.<state_dict key>``;
  * metadata (string -> string, in the safetensors header):
      ``format``          always ``"sgf-network"``,
      ``format_version``  ``"1"``,
      ``kind``            ``snapshot`` (G, G_ema, D, F), ``baked_generator``, ``decoder``,
                          ``generator``, ``autoencoder`` (encoder, decoder) or ``networks`` (any other set),
      ``networks``        JSON ``{name: {"class": ..., "kwargs": {...}}}``,
      ``n_bits``, ``resolution``  for quick inspection,
      ``extra``           JSON of caller metadata (training progress, provenance, ...).
Loading rebuilds each network as ``CLASS(**kwargs)`` from an allowlist of classes
(``NETWORK_CLASSES``) and fills it with ``load_state_dict(strict=True)``: every tensor must
be used and every parameter filled, shapes must agree.

Everything in a file is checked before it is trusted: the header's size, its JSON fields' size and
depth, each network's kwargs against its class's schema (``checkpoint_checks``), then the declared
tensors (names, shapes, dtype) against the network built on the meta device, all before any tensor is
read; finally every loaded tensor must be finite. Any failure is a ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from dnnlib.util import atomic_path, sha256_file
from networks import checkpoint_checks as checks
from networks.autoencoder import AutoencoderDecoder, DecoderWithLatent, FingerprintEncoder
from networks.stylegan2 import BakedGenerator, Discriminator, FingerprintDecoder, Generator
from torch_utils.misc import empty_module

FORMAT = "sgf-network"
FORMAT_VERSION = 1

# Classes a file may name.
NETWORK_CLASSES: dict[str, type[nn.Module]] = {
    "Generator": Generator,
    "BakedGenerator": BakedGenerator,
    "Discriminator": Discriminator,
    "FingerprintDecoder": FingerprintDecoder,
    "FingerprintEncoder": FingerprintEncoder,
    "AutoencoderDecoder": AutoencoderDecoder,
    "DecoderWithLatent": DecoderWithLatent,
}


class CheckpointError(ValueError):
    """A network file is missing, truncated, foreign or inconsistent."""


DAMAGED = "the file is damaged or was not written by this project; use the original file"
# What a build or a load of odd (but schema-abiding) kwargs or tensors can raise; all become CheckpointError.
BUILD_ERRORS = (TypeError, ValueError, KeyError, IndexError, RuntimeError, OverflowError, MemoryError, RecursionError)


def register_network_class(cls: type[nn.Module], schema: dict[str, checks.Field]) -> type[nn.Module]:
    """Allow ``cls`` in network files; ``schema`` bounds each of its constructor kwargs."""
    NETWORK_CLASSES[cls.__name__] = cls
    checks.SCHEMAS[cls.__name__] = dict(schema)
    return cls


def _kind(classes: dict[str, str]) -> str:
    """The ``kind`` of a file holding networks ``{name: class name}``."""
    names = set(classes)
    if names == {"G", "G_ema", "D", "F"}:
        return "snapshot"
    if names == {"G"} and classes["G"] == "BakedGenerator":
        return "baked_generator"
    if names == {"F"}:
        return "decoder"
    if names == {"encoder", "decoder"}:
        return "autoencoder"
    if names <= {"G", "G_ema"}:
        return "generator"
    return "networks"


def _first_attr(nets: dict[str, nn.Module], attr: str) -> int | None:
    for net in nets.values():
        value = getattr(net, attr, None)
        if isinstance(value, int):
            return value
    return None


def save_network(path: str | os.PathLike, extra: dict[str, Any] | None = None, **nets: nn.Module) -> Path:
    """Write networks (keyword name -> module with ``init_kwargs``) to ``path`` atomically."""
    if not nets:
        raise ValueError("save_network needs at least one network")
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    header: dict[str, dict[str, Any]] = {}
    for name, net in nets.items():
        cls_name = type(net).__name__
        if NETWORK_CLASSES.get(cls_name) is not type(net):
            raise ValueError(f"{name}: class {cls_name} is not a registered network class")
        if not hasattr(net, "init_kwargs"):
            raise ValueError(f"{name}: {cls_name} has no init_kwargs to rebuild it from")
        header[name] = {"class": cls_name, "kwargs": json.loads(json.dumps(net.init_kwargs))}
        try:  # Never write a file that loading would refuse.
            checks.check_kwargs(cls_name, header[name]["kwargs"])
        except ValueError as e:
            raise ValueError(f"{name} ({cls_name}) is outside what network files hold: {e}") from None
        for key, value in net.state_dict().items():
            value = value.detach().to("cpu").contiguous()
            if value.data_ptr() in seen:  # The same module passed twice (e.g. G_ema=G): store a copy.
                value = value.clone()
            seen.add(value.data_ptr())
            tensors[f"{name}.{key}"] = value
    bits = _first_attr(nets, "n_bits")
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": _kind({name: type(net).__name__ for name, net in nets.items()}),
        "networks": json.dumps(header),
        "n_bits": str(bits if bits is not None else _first_attr(nets, "n_bits")),
        "resolution": str(_first_attr(nets, "img_resolution")),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _read_safetensors_header(path: Path) -> tuple[dict[str, str], list[str]]:
    """The metadata and tensor names of a safetensors file, refusing headers too large to be ours."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e})") from e
    if len(head) == 8 and struct.unpack("<Q", head)[0] > checks.MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: not a readable safetensors file (its header claims "
                              f"{struct.unpack('<Q', head)[0]} bytes, at most {checks.MAX_HEADER_BYTES} are read); "
                              "truncated or foreign?")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, list(f.keys())
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); truncated or foreign?") from e


# Names that files written before the vocabulary was unified (2026-12-06) use: the class ImageDecoder, and
# c_dim / fingerprint_bits / bits for what every network now calls n_bits.
LEGACY_CLASSES = {"ImageDecoder": "AutoencoderDecoder"}
LEGACY_KWARGS = {"Generator": "c_dim", "FingerprintDecoder": "c_dim", "BakedGenerator": "fingerprint_bits",
                 "FingerprintEncoder": "bits", "AutoencoderDecoder": "bits", "DecoderWithLatent": "bits"}


def upgrade_legacy_names(spec: dict[str, Any]) -> None:
    """Translate an older file's class and kwarg names (in place) to today's; anything else is left alone."""
    if isinstance(spec, dict) and isinstance(spec.get("kwargs"), dict):
        spec["class"] = LEGACY_CLASSES.get(spec.get("class"), spec.get("class"))
        old = LEGACY_KWARGS.get(spec["class"])
        if old in spec["kwargs"] and "n_bits" not in spec["kwargs"]:
            spec["kwargs"]["n_bits"] = spec["kwargs"].pop(old)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed metadata of a network file, validated; raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    meta, keys = _read_safetensors_header(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a network file of this project (format={meta.get('format')!r}); "
                              "release pickles (.pkl) are converted with legacy.py")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        version = 0
    if version < 1:
        raise CheckpointError(f"{path}: bad format_version {meta.get('format_version')!r}; {DAMAGED}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this code reads ({FORMAT_VERSION}); "
                              "update the code")
    if "networks" not in meta:
        raise CheckpointError(f"{path}: corrupt header (no 'networks' field); {DAMAGED}")
    try:
        networks = checks.parse_json("networks", meta["networks"], checks.MAX_NETWORKS_BYTES)
        checks.check_networks(networks)
        extra = checks.parse_json("extra", meta.get("extra", "{}"), checks.MAX_EXTRA_BYTES)
        checks.check_extra(extra)
    except ValueError as e:
        raise CheckpointError(f"{path}: corrupt header: {e}; {DAMAGED}") from None
    for spec in networks.values():
        upgrade_legacy_names(spec)
    for name, spec in networks.items():
        if spec["class"] not in NETWORK_CLASSES:
            raise CheckpointError(f"{path}: network {name!r} has unknown class {spec['class']!r}; "
                                  f"known: {sorted(NETWORK_CLASSES)}; {DAMAGED}")
        try:
            checks.check_kwargs(spec["class"], spec["kwargs"])
        except ValueError as e:
            raise CheckpointError(f"{path}: cannot build {name} ({spec['class']}): {e}; {DAMAGED}") from None
    kind = _kind({name: spec["class"] for name, spec in networks.items()})
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: corrupt header: kind {meta.get('kind')!r} does not match its networks "
                              f"{list(networks)} (kind {kind!r}); {DAMAGED}")
    stray = [k for k in keys if k.split(".", 1)[0] not in networks]
    if stray:
        raise CheckpointError(f"{path}: tensor {stray[0]!r} belongs to no network of the header "
                              f"({list(networks)}); {DAMAGED}")
    return {"kind": kind, "format_version": version, "networks": networks, "extra": extra,
            "n_bits": meta.get("n_bits", meta.get("fingerprint_bits")), "resolution": meta.get("resolution"),
            "keys": keys}


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _build(path: Path, name: str, spec: dict[str, Any]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The network on the meta device (no memory) and the tensors it expects (meta tensors)."""
    try:
        net = empty_module(NETWORK_CLASSES[spec["class"]], **spec["kwargs"])
        return net, net.state_dict()
    except BUILD_ERRORS as e:
        raise CheckpointError(f"{path}: cannot build {name} ({spec['class']}) from its kwargs: {e}; {DAMAGED}") from e


def _check_declared(path: Path, name: str, cls: str, expected: dict[str, torch.Tensor], f, keys: list[str]) -> None:
    """The file declares exactly the float32 tensors of the shapes ``expected`` (read from its header only)."""
    prefix = f"{name}."
    declared = {k[len(prefix):]: f.get_slice(k) for k in keys if k.startswith(prefix)}
    problems = []
    missing = sorted(set(expected) - set(declared))
    unexpected = sorted(set(declared) - set(expected))
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    for key in sorted(set(expected) & set(declared)):
        dtype, shape = declared[key].get_dtype(), list(declared[key].get_shape())
        if dtype != "F32":
            problems.append(f"{key} has dtype {dtype}, expected F32 (float32)")
        elif shape != list(expected[key].shape):
            problems.append(f"{key} has shape {shape}, expected {list(expected[key].shape)}")
    if problems:
        raise CheckpointError(f"{path}: tensors of {name} do not fit {cls}: {'; '.join(problems[:4])}; {DAMAGED}")


def _finite(value: torch.Tensor) -> bool:
    """No NaN or inf in ``value``, in one pass: a finite sum has finite terms (NaN and inf propagate); only when
    the sum is not finite (perhaps an overflow) are the minimum and maximum looked at. Several times faster than
    ``isfinite().all()``."""
    if not value.is_floating_point() or value.numel() == 0 or bool(torch.isfinite(value.sum())):
        return True
    lo, hi = torch.aminmax(value)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def _read_tensors(path: Path, name: str, f, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of network ``name``, each refused if it holds NaN or infinite values."""
    state = {}
    for key in expected:
        value = f.get_tensor(f"{name}.{key}")
        if not _finite(value):
            raise CheckpointError(f"{path}: tensor {name}.{key} holds NaN or infinite values (a diverged run or a "
                                  "damaged file); use an earlier snapshot")
        state[key] = value
    return state


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu",
                 names: list[str] | None = None) -> dict[str, nn.Module]:
    """Rebuild the networks stored in ``path`` (all, or only ``names``), in eval mode."""
    path = Path(path)
    header = read_header(path)
    wanted = list(header["networks"]) if names is None else names
    missing = [n for n in wanted if n not in header["networks"]]
    if missing:
        raise CheckpointError(f"{path}: has no network(s) {missing}; it holds {list(header['networks'])}")
    specs = {name: header["networks"][name] for name in wanted}
    built = {name: _build(path, name, spec) for name, spec in specs.items()}
    out: dict[str, nn.Module] = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            # safetensors checked that every declared shape fills its byte range and that the ranges tile the
            # file; once the shapes are those the networks expect, the file holds exactly their tensors.
            for name, (_, expected) in built.items():
                _check_declared(path, name, specs[name]["class"], expected, f, header["keys"])
            for name, (net, expected) in built.items():
                state = _read_tensors(path, name, f, expected)
                try:
                    net.load_state_dict(state, strict=True, assign=True)
                except RuntimeError as e:
                    raise CheckpointError(f"{path}: tensors of {name} do not fit {specs[name]['class']}: {e}") from e
                out[name] = net.eval()
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); truncated or changed while read?") from e
    return out


@dataclass
class LoadedDecoder:
    """A fingerprint decoder ready for detection: ``logits(images in [-1, 1]) -> [N, n_bits]``."""
    net: nn.Module
    n_bits: int
    resolution: int
    file: Path               # the file the decoder's weights come from (a snapshot, decoder or autoencoder file)
    sha256: str              # of that file (a calibration is tied to it)
    kind: str

    @torch.no_grad()
    def logits(self, img: torch.Tensor) -> torch.Tensor:
        out = self.net(img)
        return out[1] if isinstance(out, tuple) else out


def load_decoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedDecoder:
    """The fingerprint decoder behind a network file.

    A snapshot (or decoder file) gives its F; an autoencoder file its decoder; a baked generator the F of
    the snapshot it was issued from (its header records that snapshot's path and SHA-256, which must
    still match; that snapshot must not itself be a baked generator, so no chain is followed).
    """
    path = Path(path)
    header = read_header(path)
    nets = header["networks"]
    if header["kind"] == "baked_generator":
        extra = header["extra"]
        source = extra.get("source")
        if not source:
            raise CheckpointError(f"{path}: a baked generator that does not record the snapshot it was issued from; "
                                  "pass that snapshot as the decoder")
        source_path = Path(source)
        if not source_path.is_file():
            raise CheckpointError(f"{path} was issued from {source}, which is not there any more; "
                                  "pass the issuing snapshot (or a copy of it) as the decoder")
        if read_header(source_path)["kind"] == "baked_generator":
            raise CheckpointError(f"{path} names {source} as the snapshot it was issued from, but that is itself a "
                                  "baked generator (no decoder); pass the training snapshot as the decoder")
        if extra.get("source_sha256") and sha256_file(source_path) != extra["source_sha256"]:
            raise CheckpointError(f"{source} is not the snapshot {path} was issued from (SHA-256 differs)")
        return load_decoder(source_path, device)
    if "F" in nets:
        name = "F"
    elif "decoder" in nets:
        name = "decoder"
    else:
        raise CheckpointError(f"{path}: holds no fingerprint decoder (kind {header['kind']!r}, networks "
                              f"{list(nets)}); pass a training snapshot, a decoder or an autoencoder file")
    net = load_network(path, device=device, names=[name])[name]
    n_bits = int(getattr(net, "n_bits", 0))
    if n_bits <= 0:
        raise CheckpointError(f"{path}: its decoder reads no fingerprint bits (a plain StyleGAN2 snapshot?)")
    return LoadedDecoder(net=net, n_bits=n_bits, resolution=int(net.img_resolution), file=path,
                         sha256=sha256_file(path), kind=header["kind"])
