"""Weight-free image metrics: PSNR, SSIM, and the sliced Wasserstein distance (SWD) of ProGAN.

They need no downloaded network, so they run on any machine:
  * ``psnr(a, b)``: 10 log10(1 / MSE) per image, images in [0, 1];
  * ``ssim(a, b)``: structural similarity (Wang et al. 2004) per image: Gaussian window 11 x 11, sigma 1.5,
    K1 = 0.01, K2 = 0.03, dynamic range 1, computed over the valid region of each channel and averaged;
  * ``swd(a, b)``: ProGAN's SWD between two image sets, per level of a Laplacian pyramid (from the full
    resolution down to 16 x 16): 128 random 7 x 7 patches per image, each channel of the descriptors
    normalised by the mean and standard deviation over the set, then the sliced Wasserstein distance with
    4 repeats of 128 random unit directions (mean absolute difference of the sorted projections). Reported
    x 1e3 per level and averaged, as ProGAN does; ~0 for two draws from one distribution of equal size.

Registered metrics (``metrics/metric_registry.py``; settings in ``MetricOptions.extra``):
  * ``swd``: SWD between ``extra["num"]`` (default 2,000) generated images and as many training images
    drawn at random without replacement (seeded; all of them when the data set is smaller, and then as
    many generated ones). Generated images get a fresh uniform c each, random noise
    (``extra["noise_mode"]``), and are quantised to 8 bits like the training images. Reports ``swd_<res>``
    per pyramid level, ``swd_mean`` and ``num``. Why 2,000: ProGAN used 16,384 images, but its
    descriptors (128 patches x 147 values per image and level, float64) then take gigabytes; 2,000 keep a
    128^2 run within about 3 GB and a minute of CPU. The value has a positive small-sample floor (two
    real sets of 2,000 do not give 0), so compare numbers measured with the same ``num`` only.
  * ``consistency``: PSNR (dB, from the pooled MSE) and mean SSIM between G(z, c) and G(z, c') for
    ``extra["num"]`` (default 1,000) pairs, same z, independent uniform c and c', const noise: the same
    numbers as ``consistency`` on all images at once, accumulated per batch. Needs a fingerprinted,
    conditional G (a baked generator has one c only).
  * ``diversity``: how different one generator's images are from each other, so that mode collapse shows:
    the mean pairwise RMS distance (images in [0, 1]) within groups of ``extra["group"]`` (default 32)
    samples that share one fingerprint (one issued user's generator: only z varies; const noise), over
    ``extra["num"]`` (default 2,048) samples; the same for groups of as many training images
    (``diversity_real``), and their ratio. A fingerprint that has become the content, with z ignored,
    gives a ratio near 0 even when the samples of *different* fingerprints differ.
  * ``quality_snapshot``: the three above at sizes cheap enough for every training snapshot: one set of 512
    samples (16 fingerprints x 32 z, const noise, quantised to 8 bits) against as many training images for
    SWD and diversity, and 256 of them again with a fresh fingerprint each for consistency (seconds on a CPU
    at 32x32); with a decoder F, also F's bit accuracy on the 512 (float images clamped to [-1, 1]:
    ``bit_acc``, ``bit_acc_min``), so that one set of samples measures the bits and the quality. It is the
    training loop's default. Its SWD has a higher small-sample floor than ``swd``'s 2,000 and const noise:
    compare values of one metric only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib.util import seed_for
from metrics.fingerprint import iter_samples
from metrics.metric_registry import MetricOptions, register_metric
from networks.stylegan2 import BakedGenerator, takes_fingerprint


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of [N, C, H, W] images in [0, 1]; inf for identical images."""
    mse = (a.double() - b.double()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per image of [N, C, H, W] images in [0, 1] (H, W >= window)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim needs two [N, C, H, W] batches of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    if min(a.shape[2:]) < window:
        raise ValueError(f"images of {a.shape[2]}x{a.shape[3]} are smaller than the {window}x{window} window")
    a, b = a.double(), b.double()
    c = a.shape[1]
    w = _gaussian_window(window, sigma).to(a.device)[None, None].repeat(c, 1, 1, 1)
    filt = lambda x: F.conv2d(x, w, groups=c)  # noqa: E731
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


# -- SWD -------------------------------------------------------------------------------------------

_BINOMIAL5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = (_BINOMIAL5[:, None] * _BINOMIAL5[None, :]).to(x)[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, min_resolution: int = 16) -> list[torch.Tensor]:
    """Band-pass levels from the full resolution down, the last one the low-pass residual at ``min_resolution``."""
    levels = []
    while x.shape[-1] > min_resolution:
        down = _blur(x)[..., ::2, ::2]
        up = F.interpolate(down, scale_factor=2, mode="nearest")
        levels.append(x - _blur(up))
        x = down
    levels.append(x)
    return levels


def _patches(level: torch.Tensor, per_image: int, size: int, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = level.shape
    ys = torch.randint(0, h - size + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - size + 1, (n, per_image), generator=gen)
    off = torch.arange(size)
    rows = (ys[..., None] + off)[..., :, None].expand(n, per_image, size, size)
    cols = (xs[..., None] + off)[..., None, :].expand(n, per_image, size, size)
    idx_n = torch.arange(n)[:, None, None, None].expand_as(rows)
    out = level.permute(0, 2, 3, 1)[idx_n, rows, cols]                 # [n, per_image, size, size, c]
    return out.reshape(n * per_image, size * size, c)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    mean = desc.mean(dim=(0, 1), keepdim=True)
    std = desc.std(dim=(0, 1), keepdim=True).clamp_min(1e-12)
    return ((desc - mean) / std).flatten(1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, gen: torch.Generator, repeats: int = 4,
                       directions: int = 128) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between projections (equal counts)."""
    if a.shape != b.shape:
        raise ValueError(f"sliced_wasserstein needs equal sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    dists = []
    for _ in range(repeats):
        d = torch.randn(a.shape[1], directions, generator=gen, dtype=a.dtype)
        d = d / d.norm(dim=0, keepdim=True)
        # [directions, points] sorted by NumPy: the same values as torch.sort, several times faster on CPU
        # (vectorised sorting), which made most of a training snapshot's metric time.
        pa = np.sort((a @ d).T.cpu().numpy(), axis=1)
        pb = np.sort((b @ d).T.cpu().numpy(), axis=1)
        dists.append(float(np.abs(pa - pb).mean()))
    return float(np.mean(dists))


def swd(a: torch.Tensor, b: torch.Tensor, patches_per_image: int = 128, patch_size: int = 7, seed: int = 0,
        min_resolution: int = 16) -> dict[str, float]:
    """ProGAN's SWD x 1e3 between two equal-sized sets of [N, C, R, R] images in [0, 1]: per level and mean."""
    if a.shape != b.shape:
        raise ValueError(f"swd needs two sets of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    gen = torch.Generator().manual_seed(seed)
    pa = laplacian_pyramid(a.double(), min_resolution)
    pb = laplacian_pyramid(b.double(), min_resolution)
    out = {}
    for la, lb in zip(pa, pb):
        res = la.shape[-1]
        da = _normalise(_patches(la, patches_per_image, patch_size, gen))
        db = _normalise(_patches(lb, patches_per_image, patch_size, gen))
        out[f"swd_{res}"] = 1e3 * sliced_wasserstein(da, db, gen)
    out["swd_mean"] = float(np.mean(list(out.values())))
    return out


def consistency(img_c: torch.Tensor, img_c2: torch.Tensor) -> dict[str, float]:
    """PSNR (dB, from the pooled MSE) and mean SSIM between G(z, c) and G(z, c') (images in [-1, 1])."""
    a = ((img_c.clamp(-1, 1) + 1) / 2).double()
    b = ((img_c2.clamp(-1, 1) + 1) / 2).double()
    mse = float((a - b).square().mean())
    return {"psnr": 10 * math.log10(1 / mse) if mse > 0 else float("inf"), "ssim": float(ssim(a, b).mean())}


# -- registered metrics ------------------------------------------------------------------------------

def real_images(data: str, num: int, seed: int, resolution: int | None = None) -> torch.Tensor:
    """``num`` training images (uint8 [num, 3, R, R]) drawn without replacement by ``seed``; all when fewer."""
    from data.dataset import ImageDataset

    ds = ImageDataset(data, resolution=resolution)
    n = len(ds)
    index = np.arange(n) if num >= n else np.sort(np.random.default_rng(seed).choice(n, size=num, replace=False))
    try:
        return torch.stack([ds[int(i)][0] for i in index])
    finally:
        ds.close()


@register_metric("swd")
@torch.no_grad()
def swd_metric(opts: MetricOptions) -> dict[str, float]:
    """ProGAN's SWD between generated and training images (module docstring)."""
    if opts.data is None:
        raise ValueError("swd: needs the training data set (--data)")
    num = int(opts.extra.get("num", 2000))
    reals = real_images(opts.data, num, opts.seed, resolution=int(opts.G.img_resolution))
    num = len(reals)
    samples = iter_samples(opts.G, num, seed=opts.seed, batch=int(opts.extra.get("batch", 32)), device=opts.device,
                           noise_mode=str(opts.extra.get("noise_mode", "random")), progress=opts.progress, desc="swd")
    fakes = torch.cat([((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu() for _, _, img in samples])
    out = swd(fakes.double() / 255, reals.double() / 255, seed=opts.seed)
    return {**out, "num": num}


@register_metric("consistency", fingerprint=True)
@torch.no_grad()
def consistency_metric(opts: MetricOptions) -> dict[str, float]:
    """PSNR and SSIM between G(z, c) and G(z, c') (module docstring)."""
    G = opts.G
    if not takes_fingerprint(G):
        raise ValueError("consistency: needs a generator with a fingerprint input (a training snapshot's G_ema; "
                         "a baked or plain generator has no c to vary)")
    num = int(opts.extra.get("num", 1000))
    gen = torch.Generator().manual_seed(seed_for(opts.seed, 3))
    sq_err, pixels, ssim_sum = 0.0, 0, 0.0
    for z, c, img in iter_samples(G, num, seed=opts.seed, batch=int(opts.extra.get("batch", 32)),
                                  device=opts.device, progress=opts.progress, desc="consistency"):
        # The same z again with an independent c' (const noise: only c changes).
        c2 = torch.randint(0, 2, c.shape, generator=gen).float().to(c.device)
        img2 = G(z, c2, noise_mode="const")
        a = ((img.clamp(-1, 1) + 1) / 2).double()
        b = ((img2.clamp(-1, 1) + 1) / 2).double()
        sq_err += float((a - b).square().sum())
        pixels += a.numel()
        ssim_sum += float(ssim(a, b).sum())
    mse = sq_err / pixels
    return {"num": num, "psnr": 10 * math.log10(1 / mse) if mse > 0 else float("inf"), "ssim": ssim_sum / num}


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean over pairs i < j of the RMS distance between images i and j ([N, C, H, W] in [0, 1], N >= 2)."""
    if images.shape[0] < 2:
        raise ValueError("a pairwise distance needs at least two images")
    f = images.flatten(1).double()
    sq = (f.square().sum(1)[:, None] + f.square().sum(1)[None, :] - 2 * f @ f.T).clamp_min(0) / f.shape[1]
    i, j = torch.triu_indices(f.shape[0], f.shape[0], 1)
    return float(sq[i, j].sqrt().mean())


@torch.no_grad()
def _fake_groups(G, groups: int, size: int, seed: int, device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``groups`` batches ``(z, c, img)`` of ``size`` samples, each batch from one random fingerprint with z
    varying, const noise; img in [0, 1] on the CPU (a baked generator: its own fingerprint, c None; a plain
    one: c with no bits)."""
    gen = torch.Generator().manual_seed(seed_for(seed, 4))
    out = []
    for _ in range(groups):
        z = torch.randn(size, G.z_dim, generator=gen).to(device)
        if isinstance(G, BakedGenerator):
            c = None
            img = torch.cat([G(zb, noise_mode="const") for zb in z.split(64)])
        else:
            c = torch.randint(0, 2, (1, G.n_bits), generator=gen).float().to(device).expand(size, -1)
            img = torch.cat([G(zb, cb, noise_mode="const") for zb, cb in zip(z.split(64), c.split(64))])
        out.append((z, c, ((img.float().clamp(-1, 1) + 1) / 2).cpu()))
    return out


def _real_groups(opts: MetricOptions, groups: int, size: int) -> list[torch.Tensor]:
    """Training images in [0, 1] (float64), shuffled into ``groups`` groups of ``size`` (fewer when the data
    set is smaller; one group of all of them when it holds fewer than ``size``)."""
    reals = real_images(opts.data, groups * size, opts.seed, resolution=int(opts.G.img_resolution))
    perm = torch.from_numpy(np.random.default_rng(seed_for(opts.seed, 5)).permutation(len(reals)))
    reals = reals[perm].double() / 255
    return [g for g in reals.split(size) if len(g) == size] or [reals]


def _diversity(fakes: list[torch.Tensor], reals: list[torch.Tensor]) -> dict[str, float]:
    fake = float(np.mean([mean_pairwise_distance(g) for g in fakes]))
    real = float(np.mean([mean_pairwise_distance(g) for g in reals]))
    return {"diversity": fake, "diversity_real": real, "diversity_ratio": fake / real}


def _group_sizes(opts: MetricOptions, metric: str, num: int) -> tuple[int, int]:
    if opts.data is None:
        raise ValueError(f"{metric}: needs the training data set (--data)")
    size = int(opts.extra.get("group", 32))
    if size < 2:
        raise ValueError(f"{metric}: a group needs at least 2 images, got group={size}")
    return max(int(opts.extra.get("num", num)) // size, 1), size


@register_metric("diversity")
def diversity_metric(opts: MetricOptions) -> dict[str, float]:
    """Mean pairwise distance within one fingerprint's samples, against the training images' (module docstring)."""
    groups, size = _group_sizes(opts, "diversity", 2048)
    fakes = [img for _, _, img in _fake_groups(opts.G, groups, size, opts.seed, opts.device)]
    return {"num": groups * size, "group": size, **_diversity(fakes, _real_groups(opts, groups, size))}


@register_metric("quality_snapshot")
@torch.no_grad()
def quality_snapshot(opts: MetricOptions) -> dict[str, float]:
    """SWD, diversity, consistency and bit accuracy at the sizes of a training snapshot (module docstring): one
    set of 512 samples (16 fingerprints x 32 z, const noise) serves SWD, diversity and F's bits, and the first
    256 of them, again with a fresh fingerprint each, the consistency."""
    groups, size = _group_sizes(opts, "quality_snapshot", 512)
    samples = _fake_groups(opts.G, groups, size, opts.seed, opts.device)
    reals = _real_groups(opts, groups, size)
    fakes = [img for _, _, img in samples]
    real_all = torch.cat(reals)
    fake_all = (torch.cat(fakes) * 255).round()[: len(real_all)] / 255       # 8-bit, like the training images
    out = {"swd": swd(fake_all.double(), real_all, seed=opts.seed)["swd_mean"], **_diversity(fakes, reals)}
    if takes_fingerprint(opts.G) and opts.F is not None:    # F on the same samples, float (clamped) images
        right = torch.cat([((opts.F(img.to(opts.device) * 2 - 1)[1] > 0).float().cpu() == c.cpu()).float().mean(1)
                           for _, c, img in samples])
        out.update(bit_acc=float(right.mean()), bit_acc_min=float(right.min()))
    if takes_fingerprint(opts.G):
        gen = torch.Generator().manual_seed(seed_for(opts.seed, 6))
        pairs = samples[: max(len(samples) // 2, 1)]
        a = torch.cat([img for _, _, img in pairs])
        b = torch.cat([((opts.G(z, torch.randint(0, 2, c.shape, generator=gen).float().to(c.device),
                                noise_mode="const").float().clamp(-1, 1) + 1) / 2).cpu() for z, c, _ in pairs])
        out.update(consistency(a * 2 - 1, b * 2 - 1))
        out["consistency_psnr"], out["consistency_ssim"] = out.pop("psnr"), out.pop("ssim")
    return out
