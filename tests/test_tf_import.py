"""Tests for interop.tf_import: the release's TF networks convert into ours, reproduce the reference
outputs in ``shared/oracle/A/io.npz``, every value lands where it belongs, and anything the port
does not implement (missing / extra / misshapen variables, unsupported kwargs) is refused."""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from interop.tf_import import (
    TFImportError,
    convert_decoder,
    convert_discriminator,
    convert_generator,
    convert_release,
)
from interop.tf_pickle import TFNetwork, load_tf_pickle
from networks.stylegan2 import Discriminator, FingerprintDecoder, Generator
from tests.shared_paths import ORACLE
from torch_utils.ops import setup_filter

SNAPSHOT = ORACLE / "network-snapshot.pkl"
IO = ORACLE / "io.npz"
TOL = 1e-4
INPUTS = {"z", "c", "labels", "x_rand", "w_rand"}
SOURCES = ("Gs_images", "G_images", "x_rand")

pytestmark = pytest.mark.skipif(not (SNAPSHOT.is_file() and IO.is_file()),
                                reason=f"oracle A not found at {ORACLE}")


@pytest.fixture(scope="module")
def tf_nets() -> dict[str, TFNetwork]:
    """The oracle's TF networks by release name (E, G, D, Gs). Tests must not modify them: use clone()."""
    nets = load_tf_pickle(SNAPSHOT)
    return {n.name: n for n in nets}


@pytest.fixture(scope="module")
def nets(tf_nets: dict[str, TFNetwork]) -> dict[str, torch.nn.Module]:
    return convert_release(tuple(tf_nets[k] for k in ("E", "G", "D", "Gs")))


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(IO) as f:
        return {k: f[k] for k in f.files}


def clone(net: TFNetwork) -> TFNetwork:
    """An independent, editable copy of a loaded TFNetwork (kwargs, components and variables copied).

    (``copy.deepcopy`` of a loaded TFNetwork is not supported by tf_pickle: it replays
    ``__setstate__`` with the instance dict, which the record classes refuse.)
    """
    out = TFNetwork.__new__(TFNetwork)
    out.name, out.version, out.build_func_name = net.name, net.version, net.build_func_name
    out.build_module_src = net.build_module_src
    out.static_kwargs = copy.deepcopy(net.static_kwargs)
    out.components = {k: clone(c) for k, c in net.components.items()}
    out.variables = OrderedDict((k, v.copy()) for k, v in net.variables.items())
    out._finalized = True
    return out


def owner(net: TFNetwork, name: str) -> tuple[TFNetwork, str]:
    """(network holding ``name`` as printed by all_variables, its local name), e.g. G_synthesis/noise0."""
    for comp in net.components.values():
        if name.startswith(comp.name + "/"):
            return comp, name[len(comp.name) + 1:]
    return net, name


CONVERT: dict[str, Callable[[TFNetwork], torch.nn.Module]] = {
    "G": convert_generator, "Gs": convert_generator, "D": convert_discriminator, "E": convert_decoder}


