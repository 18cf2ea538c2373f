"""Baking a fingerprint into a per-user generator: exactness and what the result holds."""

import copy

import pytest
import torch

from networks import BakedGenerator, build_networks, load_network, save_network
from networks.stylegan2 import Generator, takes_fingerprint


def _randomise_noise_and_biases(G: Generator) -> None:
    """Non-zero biases, style biases and noise strengths, so every parameter takes part."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") or name.endswith("noise_strength"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


PRESETS_TO_CHECK = [
    ("tiny32", {}),
    ("tiny32", {"mod_range": (8, 16)}),
    ("celeba128", {}),
    ("cat256", {}),
]


@pytest.fixture(scope="module", params=PRESETS_TO_CHECK, ids=lambda p: p[0] + ("-" + str(p[1]) if p[1] else ""))
def generator(request):
    preset, overrides = request.param
    torch.manual_seed(0)
    G = build_networks(preset, which=("G",), **overrides)["G"].eval().requires_grad_(False)
    _randomise_noise_and_biases(G)
    return G


def test_baked_equals_generator_for_any_z(generator):
    """The issue's criterion: for any z (one sample at a time), |G_c(z) - G(z, c)| <= 1e-5, float32."""
    G = generator
    c = torch.randint(0, 2, (1, G.n_bits)).float()
    baked = G.bake(c)
    for seed in range(3 if G.img_resolution <= 32 else 1):
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
        for mode in ("const", "none"):
            err = (baked(z, noise_mode=mode) - G(z, c, noise_mode=mode)).abs().max().item()
            assert err <= 1e-5, (mode, err)


def test_baking_is_exact_in_float64_and_loses_no_accuracy_in_float32(generator):
    """Baking is an identity of the maths (float64); in float32 a batch through the baked
    generator is as close to the exact result as G's own batched output is."""
    G = generator
    if G.img_resolution > 32:
        pytest.skip("float64 convolutions at 128^2 and up take minutes on CPU; the maths is the same at 32^2")
    c = torch.randint(0, 2, (1, G.n_bits)).float()
    z = torch.randn(3, G.z_dim)
    G64 = copy.deepcopy(G).double()
    exact = G64(z.double(), c.double().expand(3, -1), noise_mode="const")
    baked64 = G64.bake(c.double())(z.double(), noise_mode="const")
    assert (baked64 - exact).abs().max().item() < 1e-10
    g32_err = (G(z, c.expand(3, -1), noise_mode="const").double() - exact).abs().max().item()
    baked32_err = (G.bake(c)(z, noise_mode="const").double() - exact).abs().max().item()
    assert baked32_err <= 2 * g32_err + 1e-6, (baked32_err, g32_err)


def test_baked_generators_differ_per_fingerprint_and_ignore_later_changes_to_G():
    torch.manual_seed(0)
    G = build_networks("tiny32", which=("G",))["G"]
    c1 = torch.randint(0, 2, (1, G.n_bits)).float()
    c2 = 1 - c1
    b1, b2 = G.bake(c1), G.bake(c2)
    z = torch.randn(2, G.z_dim)
    assert not torch.allclose(b1(z, noise_mode="const"), b2(z, noise_mode="const"))
    before = b1(z, noise_mode="const")
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    assert torch.equal(before, b1(z, noise_mode="const")), "a baked generator must not share storage with G"


def test_baked_generator_is_plain():
    G = build_networks("tiny32", which=("G",))["G"]
    baked = G.bake(torch.ones(G.n_bits))
    assert isinstance(baked, BakedGenerator) and not takes_fingerprint(baked) and baked.n_bits == G.n_bits
    assert not any(p.requires_grad for p in baked.parameters())
    assert not hasattr(baked, "embedding")
    assert all(not layer.modulated for _, layer in baked.synthesis.layers())
    # Nothing in the baked file lets its holder recover or change the fingerprint input.
    keys = baked.state_dict().keys()
    assert not any("affine" in k or "embedding" in k for k in keys)


def test_bake_rejects_bad_fingerprints():
    G = build_networks("tiny32", which=("G",))["G"]
    with pytest.raises(ValueError, match="one fingerprint"):
        G.bake(torch.ones(2, G.n_bits))
    with pytest.raises(ValueError, match="one fingerprint"):
        G.bake(torch.ones(1, G.n_bits + 1))
    with pytest.raises(ValueError, match="0 or 1"):
        G.bake(torch.full((1, G.n_bits), 0.5))


def test_baked_generator_round_trips_through_a_file(tmp_path):
    torch.manual_seed(0)
    G = build_networks("tiny32", which=("G",))["G"]
    _randomise_noise_and_biases(G)
    baked = G.bake(torch.randint(0, 2, (1, G.n_bits)).float())
    path = save_network(tmp_path / "alice.safetensors", G=baked)
    loaded = load_network(path)
    assert set(loaded) == {"G"} and isinstance(loaded["G"], BakedGenerator)
    z = torch.randn(3, G.z_dim)
    assert torch.equal(loaded["G"](z, noise_mode="const"), baked(z, noise_mode="const"))
