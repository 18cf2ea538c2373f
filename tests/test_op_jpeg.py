"""torch_utils/ops/jpeg.py against its references: scipy's DCT, Pillow's tables and Pillow's JPEG codec."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from torch_utils.ops.jpeg import dct8x8, dct8x8_reference, idct8x8, jpeg_approx, quality_tables, round_ste


def _smooth_images(n=8, res=32, seed=0):
    """Random images with some structure (blurred noise plus gradients), uint8 [N, H, W, 3]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, res // 4, res // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(res, res), mode="bicubic", align_corners=False)
    x = x + 0.15 * torch.rand(n, 3, res, res, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _pillow_jpeg(imgs, quality):
    out = []
    for a in imgs:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=quality)
        out.append(np.array(Image.open(buf).convert("RGB")))
    return np.stack(out)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / mse)


def test_dct_matches_scipy_and_inverts():
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    np.testing.assert_allclose(dct8x8(x).numpy(), dct8x8_reference(x.numpy()), atol=1e-12)
    torch.testing.assert_close(idct8x8(dct8x8(x)), x, atol=1e-12, rtol=0)


def test_dct_gradients():
    x = torch.randn(2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dct8x8, (x,))
    assert torch.autograd.gradcheck(idct8x8, (x,))


@pytest.mark.parametrize("quality", [10, 50, 80, 95])
def test_quality_tables_equal_pillows(quality):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="JPEG", quality=quality)
    tables = Image.open(buf).quantization
    luma, chroma = quality_tables(torch.tensor([quality]))
    assert luma[0].flatten().int().tolist() == list(tables[0])
    assert chroma[0].flatten().int().tolist() == list(tables[1])


@pytest.mark.parametrize("quality", [20, 50, 80, 95])
def test_forward_matches_pillows_codec(quality):
    imgs = _smooth_images()
    ref = _pillow_jpeg(imgs, quality)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    ours = (jpeg_approx(x, quality) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # The approximation is much closer to Pillow's output than either is to the original.
    assert _psnr(ours, ref) > 38
    assert abs(_psnr(ours, imgs) - _psnr(ref, imgs)) < 0.5


def test_per_image_quality_and_gradient():
    x = torch.from_numpy(_smooth_images(4)).permute(0, 3, 1, 2).float().div(255).requires_grad_(True)
    q = torch.tensor([10.0, 50.0, 90.0, 100.0])
    y = jpeg_approx(x, q)
    err = (y - x).detach().square().mean(dim=(1, 2, 3))
    assert err[0] > err[1] > err[2] > err[3]                         # lower quality, larger error
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-4)     # on the 8-bit grid
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_round_ste_passes_gradient():
    x = torch.tensor([0.2, 1.7, -2.4], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [0.0, 2.0, -2.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="multiples of 16"):
        jpeg_approx(torch.rand(1, 3, 24, 32), 80)
    with pytest.raises(ValueError, match="RGB"):
        jpeg_approx(torch.rand(1, 1, 32, 32), 80)
