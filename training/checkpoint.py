"""Network files: safetensors tensors plus a JSON header; loading never executes code.

Layout of a file written by ``save_network(path, G=..., G_ema=..., D=..., F=...)``:
  * tensors: every parameter and persistent buffer, named ``<network>.<state_dict key>``;
  * metadata (string -> string, in the safetensors header):
      ``format``          always ``"sgf-network"``,
      ``format_version``  ``"1"``,
      ``kind``            ``snapshot`` (G, G_ema, D, F), ``baked_generator``, ``decoder``,
                          ``generator``, ``autoencoder`` (encoder, decoder) or ``networks`` (any other set),
      ``networks``        JSON ``{name: {"class": ..., "kwargs": {...}}}``,
      ``fingerprint_bits``, ``resolution``  for quick inspection,
      ``extra``           JSON of caller metadata (training progress, provenance, ...).
Loading rebuilds each network as ``CLASS(**kwargs)`` from an allowlist of classes
(``NETWORK_CLASSES``) and fills it with ``load_state_dict(strict=True)``: every tensor must
be used and every parameter filled, shapes must agree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from dnnlib.util import atomic_path, sha256_file
from torch_utils.misc import empty_module
from training.autoencoder import DecoderWithLatent, FingerprintEncoder, ImageDecoder
from training.networks import BakedGenerator, Discriminator, FingerprintDecoder, Generator

FORMAT = "sgf-network"
FORMAT_VERSION = 1

# Classes a file may name.
NETWORK_CLASSES: dict[str, type[nn.Module]] = {
    "Generator": Generator,
    "BakedGenerator": BakedGenerator,
    "Discriminator": Discriminator,
    "FingerprintDecoder": FingerprintDecoder,
    "FingerprintEncoder": FingerprintEncoder,
    "ImageDecoder": ImageDecoder,
    "DecoderWithLatent": DecoderWithLatent,
}


class CheckpointError(ValueError):
    """A network file is missing, truncated, foreign or inconsistent."""


def register_network_class(cls: type[nn.Module]) -> type[nn.Module]:
    """Allow ``cls`` in network files (usable as a class decorator)."""
    NETWORK_CLASSES[cls.__name__] = cls
    return cls


def _kind(nets: dict[str, nn.Module]) -> str:
    names = set(nets)
    if names == {"G", "G_ema", "D", "F"}:
        return "snapshot"
    if names == {"G"} and isinstance(nets["G"], BakedGenerator):
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
        header[name] = {"class": cls_name, "kwargs": net.init_kwargs}
        for key, value in net.state_dict().items():
            value = value.detach().to("cpu").contiguous()
            if value.data_ptr() in seen:  # The same module passed twice (e.g. G_ema=G): store a copy.
                value = value.clone()
            seen.add(value.data_ptr())
            tensors[f"{name}.{key}"] = value
    bits = _first_attr(nets, "fingerprint_bits")
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": _kind(nets),
        "networks": json.dumps(header),
        "fingerprint_bits": str(bits if bits is not None else _first_attr(nets, "c_dim")),
        "resolution": str(_first_attr(nets, "img_resolution")),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed metadata of a network file, validated; raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); truncated or foreign?") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a network file of this project (format={meta.get('format')!r}); "
                              "release pickles (.pkl) are converted with legacy.py")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise CheckpointError(f"{path}: bad format_version {meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this code reads ({FORMAT_VERSION})")
    try:
        networks = json.loads(meta["networks"])
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt header ({e})") from e
    if not isinstance(networks, dict) or not networks:
        raise CheckpointError(f"{path}: header lists no networks")
    for name, spec in networks.items():
        if not (isinstance(spec, dict) and isinstance(spec.get("class"), str) and isinstance(spec.get("kwargs"), dict)):
            raise CheckpointError(f"{path}: header entry for {name!r} is malformed")
        if spec["class"] not in NETWORK_CLASSES:
            raise CheckpointError(f"{path}: network {name!r} has unknown class {spec['class']!r}; "
                                  f"known: {sorted(NETWORK_CLASSES)}")
    return {"kind": meta.get("kind"), "format_version": version, "networks": networks, "extra": extra,
            "fingerprint_bits": meta.get("fingerprint_bits"), "resolution": meta.get("resolution"), "keys": keys}


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu",
                 names: list[str] | None = None) -> dict[str, nn.Module]:
    """Rebuild the networks stored in ``path`` (all, or only ``names``), in eval mode."""
    path = Path(path)
    header = read_header(path)
    wanted = list(header["networks"]) if names is None else names
    missing = [n for n in wanted if n not in header["networks"]]
    if missing:
        raise CheckpointError(f"{path}: has no network(s) {missing}; it holds {list(header['networks'])}")
    used = {k for k in header["keys"] if k.split(".", 1)[0] in wanted}
    out: dict[str, nn.Module] = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        for name in wanted:
            spec = header["networks"][name]
            try:
                net = empty_module(NETWORK_CLASSES[spec["class"]], **spec["kwargs"])
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{path}: cannot build {name} ({spec['class']}) from its kwargs: {e}") from e
            prefix = f"{name}."
            state = {k[len(prefix):]: f.get_tensor(k) for k in used if k.startswith(prefix)}
            try:
                net.load_state_dict(state, strict=True, assign=True)
            except RuntimeError as e:
                raise CheckpointError(f"{path}: tensors of {name} do not fit {spec['class']}: {e}") from e
            for key, value in state.items():
                if value.dtype != torch.float32:
                    raise CheckpointError(f"{path}: {name}.{key} has dtype {value.dtype}, expected float32")
            out[name] = net.eval()
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
    still match).
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
    n_bits = int(getattr(net, "c_dim", 0) or getattr(net, "fingerprint_bits", 0))
    if n_bits <= 0:
        raise CheckpointError(f"{path}: its decoder reads no fingerprint bits (a plain StyleGAN2 snapshot?)")
    return LoadedDecoder(net=net, n_bits=n_bits, resolution=int(net.img_resolution), file=path,
                         sha256=sha256_file(path), kind=header["kind"])
