"""Loss terms against hand-computed values on stand-in networks, and on tiny32."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from networks import build_networks
from torch_utils.bits import bit_accuracy, random_fingerprints
from training.loss import FingerprintGANLoss, LossWeights


class LinearD(nn.Module):
    """D(x) = <a, x>: its input gradient is a everywhere, so R1 = ||a||^2."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x):
        return (x * self.a).sum(dim=[1, 2, 3]).unsqueeze(1)


def test_bit_accuracy_and_random_fingerprints():
    c = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[2.0, -1.0, -3.0, 0.0]])   # 0 counts as bit 0
    assert bit_accuracy(logits, c).item() == pytest.approx(0.75)
    fp = random_fingerprints(1000, 16, torch.Generator().manual_seed(0))
    assert fp.shape == (1000, 16) and set(fp.unique().tolist()) == {0.0, 1.0}
    assert abs(fp.mean().item() - 0.5) < 0.02


def test_r1_penalty_equals_gradient_norm():
    a = torch.randn(1, 3, 4, 4)
    loss = FingerprintGANLoss(nn.Linear(1, 1), LinearD(a), None, LossWeights(r1_gamma=10.0))
    value, stats = loss.discriminator_r1(torch.randn(5, 3, 4, 4))
    assert stats["Loss/D/r1_penalty"].item() == pytest.approx(a.square().sum().item(), rel=1e-5)
    assert value.item() == pytest.approx(5.0 * a.square().sum().item(), rel=1e-5)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    nets = build_networks("tiny32", n_bits=8)
    return nets["G"], nets["D"], nets["F"]


def test_generator_main_terms_match_their_formulas(tiny):
    G, D, Fd = tiny
    w = LossWeights(adversarial=1.0, consistency=2.0, latent_rec=1.0, fingerprint=2.0)
    loss = FingerprintGANLoss(G, D, Fd, w)
    z = torch.randn(4, G.z_dim)
    c = random_fingerprints(4, G.n_bits)
    c2 = random_fingerprints(4, G.n_bits)
    torch.manual_seed(1)
    total, stats = loss.generator_main(z, c, c2, {})
    # Recompute every term with the same random noise draws.
    torch.manual_seed(1)
    img, img2 = G(torch.cat([z, z]), torch.cat([c, c2]), fused=False).chunk(2)   # one pass for the pair
    adv = F.softplus(-D(img)).mean()
    cons = (img - img2).square().mean()
    z_hat, logits = Fd(img)
    expected = {"Loss/G/adversarial": adv, "Loss/G/consistency": cons,
                "Loss/G/latent_rec": (z - z_hat).square().mean(),
                "Loss/G/fp_bce": F.binary_cross_entropy_with_logits(logits, c)}
    for k, v in expected.items():
        assert stats[k].item() == pytest.approx(v.item(), rel=1e-5), k
    assert total.item() == pytest.approx(adv.item() + 2 * cons.item() + expected["Loss/G/latent_rec"].item()
                                         + 2 * expected["Loss/G/fp_bce"].item(), rel=1e-5)
    assert 0 <= stats["Metrics/bit_acc"].item() <= 1


def test_the_consistency_pair_in_one_pass_is_two_generator_calls(tiny):
    """G(z, c) and G(z, c') batched together equal the two separate calls (const noise; the batch size
    changes only float rounding), fused or not: the loss's one-pass pair is the release's two passes."""
    G = tiny[0]
    z = torch.randn(3, G.z_dim)
    c, c2 = random_fingerprints(3, G.n_bits), random_fingerprints(3, G.n_bits)
    for fused in (True, False):
        a, b = G(torch.cat([z, z]), torch.cat([c, c2]), noise_mode="const", fused=fused).chunk(2)
        torch.testing.assert_close(a, G(z, c, noise_mode="const"), atol=1e-5, rtol=0)
        torch.testing.assert_close(b, G(z, c2, noise_mode="const"), atol=1e-5, rtol=0)
    # Random noise is drawn per sample: the two halves of the pair see different noise. (Noise strengths start
    # at 0, as in StyleGAN2; give them a value so that noise shows in the image.)
    G = copy.deepcopy(G)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    torch.manual_seed(0)
    a, b = G(torch.cat([z, z]), torch.cat([c, c]), fused=False).chunk(2)
    assert not torch.allclose(a, b)
    # Paired noise: one draw for both halves, so the pair differs only by what c changes.
    a, b = G(torch.cat([z, z]), torch.cat([c, c]), fused=False, noise_mode="paired").chunk(2)
    assert torch.equal(a, b)
    weights = LossWeights(adversarial=0.0, latent_rec=0.0, fingerprint=0.0)
    for paired, zero in ((True, True), (False, False)):
        loss = FingerprintGANLoss(G, None, tiny[2], weights, paired_noise=paired)
        _, stats = loss.generator_main(z, c, c.clone(), {})
        assert (float(stats["Loss/G/consistency"]) == 0) == zero