def t2n(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


# --- parity with the reference outputs ------------------------------------------------------------

def _dlatents(role: str) -> Callable[[dict, dict], np.ndarray]:
    def run(nets: dict, io: dict) -> np.ndarray:
        G = nets[role]
        w = G.embed(torch.from_numpy(io["c"]))
        return t2n(w.unsqueeze(1).expand(-1, G.num_ws, -1))   # every broadcast slot
    return run


def _images(role: str, fused: bool = True) -> Callable[[dict, dict], np.ndarray]:
    def run(nets: dict, io: dict) -> np.ndarray:
        return t2n(nets[role](torch.from_numpy(io["z"]), torch.from_numpy(io["c"]), noise_mode="const",
                              fused=fused))
    return run


def _synthesis_from_mapping(role: str) -> Callable[[dict, dict], np.ndarray]:
    def run(nets: dict, io: dict) -> np.ndarray:
        G = nets[role]
        ws = G.embed(torch.from_numpy(io["c"])).unsqueeze(1).repeat(1, G.num_ws, 1)   # [N, num_ws, w_dim]
        assert tuple(ws.shape) == (len(io["z"]), G.num_ws, G.w_dim)
        return t2n(G.synthesis(torch.from_numpy(io["z"]), ws, noise_mode="const"))
    return run


def _synthesis_from_w_rand(role: str) -> Callable[[dict, dict], np.ndarray]:
    def run(nets: dict, io: dict) -> np.ndarray:   # a different w per style slot
        return t2n(nets[role].synthesis(torch.from_numpy(io["z"]), torch.from_numpy(io["w_rand"]),
                                        noise_mode="const"))
    return run


def _d_scores(src: str) -> Callable[[dict, dict], np.ndarray]:
    return lambda nets, io: t2n(nets["D"](torch.from_numpy(io[src])))


def _f_output(src: str, index: int) -> Callable[[dict, dict], np.ndarray]:
    return lambda nets, io: t2n(nets["F"](torch.from_numpy(io[src]))[index])


# test id -> (io.npz key, computation)
PARITY: dict[str, tuple[str, Callable[[dict, dict], np.ndarray]]] = {}
for _tf, _role in (("G", "G"), ("Gs", "G_ema")):
    PARITY[f"{_tf}_mapping_dlatents"] = (f"{_tf}_mapping_dlatents", _dlatents(_role))
    PARITY[f"{_tf}_images"] = (f"{_tf}_images", _images(_role))
    PARITY[f"{_tf}_images-nonfused"] = (f"{_tf}_images", _images(_role, fused=False))
    PARITY[f"{_tf}_synthesis_images_from_mapping"] = (f"{_tf}_synthesis_images_from_mapping",
                                                      _synthesis_from_mapping(_role))
    PARITY[f"{_tf}_synthesis_images_from_w_rand"] = (f"{_tf}_synthesis_images_from_w_rand",
                                                     _synthesis_from_w_rand(_role))
for _src in SOURCES:
    PARITY[f"D_scores_{_src}"] = (f"D_scores_{_src}", _d_scores(_src))
    PARITY[f"E_latents_{_src}"] = (f"E_latents_{_src}", _f_output(_src, 0))
    PARITY[f"E_watermark_logits_{_src}"] = (f"E_watermark_logits_{_src}", _f_output(_src, 1))


@pytest.mark.parametrize("case", list(PARITY))
def test_parity(nets: dict, io: dict, case: str) -> None:
    key, run = PARITY[case]
    with torch.no_grad():
        got = run(nets, io)
    want = io[key]
    assert got.shape == want.shape and got.dtype == np.float32
    err = float(np.abs(got - want).max())
    assert err <= TOL, f"{case}: max abs error {err:.3g} > {TOL} (output range {np.abs(want).max():.3g})"


def test_parity_covers_every_oracle_output(io: dict) -> None:
    assert {key for key, _ in PARITY.values()} == set(io) - INPUTS


def test_outputs_are_not_trivial(io: dict) -> None:
    # The checks above mean something only if the reference outputs differ between networks/inputs.
    assert np.abs(io["G_images"] - io["Gs_images"]).max() > 100 * TOL
    assert np.abs(io["G_synthesis_images_from_w_rand"] - io["G_images"]).max() > 100 * TOL
    assert np.abs(io["G_mapping_dlatents"] - io["Gs_mapping_dlatents"]).max() > 100 * TOL
    for key in ("D_scores", "E_latents", "E_watermark_logits"):
        assert np.abs(io[f"{key}_Gs_images"] - io[f"{key}_x_rand"]).max() > 100 * TOL


def test_const_noise_matters(nets: dict, io: dict) -> None:
    # The stored noise buffers are part of the parity: without them the images differ.
    with torch.no_grad():
        z, c = torch.from_numpy(io["z"]), torch.from_numpy(io["c"])
        no_noise = t2n(nets["G_ema"](z, c, noise_mode="none"))
    assert np.abs(no_noise - io["Gs_images"]).max() > 100 * TOL


# --- roles and kwargs ---------------------------------------------------------------------------

G_KWARGS = dict(z_dim=128, n_bits=32, w_dim=128, img_resolution=32, img_channels=3, embed_layers=8,
                embed_hidden=128, embed_lr_multiplier=0.01, c_encoding="raw", channel_base=2048, channel_max=128,
                mod_range=[4, 32], resample_filter=[1, 3, 3, 1])


def test_roles(nets: dict) -> None:
    assert set(nets) == {"G", "G_ema", "D", "F"}
    assert type(nets["G"]) is Generator and type(nets["G_ema"]) is Generator
    assert type(nets["D"]) is Discriminator and type(nets["F"]) is FingerprintDecoder
    assert nets["G"] is not nets["G_ema"]
    assert nets["G"].init_kwargs == G_KWARGS and nets["G_ema"].init_kwargs == G_KWARGS
    assert nets["D"].init_kwargs == dict(img_resolution=32, img_channels=3, architecture="resnet", channel_base=2048,
                                         channel_max=128, mbstd_group_size=4, mbstd_num_channels=1,
                                         resample_filter=[1, 3, 3, 1])
    assert nets["F"].init_kwargs == dict(z_dim=128, n_bits=32, img_resolution=32, img_channels=3,
                                         architecture="resnet", channel_base=2048, channel_max=128,
                                         resample_filter=[1, 3, 3, 1], head_channels=None)
    assert nets["G"].num_ws == 8


def test_converted_modules_are_materialised(nets: dict) -> None:
    for role, net in nets.items():
        assert not net.training, role
        for key, t in net.state_dict().items():
            assert not t.is_meta and t.device.type == "cpu" and t.dtype == torch.float32, f"{role}.{key}"
            assert torch.isfinite(t).all(), f"{role}.{key}"
        params = dict(net.named_parameters())
        assert params and all(p.requires_grad for p in params.values()), role   # trainable (fine-tuning)


def test_g_and_g_ema_are_independent(nets: dict) -> None:
    g, g_ema = nets["G"].state_dict(), nets["G_ema"].state_dict()
    assert not torch.equal(g["synthesis.b4.conv.bias"], g_ema["synthesis.b4.conv.bias"])
    assert all(g[k].data_ptr() != g_ema[k].data_ptr() for k in g if g[k].numel())


def test_converted_tensors_do_not_alias_the_tf_arrays(tf_nets: dict) -> None:
    src = clone(tf_nets["D"])
    D = convert_discriminator(src)
    before = src.variables["Output/bias"].copy()
    with torch.no_grad():
        D.out.bias.add_(1.0)
    np.testing.assert_array_equal(src.variables["Output/bias"], before)


@pytest.mark.parametrize(("names", "roles"), [
    (("Gs",), {"G_ema"}),
    (("G",), {"G"}),
    (("G", "D", "Gs"), {"G", "D", "G_ema"}),
    (("E",), {"F"}),
])
def test_partial_releases(tf_nets: dict, names: tuple, roles: set) -> None:
    nets = tuple(tf_nets[n] for n in names)
    out = convert_release(nets[0] if len(nets) == 1 else nets)
    assert set(out) == roles


def test_bare_gs(tf_nets: dict, nets: dict, io: dict) -> None:
    out = convert_release(tf_nets["Gs"])
    assert list(out) == ["G_ema"]
    with torch.no_grad():
        img = t2n(out["G_ema"](torch.from_numpy(io["z"]), torch.from_numpy(io["c"]), noise_mode="const"))
    assert np.abs(img - io["Gs_images"]).max() <= TOL
    for k, v in out["G_ema"].state_dict().items():
        assert torch.equal(v, nets["G_ema"].state_dict()[k]), k


def test_dotted_build_func_name(tf_nets: dict) -> None:
    d = clone(tf_nets["D"])
    d.build_func_name = "training.networks_stylegan2.D_stylegan2"
    assert set(convert_release(d)) == {"D"}


@pytest.mark.parametrize(("field", "value", "match"), [
    ("build_func_name", "G_main", "G_main"),                     # plain StyleGAN2, not the fingerprinted G
    ("build_func_name", "G_synthesis_stylegan2", "G_synthesis_stylegan2"),
    ("build_func_name", "", "build function"),
    ("name", "Gs_copy", "Gs_copy"),
    ("name", "generator", "generator"),
])
def test_unknown_network_or_build_function(tf_nets: dict, field: str, value: str, match: str) -> None:
    g = clone(tf_nets["Gs"])
    setattr(g, field, value)
    with pytest.raises(TFImportError, match=re.escape(match)):
        convert_release(g)
    with pytest.raises(TFImportError, match=re.escape(match)):
        convert_release((clone(tf_nets["E"]), clone(tf_nets["G"]), clone(tf_nets["D"]), g))


def test_duplicate_network_names(tf_nets: dict) -> None:
    with pytest.raises(TFImportError, match="two networks named 'Gs'"):
        convert_release((tf_nets["G"], tf_nets["D"], tf_nets["Gs"], tf_nets["Gs"]))


# --- coverage: every variable used, every parameter filled, shapes checked -------------------------

@pytest.mark.parametrize(("net", "name"), [
    ("Gs", "G_mapping/Dense0/weight"),
    ("Gs", "G_mapping/Dense7/bias"),
    ("Gs", "G_synthesis/4x4/Latent/weight"),
    ("Gs", "G_synthesis/4x4/Conv/noise_strength"),
    ("G", "G_synthesis/16x16/ToRGB/mod_weight"),
    ("G", "G_synthesis/32x32/Conv1/mod_bias"),
    ("G", "G_synthesis/noise3"),
    ("G", "G_synthesis/noise6"),
    ("D", "32x32/FromRGB/weight"),
    ("D", "8x8/Skip/weight"),
    ("D", "Output/bias"),
    ("E", "4x4/Dense0/weight"),
    ("E", "16x16/Conv1_down/bias"),
])
def test_missing_variable(tf_nets: dict, net: str, name: str) -> None:
    tf = clone(tf_nets[net])
    holder, local = owner(tf, name)
    del holder.variables[local]
    with pytest.raises(TFImportError, match=re.escape(repr(name))):
        CONVERT[net](tf)
    with pytest.raises(TFImportError, match=re.escape(repr(name))):
        convert_release(tf)


@pytest.mark.parametrize(("net", "name"), [
    ("Gs", "G_mapping/Dense8/weight"),
    ("Gs", "G_synthesis/64x64/ToRGB/weight"),
    ("G", "G_synthesis/noise8"),
    ("G", "G_synthesis/4x4/Const"),           # the unfingerprinted StyleGAN2's learned constant
    ("G", "truncation_avg"),
    ("D", "lod"),                              # tolerated for G only
    ("D", "4x4/Skip/weight"),
    ("E", "MinibatchStddev/weight"),
    ("E", "Output/mod_weight"),
])
def test_extra_variable(tf_nets: dict, net: str, name: str) -> None:
    tf = clone(tf_nets[net])
    holder, local = owner(tf, name)
    assert local not in holder.variables
    holder.variables[local] = np.zeros((4,), np.float32)
    with pytest.raises(TFImportError, match=re.escape(repr(name))):
        CONVERT[net](tf)


@pytest.mark.parametrize(("net", "name", "shape"), [
    ("Gs", "G_mapping/Dense0/weight", (128, 32)),          # transposed
    ("Gs", "G_mapping/Dense3/bias", (127,)),
    ("Gs", "G_synthesis/4x4/Latent/weight", (128, 1024)),
    ("G", "G_synthesis/8x8/Conv0_up/weight", (3, 3, 128, 64)),
    ("G", "G_synthesis/8x8/Conv0_up/weight", (1, 1, 128, 128)),
    ("G", "G_synthesis/16x16/Conv1/mod_weight", (128, 64)),
    ("G", "G_synthesis/4x4/Conv/noise_strength", (1,)),
    ("G", "G_synthesis/32x32/ToRGB/weight", (1, 1, 128, 4)),
    ("G", "G_synthesis/noise2", (1, 1, 4, 4)),
    ("D", "4x4/Conv/weight", (3, 3, 128, 128)),             # no minibatch-stddev channel
    ("D", "Output/weight", (128, 2)),
    ("E", "Output/weight", (128, 161)),
    ("E", "32x32/Skip/weight", (3, 3, 128, 128)),
])
def test_wrong_shape(tf_nets: dict, net: str, name: str, shape: tuple) -> None:
    tf = clone(tf_nets[net])
    holder, local = owner(tf, name)
    assert holder.variables[local].shape != shape
    holder.variables[local] = np.zeros(shape, np.float32)
    with pytest.raises(TFImportError, match=re.escape(name) + ".*shape"):
        CONVERT[net](tf)


@pytest.mark.parametrize(("name", "shape"), [
    ("G_synthesis/8x8/Conv0_up/weight", (3, 3, 128)),     # _conv: "axes don't match array"
    ("G_synthesis/noise2", (2, 1, 8, 8)),                  # _noise: "cannot reshape array of size 128"
])
def test_wrong_rank_is_a_tf_import_error(tf_nets: dict, name: str, shape: tuple) -> None:
    tf = clone(tf_nets["G"])
    holder, local = owner(tf, name)
    holder.variables[local] = np.zeros(shape, np.float32)
    with pytest.raises(TFImportError, match=re.escape(name)):
        convert_generator(tf)


@pytest.mark.parametrize("edit", ["drop", "garbage"])
def test_lod_and_dlatent_avg_are_tolerated(tf_nets: dict, nets: dict, edit: str) -> None:
    g = clone(tf_nets["Gs"])
    assert {"lod", "dlatent_avg"} <= set(g.variables)   # present in the release's G / Gs
    if edit == "drop":
        del g.variables["lod"], g.variables["dlatent_avg"]
    else:
        g.variables["lod"] = np.full((3,), np.nan, np.float32)
        g.variables["dlatent_avg"] = np.full((5, 5), np.inf, np.float32)
    G = convert_generator(g)
    for k, v in G.state_dict().items():
        assert torch.equal(v, nets["G_ema"].state_dict()[k]), k


# --- kwargs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("net", ["Gs", "D", "E"])
@pytest.mark.parametrize(("key", "value"), [
    ("fmap_decay", 0.5),
    ("nonlinearity", "relu"),
    ("label_size", 10),
    ("fmap_min", 4),
])
def test_unsupported_kwargs(tf_nets: dict, net: str, key: str, value: Any) -> None:
    tf = clone(tf_nets[net])
    tf.static_kwargs[key] = value
    with pytest.raises(TFImportError, match=re.escape(f"{key}={value!r}")):
        CONVERT[net](tf)
    with pytest.raises(TFImportError, match=re.escape(f"{key}={value!r}")):
        convert_release(tf)


@pytest.mark.parametrize("arch", ["resnet", "orig"])
def test_unsupported_generator_architecture(tf_nets: dict, arch: str) -> None:
    g = clone(tf_nets["Gs"])
    g.static_kwargs["architecture"] = arch
    with pytest.raises(TFImportError, match=f"architecture='{arch}'"):
        convert_generator(g)


@pytest.mark.parametrize(("net", "key", "value"), [
    ("Gs", "resolution", None),          # None: delete it everywhere
    ("D", "resolution", None),
    ("Gs", "resolution", 48),
    ("D", "resolution", 48),
    ("E", "architecture", "dense"),
])
def test_unbuildable_kwargs_are_tf_import_errors(tf_nets: dict, net: str, key: str, value: Any) -> None:
    tf = clone(tf_nets[net])
    for n in (tf, *tf.components.values()):
        if value is None:
            n.static_kwargs.pop(key, None)
        elif key in n.static_kwargs:
            n.static_kwargs[key] = value
    with pytest.raises(TFImportError):
        CONVERT[net](tf)


def _drop_kwarg(net: TFNetwork, key: str) -> TFNetwork:
    out = clone(net)
    for n in (out, *out.components.values()):
        n.static_kwargs.pop(key, None)
    assert all(key not in n.static_kwargs for n in (out, *out.components.values()))
    return out


@pytest.mark.parametrize(("net", "key", "variable"), [
    ("Gs", "fmap_max", "G_synthesis/4x4/Latent/weight"),       # default 512 -> nf(1) = 1024 channels
    ("Gs", "latent_size", "G_synthesis/4x4/Latent/weight"),    # default 512 -> z_dim 512
    ("Gs", "dlatent_size", "G_mapping/Dense7/weight"),         # default 512 -> w_dim 512
    ("Gs", "mapping_fmaps", "G_mapping/Dense0/weight"),        # default 512 -> hidden 512
    ("D", "fmap_max", "32x32/Conv1_down/weight"),           # default 512 -> nf(3) = 256 out channels
    ("E", "fmap_max", "32x32/Conv1_down/weight"),
    ("E", "latent_size", "Output/weight"),                     # default 512 -> 512 + 32 outputs
])
def test_defaults_are_applied(tf_nets: dict, net: str, key: str, variable: str) -> None:
    # Without the explicit kwarg the build function's default (512) applies, which does not fit
    # oracle A's variables: conversion must fail on a shape, not guess the size from the arrays.
    with pytest.raises(TFImportError, match=re.escape(variable) + ".*shape"):
        CONVERT[net](_drop_kwarg(tf_nets[net], key))


@pytest.mark.parametrize(("net", "key", "changes"), [
    ("Gs", "watermark_size", {}),                      # default 32 = oracle's
    ("Gs", "res_modulated_min_log2", {}),              # default 2 = oracle's
    ("Gs", "res_modulated_max_log2", {"mod_range": [4, 128]}),   # default 7: every layer of a 32^2 G
    ("Gs", "architecture", {}),                        # default skip
    ("Gs", "num_channels", {}),
    ("E", "watermark_size", {}),
    ("D", "architecture", {}),                         # default resnet
])
def test_defaults_equal_to_oracle_values(tf_nets: dict, nets: dict, net: str, key: str, changes: dict) -> None:
    role = {"Gs": "G_ema", "D": "D", "E": "F"}[net]
    got = CONVERT[net](_drop_kwarg(tf_nets[net], key))
    assert got.init_kwargs == {**nets[role].init_kwargs, **changes}
    ref = nets[role].state_dict()
    for k, v in got.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_generator_mod_range_from_kwargs(tf_nets: dict) -> None:
    # Narrowing the modulated range leaves mod_weight/mod_bias of the now-unmodulated layers unused.
    g = clone(tf_nets["Gs"])
    g.static_kwargs["res_modulated_max_log2"] = 4
    with pytest.raises(TFImportError, match=re.escape("G_synthesis/32x32/ToRGB/mod_weight")):
        convert_generator(g)
    for name in [k for k in g.components["synthesis"].variables if k.startswith("32x32/") and "/mod_" in k]:
        del g.components["synthesis"].variables[name]
    G = convert_generator(g)
    assert G.init_kwargs["mod_range"] == [4, 16]
    assert not G.synthesis.b32.conv1.modulated and G.synthesis.b16.conv1.modulated


# --- every value lands where it belongs -------------------------------------------------------------

def test_spot_checks(tf_nets: dict, nets: dict) -> None:
    g = tf_nets["G"].all_variables()
    G = nets["G"]

    def eq(ours: torch.Tensor, theirs: np.ndarray) -> None:
        assert tuple(ours.shape) == theirs.shape
        np.testing.assert_array_equal(t2n(ours), theirs)

    eq(G.synthesis.b8.conv0.weight, g["G_synthesis/8x8/Conv0_up/weight"].transpose(3, 2, 0, 1))
    eq(G.synthesis.b8.conv0.affine.weight, g["G_synthesis/8x8/Conv0_up/mod_weight"].T)
    eq(G.synthesis.b8.conv0.affine.bias, g["G_synthesis/8x8/Conv0_up/mod_bias"])
    eq(G.synthesis.b8.conv0.noise_strength, g["G_synthesis/8x8/Conv0_up/noise_strength"])
    eq(G.embedding.fc0.weight, g["G_mapping/Dense0/weight"].T)
    eq(G.embedding.fc7.bias, g["G_mapping/Dense7/bias"])
    eq(G.synthesis.latent.weight, g["G_synthesis/4x4/Latent/weight"].T)
    eq(G.synthesis.b4.conv.noise_const, g["G_synthesis/noise0"][0, 0])
    eq(G.synthesis.b8.conv0.noise_const, g["G_synthesis/noise1"][0, 0])
    eq(G.synthesis.b8.conv1.noise_const, g["G_synthesis/noise2"][0, 0])
    eq(G.synthesis.b32.conv1.noise_const, g["G_synthesis/noise6"][0, 0])
    eq(G.synthesis.b32.torgb.weight, g["G_synthesis/32x32/ToRGB/weight"].transpose(3, 2, 0, 1))
    d = tf_nets["D"].all_variables()
    eq(nets["D"].conv.weight, d["4x4/Conv/weight"].transpose(3, 2, 0, 1))
    eq(nets["D"].out.weight, d["Output/weight"].T)
    eq(nets["D"].b32.skip.weight, d["32x32/Skip/weight"].transpose(3, 2, 0, 1))
    e = tf_nets["E"].all_variables()
    eq(nets["F"].b32.fromrgb.weight, e["32x32/FromRGB/weight"].transpose(3, 2, 0, 1))
    eq(nets["F"].out.bias, e["Output/bias"])
    gs = tf_nets["Gs"].all_variables()
    eq(nets["G_ema"].synthesis.b16.torgb.bias, gs["G_synthesis/16x16/ToRGB/bias"])


_G_LAYER = {"conv": "Conv", "conv0": "Conv0_up", "conv1": "Conv1", "torgb": "ToRGB"}
_D_LAYER = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip"}


def _expected_g(key: str, v: dict[str, np.ndarray]) -> np.ndarray:
    """Our G state_dict key -> the TF value it must hold, written independently of tf_import's tables."""
    if m := re.fullmatch(r"embedding\.fc(\d+)\.(weight|bias)", key):
        a = v[f"G_mapping/Dense{m[1]}/{m[2]}"]
        return a.T if m[2] == "weight" else a
    if m := re.fullmatch(r"synthesis\.latent\.(weight|bias)", key):
        a = v[f"G_synthesis/4x4/Latent/{m[1]}"]
        return a.T if m[1] == "weight" else a
    m = re.fullmatch(r"synthesis\.b(\d+)\.(conv|conv0|conv1|torgb)\.(.+)", key)
    assert m, key
    res, layer, what = int(m[1]), m[2], m[3]
    scope = f"G_synthesis/{res}x{res}/{_G_LAYER[layer]}"
    if what == "weight":
        return v[f"{scope}/weight"].transpose(3, 2, 0, 1)
    if what == "affine.weight":
        return v[f"{scope}/mod_weight"].T
    if what == "affine.bias":
        return v[f"{scope}/mod_bias"]
    if what == "noise_const":   # noise k belongs to the conv with style slot k: 4x4 -> 0, conv0 2k-5, conv1 2k-4
        k = int(np.log2(res))
        return v[f"G_synthesis/noise{ {'conv': 0, 'conv0': 2 * k - 5, 'conv1': 2 * k - 4}[layer] }"][0, 0]
    return v[f"{scope}/{what}"]    # bias, noise_strength


def _expected_trunk(key: str, v: dict[str, np.ndarray]) -> np.ndarray:
    if m := re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)", key):
        a = v[f"{m[1]}x{m[1]}/{_D_LAYER[m[2]]}/{m[3]}"]
    elif m := re.fullmatch(r"(conv|fc|out)\.(weight|bias)", key):
        a = v[{"conv": "4x4/Conv", "fc": "4x4/Dense0", "out": "Output"}[m[1]] + f"/{m[2]}"]
    else:
        raise AssertionError(key)
    if key.endswith("bias"):
        return a
    return a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T


@pytest.mark.parametrize(("role", "tf"), [("G", "G"), ("G_ema", "Gs"), ("D", "D"), ("F", "E")])
def test_every_value_lands_where_it_belongs(tf_nets: dict, nets: dict, role: str, tf: str) -> None:
    v = tf_nets[tf].all_variables()
    expected_of = _expected_g if role.startswith("G") else _expected_trunk
    fir = t2n(setup_filter([1, 3, 3, 1]))
    np.testing.assert_allclose(fir, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=0, atol=1e-7)
    checked = 0
    for key, value in nets[role].state_dict().items():
        if key.endswith("resample_filter"):
            np.testing.assert_array_equal(t2n(value), fir, err_msg=key)
            continue
        want = expected_of(key, v)
        assert tuple(value.shape) == want.shape, key
        np.testing.assert_array_equal(t2n(value), want, err_msg=key)
        checked += int(want.size)
    used = sum(a.size for k, a in v.items() if k not in ("lod", "dlatent_avg"))
    assert checked == used   # every TF value went to exactly one place (no value used twice or dropped)
