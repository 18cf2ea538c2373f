"""NVlabs state dicts: the ``torch.save`` of ``G.state_dict()`` (and of D's) that NVlabs' ``stylegan2-ada-pytorch``
classes load with ``load_state_dict``, in and out of this project's standard StyleGAN2 (``networks.stylegan2_ada``).

Out (``export_state_dicts``): one generator as a flat state dict, which NVlabs' code loads in one line::

    G.load_state_dict(torch.load("alice.pt", weights_only=True))

or several networks as ``{"G": ..., "G_ema": ..., "D": ...}`` (``torch.load(path)["G_ema"]``), float32 on the CPU.

In (``import_state_dicts``): either form, read weights-only within bounds (``interop.torch_file``). A state dict
holds no configuration, so it is read from the keys and shapes: the mapping's depth and widths, the resolution,
the channel schedule (``min(channel_base // res, channel_max)``), D's minibatch-stddev channels. What the shapes
cannot tell takes NVlabs' defaults: the mapping's lr multiplier 0.01, no ``conv_clamp`` (NVlabs' training uses 256
with fp16 layers: a clamp rarely reached; the outputs differ only where it is), a minibatch-stddev group of 4.
Every parameter and buffer must then be present with its shape, finite, and used (``load_state_dict(strict)``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnnlib.util import atomic_path
from interop.sg2ada_import import _channel_config, _resolutions, fill_state
from interop.torch_file import read_weights_only
from networks import checkpoint_checks as checks
from networks.stylegan2_ada import SG2Discriminator, SG2Generator
from torch_utils.misc import empty_module

ROLES = ("G", "G_ema", "D")
WHAT = ("--source must be an NVlabs state dict: torch.save(G.state_dict()) of a stylegan2-ada-pytorch generator, or "
        "of {'G': ..., 'G_ema': ..., 'D': ...}")


class StateDictImportError(ValueError):
    """A state dict that is not a standard StyleGAN2's (or not readable)."""


def looks_like_generator(state: dict) -> bool:
    return "mapping.fc0.weight" in state and "synthesis.b4.const" in state


def looks_like_discriminator(state: dict) -> bool:
    return "b4.conv.weight" in state and "b4.out.weight" in state


def is_nvlabs_state(obj: Any) -> bool:
    """Whether a loaded object is an NVlabs state dict (flat, of a generator) or a dict of them by role."""
    if not isinstance(obj, dict):
        return False
    if looks_like_generator(obj):
        return True
    return bool(obj) and set(obj) <= set(ROLES) and all(isinstance(v, dict) for v in obj.values())


def _tensor(state: dict, key: str, ndim: int, where: str) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise StateDictImportError(f"{where}: no tensor {key!r}; {WHAT}")
    if value.ndim != ndim:
        raise StateDictImportError(f"{where}: {key} has shape {list(value.shape)}, expected {ndim} dimensions")
    return value


def _max_resolution(keys: list[str], pattern: str, where: str) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k))]
    if not found:
        raise StateDictImportError(f"{where}: no synthesis or discriminator blocks; {WHAT}")
    res = max(found)
    if not 4 <= res <= 1024:
        raise StateDictImportError(f"{where}: resolution {res} out of range [4, 1024]")
    return res


def generator_kwargs(state: dict, where: str) -> dict[str, Any]:
    layers = 0
    while f"mapping.fc{layers}.weight" in state and layers <= 32:
        layers += 1
    if not 1 <= layers <= 32:
        raise StateDictImportError(f"{where}: a mapping of {layers} layers; {WHAT}")
    fc0 = _tensor(state, "mapping.fc0.weight", 2, where)
    w_dim = int(_tensor(state, f"mapping.fc{layers - 1}.weight", 2, where).shape[0])
    hidden = int(fc0.shape[0]) if layers > 1 else None
    res = _max_resolution(list(state), r"synthesis\.b(\d+)\.conv1\.weight", where)
    try:
        channels = {r: int(_tensor(state, f"synthesis.b{r}.conv1.weight", 4, where).shape[0])
                    for r in _resolutions(res, where)}
        base, cmax = _channel_config(channels, None, f"{where}.synthesis")
    except ValueError as e:
        raise StateDictImportError(str(e)) from None
    return dict(z_dim=int(fc0.shape[1]), w_dim=w_dim, img_resolution=res,
                img_channels=int(_tensor(state, "synthesis.b4.torgb.weight", 4, where).shape[0]),
                mapping_layers=layers, mapping_hidden=None if hidden in (None, w_dim) else hidden,
                mapping_lr_multiplier=0.01, channel_base=base, channel_max=cmax, conv_clamp=None)


