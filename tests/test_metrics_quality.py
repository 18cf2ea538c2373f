"""Weight-free metrics against independent computations and known answers."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from metrics.quality import consistency, laplacian_pyramid, psnr, sliced_wasserstein, ssim, swd


def ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of one [H, W] channel pair with scipy's Gaussian filter, cropped to the valid region."""
    def filt(x):
        # truncate=3.334 gives radius 5: the 11-tap window; crop the 5-pixel border to the valid region.
        return ndimage.gaussian_filter(x, 1.5, truncate=5 / 1.5, mode="constant")[5:-5, 5:-5]
    mu_a, mu_b = filt(a), filt(b)
    va, vb, cov = filt(a * a) - mu_a ** 2, filt(b * b) - mu_b ** 2, filt(a * b) - mu_a * mu_b
    c1, c2 = 1e-4, 9e-4
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))).mean())


def test_ssim_matches_an_independent_implementation():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 24, 20))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    got = ssim(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    want = [np.mean([ssim_numpy(a[i, ch], b[i, ch]) for ch in range(3)]) for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_ssim_and_psnr_known_answers():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()
    y = (x + 0.1).clamp(0, 1)
    assert psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1)).item() == pytest.approx(20.0)
    noisy = [(x + s * torch.randn_like(x)).clamp(0, 1) for s in (0.05, 0.2)]
    assert ssim(x, noisy[0]).mean() > ssim(x, noisy[1]).mean() and ssim(x, y).mean() < 1
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_laplacian_pyramid_reconstructs():
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    levels = laplacian_pyramid(x, 16)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16]
    # Collapse the pyramid: up-sample and add back (the inverse of its construction).
    from metrics.quality import _blur
    y = levels[-1]
    for band in reversed(levels[:-1]):
        y = band + _blur(torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(y, x)


def test_sliced_wasserstein_of_shifted_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    assert sliced_wasserstein(a, a.clone(), gen) == 0.0
    # Shift by s along x: the projection on unit direction d moves by s d_x; mean |d_x| over
    # random 2-D unit directions is 2 / pi.
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    got = sliced_wasserstein(a, a + shift, gen, repeats=4, directions=256)
    assert got == pytest.approx(2 / np.pi, rel=0.05)


def test_swd_small_for_one_distribution_large_for_another():
    gen = torch.Generator().manual_seed(2)
    smooth = lambda n: torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=gen), size=32,  # noqa: E731
                                                        mode="bilinear", align_corners=False)
    a, b = smooth(128), smooth(128)
    noise = torch.rand(128, 3, 32, 32, generator=gen)
    same, other = swd(a, b), swd(a, noise)
    assert set(same) == {"swd_32", "swd_16", "swd_mean"}
    # Patches are drawn at random for each set (as ProGAN does), so one set against itself is small, not 0.
    # Small sets give a positive bias that shrinks with the set size (ProGAN uses 16k images).
    assert swd(a, a)["swd_mean"] < same["swd_mean"]
    assert other["swd_mean"] > 2.5 * same["swd_mean"]


def test_consistency_metric():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    c = consistency(x, x)
    assert c["psnr"] == float("inf") and c["ssim"] == pytest.approx(1.0)
    d = consistency(x, (x + 0.2).clamp(-1, 1))
    assert 15 < d["psnr"] < 30 and d["ssim"] < 1


# -- registered metrics: swd, consistency -------------------------------------------------------------------

class CopyG(torch.nn.Module):
    """'Generates' training images (chosen by z): the data's own distribution."""
    z_dim, n_bits, img_resolution = 4, 8, 32

    def __init__(self, reals: torch.Tensor):
        super().__init__()
        self.reals = reals.float() / 127.5 - 1

    def forward(self, z, c, noise_mode="const"):
        return self.reals[(z[:, 0].abs() * 1e6).long() % len(self.reals)]


class NoiseG(CopyG):
    def forward(self, z, c, noise_mode="const"):
        return torch.rand(z.shape[0], 3, 32, 32, generator=torch.Generator().manual_seed(int(z[0, 0] * 1e6))) * 2 - 1


class Paint16(torch.nn.Module):
    """16x16 images: the 16 bits of c (as -1/+1) in row 0 of channel 0, zeros elsewhere; or c ignored."""
    z_dim, n_bits, img_resolution = 4, 16, 16

    def __init__(self, use_c: bool = True):
        super().__init__()
        self.use_c = use_c

    def forward(self, z, c, noise_mode="const"):
        img = z[:, :1, None, None].expand(-1, 3, 16, 16).tanh().clone()
        if self.use_c:
            img[:, 0, 0, :] = c * 2 - 1
        return img


