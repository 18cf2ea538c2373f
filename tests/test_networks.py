"""Networks: parameter counts of the paper presets, API shapes, noise modes, options."""

import pytest
import torch

from networks import PRESETS, BakedGenerator, build_networks
from networks.layers import MinibatchStdLayer, channels_at
from networks.stylegan2 import Discriminator, FingerprintDecoder, Generator
from torch_utils.misc import count_params

# Trainable parameter counts of the reference code (the release's, docs/method.md#release-pickles).
REFERENCE_COUNTS = {
    ("celeba128", None): (28_522_909, 1_904_640, 23_882_369, 24_205_568),
    ("bedroom128", None): (28_522_909, 1_904_640, 23_882_369, 24_205_568),
    ("cat256", None): (28_765_154, 1_904_640, 24_001_089, 24_324_288),
    ("cat256", (4, 128)): (28_633_826, 1_904_640, 24_001_089, 24_324_288),
}


@pytest.mark.parametrize("preset,mod_range", list(REFERENCE_COUNTS))
def test_parameter_counts_match_the_release(preset, mod_range):
    overrides = {} if mod_range is None else {"mod_range": mod_range}
    with torch.device("meta"):
        nets = build_networks(preset, **overrides)
    g, mapping, d, f = REFERENCE_COUNTS[(preset, mod_range)]
    assert count_params(nets["G"]) == g
    assert count_params(nets["G"].embedding) == mapping
    assert count_params(nets["D"]) == d
    assert count_params(nets["F"]) == f


def test_channel_schedule():
    assert [channels_at(s, 8192, 512) for s in range(9)] == [512, 512, 512, 512, 512, 256, 128, 64, 32]
    assert channels_at(20, 8192, 512) == 1


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_networks("tiny32")


def test_api_shapes(tiny):
    G, D, F = tiny["G"], tiny["D"], tiny["F"]
    assert (G.z_dim, G.n_bits, G.img_resolution) == (128, 128, 32)
    z = torch.randn(4, G.z_dim)
    c = torch.randint(0, 2, (4, G.n_bits)).float()
    img = G(z, c)
    assert img.shape == (4, 3, 32, 32) and img.dtype == torch.float32
    assert G.embed(c).shape == (4, G.w_dim)
    assert D(img).shape == (4, 1)
    z_hat, logits = F(img)
    assert z_hat.shape == (4, G.z_dim) and logits.shape == (4, G.n_bits)


def test_noise_modes(tiny):
    G = tiny["G"]
    z = torch.randn(2, G.z_dim)
    c = torch.randint(0, 2, (2, G.n_bits)).float()
    # Give the noise a visible effect (noise strengths start at 0).
    with torch.no_grad():
        for _, layer in G.synthesis.layers():
            if layer.use_noise:
                layer.noise_strength.fill_(0.5)
    try:
        const = [G(z, c, noise_mode="const") for _ in range(2)]
        assert torch.equal(const[0], const[1])
        rand = [G(z, c, noise_mode="random") for _ in range(2)]
        assert not torch.allclose(rand[0], rand[1])
        none = G(z, c, noise_mode="none")
        assert not torch.allclose(none, const[0])
        with pytest.raises(ValueError, match="noise_mode"):
            G(z, c, noise_mode="bogus")
    finally:
        with torch.no_grad():
            for _, layer in G.synthesis.layers():
                if layer.use_noise:
                    layer.noise_strength.zero_()


def test_fused_equals_nonfused(tiny):
    G = tiny["G"]
    z = torch.randn(3, G.z_dim)
    c = torch.randint(0, 2, (3, G.n_bits)).float()
    a = G(z, c, noise_mode="const", fused=True)
    b = G(z, c, noise_mode="const", fused=False)
    assert (a - b).abs().max() < 1e-5


def test_fingerprint_changes_the_image_and_z_is_used(tiny):
    G = tiny["G"]
    z = torch.randn(2, G.z_dim)
    c = torch.randint(0, 2, (2, G.n_bits)).float()
    base = G(z, c, noise_mode="const")
    c2 = c.clone()
    c2[:, 0] = 1 - c2[:, 0]
    assert not torch.allclose(base, G(z, c2, noise_mode="const"))
    assert not torch.allclose(base, G(torch.randn_like(z), c, noise_mode="const"))


def test_style_slots_match_the_release():
    G = Generator(z_dim=16, n_bits=8, w_dim=16, img_resolution=32, embed_hidden=16, channel_base=64,
                  channel_max=16, mod_range=(4, 32))
    slots = {}
    for res in G.synthesis.resolutions:
        for name, idx in getattr(G.synthesis, f"b{res}").slots.items():
            slots[f"{res}/{name}"] = idx
    assert slots == {"4/conv": 0, "4/torgb": 1, "8/conv0": 1, "8/conv1": 2, "8/torgb": 3,
                     "16/conv0": 3, "16/conv1": 4, "16/torgb": 5, "32/conv0": 5, "32/conv1": 6, "32/torgb": 7}
    assert G.num_ws == 8


def test_modulated_range_leaves_other_layers_plain():
    G = Generator(z_dim=16, n_bits=8, w_dim=16, img_resolution=32, embed_hidden=16, channel_base=64,
                  channel_max=16, mod_range=(8, 16))
    for name, layer in G.synthesis.layers():
        res = int(name.split(".")[0][1:])
        assert layer.modulated == (8 <= res <= 16), name
        assert (layer.affine is None) == (not layer.modulated)
    z = torch.randn(2, 16)
    c = torch.randint(0, 2, (2, 8)).float()
    assert G(z, c).shape == (2, 3, 32, 32)


