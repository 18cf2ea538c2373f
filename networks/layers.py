"""Equalized-learning-rate building blocks shared by G, D and the decoder F.

Parameters are stored *unscaled*, as in the StyleGAN2 release (and its TF pickles): the
runtime weight is ``stored * lr_multiplier / sqrt(fan_in)`` and the runtime bias is
``stored * lr_multiplier``; weights are initialised N(0, 1 / lr_multiplier). A layer built
with ``equalized=False`` stores runtime values directly (gain 1): baked per-user
generators use it, since their weights are final numbers, not trainable parameters with
an lr schedule.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from torch_utils.ops import bias_act, conv2d_resample, modulated_conv2d, setup_filter
from torch_utils.ops.modulated_conv2d import modulate_weight

DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)


class FullyConnectedLayer(nn.Module):
    """Dense layer ``act(x @ W^T + b)`` with equalized learning rate."""

    def __init__(self,
                 in_features: int,              # Input width.
                 out_features: int,             # Output width.
                 bias: bool = True,             # Learn a bias?
                 activation: str = "linear",    # bias_act activation.
                 lr_multiplier: float = 1.0,    # Learning-rate multiplier of weight and bias.
                 equalized: bool = True):       # False: stored values are the runtime values.
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(max(in_features, 1)) if equalized else 1.0
        self.bias_gain = lr_multiplier if equalized else 1.0

    def runtime_params(self) -> dict[str, torch.Tensor]:
        """Weight and bias as used in the forward pass (for baking)."""
        out = {"weight": self.weight * self.weight_gain}
        if self.bias is not None:
            out["bias"] = self.bias * self.bias_gain
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        x = x.matmul(w.t())
        b = None if self.bias is None else self.bias * self.bias_gain
        return bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Plain (unmodulated) equalized-lr convolution with optional x2 up/down-sampling."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 bias: bool = True,
                 activation: str = "linear",
                 up: int = 1,
                 down: int = 1,
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER,
                 equalized: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=True)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2) if equalized else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down)
        return bias_act(x, self.bias, act=self.activation)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, k={self.weight.shape[-1]}, "
                f"up={self.up}, down={self.down}, act={self.activation}")


class SynthesisLayer(nn.Module):
    """A generator convolution: (modulated) conv, optional x2 up-sampling, noise, bias, act.

    With ``modulated=True`` the style ``s = affine(w) + 1`` scales the input channels of the
    weight (and, with ``demodulate``, each output filter is renormalised); otherwise it is a
    plain convolution and ``w`` is ignored. ToRGB layers are 1x1, not demodulated, no noise,
    linear output.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 w_dim: int,                    # Width of the style input w.
                 resolution: int,               # Output resolution (size of the noise buffer).
                 kernel_size: int = 3,
                 up: int = 1,                   # 2: up-sample before convolving.
                 modulated: bool = True,        # Style-modulated, or a plain convolution?
                 demodulate: bool = True,       # Renormalise modulated filters (3x3 convs).
                 use_noise: bool = True,        # Per-pixel noise input with a learned strength.
                 activation: str = "lrelu",
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER,
                 equalized: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.modulated = modulated
        self.demodulate = demodulate and modulated
        self.use_noise = use_noise
        self.activation = activation
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=True)
        self.affine = FullyConnectedLayer(w_dim, in_channels, equalized=equalized) if modulated else None
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2) if equalized else 1.0
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """s = affine(w) + 1, [N, in_channels] (the release adds 1 to a zero-initialised bias)."""
        return self.affine(w) + 1

    def runtime_params(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """The layer's parameters with the style of ``w`` [1, w_dim] folded into the weight."""
        # The same arithmetic as the fused forward pass, so that a baked generator reproduces
        # G(z, c) bit for bit on a single sample.
        weight = self.weight * self.weight_gain
        if self.modulated:
            weight = modulate_weight(weight, self.styles(w), self.demodulate)[0]
        out = {"weight": weight, "bias": self.bias.clone(), "resample_filter": self.resample_filter.clone()}
        if self.use_noise:
            out["noise_const"] = self.noise_const.clone()
            out["noise_strength"] = self.noise_strength.clone()
        return out

    def forward(self, x: torch.Tensor, w: torch.Tensor | None, noise_mode: str = "random",
                fused: bool = True) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        if self.modulated:
            x = modulated_conv2d(x, weight, self.styles(w), demodulate=self.demodulate, up=self.up,
                                 resample_filter=self.resample_filter, fused=fused)
        else:
            x = conv2d_resample(x, weight, f=self.resample_filter, up=self.up)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            elif noise_mode == "paired":    # the batch is two halves (a consistency pair): one draw for both
                half = torch.randn(x.shape[0] // 2, 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
                noise = torch.cat([half, half])
            elif noise_mode == "const":
                noise = self.noise_const.to(x.dtype)
            else:
                raise ValueError(f"noise_mode must be 'random', 'paired', 'const' or 'none', got {noise_mode!r}")
            x = x + noise * self.noise_strength.to(x.dtype)
        return bias_act(x, self.bias, act=self.activation)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, k={self.weight.shape[-1]}, res={self.resolution}, "
                f"up={self.up}, modulated={self.modulated}, demodulate={self.demodulate}")


class MinibatchStdLayer(nn.Module):
    """Append the across-group standard deviation of features as extra channels.

    Groups are strided, as in the release: with group size G and batch N, sample n belongs
    to group ``n mod (N / G)``.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        f = self.num_channels
        if n % g != 0:
            raise ValueError(f"minibatch-stddev: batch {n} is not divisible by the group size {g}")
        y = x.reshape(g, n // g, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])                  # [M, F]
        y = y.reshape(n // g, f, 1, 1).repeat(g, 1, h, w)           # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


def channels_at(stage: int, channel_base: int, channel_max: int) -> int:
    """nf(stage) = clip(channel_base / 2^stage, 1, channel_max), the release's fmap schedule."""
    return int(np.clip(int(channel_base / 2.0**stage), 1, channel_max))
