"""Slow, loop-based numpy references for the ops in ``torch_utils/ops``.

Each oracle is written straight from the definition (the StyleGAN2 TF release semantics)
with explicit index arithmetic, not from the op's code, so that a mistake in the op (a
missing filter flip, an off-by-one pad, a wrong group layout) shows up as a mismatch.
Everything works in float64 on arrays [N, C, H, W]; shapes are meant to be tiny.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch

DEMOD_EPS = 1e-8


def rand(shape: tuple[int, ...], seed: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Reproducible uniform float64 array."""
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def t64(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """float64 CPU tensor from a numpy array (a copy)."""
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


# ----------------------------------------------------------------------------------------------
# upfirdn2d


def upfirdn2d_np(x: np.ndarray, f: np.ndarray, up: tuple[int, int] = (1, 1), down: tuple[int, int] = (1, 1),
                 pad: tuple[int, int, int, int] = (0, 0, 0, 0), flip_filter: bool = False,
                 gain: float = 1.0) -> np.ndarray:
    """Zero-insert by ``up`` = (upx, upy), pad/crop by ``pad`` = (x0, x1, y0, y1), convolve with
    the 2-D filter ``f`` [fh, fw] (correlate if ``flip_filter``), scale by ``gain``, keep every
    ``down`` = (downx, downy)-th pixel starting at the first."""
    upx, upy = up
    downx, downy = down
    x0, x1, y0, y1 = pad
    n, c, h, w = x.shape

    # 1. Zero insertion: input pixel (i, j) lands at (i * upy, j * upx), everything else is 0.
    zh, zw = h * upy, w * upx
    z = np.zeros((n, c, zh, zw))
    for i in range(h):
        for j in range(w):
            z[:, :, i * upy, j * upx] = x[:, :, i, j]

    # 2. Pad / crop: padded pixel (a, b) is z pixel (a - y0, b - x0), zero outside of z.
    #    A negative amount simply makes the index window start inside z (a crop).
    ph, pw = zh + y0 + y1, zw + x0 + x1
    p = np.zeros((n, c, ph, pw))
    for a in range(ph):
        for b in range(pw):
            sa, sb = a - y0, b - x0
            if 0 <= sa < zh and 0 <= sb < zw:
                p[:, :, a, b] = z[:, :, sa, sb]

    # 3. 'valid' part of the true 2-D convolution  (p * f)[a + fh - 1, b + fw - 1]
    #    = sum_{u, v} f[u, v] p[a + fh - 1 - u, b + fw - 1 - v];  correlation uses p[a + u, b + v].
    fh, fw = f.shape
    oh, ow = ph - fh + 1, pw - fw + 1
    out = np.zeros((n, c, oh, ow))
    for a in range(oh):
        for b in range(ow):
            acc = np.zeros((n, c))
            for u in range(fh):
                for v in range(fw):
                    if flip_filter:
                        acc += f[u, v] * p[:, :, a + u, b + v]
                    else:
                        acc += f[u, v] * p[:, :, a + fh - 1 - u, b + fw - 1 - v]
            out[:, :, a, b] = gain * acc

    # 4. Decimation.
    return out[:, :, ::downy, ::downx]


# ----------------------------------------------------------------------------------------------
# convolutions


def correlate_np(x: np.ndarray, w: np.ndarray, stride: int = 1, groups: int = 1) -> np.ndarray:
    """'valid' cross-correlation, conv2d semantics: x [N, G*I, H, W], w [G*O, I, kh, kw]."""
    n, gi, h, wd = x.shape
    go, i_per_g, kh, kw = w.shape
    assert gi == groups * i_per_g and go % groups == 0
    o_per_g = go // groups
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, go, oh, ow))
    for o in range(go):
        g = o // o_per_g
        for i in range(i_per_g):
            xc = x[:, g * i_per_g + i]
            for a in range(oh):
                for b in range(ow):
                    patch = xc[:, a * stride: a * stride + kh, b * stride: b * stride + kw]
                    out[:, o, a, b] += (patch * w[o, i]).sum(axis=(1, 2))
    return out


