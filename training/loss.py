"""The fingerprinted StyleGAN2's losses (docs/method.md#scalable-fingerprinting), split into training phases.

Phases, each with its own optimizer step (lazy regularisation as in StyleGAN2):
  * ``G_main``: adversarial + consistency + latent reconstruction + fingerprint BCE; one summed
    loss updates G (embedding included) and the decoder F;
  * ``G_reg``:  path-length regularisation w.r.t. the broadcast w (every ``g_reg_interval``);
  * ``D_main``: logistic loss on real and generated images;
  * ``D_reg``:  R1 gradient penalty on reals (every ``d_reg_interval``).
Every term is returned by name so the loop can log it (``Loss/G/fp_bce``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torch_utils.bits import bit_accuracy


@dataclass(frozen=True)
class LossWeights:
    adversarial: float = 1.0        # --adversarial-weight: G's non-saturating loss (0: D is never trained).
    consistency: float = 2.0        # --consistency-weight (release: --decoupleL2-weight): ||G(z, c) - G(z, c')||^2.
    latent_rec: float = 1.0         # --latent-rec-weight (release: --latentsRecL2-weight): ||z - F_z(G(z, c))||^2.
    fingerprint: float = 2.0        # --fp-weight (release: --watermarkCls-weight): BCE(F_c(G(z, c)), c).
    r1_gamma: float = 100.0         # --gamma (config-e).
    pl_weight: float = 2.0          # Path-length regularisation weight.
    pl_decay: float = 0.01          # EMA decay of the path-length target.
    pl_batch_shrink: int = 2        # PL on half the batch.


def same_noise(first, second, device: torch.device):
    """``first()`` with grad, then ``second()`` without, both drawing the same random numbers (the noise inputs of
    two generators of one architecture): the RNG is rewound for ``second`` and left where ``first`` left it."""
    cuda = device.type == "cuda"
    get = (lambda: torch.cuda.get_rng_state(device)) if cuda else torch.get_rng_state
    put = (lambda s: torch.cuda.set_rng_state(s, device)) if cuda else torch.set_rng_state
    start = get()
    a = first()
    end = get()
    put(start)
    with torch.no_grad():
        b = second()
    put(end)
    return a, b


class FingerprintGANLoss:
    """Computes each phase's loss for a batch; holds the path-length EMA (part of the training state)."""

    def __init__(self, G, D, F, weights: LossWeights, fp_transform=None, fused_modconv: bool = False,
                 paired_noise: bool = False, reference=None, shared_change: float = 0.0):
        self.G, self.D, self.F = G, D, F
        self.w = weights
        # What the consistency term compares G(z, c) with: G(z, c') for a second random c' (the release), or,
        # given ``reference`` (a frozen plain generator, n_bits 0: the baseline G started from), its image of
        # the same z under the same noise draw, so that the term holds every fingerprinted image to the
        # plain generator's and not only to each other (docs/method.md#keeping-the-generator-issue-16).
        self.reference = reference
        # The consistency pair G(z, c), G(z, c'): independent noise in the two (the release), or one noise draw
        # for both (``paired_noise``), so that the term sees only what c changes and does not teach G to
        # ignore its noise inputs (docs/method.md#keeping-the-generator-issue-16).
        self.paired_noise = paired_noise
        # With a reference: the weight of the change to the reference's image that a fingerprint c and its complement
        # 1 - c share, ||(G(z, c) - B(z) + G(z, 1 - c) - B(z)) / 2||^2. It is the same for every user, so it carries
        # no bit, only a cost in image quality (issue 18 measured it as a smoothing shared by every user).
        self.shared_change = shared_change if reference is not None else 0.0
        self.fp_transform = fp_transform            # Optional image perturbation before F (immunization).
        # Training runs the modulated convolutions unfused (scale the activations, one ordinary
        # convolution for the batch) as StyleGAN2-ADA does; the same function up to float rounding as
        # the fused grouped convolution that inference and baking use, and ~25% cheaper on CPU.
        self.fused = fused_modconv
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    def _decode(self, img: torch.Tensor):
        if self.fp_transform is not None:
            img = self.fp_transform(img)
        return self.F(img)

    def generator_main(self, z: torch.Tensor, c: torch.Tensor, c2: torch.Tensor,
                       scale: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G_main. ``scale`` multiplies the weights of 'adversarial', 'consistency' and 'latent_rec'
        (warm-up schedules; missing keys mean 1)."""
        cons_w = self.w.consistency * scale.get("consistency", 1.0)
        with_cons = cons_w > 0 and self.G.n_bits > 0
        half = z.shape[0] // 2
        antithetic = with_cons and self.reference is not None and self.shared_change > 0 and half > 0
        if antithetic:
            # Half the batch's fingerprints and their complements, for the same z (an odd last sample is dropped).
            z, c = torch.cat([z[:half], z[:half]]), torch.cat([c[:half], 1 - c[:half]])
        if with_cons and self.reference is not None:
            img, img2 = same_noise(lambda: self.G(z, c, fused=self.fused),
                                   lambda: self.reference(z, c[:, :0], fused=self.fused), z.device)
        elif with_cons:
            # G(z, c) and G(z, c') in one batch (one pass is cheaper than two); with independent noise in
            # the two halves (the release) or the same noise in both.
            img, img2 = self.G(torch.cat([z, z]), torch.cat([c, c2]), fused=self.fused,
                               noise_mode="paired" if self.paired_noise else "random").chunk(2)
        else:
            img = self.G(z, c, fused=self.fused)
        stats: dict[str, torch.Tensor] = {}
        total = torch.zeros([], device=z.device)
        adv_w = self.w.adversarial * scale.get("adversarial", 1.0)
        if adv_w > 0:
            adv = F.softplus(-self.D(img)).mean()
            total = total + adv_w * adv
            stats["Loss/G/adversarial"] = adv.detach()
        if with_cons:
            cons = (img - img2).square().mean(dim=[1, 2, 3]).mean()
            total = total + cons_w * cons
            stats["Loss/G/consistency"] = cons.detach()
            if antithetic:
                change = img - img2                  # each image's change to the reference's (same z, same noise)
                shared = ((change[:half] + change[half:]) / 2).square().mean(dim=[1, 2, 3]).mean()
                total = total + self.shared_change * scale.get("consistency", 1.0) * shared
                stats["Loss/G/shared_change"] = shared.detach()
        zrec_w = self.w.latent_rec * scale.get("latent_rec", 1.0)
        if zrec_w <= 0 and self.G.n_bits == 0:      # a plain StyleGAN2 without latent reconstruction: F is idle
            stats["Loss/G/total"] = total.detach()
            return total, stats
        z_hat, logits = self._decode(img)
        if zrec_w > 0:
            zrec = (z - z_hat).square().mean()
            total = total + zrec_w * zrec
            stats["Loss/G/latent_rec"] = zrec.detach()
        if self.G.n_bits > 0:
            bce = F.binary_cross_entropy_with_logits(logits, c)
            total = total + self.w.fingerprint * bce
            stats["Loss/G/fp_bce"] = bce.detach()
            stats["Metrics/bit_acc"] = bit_accuracy(logits.detach(), c)
        stats["Loss/G/total"] = total.detach()
        return total, stats

    def generator_pl(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G_reg: path-length penalty of the images w.r.t. the broadcast w (per style slot).

        The penalty uses the current target ``pl_mean``; the loop moves the target once per
        step with the mean length over the whole (global) batch, ``update_pl_mean``.
        """
        n = max(z.shape[0] // self.w.pl_batch_shrink, 1)
        z, c = z[:n], c[:n]
        ws = self.G.styles_input(z, c)
        if not ws.requires_grad:         # what makes ws is frozen (fine-tuning only the fingerprint module)
            ws = ws.detach().requires_grad_(True)
        img = self.G.synthesize(z, c, ws, fused=self.fused)
        noise = torch.randn_like(img) / (img.shape[2] * img.shape[3]) ** 0.5
        (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
        penalty = (lengths - self.pl_mean).square().mean()
        return penalty * self.w.pl_weight, {"Loss/G/pl_penalty": penalty.detach(),
                                            "Loss/G/pl_length": lengths.mean().detach()}

    def update_pl_mean(self, mean_length: torch.Tensor) -> None:
        """Move the path-length target towards the batch's mean length (EMA, decay ``pl_decay``)."""
        self.pl_mean.copy_(self.pl_mean.lerp(mean_length.to(self.pl_mean), self.w.pl_decay))

    def discriminator_main(self, real: torch.Tensor, z: torch.Tensor,
                           c: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            fake = self.G(z, c, fused=self.fused)
        fake_logits = self.D(fake)
        real_logits = self.D(real)
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        return loss, {"Loss/D/adversarial": loss.detach(), "Loss/scores/fake": fake_logits.mean().detach(),
                      "Loss/scores/real": real_logits.mean().detach()}

    def discriminator_r1(self, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        real = real.detach().requires_grad_(True)
        (grads,) = torch.autograd.grad(self.D(real).sum(), real, create_graph=True)
        penalty = grads.square().sum(dim=[1, 2, 3]).mean()
        return penalty * (self.w.r1_gamma / 2), {"Loss/D/r1_penalty": penalty.detach()}
