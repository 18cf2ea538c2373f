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

Registered metrics (``metrics/metric_registry.py``; settings in ``MetricOptions.extra``):
  * ``fp_bit_acc1k``: ``fingerprint_metrics`` on 1,000 samples (the release's training-loop metric; ours
    measures the bits inside ``quality_snapshot``, metrics/quality.py).
  * ``bit_acc``: F's bit accuracy on ``extra["num"]`` (default 1,000) fresh samples, each with a fresh
    uniform c (a baked generator: its one fingerprint, ``extra["fingerprint"]``, 0/1 text), on the float
    images (``bit_acc``, ``bit_acc_min``) and on the same images quantised to 8 bits as a PNG stores them
    (``bit_acc_8bit``, ``bit_acc_8bit_min``); ``p_value`` = P[Binomial(n, 1/2) >= round(bit_acc n)], the
    column of the paper's tables. Const noise.
  * ``uniqueness``: for every generator issued in ``MetricOptions.registry`` (at most
    ``extra["max_generators"]``): load its baked file (SHA-256 checked against the registry), generate
    ``extra["per_generator"]`` (default 15, odd so that no vote ties) images, decode them with F and take
    the per-bit majority as the generator's decoded fingerprint. Reports ``generators``, ``hamming_min``
    and ``hamming_mean`` over all pairs of decoded fingerprints (``registered_hamming_min`` for the
    registered ones, for comparison), ``collisions`` (pairs decoded to the same fingerprint),
    ``exact_matches`` (generators whose decoded fingerprint equals the registered one) and ``bit_acc``
    (decoded vs registered, mean over generators). Float images unless ``extra["quantize"]``.

``iter_samples`` is the one sampling loop of the registered metrics (here, ``metrics/quality.py`` and
``metrics/fid.py``): z ~ N(0, I) and c from a CPU generator seeded by the metric's seed, noise
(``noise_mode='random'``) from the global RNG seeded per batch inside ``torch.random.fork_rng``, so a
metric's value depends only on its seed and batch size, and the caller's RNG state is left as it was.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dnnlib.util import seed_for, sha256_file
from metrics.metric_registry import MetricOptions, register_metric
from networks.checkpoint import load_network
from networks.stylegan2 import BakedGenerator
from torch_utils.bits import random_fingerprints


