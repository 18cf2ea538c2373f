"""Fingerprint metrics: of a generator + decoder pair, and of the fingerprint autoencoder.

``fingerprint_metrics`` draws ``num`` fresh (z, c) pairs (c uniform, as the paper's protocol),
decodes G's float images with F and reports:
  * ``bit_acc``: mean over images of the fraction of bits decoded correctly (logit > 0);
  * ``bit_acc_min``: the worst image's fraction;
  * ``consistency_psnr``: PSNR in dB between G(z, c) and G(z, c') for the same z and const noise,
    images mapped from [-1, 1] to [0, 1] and clipped (how little the fingerprint changes content).

``autoencoder_metrics`` fingerprints given real images with fresh random fingerprints, quantises
the result to 8 bits exactly as a PNG file stores it, decodes that and reports ``bit_acc``,
``bit_acc_min``, ``psnr`` (dB, mean over images, 8-bit fingerprinted vs original) and
``bit_acc_clean`` (the decoder on the untouched originals: ~0.5 when nothing leaks).

``transfer_metrics`` checks artificial fingerprinting's claim: a generator trained on images that all
carry one fingerprint makes images that carry it too. It decodes ``num`` 8-bit samples of a generator
with the autoencoder's decoder and compares them with that fingerprint (``bit_acc``; ~0.5 when the
fingerprint did not transfer), with ``bit_acc_min`` and ``majority_bits_correct`` (bits right after a
majority vote over all samples).
"""

from __future__ import annotations

import math

import torch

from metrics.metric_main import MetricOptions, register_metric
from training.loss import random_fingerprints


@torch.no_grad()
def fingerprint_metrics(G, F, num: int = 1000, seed: int = 0, batch: int = 50,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed + 7919)
    correct, worst, sq_err, pixels = 0.0, 1.0, 0.0, 0
    for start in range(0, num, batch):
        n = min(batch, num - start)
        z = torch.randn(n, G.z_dim, generator=gen).to(device)
        c = random_fingerprints(n, G.c_dim, gen).to(device)
        c2 = random_fingerprints(n, G.c_dim, gen).to(device)
        img = G(z, c, noise_mode="const")
        if G.c_dim > 0:
            _, logits = F(img)
            per_image = ((logits > 0).float() == c).float().mean(dim=1)
            correct += float(per_image.sum())
            worst = min(worst, float(per_image.min()))
        a = (img.clamp(-1, 1) + 1) / 2
        b = (G(z, c2, noise_mode="const").clamp(-1, 1) + 1) / 2
        sq_err += float((a - b).square().sum())
        pixels += a.numel()
    mse = sq_err / max(pixels, 1)
    out = {"num": num, "consistency_psnr": 10 * math.log10(1 / mse) if mse > 0 else float("inf")}
    if G.c_dim > 0:
        out.update({"bit_acc": correct / num, "bit_acc_min": worst})
    return out


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] rounded to the 256 levels an 8-bit PNG stores, back in [-1, 1]."""
    return ((img + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1


@torch.no_grad()
def autoencoder_metrics(encoder, decoder, images: torch.Tensor, seed: int = 0, batch: int = 100,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    """``images``: uint8 [N, C, R, R] at the autoencoder's resolution."""
    gen = torch.Generator().manual_seed(seed + 104729)
    n = images.shape[0]
    if n == 0:
        raise ValueError("autoencoder_metrics needs at least one image")
    acc, acc_clean, psnr = [], [], []
    for start in range(0, n, batch):
        x = images[start:start + batch].to(device).float() / 127.5 - 1
        c = random_fingerprints(x.shape[0], encoder.fingerprint_bits, gen).to(device)
        fp = quantize(encoder(x, c))
        acc.append(((decoder(fp) > 0).float() == c).float().mean(dim=1))
        acc_clean.append(((decoder(x) > 0).float() == c).float().mean(dim=1))
        mse = ((fp - x) / 2).square().flatten(1).mean(dim=1)             # in [0, 1] units
        psnr.append(10 * torch.log10(1 / mse.clamp(min=1e-12)))
    acc_t, psnr_t = torch.cat(acc), torch.cat(psnr)
    return {"num": n, "bit_acc": float(acc_t.mean()), "bit_acc_min": float(acc_t.min()),
            "psnr": float(psnr_t.mean()), "bit_acc_clean": float(torch.cat(acc_clean).mean())}


@torch.no_grad()
def transfer_metrics(G, decoder, fingerprint: torch.Tensor, num: int = 1000, seed: int = 0, batch: int = 50,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """``fingerprint``: [n] in {0, 1}, the one fingerprint of the training images; G's own bits (if any) random."""
    if fingerprint.ndim != 1 or fingerprint.numel() != decoder.fingerprint_bits:
        raise ValueError(f"expected a fingerprint of {decoder.fingerprint_bits} bits, got shape "
                         f"{tuple(fingerprint.shape)}")
    if G.img_resolution != decoder.img_resolution:
        raise ValueError(f"the generator makes {G.img_resolution}x{G.img_resolution} images, the decoder reads "
                         f"{decoder.img_resolution}x{decoder.img_resolution}")
    gen = torch.Generator().manual_seed(seed + 15485863)
    target = fingerprint.float().to(device)
    per_image, votes = [], torch.zeros_like(target)
    for start in range(0, num, batch):
        n = min(batch, num - start)
        z = torch.randn(n, G.z_dim, generator=gen).to(device)
        c = random_fingerprints(n, G.c_dim, gen).to(device)
        bits = (decoder(quantize(G(z, c, noise_mode="const"))) > 0).float()
        per_image.append((bits == target).float().mean(dim=1))
        votes += bits.sum(dim=0)
    acc = torch.cat(per_image)
    majority = (votes * 2 > num).float()
    return {"num": num, "bit_acc": float(acc.mean()), "bit_acc_min": float(acc.min()),
            "majority_bits_correct": int((majority == target).sum()), "bits": int(target.numel())}


@register_metric("fp_bit_acc1k")
def fp_bit_acc1k(opts: MetricOptions) -> dict[str, float]:
    """Bit accuracy of F on 1,000 fresh G samples (float images), its worst image, consistency PSNR."""
    return fingerprint_metrics(opts.G, opts.F, num=1000, seed=opts.seed, device=opts.device)
