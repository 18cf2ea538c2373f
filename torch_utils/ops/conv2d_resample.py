"""2-D convolution combined with FIR up-sampling (x2) or down-sampling (x2).

Semantics (those of the StyleGAN2 release, which the TF pickles were trained with):
  * ``up=2``:   zero-insert, convolve with the 3x3 (or kxk) weight and the FIR filter
                scaled by 4; output size 2H. Computed either as a strided transposed
                convolution followed by the FIR (``impl='transpose'``, fast) or as FIR
                up-sampling followed by a 'valid' convolution (``impl='ref'``); both
                are the same linear map because both operators are shift-invariant.
  * ``down=2``: FIR filter with padding, then a stride-2 'valid' convolution; size H/2.
  * otherwise a 'same' convolution (odd kernels).
``groups`` is passed through, which is how the fused modulated convolution batches
per-sample weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torch_utils.ops.upfirdn2d import upfirdn2d


def _transpose_weight_for_groups(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[G*O, I, kh, kw] (conv2d layout) -> [G*I, O, kh, kw] (conv_transpose2d layout)."""
    go, i, kh, kw = w.shape
    w = w.reshape(groups, go // groups, i, kh, kw).transpose(1, 2)
    return w.reshape(groups * i, go // groups, kh, kw)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, groups: int = 1, impl: str = "transpose") -> torch.Tensor:
    """Convolve ``x`` [N, G*I, H, W] with ``w`` [G*O, I, kh, kw], resampling by ``up`` or ``down``."""
    if up not in (1, 2) or down not in (1, 2) or (up > 1 and down > 1):
        raise ValueError(f"supported: up=2 or down=2 or neither, got up={up}, down={down}")
    if impl not in ("transpose", "ref"):
        raise ValueError(f"impl must be 'transpose' or 'ref', got {impl!r}")
    kh, kw = w.shape[2], w.shape[3]
    if kh != kw or kh % 2 != 1:
        raise ValueError(f"only square odd kernels are supported, got {kh}x{kw}")
    w = w.to(x.dtype)
    if (up > 1 or down > 1) and f is None:
        raise ValueError("resampling needs a FIR filter f")
    fw = 0 if f is None else f.shape[-1]

    if down > 1:
        p = (fw - down) + (kw - 1)
        x = upfirdn2d(x, f, padding=[(p + 1) // 2, p // 2, (p + 1) // 2, p // 2])
        return F.conv2d(x, w, stride=down, groups=groups)

    if up > 1:
        # Padding of the FIR that follows the transposed convolution (release semantics).
        p = (fw - up) - (kw - 1)
        pad0, pad1 = (p + 1) // 2 + up - 1, p // 2 + 1
        if impl == "ref":
            # Same map as zero-insertion + FIR + 'valid' convolution: the transposed
            # convolution's implicit (kw - 1) border moves into the FIR's padding, less the
            # trailing zero that zero-insertion already appends.
            p0, p1 = pad0 + kw - 1, pad1 + kw - 1 - (up - 1)
            x = upfirdn2d(x, f, up=up, padding=[p0, p1, p0, p1], gain=up * up)
            return F.conv2d(x, w, groups=groups)
        # A stride-2 transposed convolution with the spatially flipped kernel, then the FIR.
        wt = _transpose_weight_for_groups(w.flip([2, 3]), groups)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        return upfirdn2d(x, f, padding=[pad0, pad1, pad0, pad1], gain=up * up)

    return F.conv2d(x, w, padding=kw // 2, groups=groups)
