"""training/augment.py: spec parsing, exact no-ops, agreement with Pillow's operations, gradients, determinism."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from training.augment import DEFAULT_RANGES, FingerprintAugment, Perturbation, _apply, parse_spec


def _imgs(n=4, res=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, res // 4, res // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)


def test_parse_spec():
    ps = parse_spec("crop:0.6-1@0.25, jpeg ,noise:0-0.1")
    assert [(p.name, p.lo, p.hi, p.p) for p in ps] == [("crop", 0.6, 1.0, 0.25), ("jpeg", 50.0, 100.0, 0.5),
                                                       ("noise", 0.0, 0.1, 0.5)]
    assert [p.name for p in parse_spec("all")] == list(DEFAULT_RANGES)
    assert parse_spec(FingerprintAugment(ps).spec()) == ps


@pytest.mark.parametrize("bad, match", [("", "empty"), ("warp", "unknown perturbation"), ("crop:0.6", "NAME"),
                                        ("crop:1-0.6", "lo <= hi"), ("noise@2", "probability"),
                                        ("jpeg:0-50", "lo <= hi"), ("crop,crop", "twice")])
def test_bad_specs(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(bad)


@pytest.mark.parametrize("name, identity", [("crop", 1.0), ("resize", 1.0), ("blur", 0.0), ("noise", 0.0),
                                            ("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0)])
def test_identity_strengths_are_no_ops(name, identity):
    x = _imgs()
    torch.testing.assert_close(_apply(name, x, torch.full((4,), identity)), x, atol=1e-5, rtol=0)


def test_probability_zero_is_exact_no_op_and_one_always_fires():
    x = _imgs() * 2 - 1
    aug0 = FingerprintAugment([Perturbation(n, *DEFAULT_RANGES[n], 0.0) for n in DEFAULT_RANGES])
    assert torch.equal(aug0(x), x)
    aug1 = FingerprintAugment([Perturbation("noise", 0.1, 0.1, 1.0)])
    assert ((aug1(x) - x) / 2).std().item() == pytest.approx(0.1, rel=0.1)


def test_enhancements_match_pillow():
    x = _imgs(2)
    arr = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    xq = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255
    for name, enhancer in [("brightness", ImageEnhance.Brightness), ("contrast", ImageEnhance.Contrast),
                           ("saturation", ImageEnhance.Color)]:
        ours = _apply(name, xq, torch.full((2,), 1.5)).clamp(0, 1)
        ref = np.stack([np.array(enhancer(Image.fromarray(a)).enhance(1.5)) for a in arr])
        ref = torch.from_numpy(ref).permute(0, 3, 1, 2).float() / 255
        assert (ours - ref).abs().mean() < 2 / 255, name


def test_crop_keeps_the_centre():
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, 12:20, 12:20] = 1                       # a centred square of side 8
    y = _apply("crop", x, torch.tensor([0.5]))     # half the side kept: the square doubles
    assert y[0, 0, 16, 16] == pytest.approx(1.0) and y[0, 0, 9, 9] > 0.5 and y[0, 0, 3, 3] == pytest.approx(0.0)


def test_blur_preserves_the_mean_and_smooths():
    x = _imgs() + 0.2 * torch.rand(4, 3, 32, 32)
    y = _apply("blur", x, torch.tensor([0.5, 1.0, 2.0, 3.0]))
    torch.testing.assert_close(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=2e-2, rtol=0)
    rough = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean(dim=(1, 2, 3))  # noqa: E731
    r = rough(y)
    assert (r < rough(x)).all() and r[0] > r[1] > r[2] > r[3]


def test_gradients_flow_through_every_perturbation():
    aug = FingerprintAugment([Perturbation(n, *DEFAULT_RANGES[n], 1.0) for n in DEFAULT_RANGES])
    x = (_imgs() * 2 - 1).requires_grad_(True)
    aug(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_determinism_under_the_seed():
    aug = FingerprintAugment.from_spec("all")
    x = _imgs() * 2 - 1
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    assert torch.equal(a, b)


def test_bfloat16_batches_stay_bfloat16_and_train():
    """Under bf16 autocast (--amp) the generated batch is bf16 while JPEG computes in float32: every perturbation
    hands back the batch's dtype, and the gradient reaches the images (it once failed in index_put)."""
    torch.manual_seed(0)
    img = (torch.rand(4, 3, 32, 32) * 2 - 1).bfloat16().requires_grad_(True)
    aug = FingerprintAugment.from_spec("crop:0.6-1@1,jpeg:50-100@1,noise:0-0.15@1")
    out = aug(img)
    assert out.dtype == torch.bfloat16 and out.shape == img.shape
    out.float().square().sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
