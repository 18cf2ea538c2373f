"""Convert the networks of a stylegan2-ada-pytorch pickle (read by ``sg2ada_pickle``) into this project's
standard StyleGAN2 (``networks.stylegan2_ada``): ``G``, ``G_ema`` -> ``SG2Generator``, ``D`` -> ``SG2Discriminator``.

The configuration comes from the records' attributes and tensor shapes (the constructor's recorded
``_init_kwargs`` only settle ``channel_base`` when the shapes leave it open); it is checked against the
network-file schema (bounded sizes) before anything is built, and the network is built on the meta device.
Then the converted network must match the pickle exactly: the same module tree with the same NVlabs class
names, the attributes that fix the arithmetic (activations, gains, up/down factors, clamps, architectures,
minibatch-stddev groups) equal, and the same parameters and persistent buffers with the same shapes, every
one of them used. Values are copied as float32 (they are NVlabs' stored values: no rescaling) and must be
finite. Class-conditional networks (``c_dim`` > 0) and other architectures than skip G / resnet D are
refused with a message saying so; so is a ``conv_clamp`` that differs between layers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from interop.sg2ada_pickle import PersistentObject
from interop.tf_pickle import clip_repr
from networks import checkpoint_checks as checks
from networks.checkpoint import _finite
from networks.layers import FullyConnectedLayer, MinibatchStdLayer
from networks.stylegan2_ada import (
    DiscriminatorBlock,
    DiscriminatorEpilogue,
    MappingNetwork,
    SG2Conv2dLayer,
    SG2Discriminator,
    SG2Generator,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
    channels_at_resolution,
)
from torch_utils.misc import empty_module

# Our class -> the NVlabs class name its record must have.
NV_CLASS: dict[type[nn.Module], str] = {
    SG2Generator: "Generator", MappingNetwork: "MappingNetwork", SynthesisNetwork: "SynthesisNetwork",
    SynthesisBlock: "SynthesisBlock", SynthesisLayer: "SynthesisLayer", ToRGBLayer: "ToRGBLayer",
    FullyConnectedLayer: "FullyConnectedLayer", SG2Discriminator: "Discriminator",
    DiscriminatorBlock: "DiscriminatorBlock", SG2Conv2dLayer: "Conv2dLayer", DiscriminatorEpilogue:
    "DiscriminatorEpilogue", MinibatchStdLayer: "MinibatchStdLayer",
}
ROLES = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}


class SG2ADAImportError(ValueError):
    """A network of the pickle cannot be converted (unsupported configuration, mismatching structure)."""


def _int_attr(rec: PersistentObject, name: str, where: str) -> int:
    value = rec.attr(name)
    if type(value) is not int:
        raise SG2ADAImportError(f"{where}: attribute {name}={clip_repr(value)} must be an integer")
    return value


def _child(rec: PersistentObject, name: str, where: str) -> PersistentObject:
    child = rec.children().get(name)
    if not isinstance(child, PersistentObject):
        raise SG2ADAImportError(f"{where}: has no module {name!r}")
    return child


def _records(rec: PersistentObject, prefix: str = "") -> dict[str, PersistentObject]:
    """Every module record under ``rec`` by its path ('' for ``rec``), as ``named_modules`` names them."""
    out = {prefix: rec}
    for key, child in rec.children().items():
        if child is not None:
            if not isinstance(child, PersistentObject):
                raise SG2ADAImportError(f"module {prefix + key!r} is a {type(child).__name__}, not a persistent "
                                        "module")
            out.update(_records(child, f"{prefix}.{key}" if prefix else key))
    return out


def _uniform(values: list[Any], what: str, where: str) -> Any:
    distinct = {repr(v) for v in values}
    if len(distinct) > 1:
        raise SG2ADAImportError(f"{where}: {what} differs between layers ({sorted(distinct)[:4]}); this port "
                                "supports one value for the whole network")
    return values[0] if values else None


def _conv_clamp(rec: PersistentObject, where: str, skip: tuple[str, ...] = ()) -> float | None:
    """The one ``conv_clamp`` of every convolution layer under ``rec`` (None or a positive number)."""
    values = [r.attr("conv_clamp") for path, r in _records(rec).items()
              if r.class_name in ("SynthesisLayer", "ToRGBLayer", "Conv2dLayer") and not path.endswith(skip)]
    clamp = _uniform(values, "conv_clamp", where)
    if clamp is not None and not (type(clamp) in (int, float) and math.isfinite(clamp) and clamp > 0):
        raise SG2ADAImportError(f"{where}: conv_clamp={clip_repr(clamp)} must be None or a positive number")
    return clamp


def _channel_config(channels: dict[int, int], recorded: Any, where: str) -> tuple[int, int]:
    """(channel_base, channel_max) giving ``channels`` {resolution: count} by NVlabs' schedule; the recorded
    constructor values when they fit (the shapes cannot tell 32768 from 32769)."""
    if not channels or any(type(c) is not int or c < 1 for c in channels.values()):
        raise SG2ADAImportError(f"{where}: bad channel counts {channels}")
    if isinstance(recorded, dict):
        base, cmax = recorded.get("channel_base"), recorded.get("channel_max")
        if type(base) is int and type(cmax) is int and base > 0 and cmax > 0 and all(
                channels_at_resolution(r, base, cmax) == c for r, c in channels.items()):
            return base, cmax
    cmax = max(channels.values())
    base = max([c * r for r, c in channels.items() if c < cmax] or [cmax * max(channels)])
    if any(channels_at_resolution(r, base, cmax) != c for r, c in channels.items()):
        raise SG2ADAImportError(f"{where}: channel counts {channels} do not follow min(channel_base // res, "
                                "channel_max)")
    return base, cmax


def generator_kwargs(rec: PersistentObject, where: str) -> dict[str, Any]:
    if rec.class_name != "Generator":
        raise SG2ADAImportError(f"{where}: a {clip_repr(rec.class_name)}, expected a Generator")
    c_dim = rec.attr("c_dim", 0)
    if c_dim != 0:
        raise SG2ADAImportError(f"{where}: a class-conditional generator (c_dim={clip_repr(c_dim)}); this port "
                                "converts unconditional networks only (no reference outputs exist here to "
                                "check a label path against)")
    res = _int_attr(rec, "img_resolution", where)
    mapping, synthesis = _child(rec, "mapping", where), _child(rec, "synthesis", where)
    layers = _int_attr(mapping, "num_layers", f"{where}.mapping")
    tensors = rec.tensors()
    if not (4 <= res <= 1024 and 1 <= layers <= 32):
        raise SG2ADAImportError(f"{where}: img_resolution {res} / mapping num_layers {layers} out of range")
    try:
        hidden = int(tensors["mapping.fc0.weight"].shape[0]) if layers > 1 else None
        channels = {r: int(tensors[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in _resolutions(res, where)}
    except KeyError as e:
        raise SG2ADAImportError(f"{where}: the pickle lacks tensor {e.args[0]}") from None
    w_dim = _int_attr(rec, "w_dim", where)
    lr = _child(mapping, "fc0", f"{where}.mapping").attr("bias_gain")
    if type(lr) not in (int, float):
        raise SG2ADAImportError(f"{where}: mapping.fc0.bias_gain={clip_repr(lr)} must be a number (the lr "
                                "multiplier)")
    base, cmax = _channel_config(channels, (synthesis.attr("_init_kwargs") or {}), f"{where}.synthesis")
    return dict(z_dim=_int_attr(rec, "z_dim", where), w_dim=w_dim, img_resolution=res,
                img_channels=_int_attr(rec, "img_channels", where), mapping_layers=layers,
                mapping_hidden=None if hidden in (None, w_dim) else hidden, mapping_lr_multiplier=float(lr),
                channel_base=base, channel_max=cmax, conv_clamp=_conv_clamp(synthesis, where))


def discriminator_kwargs(rec: PersistentObject, where: str) -> dict[str, Any]:
    if rec.class_name != "Discriminator":
        raise SG2ADAImportError(f"{where}: a {clip_repr(rec.class_name)}, expected a Discriminator")
    c_dim = rec.attr("c_dim", 0)
    if c_dim != 0:
        raise SG2ADAImportError(f"{where}: a class-conditional discriminator (c_dim={clip_repr(c_dim)}); this "
                                "port converts unconditional networks only")
    res = _int_attr(rec, "img_resolution", where)
    if not 8 <= res <= 1024:
        raise SG2ADAImportError(f"{where}: img_resolution {res} out of range [8, 1024]")
    epilogue = _child(rec, "b4", where)
    mbstd = epilogue.children().get("mbstd")
    tensors = rec.tensors()
    try:
        channels = {r: int(tensors[f"b{r}.conv0.weight"].shape[0]) for r in _resolutions(res, where)[1:]}
        channels[4] = int(tensors["b4.conv.weight"].shape[0])
    except KeyError as e:
        raise SG2ADAImportError(f"{where}: the pickle lacks tensor {e.args[0]}") from None
    base, cmax = _channel_config(channels, rec.attr("_init_kwargs"), where)
    group, num = (1, 0) if mbstd is None else (_int_attr(mbstd, "group_size", f"{where}.b4.mbstd"),
                                               _int_attr(mbstd, "num_channels", f"{where}.b4.mbstd"))
    return dict(img_resolution=res, img_channels=_int_attr(rec, "img_channels", where), channel_base=base,
                channel_max=cmax, conv_clamp=_conv_clamp(rec, where, skip=("skip",)), mbstd_group_size=group,
                mbstd_num_channels=num)


def _resolutions(res: int, where: str) -> list[int]:
    if res & (res - 1):
        raise SG2ADAImportError(f"{where}: img_resolution {res} is not a power of two")
    return [2**k for k in range(2, int(math.log2(res)) + 1)]


def _expected_attrs(m: nn.Module) -> dict[str, Any]:
    """The attributes of the NVlabs record that fix the arithmetic, with the values our module implies."""
    if isinstance(m, FullyConnectedLayer):
        return dict(activation=m.activation, weight_gain=m.weight_gain, bias_gain=m.bias_gain)
    if isinstance(m, SynthesisLayer):
        return dict(up=m.up, resolution=m.resolution, activation="lrelu", use_noise=True, conv_clamp=m.conv_clamp)
    if isinstance(m, ToRGBLayer):
        return dict(weight_gain=m.weight_gain, conv_clamp=m.conv_clamp)
    if isinstance(m, SG2Conv2dLayer):
        return dict(activation=m.activation, up=1, down=m.down, weight_gain=m.weight_gain, conv_clamp=m.conv_clamp)
    if isinstance(m, MinibatchStdLayer):
        return dict(group_size=m.group_size, num_channels=m.num_channels)
    if isinstance(m, SynthesisBlock):
        return dict(in_channels=m.in_channels, resolution=m.resolution, architecture="skip", num_conv=m.num_conv,
                    num_torgb=1)
    if isinstance(m, DiscriminatorBlock):
        return dict(in_channels=m.in_channels, architecture="resnet")
    if isinstance(m, DiscriminatorEpilogue):
        return dict(architecture="resnet", cmap_dim=0, resolution=4)
    if isinstance(m, MappingNetwork):
        return dict(z_dim=m.z_dim, w_dim=m.w_dim, num_ws=m.num_ws, num_layers=m.num_layers, c_dim=0)
    if isinstance(m, SynthesisNetwork):
        return dict(w_dim=m.w_dim, img_resolution=m.img_resolution, img_channels=m.img_channels, num_ws=m.num_ws,
                    block_resolutions=m.block_resolutions)
    if isinstance(m, SG2Generator):
        return dict(z_dim=m.z_dim, w_dim=m.w_dim, img_resolution=m.img_resolution, img_channels=m.img_channels,
                    num_ws=m.num_ws)
    return dict(img_resolution=m.img_resolution, img_channels=m.img_channels, block_resolutions=m.block_resolutions)


def _same(theirs: Any, ours: Any) -> bool:
    if type(ours) is float or (type(theirs) is float and type(ours) is int):
        return type(theirs) in (int, float) and math.isclose(theirs, ours, rel_tol=1e-6, abs_tol=1e-12)
    return type(theirs) is type(ours) and theirs == ours


def _check_structure(net: nn.Module, rec: PersistentObject, where: str) -> None:
    """The same module tree, NVlabs class names and arithmetic attributes (an attribute the record lacks is
    not checked: versions of the NVlabs code differ in what they keep)."""
    ours, theirs = dict(net.named_modules()), _records(rec)
    extra, missing = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    if extra or missing:
        raise SG2ADAImportError(f"{where}: the pickle's modules differ from a standard StyleGAN2 of this "
                                f"configuration: unexpected {extra[:5]}, missing {missing[:5]}")
    for path, module in ours.items():
        name, r = f"{where}.{path}" if path else where, theirs[path]
        if r.class_name != NV_CLASS[type(module)]:
            raise SG2ADAImportError(f"{name}: a {clip_repr(r.class_name)}, expected a {NV_CLASS[type(module)]}")
        for attr, value in _expected_attrs(module).items():
            if attr in r.state and not _same(r.state[attr], value):
                raise SG2ADAImportError(f"{name}: {attr}={clip_repr(r.state[attr])} is not supported by this port "
                                        f"(expected {value!r})")


def fill_state(net: nn.Module, theirs: dict[str, torch.Tensor], where: str,
               error: type[ValueError] = SG2ADAImportError) -> nn.Module:
    """``net`` (built on the meta device) with ``theirs``: the same keys, each of its shape, floating point and finite,
    copied as float32; otherwise ``error`` naming the first difference."""
    expected = net.state_dict()
    missing, unused = sorted(set(expected) - set(theirs)), sorted(set(theirs) - set(expected))
    if missing or unused:
        raise error(f"{where}: parameters and buffers differ: missing {missing[:5]}, not used {unused[:5]}")
    state = {}
    for key, want in expected.items():
        value = theirs[key]
        if tuple(value.shape) != tuple(want.shape) or not value.is_floating_point():
            raise error(f"{where}: {key} is {value.dtype} {list(value.shape)}, expected float {list(want.shape)}")
        value = value.to(torch.float32).clone(memory_format=torch.contiguous_format)
        if not _finite(value):
            raise error(f"{where}: {key} holds NaN or infinite values")
        state[key] = value
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()


def _fill(net: nn.Module, rec: PersistentObject, where: str) -> nn.Module:
    return fill_state(net, rec.tensors(), where)


def convert_network(role: str, rec: Any) -> nn.Module:
    """The network of ``role`` (``G``, ``G_ema`` or ``D``) from its record, checked as the module docstring says."""
    if not isinstance(rec, PersistentObject):
        raise SG2ADAImportError(f"{role}: not a persistent network object")
    cls, kwargs = ((SG2Generator, generator_kwargs(rec, role)) if ROLES[role] == "Generator"
                   else (SG2Discriminator, discriminator_kwargs(rec, role)))
    try:
        checks.check_kwargs(cls.__name__, kwargs)
    except ValueError as e:
        raise SG2ADAImportError(f"{role}: configuration outside what this port builds: {e}") from None
    try:
        net = empty_module(cls, **kwargs)
    except (ValueError, TypeError, ArithmeticError, RuntimeError) as e:
        raise SG2ADAImportError(f"{role}: cannot build a {cls.__name__} from {kwargs}: {e}") from e
    _check_structure(net, rec, role)
    return _fill(net, rec, role)


def fp16_resolutions(rec: PersistentObject) -> list[int]:
    """Resolutions of the blocks NVlabs runs in fp16 (``use_fp16``): our float32 outputs differ by fp16 rounding."""
    return sorted(r.attr("resolution") for r in _records(rec).values()
                  if r.class_name in ("SynthesisBlock", "DiscriminatorBlock") and r.attr("use_fp16") is True
                  and type(r.attr("resolution")) is int)


def convert_sg2ada(obj: dict[str, Any]) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The networks of a loaded pickle, ``{'G', 'G_ema', 'D'}`` (those present), and provenance notes
    (``fp16_resolutions`` per network) for the file header."""
    nets: dict[str, nn.Module] = {}
    notes: dict[str, Any] = {"fp16_resolutions": {}}
    for role in ROLES:
        if role in obj:
            try:
                nets[role] = convert_network(role, obj[role])
                notes["fp16_resolutions"][role] = fp16_resolutions(obj[role])
            except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError, RuntimeError) as e:
                if isinstance(e, SG2ADAImportError):
                    raise
                raise SG2ADAImportError(f"{role}: unusable values in the pickle ({type(e).__name__}: "
                                        f"{clip_repr(str(e))})") from e
    if not nets:
        raise SG2ADAImportError(f"the pickle holds none of the networks {list(ROLES)}")
    return nets, notes
