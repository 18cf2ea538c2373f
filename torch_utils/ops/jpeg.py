"""A differentiable approximation of JPEG compression (baseline JFIF, 4:2:0), for immunized training.

The forward pass follows what libjpeg (and so Pillow) does at a given quality: RGB -> YCbCr (JFIF
full-range), chroma averaged over 2 x 2 pixels, level shift by 128, 8 x 8 orthonormal DCT-II per
block, quantisation with the standard luminance / chrominance tables (ITU-T T.81 Annex K) scaled by
the IJG quality rule (``5000 / q`` below 50, ``200 - 2 q`` from 50; entries clamped to 1..255),
dequantisation, inverse DCT, chroma up-sampled 2x with the triangular (3/4, 1/4) filter (libjpeg's
"fancy" up-sampling, which is bilinear interpolation with half-pixel centres), YCbCr -> RGB, clamp and
8-bit rounding. Rounding uses a straight-through estimator: the forward value is rounded, the gradient
passes as if it were the identity. What differs from a real encoder: float DCTs instead of libjpeg's
integer ones, plain 2 x 2 averaging for the chroma down-sampling, no Huffman stage (lossless anyway).
``tests/test_op_jpeg.py`` compares the result with Pillow's JPEG codec.

Reference implementations: ``dct8x8_reference`` (scipy's ``dctn``, type II, orthonormal) for the
block transform; Pillow's encoder/decoder for the whole codec.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), in natural (row-major) order.
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass (straight-through estimator)."""
    return x + (x.round() - x).detach()


def dct_matrix(dtype=torch.float32, device=None) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix C: ``C @ x`` transforms a column."""
    k = torch.arange(8, dtype=torch.float64)[:, None]
    n = torch.arange(8, dtype=torch.float64)[None, :]
    c = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    c[0] /= math.sqrt(2)
    return c.to(dtype=dtype, device=device)


def dct8x8(blocks: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II (orthonormal) of the last two axes, which must be 8 x 8."""
    c = dct_matrix(blocks.dtype, blocks.device)
    return c @ blocks @ c.T


def idct8x8(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of ``dct8x8``."""
    c = dct_matrix(coeffs.dtype, coeffs.device)
    return c.T @ coeffs @ c


def dct8x8_reference(blocks: np.ndarray) -> np.ndarray:
    """Reference for ``dct8x8``: scipy's type-II orthonormal DCT over the last two axes."""
    from scipy.fft import dctn
    return dctn(blocks, type=2, norm="ortho", axes=(-2, -1))


def quality_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Luminance and chrominance quantisation tables [N, 8, 8] for per-image qualities in 1..100 (IJG scaling)."""
    q = quality.to(torch.float64).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None]
    out = []
    for table in (LUMA_TABLE, CHROMA_TABLE):
        t = torch.tensor(table, dtype=torch.float64, device=q.device).reshape(1, 8, 8)
        out.append(torch.floor((t * scale + 50) / 100).clamp(1, 255).to(torch.float32))
    return out[0], out[1]


def _to_blocks(x: torch.Tensor) -> torch.Tensor:
    n, h, w = x.shape
    return x.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _from_blocks(b: torch.Tensor) -> torch.Tensor:
    n, bh, bw = b.shape[:3]
    return b.permute(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def _code_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Quantise and dequantise one plane [N, H, W] (level-shifted, 0..255 scale) with tables [N, 8, 8]."""
    coeffs = dct8x8(_to_blocks(plane))
    t = table[:, None, None]
    return _from_blocks(idct8x8(round_ste(coeffs / t) * t))


def jpeg_approx(img: torch.Tensor, quality: torch.Tensor | float) -> torch.Tensor:
    """Differentiable JPEG of RGB images [N, 3, H, W] in [0, 1]; ``quality`` per image (1..100) or one number.

    H and W must be multiples of 16 (whole 4:2:0 macroblocks). Returns images in [0, 1] on the 8-bit grid.
    """
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"jpeg_approx needs RGB images [N, 3, H, W], got {tuple(img.shape)}")
    n, _, h, w = img.shape
    if h % 16 or w % 16:
        raise ValueError(f"jpeg_approx needs sides that are multiples of 16, got {h}x{w}")
    quality = torch.as_tensor(quality, dtype=torch.float32, device=img.device).reshape(-1).expand(n)
    luma_t, chroma_t = quality_tables(quality)
    x = round_ste(img.clamp(0, 1) * 255)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    chroma = F.avg_pool2d(torch.stack([cb, cr], dim=1), 2)                       # [N, 2, H/2, W/2]
    y = _code_plane(y - 128, luma_t) + 128
    chroma = torch.stack([_code_plane(chroma[:, i] - 128, chroma_t) + 128 for i in range(2)], dim=1)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    cb, cr = chroma[:, 0] - 128, chroma[:, 1] - 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return round_ste(rgb.clamp(0, 255)) / 255