def test_consistency_to_a_reference_uses_its_noise_draw(tiny):
    """--consistency-to baseline: G(z, c) against a frozen plain generator's image of z under the same noise draw;
    0 while G is the plain one with the modulation at the identity, and the RNG goes on as after G alone."""
    torch.manual_seed(0)
    plain = build_networks("tiny32", ("G",), n_bits=0, c_encoding="pm1")["G"]
    with torch.no_grad():
        for name, p in plain.named_parameters():
            p.add_(0.1 * torch.randn_like(p)) if not name.endswith("noise_strength") else p.fill_(0.2)
    G = build_networks("tiny32", ("G",), n_bits=8, c_encoding="pm1")["G"]
    G.start_from_plain(plain)
    ref = copy.deepcopy(plain).requires_grad_(False)
    z, c = torch.randn(3, G.z_dim), random_fingerprints(3, 8)
    loss = FingerprintGANLoss(G, None, tiny[2], LossWeights(adversarial=0.0, latent_rec=0.0, fingerprint=0.0),
                              reference=ref)
    torch.manual_seed(1)
    _, stats = loss.generator_main(z, c, 1 - c, {})
    after = torch.rand(4)
    assert float(stats["Loss/G/consistency"]) == 0
    torch.manual_seed(1)
    G(z, c, fused=False)                 # G alone draws the same numbers: the reference's draw is rewound
    assert torch.equal(torch.rand(4), after)
    with torch.no_grad():                # a fingerprint that moves the image is penalised, and trains G only
        G.embedding.fc0.weight.normal_()
    total, stats = loss.generator_main(z, c, 1 - c, {})
    total.backward()
    assert float(stats["Loss/G/consistency"]) > 0 and G.embedding.fc0.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ref.parameters())


def test_shared_change_is_what_a_fingerprint_and_its_complement_share(tiny):
    """--shared-change-weight: the batch becomes half fingerprints, half their complements (same z); the term is the
    mean square of the two images' average change to the reference's (same noise), added at its weight; 0 while G
    is the plain one. Without a reference it is off."""
    torch.manual_seed(0)
    plain = build_networks("tiny32", ("G",), n_bits=0, c_encoding="pm1")["G"]
    G = build_networks("tiny32", ("G",), n_bits=8, c_encoding="pm1")["G"]
    G.start_from_plain(plain)
    ref = copy.deepcopy(plain).requires_grad_(False)
    w = LossWeights(adversarial=0.0, latent_rec=0.0, fingerprint=0.0, consistency=3.0)
    loss = FingerprintGANLoss(G, None, tiny[2], w, reference=ref, shared_change=5.0)
    z, c = torch.randn(5, G.z_dim), random_fingerprints(5, 8)      # odd: the last sample is dropped
    _, stats = loss.generator_main(z, c, 1 - c, {})
    assert float(stats["Loss/G/shared_change"]) == 0 and float(stats["Loss/G/consistency"]) == 0
    with torch.no_grad():
        G.embedding.fc0.weight.normal_()
        G.embedding.fc0.bias.normal_() if G.embedding.fc0.bias is not None else None
    torch.manual_seed(2)
    total, stats = loss.generator_main(z, c, 1 - c, {})
    zz, cc = torch.cat([z[:2], z[:2]]), torch.cat([c[:2], 1 - c[:2]])
    torch.manual_seed(2)
    img = G(zz, cc, fused=False)
    torch.manual_seed(2)
    with torch.no_grad():
        change = img - ref(zz, cc[:, :0], fused=False)
    cons = change.square().mean()
    shared = ((change[:2] + change[2:]) / 2).square().mean()
    assert float(stats["Loss/G/consistency"]) == pytest.approx(cons.item(), rel=1e-5)
    assert float(stats["Loss/G/shared_change"]) == pytest.approx(shared.item(), rel=1e-5) and shared.item() > 0
    assert total.item() == pytest.approx(3 * cons.item() + 5 * shared.item(), rel=1e-5)
    off = FingerprintGANLoss(G, None, tiny[2], w, shared_change=5.0)           # no reference: no such term
    assert "Loss/G/shared_change" not in off.generator_main(z, c, 1 - c, {})[1]


def test_warmup_scale_switches_terms_off(tiny):
    G, D, Fd = tiny
    loss = FingerprintGANLoss(G, D, Fd, LossWeights())
    z = torch.randn(2, G.z_dim)
    c = random_fingerprints(2, G.n_bits)
    _, stats = loss.generator_main(z, c, 1 - c, {"consistency": 0.0, "adversarial": 0.0})
    assert "Loss/G/consistency" not in stats and "Loss/G/adversarial" not in stats
    assert "Loss/G/fp_bce" in stats


def test_baseline_without_fingerprint_has_no_fingerprint_terms():
    nets = build_networks("tiny32", n_bits=0)
    loss = FingerprintGANLoss(nets["G"], nets["D"], nets["F"], LossWeights())
    z = torch.randn(2, 128)
    c = torch.zeros(2, 0)
    _, stats = loss.generator_main(z, c, c, {})
    assert set(stats) == {"Loss/G/adversarial", "Loss/G/latent_rec", "Loss/G/total"}


def test_discriminator_main_is_the_logistic_loss(tiny):
    G, D, Fd = tiny
    loss = FingerprintGANLoss(G, D, Fd, LossWeights())
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    z = torch.randn(4, G.z_dim)
    c = random_fingerprints(4, G.n_bits)
    torch.manual_seed(3)
    value, stats = loss.discriminator_main(real, z, c)
    torch.manual_seed(3)
    with torch.no_grad():
        fake = G(z, c)
    expected = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_path_length_penalty_and_target(tiny):
    G, D, Fd = tiny
    loss = FingerprintGANLoss(G, D, Fd, LossWeights(pl_weight=2.0, pl_decay=0.01))
    z = torch.randn(8, G.z_dim)
    c = random_fingerprints(8, G.n_bits)
    value, stats = loss.generator_pl(z, c)
    length = stats["Loss/G/pl_length"]
    assert length.item() > 0 and math.isfinite(value.item())
    value.backward()   # differentiable (second order through the synthesis)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.embedding.parameters())
    before = loss.pl_mean.clone()
    loss.update_pl_mean(length)
    assert loss.pl_mean.item() == pytest.approx(before.item() + 0.01 * (length.item() - before.item()))
