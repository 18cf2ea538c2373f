"""Converting image tensors to uint8 and writing image grids."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from dnnlib.util import atomic_path


def to_uint8(img: torch.Tensor, drange: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """[N, C, H, W] floats in ``drange`` -> uint8 [N, H, W, C] (rounded, clipped)."""
    lo, hi = drange
    x = (img.detach().float().cpu() - lo) * (255 / (hi - lo))
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_image_grid(img: torch.Tensor, path: str | os.PathLike, cols: int,
                    drange: tuple[float, float] = (-1.0, 1.0)) -> None:
    """Write images [N, C, H, W] as one PNG grid with ``cols`` columns (atomically)."""
    arr = to_uint8(img, drange)
    n, h, w, c = arr.shape
    rows = -(-n // cols)
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = arr[i]
    mode = "L" if c == 1 else "RGB"
    with atomic_path(path) as tmp:
        Image.fromarray(grid[..., 0] if c == 1 else grid, mode).save(tmp, format="PNG")