def conv_transpose_flipped_np(x: np.ndarray, w: np.ndarray, stride: int, groups: int = 1) -> np.ndarray:
    """The release's ``conv2d_transpose`` with the spatially flipped kernel, as a scatter:
    input pixel (a, b) adds ``x[a, b] * w[o, i, kh-1-u, kw-1-v]`` to output (stride*a+u, stride*b+v).
    x [N, G*I, H, W], w [G*O, I, kh, kw] (conv2d layout); output [N, G*O, (H-1)*s+kh, (W-1)*s+kw]."""
    n, gi, h, wd = x.shape
    go, i_per_g, kh, kw = w.shape
    o_per_g = go // groups
    out = np.zeros((n, go, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for o in range(go):
        g = o // o_per_g
        for i in range(i_per_g):
            xc = x[:, g * i_per_g + i]
            for a in range(h):
                for b in range(wd):
                    for u in range(kh):
                        for v in range(kw):
                            tap = w[o, i, kh - 1 - u, kw - 1 - v]
                            out[:, o, stride * a + u, stride * b + v] += xc[:, a, b] * tap
    return out


def _pad_np(x: np.ndarray, p0: int, p1: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (p0, p1), (p0, p1)))


def conv2d_resample_release_np(x: np.ndarray, w: np.ndarray, f: np.ndarray, up: int = 1, down: int = 1,
                               groups: int = 1) -> np.ndarray:
    """StyleGAN2 release semantics (``upsample_conv_2d`` / ``conv_downsample_2d`` / plain conv).

    * up=2: transposed conv (stride 2, flipped kernel), then FIR with gain 4 and padding
      pad0 = (p+1)//2 + 1, pad1 = p//2 + 1 where p = (fw - 2) - (kw - 1);
    * down=2: FIR with padding ((p+1)//2, p//2), p = (fw - 2) + (kw - 1), then stride-2 'valid'
      correlation;
    * otherwise 'same' correlation.
    """
    kw = w.shape[-1]
    if up == 2:
        fw = f.shape[-1]
        p = (fw - 2) - (kw - 1)
        pad0, pad1 = (p + 1) // 2 + 1, p // 2 + 1
        y = conv_transpose_flipped_np(x, w, stride=2, groups=groups)
        return upfirdn2d_np(y, f, pad=(pad0, pad1, pad0, pad1), gain=4.0)
    if down == 2:
        fw = f.shape[-1]
        p = (fw - 2) + (kw - 1)
        y = upfirdn2d_np(x, f, pad=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))
        return correlate_np(y, w, stride=2, groups=groups)
    return correlate_np(_pad_np(x, kw // 2, kw // 2), w, groups=groups)


def conv2d_up_zero_insert_np(x: np.ndarray, w: np.ndarray, f: np.ndarray, groups: int = 1) -> np.ndarray:
    """up=2 as zero insertion + FIR (gain 4) + 'valid' correlation, with the FIR padding stated in
    conv2d_resample's 'ref' branch: the release's (pad0, pad1) widened by the conv's kw - 1
    border on each side, less the trailing zero that zero insertion already appends."""
    kw = w.shape[-1]
    fw = f.shape[-1]
    p = (fw - 2) - (kw - 1)
    pad0, pad1 = (p + 1) // 2 + 1, p // 2 + 1
    p0, p1 = pad0 + kw - 1, pad1 + kw - 2
    y = upfirdn2d_np(x, f, up=(2, 2), pad=(p0, p1, p0, p1), gain=4.0)
    return correlate_np(y, w, groups=groups)


def modulated_weight_np(weight: np.ndarray, style: np.ndarray, demodulate: bool) -> np.ndarray:
    """One sample's weight [O, I, k, k]: W[o, i] * s[i], then each o scaled to unit norm."""
    o_ch, i_ch = weight.shape[:2]
    out = np.zeros_like(weight)
    for o in range(o_ch):
        for i in range(i_ch):
            out[o, i] = weight[o, i] * style[i]
        if demodulate:
            out[o] = out[o] / np.sqrt(np.sum(out[o] ** 2) + DEMOD_EPS)
    return out


# ----------------------------------------------------------------------------------------------
# CUDA helpers


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Full-precision float32 convolutions / matmuls on CUDA (TF32 would need loose tolerances)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
