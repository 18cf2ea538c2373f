"""Convert the release's TF networks (read by ``tf_pickle``) into this project's networks.

Constructor kwargs come from each network's ``static_kwargs`` plus the build functions'
documented defaults (``docs/method.md#release-pickles``); configurations this port does not implement are
refused, not approximated. Variables are mapped name by name with a layout transform
(TF conv ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``, dense ``[in, out]`` -> ``[out, in]``);
stored values are the unscaled equalized-lr parameters in both projects, so no rescaling.
Coverage is checked both ways: every TF variable must be used (``lod`` and ``dlatent_avg``
are known to be unused by the fingerprinted G) and every parameter and persistent buffer
must be filled, with matching shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from interop.tf_pickle import TFNetwork, clip_repr
from networks.stylegan2 import Discriminator, FingerprintDecoder, Generator
from torch_utils.misc import empty_module
from torch_utils.ops import setup_filter

# Defaults of the release's build functions for kwargs not stored in static_kwargs.
TF_DEFAULTS: dict[str, Any] = dict(
    latent_size=512, dlatent_size=512, mapping_layers=8, mapping_fmaps=512, mapping_lrmul=0.01,
    fmap_base=16384, fmap_decay=1.0, fmap_min=1, fmap_max=512, resample_kernel=[1, 3, 3, 1],
    mbstd_group_size=4, mbstd_num_features=1, nonlinearity="lrelu", watermark_size=32,
    res_modulated_min_log2=2, res_modulated_max_log2=7, num_channels=3, label_size=0,
)
UNUSED_G_VARIABLES = ("lod", "dlatent_avg")   # Training bookkeeping; the fingerprinted G never reads them.
ROLE_OF = {"E": "F", "G": "G", "D": "D", "Gs": "G_ema"}


class TFImportError(ValueError):
    """A release network cannot be converted (unsupported kwargs, missing or unused variables)."""


def _kwargs(net: TFNetwork, architecture: str) -> dict[str, Any]:
    kw = dict(TF_DEFAULTS, architecture=architecture)
    for comp in net.components.values():
        kw.update(comp.static_kwargs)
    kw.update(net.static_kwargs)
    return kw


# Integer kwargs and the range this port accepts: a crafted pickle must not make us build millions of
# layers (mapping_layers), huge filters (resample_kernel) or astronomically large numbers (2 ** log2).
INT_RANGES: dict[str, tuple[int, int]] = dict(
    resolution=(4, 4096), latent_size=(1, 1 << 16), dlatent_size=(1, 1 << 16), mapping_layers=(1, 64),
    mapping_fmaps=(1, 1 << 16), fmap_base=(1, 1 << 24), fmap_max=(1, 1 << 16), watermark_size=(0, 1 << 16),
    res_modulated_min_log2=(0, 16), res_modulated_max_log2=(0, 16), num_channels=(1, 64),
    mbstd_group_size=(0, 1024), mbstd_num_features=(0, 64),
)
MAX_KERNEL_TAPS = 16


def _names(names: list[str], limit: int = 10) -> str:
    """A list of names for an error message, cut after ``limit``."""
    return str(names) if len(names) <= limit else f"{names[:limit]} ... ({len(names)} in all)"


def _require(net: TFNetwork, kw: dict[str, Any], key: str, allowed: tuple) -> None:
    if kw[key] not in allowed:
        raise TFImportError(f"{net.name}: {key}={clip_repr(kw[key])} is not supported by this port "
                            f"(supported: {allowed})")


def _check_ranges(net: TFNetwork, kw: dict[str, Any]) -> None:
    """Refuse kwargs outside what any release network uses, before anything is built from them."""
    for key, (lo, hi) in INT_RANGES.items():
        if key in kw and not (type(kw[key]) is int and lo <= kw[key] <= hi):
            raise TFImportError(f"{net.name}: {key}={clip_repr(kw[key])} must be an integer between "
                                f"{lo} and {hi}")
    taps = kw["resample_kernel"]
    if not (type(taps) in (list, tuple) and 1 <= len(taps) <= MAX_KERNEL_TAPS
            and all(type(t) in (int, float) and math.isfinite(t) for t in taps)):
        raise TFImportError(f"{net.name}: resample_kernel must be 1 to {MAX_KERNEL_TAPS} finite numbers, "
                            f"got {clip_repr(taps)}")
    lrmul = kw["mapping_lrmul"]
    if not (type(lrmul) in (int, float) and math.isfinite(lrmul) and lrmul > 0):
        raise TFImportError(f"{net.name}: mapping_lrmul={clip_repr(lrmul)} must be a positive number")


def _common_checks(net: TFNetwork, kw: dict[str, Any]) -> None:
    _require(net, kw, "nonlinearity", ("lrelu",))
    _require(net, kw, "fmap_decay", (1, 1.0))
    _require(net, kw, "fmap_min", (1,))
    _require(net, kw, "label_size", (0,))
    if "resolution" not in kw:
        raise TFImportError(f"{net.name}: static_kwargs lack 'resolution' (it has no default)")
    _check_ranges(net, kw)


def _build(net: TFNetwork, cls: type[nn.Module], **kwargs: Any) -> nn.Module:
    try:
        return empty_module(cls, **kwargs)
    except (ValueError, TypeError, ArithmeticError, RuntimeError) as e:
        raise TFImportError(f"{net.name}: cannot build a {cls.__name__} from the pickle's kwargs: {e}") from e


@dataclass(frozen=True)
class Layout:
    """How a TF variable becomes a tensor of ours, and the TF shape that a shape of ours implies."""

    name: str
    to_ours: Callable[[np.ndarray], np.ndarray]
    tf_shape: Callable[[tuple[int, ...]], tuple[int, ...]]


CONV = Layout("conv [kh, kw, in, out]", lambda a: a.transpose(3, 2, 0, 1), lambda s: (s[2], s[3], s[1], s[0]))
DENSE = Layout("dense [in, out]", lambda a: a.T, lambda s: (s[1], s[0]))
SAME = Layout("as is", lambda a: a, lambda s: s)
NOISE = Layout("noise [1, 1, r, r]", lambda a: a.reshape(a.shape[-2:]), lambda s: (1, 1, *s))

Table = dict[str, tuple[str, Layout]]   # our key -> (TF name, layout)


def _layer(table: Table, ours: str, tf: str, kind: str, bias: bool = True) -> None:
    table[f"{ours}.weight"] = (f"{tf}/weight", CONV if kind == "conv" else DENSE)
    if bias:
        table[f"{ours}.bias"] = (f"{tf}/bias", SAME)


def _generator_table(G: Generator) -> Table:
    t: Table = {}
    for i in range(G.embedding.num_layers):
        _layer(t, f"embedding.fc{i}", f"G_mapping/Dense{i}", "dense")
    _layer(t, "synthesis.latent", "G_synthesis/4x4/Latent", "dense")
    noise_index = 0
    for res in G.synthesis.resolutions:
        block = getattr(G.synthesis, f"b{res}")
        names = [("conv", "Conv")] if res == 4 else [("conv0", "Conv0_up"), ("conv1", "Conv1")]
        for ours, tf in names + [("torgb", "ToRGB")]:
            layer, scope, key = getattr(block, ours), f"G_synthesis/{res}x{res}/{tf}", f"synthesis.b{res}.{ours}"
            _layer(t, key, scope, "conv")
            if layer.modulated:
                t[f"{key}.affine.weight"] = (f"{scope}/mod_weight", DENSE)
                t[f"{key}.affine.bias"] = (f"{scope}/mod_bias", SAME)
            if layer.use_noise:
                t[f"{key}.noise_strength"] = (f"{scope}/noise_strength", SAME)
                t[f"{key}.noise_const"] = (f"G_synthesis/noise{noise_index}", NOISE)
                noise_index += 1
    return t


def _trunk_table(net: Discriminator | FingerprintDecoder) -> Table:
    t: Table = {}
    for res in net.block_resolutions:
        block, scope = getattr(net, f"b{res}"), f"{res}x{res}"
        if block.has_fromrgb:
            _layer(t, f"b{res}.fromrgb", f"{scope}/FromRGB", "conv")
        _layer(t, f"b{res}.conv0", f"{scope}/Conv0", "conv")
        _layer(t, f"b{res}.conv1", f"{scope}/Conv1_down", "conv")
        if hasattr(block, "skip"):
            _layer(t, f"b{res}.skip", f"{scope}/Skip", "conv", bias=False)
    if hasattr(net, "fromrgb4"):
        _layer(t, "fromrgb4", "4x4/FromRGB", "conv")
    _layer(t, "conv", "4x4/Conv", "conv")
    _layer(t, "fc", "4x4/Dense0", "dense")
    _layer(t, "out", "Output", "dense")
    return t


def _fill(module: nn.Module, table: Table, variables: dict[str, np.ndarray], name: str,
          filter_taps: list[float], ignored: tuple[str, ...] = ()) -> nn.Module:
    """Fill ``module`` from ``variables`` through ``table``; check coverage and shapes both ways."""
    expected = module.state_dict()   # meta tensors: shapes only
    state: dict[str, torch.Tensor] = {}
    for key in expected:
        if key.endswith("resample_filter"):
            state[key] = setup_filter(filter_taps)
    missing_ours = [k for k in expected if k not in state and k not in table]
    if missing_ours:
        raise TFImportError(f"{name}: no TF variable is mapped to {_names(missing_ours)}")
    absent = [tf for k, (tf, _) in table.items() if tf not in variables]
    if absent:
        raise TFImportError(f"{name}: the pickle lacks variables {_names(absent)}")
    for key, (tf, layout) in table.items():
        want = layout.tf_shape(tuple(expected[key].shape))
        if tuple(variables[tf].shape) != want:
            raise TFImportError(f"{name}: {tf} has shape {list(variables[tf].shape)}, expected {list(want)} "
                                f"({layout.name}) to fill {key}")
        state[key] = torch.from_numpy(np.array(layout.to_ours(variables[tf]), dtype=np.float32, order="C"))
    unused = sorted(set(variables) - {tf for tf, _ in table.values()} - set(ignored))
    if unused:
        raise TFImportError(f"{name}: TF variables not used by the conversion: {_names(unused)}")
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval()


def convert_generator(net: TFNetwork) -> Generator:
    kw = _kwargs(net, "skip")
    _common_checks(net, kw)
    _require(net, kw, "architecture", ("skip",))
    lo, hi = 2 ** int(kw["res_modulated_min_log2"]), 2 ** int(kw["res_modulated_max_log2"])
    G = _build(net, Generator, z_dim=kw["latent_size"], n_bits=kw["watermark_size"], w_dim=kw["dlatent_size"],
               img_resolution=kw["resolution"], img_channels=kw["num_channels"], embed_layers=kw["mapping_layers"],
               embed_hidden=kw["mapping_fmaps"], embed_lr_multiplier=kw["mapping_lrmul"],
               channel_base=kw["fmap_base"], channel_max=kw["fmap_max"], mod_range=(lo, hi),
               resample_filter=tuple(kw["resample_kernel"]))
    return _fill(G, _generator_table(G), net.all_variables(), net.name, kw["resample_kernel"], UNUSED_G_VARIABLES)


def _trunk_kwargs(net: TFNetwork) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constructor kwargs shared by D and F (resnet trunk by default), and all resolved kwargs."""
    kw = _kwargs(net, "resnet")
    _common_checks(net, kw)
    return dict(img_resolution=kw["resolution"], img_channels=kw["num_channels"], architecture=kw["architecture"],
                channel_base=kw["fmap_base"], channel_max=kw["fmap_max"],
                resample_filter=tuple(kw["resample_kernel"])), kw


