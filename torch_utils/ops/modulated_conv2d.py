"""Modulated (and optionally demodulated) convolution, the core of StyleGAN2.

For per-sample styles ``s`` [N, I] and a shared weight ``W`` [O, I, k, k]:
    W'_n = W * s_n              (scale input channels)
    W''_n = W'_n * rsqrt(sum_{i,kh,kw} W'_n^2 + eps)   (demodulate, per output channel)
    y_n = conv(x_n, W''_n)      (optionally with x2 FIR up-sampling)
Two mathematically equal paths:
  * fused: build the N per-sample weights and run one grouped convolution;
  * non-fused: scale the activations by ``s``, convolve with the shared weight, then
    scale the outputs by the demodulation coefficients (less memory for large N).
"""

from __future__ import annotations

import torch

from torch_utils.ops.conv2d_resample import conv2d_resample

DEMOD_EPS = 1e-8


def modulate_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True) -> torch.Tensor:
    """Per-sample weights [N, O, I, k, k] from ``weight`` [O, I, k, k] and ``styles`` [N, I]."""
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()[:, :, None, None, None]
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, resample_filter: torch.Tensor | None = None, fused: bool = True,
                     impl: str = "transpose") -> torch.Tensor:
    """Modulated convolution of ``x`` [N, I, H, W] -> [N, O, H*up, W*up]."""
    n, i, h, w_ = x.shape
    o, wi, kh, kw = weight.shape
    if wi != i or styles.shape != (n, i):
        raise ValueError(f"shape mismatch: x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
                         f"styles {tuple(styles.shape)}")
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)

    if fused:
        wn = modulate_weight(weight, styles, demodulate)
        y = conv2d_resample(x.reshape(1, n * i, h, w_), wn.reshape(n * o, i, kh, kw),
                            f=resample_filter, up=up, groups=n, impl=impl)
        return y.reshape(n, o, y.shape[2], y.shape[3])

    y = conv2d_resample(x * styles[:, :, None, None], weight, f=resample_filter, up=up, impl=impl)
    if demodulate:
        d = ((weight[None] * styles[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()
        y = y * d[:, :, None, None]
    return y