@torch.no_grad()
def fingerprint_metrics(G, F, num: int = 1000, seed: int = 0, batch: int = 50,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed + 7919)
    correct, worst, sq_err, pixels = 0.0, 1.0, 0.0, 0
    for start in range(0, num, batch):
        n = min(batch, num - start)
        z = torch.randn(n, G.z_dim, generator=gen).to(device)
        c = random_fingerprints(n, G.n_bits, gen).to(device)
        c2 = random_fingerprints(n, G.n_bits, gen).to(device)
        img = G(z, c, noise_mode="const")
        if G.n_bits > 0:
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
    if G.n_bits > 0:
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
        c = random_fingerprints(x.shape[0], encoder.n_bits, gen).to(device)
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
    if fingerprint.ndim != 1 or fingerprint.numel() != decoder.n_bits:
        raise ValueError(f"expected a fingerprint of {decoder.n_bits} bits, got shape "
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
        c = random_fingerprints(n, G.n_bits, gen).to(device)
        bits = (decoder(quantize(G(z, c, noise_mode="const"))) > 0).float()
        per_image.append((bits == target).float().mean(dim=1))
        votes += bits.sum(dim=0)
    acc = torch.cat(per_image)
    majority = (votes * 2 > num).float()
    return {"num": num, "bit_acc": float(acc.mean()), "bit_acc_min": float(acc.min()),
            "majority_bits_correct": int((majority == target).sum()), "bits": int(target.numel())}


# -- sampling shared by the registered metrics -----------------------------------------------------

def generator_bits(G) -> int:
    """Fingerprint length of a generator (for a BakedGenerator: of the fingerprint baked in)."""
    return int(getattr(G, "n_bits", 0))


def parse_fingerprint(value, n_bits: int) -> torch.Tensor:
    """A fingerprint given as 0/1 text or a sequence of 0/1 -> float32 [1, n_bits]."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) != n_bits or set(text) - {"0", "1"}:
            raise ValueError(f"expected a fingerprint of {n_bits} characters 0/1, got {value!r}")
        bits = [int(ch) for ch in text]
    else:
        bits = [int(b) for b in value]
        if len(bits) != n_bits or set(bits) - {0, 1}:
            raise ValueError(f"expected a fingerprint of {n_bits} bits 0/1, got {len(bits)} values")
    return torch.tensor(bits, dtype=torch.float32)[None]


def known_fingerprint(opts: MetricOptions) -> torch.Tensor | None:
    """[1, n] of a baked generator (``opts.extra["fingerprint"]``), None when unknown or G is conditional."""
    if not isinstance(opts.G, BakedGenerator) or opts.extra.get("fingerprint") is None:
        return None
    return parse_fingerprint(opts.extra["fingerprint"], generator_bits(opts.G))


def _rng_devices(device) -> list[int]:
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@torch.no_grad()
def iter_samples(G, num: int, *, seed: int, batch: int = 32, device: torch.device | str = "cpu",
                 noise_mode: str = "const", fingerprint: torch.Tensor | None = None, progress: bool = False,
                 desc: str = "samples") -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """Yield ``(z, c, img)`` batches of ``num`` samples: z [n, z_dim] and c float [n, bits] on ``device`` (c
    None for a baked G whose fingerprint is not given), img float [n, C, R, R] in about [-1, 1].

    A conditional G gets a fresh uniform c per sample; a BakedGenerator is called without c (``fingerprint``
    [1, bits], when known, is returned as its c).
    """
    if num < 1:
        raise ValueError(f"a metric needs at least one sample, got num={num}")
    gen = torch.Generator().manual_seed(seed_for(seed, 1))
    baked = isinstance(G, BakedGenerator)
    bar = tqdm(total=num, desc=desc, unit="img", disable=not progress, file=sys.stderr)
    for start in range(0, num, batch):
        n = min(batch, num - start)
        z = torch.randn(n, G.z_dim, generator=gen).to(device)
        if baked:
            c = None if fingerprint is None else fingerprint.to(device).expand(n, -1)
        else:
            c = random_fingerprints(n, G.n_bits, gen).to(device)
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(seed_for(seed, 2, start))
            img = G(z, noise_mode=noise_mode) if baked else G(z, c, noise_mode=noise_mode)
        bar.update(n)
        yield z, c, img
    bar.close()


def decoder_logits(F, img: torch.Tensor) -> torch.Tensor:
    """Bit logits [N, n] of a decoder returning (z_hat, logits) like FingerprintDecoder, or logits alone."""
    out = F(img)
    return out[1] if isinstance(out, tuple) else out


def needs_fingerprint_pair(opts: MetricOptions, metric: str) -> tuple[int, torch.Tensor | None]:
    """Check that bit accuracy can be measured: (bits, the baked generator's fingerprint or None)."""
    bits = generator_bits(opts.G)
    if bits <= 0:
        raise ValueError(f"{metric}: the generator carries no fingerprint (a plain StyleGAN2 network)")
    if opts.F is None:
        raise ValueError(f"{metric}: needs the fingerprint decoder F (a training snapshot holds it)")
    fixed = known_fingerprint(opts)
    if isinstance(opts.G, BakedGenerator) and fixed is None:
        raise ValueError(f"{metric}: a baked generator's fingerprint is not stored in its file; give it "
                         "(extra['fingerprint'], or calc_metrics.py --registry, which looks it up)")
    return bits, fixed


# -- registered metrics ------------------------------------------------------------------------------

@register_metric("fp_bit_acc1k", fingerprint=True)
def fp_bit_acc1k(opts: MetricOptions) -> dict[str, float]:
    """Bit accuracy of F on 1,000 fresh G samples (float images), its worst image, consistency PSNR."""
    return fingerprint_metrics(opts.G, opts.F, num=1000, seed=opts.seed, device=opts.device)


@register_metric("bit_acc", fingerprint=True)
@torch.no_grad()
def bit_acc(opts: MetricOptions) -> dict[str, float]:
    """F on fresh samples: float and 8-bit images (module docstring)."""
    from attribution.detection import binomial_tail

    bits, fixed = needs_fingerprint_pair(opts, "bit_acc")
    num = int(opts.extra.get("num", 1000))
    float_acc, q_acc = [], []
    for _, c, img in iter_samples(opts.G, num, seed=opts.seed, batch=int(opts.extra.get("batch", 50)),
                               device=opts.device, fingerprint=fixed, progress=opts.progress, desc="bit_acc"):
        float_acc.append(((decoder_logits(opts.F, img) > 0).float() == c).float().mean(dim=1))
        q_acc.append(((decoder_logits(opts.F, quantize(img)) > 0).float() == c).float().mean(dim=1))
    acc, acc8 = torch.cat(float_acc), torch.cat(q_acc)
    mean = float(acc.mean())
    return {"num": num, "n_bits": bits, "bit_acc": mean, "bit_acc_min": float(acc.min()),
            "bit_acc_8bit": float(acc8.mean()), "bit_acc_8bit_min": float(acc8.min()),
            "p_value": float(binomial_tail(round(mean * bits), bits))}


def _issued_file(file: str | None, registry: Path) -> Path:
    if not file:
        raise ValueError(f"{registry}: an entry records no generator file (imported from CSV?)")
    path = Path(file)
    if not path.is_absolute() and not path.is_file() and (registry.parent / path).is_file():
        path = registry.parent / path       # issued with a path relative to the registry's folder
    if not path.is_file():
        raise ValueError(f"{registry}: the issued generator {file} is not there")
    return path


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances int64 [N, M] between 0/1 rows a [N, n] and b [M, n]."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    agree = a @ b.T + (1 - a) @ (1 - b).T
    return (a.shape[1] - np.rint(agree)).astype(np.int64)


def _pairs(d: np.ndarray) -> np.ndarray:
    return d[np.triu_indices(len(d), k=1)]


@register_metric("uniqueness")
@torch.no_grad()
def uniqueness(opts: MetricOptions) -> dict[str, float]:
    """Decoded fingerprints of the issued generators: distinct, and each its registered one (module docstring)."""
    from attribution.registry import Registry, str_to_bits

    if opts.registry is None:
        raise ValueError("uniqueness: needs the registry of issued generators (--registry)")
    if opts.F is None:
        raise ValueError("uniqueness: needs the fingerprint decoder F (a training snapshot holds it)")
    registry = Path(opts.registry)
    with Registry(registry, readonly=True) as reg:
        entries, n_bits = reg.entries(), reg.n_bits
    max_gen = opts.extra.get("max_generators")
    entries = entries[: int(max_gen)] if max_gen is not None else entries
    if len(entries) < 2:
        raise ValueError(f"uniqueness: {registry} holds {len(entries)} generator(s); it compares at least 2")
    f_bits = getattr(opts.F, "n_bits", None) or getattr(opts.F, "n_bits", None)
    if f_bits is not None and int(f_bits) != n_bits:
        raise ValueError(f"uniqueness: {registry} holds {n_bits}-bit fingerprints, the decoder reads {f_bits}")
    k = int(opts.extra.get("per_generator", 15))
    quant = bool(opts.extra.get("quantize", False))
    decoded, registered = [], []
    for e in tqdm(entries, desc="generators", unit="gen", disable=not opts.progress, file=sys.stderr):
        path = _issued_file(e.file, registry)
        if e.file_sha256 and sha256_file(path) != e.file_sha256:
            raise ValueError(f"uniqueness: {path} is not the file issued to {e.user} (SHA-256 differs)")
        G = load_network(path, device=opts.device, names=["G"])["G"]
        if not isinstance(G, BakedGenerator) or G.n_bits != n_bits:
            raise ValueError(f"uniqueness: {path} is not a baked {n_bits}-bit generator")
        votes = torch.zeros(n_bits, device=opts.device)
        for _, _, img in iter_samples(G, k, seed=seed_for(opts.seed, e.id), device=opts.device,
                                   batch=int(opts.extra.get("batch", 32))):
            logits = decoder_logits(opts.F, quantize(img) if quant else img)
            if logits.shape[1] != n_bits:
                raise ValueError(f"uniqueness: the decoder returns {logits.shape[1]} bits, {registry} holds {n_bits}")
            votes += (logits > 0).float().sum(dim=0)
        decoded.append((votes * 2 > k).cpu().numpy().astype(np.uint8))
        registered.append(str_to_bits(e.bits, n_bits))
        del G
    dec, reg_bits = np.stack(decoded), np.stack(registered)
    pair_d = _pairs(hamming_matrix(dec, dec))
    own = (dec == reg_bits).mean(axis=1)
    return {"generators": len(entries), "per_generator": k, "n_bits": int(n_bits),
            "hamming_min": int(pair_d.min()), "hamming_mean": float(pair_d.mean()),
            "registered_hamming_min": int(_pairs(hamming_matrix(reg_bits, reg_bits)).min()),
            "collisions": int((pair_d == 0).sum()), "exact_matches": int((own == 1).sum()),
            "bit_acc": float(own.mean())}