def test_swd_metric_small_for_the_data_large_for_noise(data):
    from metrics import metric_main
    from metrics.quality import real_images
    reals = real_images(str(data), 1000, 0)
    assert reals.shape == (64, 3, 32, 32) and reals.dtype == torch.uint8
    opts = lambda G, **extra: metric_main.MetricOptions(G=G, data=str(data), extra=extra)  # noqa: E731
    same = metric_main.calc_metric("swd", opts(CopyG(reals), num=32))
    other = metric_main.calc_metric("swd", opts(NoiseG(reals), num=32))
    assert same["num"] == 32 and {"swd_32", "swd_16", "swd_mean"} <= set(same)
    assert other["swd_mean"] > 2 * same["swd_mean"]
    assert metric_main.calc_metric("swd", opts(CopyG(reals), num=500))["num"] == 64     # all the data there is
    with pytest.raises(ValueError, match="training data"):
        metric_main.calc_metric("swd", metric_main.MetricOptions(G=CopyG(reals)))


def test_consistency_metric_registered():
    from metrics import metric_main
    out = metric_main.calc_metric("consistency", metric_main.MetricOptions(G=Paint16(), extra={"num": 400}))
    # c and c' differ in 8 of 16 bits on average; each such pixel differs by 1 in [0, 1]: MSE 8 / (3 * 16 * 16).
    assert out["num"] == 400 and out["psnr"] == pytest.approx(10 * np.log10(3 * 16 * 16 / 8), abs=0.3)
    assert 0 < out["ssim"] < 1
    same = metric_main.calc_metric("consistency", metric_main.MetricOptions(G=Paint16(use_c=False),
                                                                           extra={"num": 10, "batch": 3}))
    assert same["psnr"] == float("inf") and same["ssim"] == pytest.approx(1.0)
    plain = Paint16()
    plain.n_bits = 0
    with pytest.raises(ValueError, match="fingerprint input"):
        metric_main.calc_metric("consistency", metric_main.MetricOptions(G=plain))


# -- diversity and the per-snapshot quality ------------------------------------------------------------------

class ContentFromC(CopyG):
    """The failure of issue 16: the fingerprint is the content and z is ignored (one face per fingerprint)."""

    def forward(self, z, c, noise_mode="const"):
        index = (c * 2 ** torch.arange(c.shape[1])).sum(1).long() % len(self.reals)
        return self.reals[index]


def test_mean_pairwise_distance_known_answers():
    from metrics.quality import mean_pairwise_distance
    x = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.5, 1.0)])
    assert mean_pairwise_distance(x[[0, 2]]) == pytest.approx(1.0)
    assert mean_pairwise_distance(x) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert mean_pairwise_distance(x[[1, 1, 1]]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="two images"):
        mean_pairwise_distance(x[:1])


def test_diversity_sees_a_fingerprint_that_became_the_content(data):
    from metrics import metric_main
    from metrics.quality import real_images
    reals = real_images(str(data), 1000, 0)
    opts = lambda G, **extra: metric_main.MetricOptions(G=G, data=str(data), extra=extra)  # noqa: E731
    good = metric_main.calc_metric("diversity", opts(CopyG(reals), num=64, group=16))
    collapsed = metric_main.calc_metric("diversity", opts(ContentFromC(reals), num=64, group=16))
    assert good["num"] == 64 and good["group"] == 16
    assert 0.8 < good["diversity_ratio"] < 1.2 and good["diversity_real"] == collapsed["diversity_real"]
    assert collapsed["diversity"] == pytest.approx(0.0, abs=1e-6)       # one image per fingerprint
    with pytest.raises(ValueError, match="at least 2"):
        metric_main.calc_metric("diversity", opts(CopyG(reals), group=1))


def test_quality_snapshot_reports_swd_diversity_and_consistency(data):
    from metrics import metric_main
    from metrics.quality import real_images
    reals = real_images(str(data), 1000, 0)
    out = metric_main.calc_metric("quality_snapshot", metric_main.MetricOptions(G=ContentFromC(reals),
                                                                                data=str(data)))
    assert {"swd", "diversity", "diversity_real", "diversity_ratio", "consistency_psnr", "consistency_ssim"} <= set(out)
    assert out["diversity_ratio"] < 0.01 and out["consistency_psnr"] < 20   # c changes the whole image
    plain = CopyG(reals)
    plain.n_bits = 0
    out = metric_main.calc_metric("quality_snapshot", metric_main.MetricOptions(G=plain, data=str(data)))
    assert "consistency_psnr" not in out and out["diversity_ratio"] > 0.8
    assert metric_main.fingerprint_only("consistency") and not metric_main.fingerprint_only("quality_snapshot")
