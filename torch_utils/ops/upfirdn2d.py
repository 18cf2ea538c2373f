"""FIR up-sampling, padding, filtering and down-sampling of 2-D images (upfirdn2d).

``upfirdn2d`` performs, in this order:
  1. up-sample by inserting ``up - 1`` zeros after every pixel along each axis,
  2. pad (or crop, for negative amounts) by ``[x0, x1, y0, y1]`` pixels,
  3. convolve every channel with the 2-D FIR filter ``f`` (true convolution; pass
     ``flip_filter=True`` for correlation), scaled by ``gain``,
  4. keep every ``down``-th pixel along each axis.
The output size along x is ``(W * up + x0 + x1 - fw) // down + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, Sequence):
        a, b = v
        return int(a), int(b)
    return int(v), int(v)


def _padding4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """Padding as ``(x0, x1, y0, y1)`` from an int, a pair ``(px, py)`` or a quadruple."""
    if not isinstance(padding, Sequence):
        p = int(padding)
        return p, p, p, p
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ValueError(f"padding must be an int, a pair or a quadruple, got {padding!r}")


def setup_filter(f: Sequence[float] | np.ndarray | torch.Tensor, normalize: bool = True,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """A 2-D float32 FIR filter from a 1-D kernel (outer product) or a 2-D one, summing to 1."""
    f = torch.as_tensor(np.asarray(f, dtype=np.float32), device=device)
    if f.ndim == 1:
        f = f[:, None] * f[None, :]
    if f.ndim != 2 or f.numel() == 0:
        raise ValueError(f"FIR filter must be 1-D or 2-D and non-empty, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    return f


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int | Sequence[int] = 1,
              down: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
              flip_filter: bool = False, gain: float = 1.0) -> torch.Tensor:
    """Up-sample, pad, FIR-filter and down-sample a batch of images ``x`` [N, C, H, W]."""
    if x.ndim != 4:
        raise ValueError(f"expected x of shape [N, C, H, W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    if f.ndim != 2:
        raise ValueError(f"filter must be 2-D (use setup_filter), got shape {tuple(f.shape)}")
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    x0, x1, y0, y1 = _padding4(padding)
    if min(upx, upy, downx, downy) < 1:
        raise ValueError("up and down factors must be >= 1")
    n, c, h, w = x.shape

    # 1. Zero insertion: every pixel becomes a up x up block with the pixel top-left.
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # 2. Pad with zeros where positive, crop where negative.
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]

    # 3. Depthwise FIR. conv2d correlates, so a true convolution flips the filter first.
    f = f.to(dtype=x.dtype, device=x.device) * gain
    if not flip_filter:
        f = f.flip([0, 1])
    weight = f[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, weight, groups=c)

    # 4. Decimation.
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def _square_width(f: torch.Tensor) -> int:
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise ValueError(f"centred resampling needs a square 2-D filter, got shape {tuple(f.shape)}")
    return f.shape[1]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, gain: float = 1.0) -> torch.Tensor:
    """Up-sample by ``up`` with the FIR filter ``f``, keeping the image centred (gain * up^2)."""
    fw = _square_width(f)
    p = fw - up
    pad = [(p + 1) // 2 + up - 1, p // 2]
    return upfirdn2d(x, f, up=up, padding=[pad[0], pad[1], pad[0], pad[1]], gain=gain * up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, gain: float = 1.0) -> torch.Tensor:
    """Down-sample by ``down`` after filtering with ``f``, keeping the image centred."""
    fw = _square_width(f)
    p = fw - down
    pad = [(p + 1) // 2, p // 2]
    return upfirdn2d(x, f, down=down, padding=[pad[0], pad[1], pad[0], pad[1]], gain=gain)
