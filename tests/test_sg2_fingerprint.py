"""The fingerprint module for a standard StyleGAN2 (networks.sg2_fingerprint, issue 18 part 2): the identity at step
0 (bit for bit), baking back to a plain ``SG2Generator`` (exact in float64, every noise mode, truncation), NVlabs'
state-dict layout of the baked generator (checked against the converted ``sg2ada_A``) and its export, parameter
groups, and network files."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from interop.sg2ada_import import convert_sg2ada
from interop.sg2ada_pickle import load_sg2ada_pickle
from interop.sg2ada_state_dict import export_state_dicts
from networks import SG2FingerprintedGenerator, SG2Generator, load_network, save_network
from networks.stylegan2 import takes_fingerprint
from tests.shared_paths import SHARED

SNAPSHOT = SHARED / "oracle" / "sg2ada_A" / "network-snapshot.pkl"
NOISE_MODES = ("const", "none", "random", "paired")
N_BITS = 24
FLOAT32_TOL = 1e-4   # baked vs fingerprinted, float32, images of magnitude up to ~20 (sg2ada_A's random weights)


@pytest.fixture(scope="module")
def records() -> dict:
    if not SNAPSHOT.is_file():
        pytest.skip(f"oracle sg2ada_A not found at {SNAPSHOT.parent}")
    return load_sg2ada_pickle(SNAPSHOT)


def _fresh() -> SG2Generator:
    """A small SG2Generator with conv_clamp, every bias, noise strength and w_avg random (nothing at its init)."""
    torch.manual_seed(0)
    G = SG2Generator(z_dim=16, w_dim=24, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=32,
                     conv_clamp=1.5)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith(("bias", "noise_strength", "w_avg")):
                t.add_(torch.randn(t.shape, generator=g) * 0.3)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module", params=["sg2ada_A", "fresh"])
def plain(request) -> SG2Generator:
    if request.param == "fresh":
        return _fresh()
    nets, _ = convert_sg2ada(request.getfixturevalue("records"))
    return nets["G_ema"].eval().requires_grad_(False)


def _randomise_fingerprint(G: SG2FingerprintedGenerator, seed: int = 2) -> None:
    """A trained-looking fingerprint module: every A_l random, so t_l(c) is far from 1 and depends on c."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.fingerprint.affine.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)


def _bits(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2, (n, N_BITS), generator=torch.Generator().manual_seed(seed)).float()


def _run(G, z, *args, mode: str, seed: int = 7, **kw) -> torch.Tensor:
    torch.manual_seed(seed)   # the same random (and paired) noise draws for both networks
    with torch.no_grad():
        return G(z, *args, noise_mode=mode, **kw)


def test_step_zero_is_the_imported_generator_bit_for_bit(plain: SG2Generator) -> None:
    G = SG2FingerprintedGenerator.from_plain(plain, n_bits=N_BITS)
    assert takes_fingerprint(G) and not takes_fingerprint(plain)
    z = torch.randn(4, plain.z_dim, generator=torch.Generator().manual_seed(3))
    for mode in NOISE_MODES:
        for seed, trunc in ((0, 1.0), (1, 0.7), (2, 0.5)):
            c = _bits(4, seed) if seed != 2 else torch.ones(4, N_BITS)
            for fused in (True, False):
                ours = _run(G, z, c, mode=mode, truncation_psi=trunc, fused=fused)
                theirs = _run(plain, z, mode=mode, truncation_psi=trunc, fused=fused)
                assert torch.equal(ours, theirs), (mode, seed, fused)
    # ... also under c_encoding 'pm1' (c = 0 no longer gives E a zero input) and a narrow embedding.
    G = SG2FingerprintedGenerator.from_plain(plain, n_bits=N_BITS, c_encoding="pm1", embed_dim=8, embed_layers=2)
    assert torch.equal(_run(G, z, torch.zeros(4, N_BITS), mode="const"), _run(plain, z, mode="const"))


def test_bake_is_exact_in_float64_for_every_noise_mode_and_truncation(plain: SG2Generator) -> None:
    G = SG2FingerprintedGenerator.from_plain(plain, n_bits=N_BITS)
    _randomise_fingerprint(G)
    G64 = copy.deepcopy(G).double()
    z = torch.randn(4, plain.z_dim, generator=torch.Generator().manual_seed(4)).double()
    for seed in (0, 1):
        c = _bits(1, seed).double()
        baked = G64.bake(c)
        assert type(baked) is SG2Generator and baked.n_bits == 0 and not takes_fingerprint(baked)
        for mode in NOISE_MODES:
            for kw in ({}, {"truncation_psi": 0.6}, {"truncation_psi": 0.6, "truncation_cutoff": 2}):
                ours = _run(G64, z, c.expand(4, -1), mode=mode, **kw)
                err = (_run(baked, z, mode=mode, **kw) - ours).abs().max().item()
                assert ours.dtype == torch.float64 and err <= 1e-9, (mode, kw, err)
                # the fingerprint is not the identity any more: baking had something to fold in
                assert (ours.float() - _run(plain, z.float(), mode=mode, **kw)).abs().max().item() > 1e-2