def convert_discriminator(net: TFNetwork) -> Discriminator:
    common, kw = _trunk_kwargs(net)
    D = _build(net, Discriminator, mbstd_group_size=kw["mbstd_group_size"],
               mbstd_num_channels=kw["mbstd_num_features"], **common)
    return _fill(D, _trunk_table(D), net.all_variables(), net.name, kw["resample_kernel"])


def convert_decoder(net: TFNetwork) -> FingerprintDecoder:
    common, kw = _trunk_kwargs(net)
    F = _build(net, FingerprintDecoder, z_dim=kw["latent_size"], n_bits=kw["watermark_size"], **common)
    return _fill(F, _trunk_table(F), net.all_variables(), net.name, kw["resample_kernel"])


CONVERTERS: dict[str, Callable[[TFNetwork], nn.Module]] = {
    "G_main_watermark": convert_generator,
    "D_stylegan2": convert_discriminator,
    "E_stylegan2_watermark": convert_decoder,
}


def convert_release(obj: tuple[TFNetwork, ...] | TFNetwork) -> dict[str, nn.Module]:
    """Networks of a loaded release pickle, keyed as this project names them.

    ``(E, G, D, Gs)`` -> ``{'F', 'G', 'D', 'G_ema'}``; a bare ``Gs`` -> ``{'G_ema'}`` (a bare
    ``G`` -> ``{'G'}``). Roles come from the network names the release gives them.
    """
    nets = obj if isinstance(obj, tuple) else (obj,)
    out: dict[str, nn.Module] = {}
    for net in nets:
        role = ROLE_OF.get(net.name)
        convert = CONVERTERS.get(net.build_func_name.rsplit(".", 1)[-1])
        if role is None or convert is None:
            raise TFImportError(f"network {clip_repr(net.name)} (build function {clip_repr(net.build_func_name)}) "
                                f"is not one this port converts; expected names {sorted(ROLE_OF)} built by "
                                f"{sorted(CONVERTERS)}")
        if role in out:
            raise TFImportError(f"the pickle holds two networks named {net.name!r}")
        try:
            out[role] = convert(net)
        except (KeyError, ValueError, TypeError, ArithmeticError, RuntimeError) as e:   # torch: RuntimeError
            if isinstance(e, TFImportError):
                raise
            raise TFImportError(f"{net.name}: unusable kwargs in the pickle ({type(e).__name__}: {e})") from e
    return out