def discriminator_kwargs(state: dict, where: str) -> dict[str, Any]:
    res = _max_resolution(list(state), r"b(\d+)\.conv0\.weight", where)
    try:
        channels = {r: int(_tensor(state, f"b{r}.conv0.weight", 4, where).shape[0])
                    for r in _resolutions(res, where)[1:]}
        channels[4] = int(_tensor(state, "b4.conv.weight", 4, where).shape[0])
        base, cmax = _channel_config(channels, None, where)
    except ValueError as e:
        raise StateDictImportError(str(e)) from None
    mbstd = int(_tensor(state, "b4.conv.weight", 4, where).shape[1]) - channels[4]
    return dict(img_resolution=res, img_channels=int(_tensor(state, f"b{res}.fromrgb.weight", 4, where).shape[1]),
                channel_base=base, channel_max=cmax, conv_clamp=None, mbstd_group_size=4 if mbstd else 1,
                mbstd_num_channels=max(mbstd, 0))


def _convert(role: str, state: dict) -> nn.Module:
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise StateDictImportError(f"{role}: holds something other than named tensors; {WHAT}")
    is_g = role != "D"
    if not (looks_like_generator(state) if is_g else looks_like_discriminator(state)):
        raise StateDictImportError(f"{role}: not a {'generator' if is_g else 'discriminator'}'s state dict; {WHAT}")
    cls, kwargs = ((SG2Generator, generator_kwargs(state, role)) if is_g
                   else (SG2Discriminator, discriminator_kwargs(state, role)))
    try:
        checks.check_kwargs(cls.__name__, kwargs)
        net = empty_module(cls, **kwargs)
    except (ValueError, TypeError, ArithmeticError, RuntimeError) as e:
        raise StateDictImportError(f"{role}: configuration outside what this port builds ({kwargs}): {e}") from None
    return fill_state(net, state, role, StateDictImportError)


def import_state_dicts(path: str | os.PathLike, obj: Any = None) -> dict[str, nn.Module]:
    """``{'G_ema': SG2Generator}`` for a flat generator state dict (the one a user loads), or the networks of a
    ``{'G', 'G_ema', 'D'}`` dict (those present). ``obj``: the file's content, when already read."""
    if obj is None:
        obj = read_weights_only(path, StateDictImportError, WHAT)
    if not is_nvlabs_state(obj):
        raise StateDictImportError(f"{path}: {WHAT}")
    states = {"G_ema": obj} if looks_like_generator(obj) else obj
    try:
        return {role: _convert(role, states[role]) for role in ROLES if role in states}
    except StateDictImportError as e:
        raise StateDictImportError(f"{path}: {e}") from e


def export_state_dicts(nets: dict[str, nn.Module], path: str | os.PathLike) -> Path:
    """Write ``nets`` (plain ``SG2Generator`` / ``SG2Discriminator``) as NVlabs state dicts, atomically: one network
    as its flat state dict, several as ``{name: state dict}``; float32 on the CPU."""
    for name, net in nets.items():
        if type(net) not in (SG2Generator, SG2Discriminator):
            hint = " (bake a fingerprinted generator for a user first: generate.py issue)" if hasattr(
                net, "bake") else ""
            raise TypeError(f"{name} is a {type(net).__name__}: only a plain standard StyleGAN2 (SG2Generator, "
                            f"SG2Discriminator) has NVlabs' layout{hint}")
    states = {name: {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()}
              for name, net in nets.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(next(iter(states.values())) if len(states) == 1 else states, tmp)
    return path