def test_bake_in_float32_is_as_accurate_as_the_fingerprinted_generator(plain: SG2Generator) -> None:
    G = SG2FingerprintedGenerator.from_plain(plain, n_bits=N_BITS)
    _randomise_fingerprint(G)
    G64 = copy.deepcopy(G).double()
    c = _bits(1, 5)
    baked = G.bake(c)
    assert all(t.dtype == torch.float32 for t in baked.state_dict().values())
    z = torch.randn(4, plain.z_dim, generator=torch.Generator().manual_seed(6))
    for mode in NOISE_MODES:
        ours, mine = _run(G, z, c.expand(4, -1), mode=mode), _run(baked, z, mode=mode)
        assert (ours - mine).abs().max().item() <= FLOAT32_TOL, mode
    for mode in ("const", "none"):   # against the exact result (random draws differ between dtypes)
        exact = _run(G64, z.double(), c.double().expand(4, -1), mode=mode)
        g32_err = (_run(G, z, c.expand(4, -1), mode=mode).double() - exact).abs().max().item()
        baked_err = (_run(baked, z, mode=mode).double() - exact).abs().max().item()
        assert baked_err <= 2 * g32_err + 1e-6, (mode, baked_err, g32_err)
    # per fingerprint, and independent of later changes to G
    other = G.bake(1 - c)
    before = _run(baked, z, mode="const")
    assert not torch.allclose(before, _run(other, z, mode="const"))
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.5)
    assert torch.equal(before, _run(baked, z, mode="const"))


def test_baked_state_dict_has_nvlabs_names_and_shapes_and_exports(records: dict, tmp_path: Path) -> None:
    nets, _ = convert_sg2ada(records)
    G = SG2FingerprintedGenerator.from_plain(nets["G_ema"], n_bits=N_BITS)
    _randomise_fingerprint(G)
    baked = G.bake(_bits(1, 0))
    theirs = records["G_ema"].tensors()          # NVlabs' G.state_dict(), in its order
    ours = baked.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape and ours[k].dtype == theirs[k].dtype for k in ours)
    # only the modulated layers' weights change; everything else is the imported network's
    changed = {k for k in ours if not torch.equal(ours[k], theirs[k])}
    assert changed == {f"synthesis.{name}.weight" for name, _ in G.synthesis.layers()}
    # the fingerprinted G is the imported one plus fingerprint.*
    assert [k for k in G.state_dict() if not k.startswith("fingerprint.")] == list(theirs)
    assert "fingerprint.affine.b32.conv0.weight" in G.state_dict()

    path = export_state_dicts({"G": baked}, tmp_path / "user7.pt")
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(theirs) and all(loaded[k].shape == theirs[k].shape for k in loaded)
    fresh = SG2Generator(**baked.init_kwargs)
    fresh.load_state_dict(loaded)                # strict: exactly the keys of an NVlabs-layout generator
    z = torch.randn(2, baked.z_dim)
    assert torch.equal(_run(fresh, z, mode="const", truncation_psi=0.7), _run(baked, z, mode="const",
                                                                                truncation_psi=0.7))
    with pytest.raises(TypeError, match="bake a fingerprinted generator"):
        export_state_dicts({"G": G}, tmp_path / "no.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user7.pt"]


def test_parameter_groups_and_gradients() -> None:
    G = SG2FingerprintedGenerator.from_plain(_fresh(), n_bits=N_BITS)
    groups = {w: set(G.parameter_group(w)) for w in ("embedding", "affine", "all")}
    assert groups["embedding"] == {n for n, _ in G.named_parameters() if n.startswith("fingerprint.")}
    extra = groups["affine"] - groups["embedding"]
    assert extra and all(n.startswith("synthesis.") and ".affine." in n for n in extra)
    assert len(extra) == 2 * len(G.synthesis.layers())      # weight and bias of each style affine
    assert groups["embedding"] < groups["affine"] < groups["all"] == {n for n, _ in G.named_parameters()}
    with pytest.raises(ValueError, match="parameter group"):
        G.parameter_group("mapping")
    names = G.set_trainable("embedding")
    assert {n for n, p in G.named_parameters() if p.requires_grad} == set(names) == groups["embedding"]
    # from the identity, the per-layer A_l receive gradients (E does once they have moved)
    z, c = torch.randn(2, G.z_dim), _bits(2, 0)
    G(z, c, noise_mode="const").square().mean().backward()
    grads = {n: p.grad for n, p in G.named_parameters() if p.requires_grad}
    assert all(grads[f"fingerprint.affine.{name}.weight"].abs().sum() > 0 for name, _ in G.synthesis.layers())


def test_network_file_round_trip_and_refusals(tmp_path: Path) -> None:
    plain = _fresh()
    G = SG2FingerprintedGenerator.from_plain(plain, n_bits=N_BITS, c_encoding="pm1", embed_layers=3)
    _randomise_fingerprint(G)
    path = save_network(tmp_path / "fp.safetensors", G=G, G_ema=G, extra={"kimg": 0})
    loaded = load_network(path)
    for name in ("G", "G_ema"):
        H = loaded[name]
        assert type(H) is SG2FingerprintedGenerator and H.init_kwargs == G.init_kwargs
        assert all(torch.equal(v, H.state_dict()[k]) for k, v in G.state_dict().items())
        z, c = torch.randn(2, G.z_dim), _bits(2, 1)
        assert torch.equal(_run(H, z, c, mode="const"), _run(G, z, c, mode="const"))
    with pytest.raises(ValueError, match="n_bits"):
        SG2FingerprintedGenerator(**plain.init_kwargs, n_bits=0)
    with pytest.raises(ValueError, match="img_resolution"):
        SG2FingerprintedGenerator(**dict(plain.init_kwargs, img_resolution=32), n_bits=4).load_plain(plain)
    with pytest.raises(ValueError, match=r"shape \[1, 24\]"):
        G.bake(_bits(2, 0))
    with pytest.raises(ValueError, match="0 or 1"):
        G.bake(_bits(1, 0) * 0.5)
    with pytest.raises(ValueError, match="fingerprints c"):
        G(torch.randn(2, G.z_dim), _bits(3, 0))