def test_n_bits_zero_is_the_plain_stylegan2_baseline():
    nets = build_networks("tiny32", n_bits=0)
    z = torch.randn(4, 128)
    c = torch.zeros(4, 0)
    img = nets["G"](z, c, noise_mode="const")
    assert img.shape == (4, 3, 32, 32) and torch.isfinite(img).all()
    z_hat, logits = nets["F"](img)
    assert logits.shape == (4, 0)


@pytest.mark.parametrize("arch", ["resnet", "orig", "skip"])
def test_discriminator_architectures(arch):
    D = Discriminator(img_resolution=16, architecture=arch, channel_base=64, channel_max=16)
    F = FingerprintDecoder(z_dim=8, n_bits=4, img_resolution=16, architecture=arch, channel_base=64, channel_max=16)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    out = D(x).sum() + sum(t.sum() for t in F(x))
    out.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert ("skip" in dict(D.b16.named_children())) == (arch == "resnet")


def test_minibatch_std_groups_are_strided():
    layer = MinibatchStdLayer(group_size=4, num_channels=1)
    x = torch.zeros(8, 2, 1, 1)
    # Samples {0,2,4,6} form one group, {1,3,5,7} the other: give only the odd ones spread.
    x[1::2, :, 0, 0] = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    y = layer(x)[:, 2, 0, 0]
    even = torch.sqrt(torch.tensor(1e-8))
    odd = torch.sqrt(torch.tensor([0.0, 1.0, 2.0, 3.0]).var(unbiased=False) + 1e-8)
    assert torch.allclose(y[0::2], even.expand(4))
    assert torch.allclose(y[1::2], odd.expand(4), atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        layer(torch.zeros(6, 2, 1, 1))


def test_input_validation(tiny):
    G, D = tiny["G"], tiny["D"]
    with pytest.raises(ValueError, match="z"):
        G(torch.randn(2, 7), torch.zeros(2, G.n_bits))
    with pytest.raises(ValueError, match="fingerprints c"):
        G(torch.randn(2, G.z_dim), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="batch size"):
        G(torch.randn(2, G.z_dim), torch.zeros(3, G.n_bits))
    with pytest.raises(ValueError, match="images of shape"):
        D(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="power of two"):
        Generator(img_resolution=48)
    with pytest.raises(ValueError, match="ws are required"):
        G.synthesis(torch.randn(2, G.z_dim), None)
    with pytest.raises(ValueError, match="ws of shape"):
        G.synthesis(torch.randn(2, G.z_dim), torch.zeros(2, 3, G.w_dim))
    with pytest.raises(ValueError, match="unknown preset"):
        build_networks("celeba1024")


def test_presets_table_is_literal():
    assert set(PRESETS) == {"celeba128", "bedroom128", "cat256", "tiny32", "quick32", "tiny64", "sg2tiny32"}
    # sg2tiny32 is a standard StyleGAN2 (NVlabs' layout) with tiny32's widths.
    sg2 = build_networks("sg2tiny32", n_bits=0)
    assert [type(sg2[k]).__name__ for k in ("G", "D")] == ["SG2Generator", "SG2Discriminator"]
    assert type(build_networks("sg2tiny32", which=("G",), n_bits=8)["G"]).__name__ == "SG2FingerprintedGenerator"
    tiny = build_networks("tiny32", n_bits=0)
    assert {m.weight.shape[0] for n, m in sg2["G"].synthesis.layers() if "conv" in n} == {64}
    assert sum(p.numel() for p in sg2["D"].parameters()) == sum(p.numel() for p in tiny["D"].parameters())
    assert PRESETS["tiny32"].n_bits == 128 and PRESETS["tiny32"].resolution == 32
    assert PRESETS["cat256"].mod_range == (4, 256)
    # quick32 (the quickstart's) is tiny32 at half the width.
    narrow = build_networks("quick32", which=("G",))["G"]
    assert narrow.img_resolution == 32 and max(p.shape[0] for p in narrow.synthesis.parameters() if p.ndim == 4) == 32
    # tiny64 is tiny32 with one more block, at 64x64: the 32x32 networks' widths, the new block at 32 channels.
    wide = build_networks("tiny64", which=("G",))["G"]
    assert wide.img_resolution == 64 and PRESETS["tiny64"].mod_range == (4, 64)
    assert wide.synthesis.num_ws == build_networks("tiny32", which=("G",))["G"].synthesis.num_ws + 2


def test_tiny32_trains_end_to_end(tiny):
    """One optimisation step through G, D and F changes every network's parameters."""
    G, D, F = (build_networks("tiny32")[k] for k in ("G", "D", "F"))
    params = list(G.parameters()) + list(D.parameters()) + list(F.parameters())
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    z = torch.randn(16, G.z_dim)
    c = torch.randint(0, 2, (16, G.n_bits)).float()
    img = G(z, c)
    z_hat, logits = F(img)
    loss = D(img).mean() + (z_hat - z).square().mean() + torch.nn.functional.binary_cross_entropy_with_logits(
        logits, c)
    loss.backward()
    opt.step()
    changed = [not torch.equal(a, p.detach()) for a, p in zip(before, params)]
    # Noise strengths get gradients too (random noise is on by default).
    assert sum(changed) == len(params)


def test_baked_generator_has_no_fingerprint_path(tiny):
    baked = tiny["G"].bake(torch.randint(0, 2, (1, 128)).float())
    assert isinstance(baked, BakedGenerator)
    names = [n for n, _ in baked.named_parameters()]
    assert not any("embedding" in n or "affine" in n for n in names)
    with pytest.raises(TypeError):
        baked(torch.randn(1, 128), torch.zeros(1, 128))
