"""A standard (unfingerprinted) StyleGAN2, laid out like NVlabs' ``stylegan2-ada-pytorch`` networks.

The networks that researchers already hold as ``stylegan2-ada-pytorch`` pickles (config "stylegan2": skip
G, resnet D), rebuilt from this project's ops and layers: z -> mapping -> w (with truncation), a learned
4x4 const input, synthesis blocks ``b4 .. bR`` (``conv0`` up x2, ``conv1``, ``torgb``; skip image path) and
a resnet D with minibatch-stddev. ``interop.sg2ada_import`` fills them from a pickle; facts in
``docs/method.md`` (``../shared/spec/SG2ADA_PICKLES.md``).

Parameter and buffer names, shapes and stored values are those of the NVlabs modules (``mapping.fc0.weight``,
``synthesis.b4.conv1.affine.weight``, ``b32.conv1.resample_filter``, ...), so ``state_dict()`` of these
classes is a state dict the NVlabs classes accept, and back. Stored values are the unscaled equalized-lr
parameters: the runtime weight of a dense layer is ``weight * lr_multiplier / sqrt(fan_in)``, the style
affine's bias is stored with its +1 (it is initialised to 1), and FIR filters are the stored 4x4 buffers.

Conventions that differ from ``networks.stylegan2`` (the paper's TF-layout networks): ``channel_base`` is
NVlabs' (channels at resolution r: ``min(channel_base // r, channel_max)``, so 32768 / 512 is the paper's
16384 / 512); the weights of G's up-sampling convolutions (``conv0``) are stored spatially flipped with
respect to the convention of ``torch_utils.ops.conv2d_resample``, so they are flipped at run time (D's
down-sampling convolutions are used as stored: the reference outputs of ``sg2ada_A``, whose FIR filters
and weights are all random, fix both orientations).
G's arithmetic is in its parameters' dtype, float32 as imported (``.double()`` for exactness checks; NVlabs
computes the highest resolutions in fp16 when ``num_fp16_res`` > 0: the outputs then differ by fp16 rounding).
Class-conditional networks (``c_dim`` > 0) are not represented: the importer refuses them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from networks.layers import (
    DEFAULT_RESAMPLE_FILTER,
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
)
from networks.stylegan2 import NOISE_MODES, _log2_resolution
from torch_utils.ops import bias_act, conv2d_resample, modulated_conv2d, setup_filter, upsample2d


def channels_at_resolution(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at resolution ``res``: ``min(channel_base // res, channel_max)`` (NVlabs' schedule)."""
    return min(channel_base // res, channel_max)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _filter_buffer(module: nn.Module) -> None:
    module.register_buffer("resample_filter", setup_filter(DEFAULT_RESAMPLE_FILTER), persistent=True)


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


def _noise(like: torch.Tensor, const: torch.Tensor, noise_mode: str) -> torch.Tensor | None:
    """The per-pixel noise [N or 1, 1, H, W] for ``noise_mode`` (before ``noise_strength``), or None."""
    n, _, h, w = like.shape
    if noise_mode == "random":
        return torch.randn(n, 1, h, w, device=like.device, dtype=like.dtype)
    if noise_mode == "paired":    # the batch is two halves (a consistency pair): one draw for both
        half = torch.randn(n // 2, 1, h, w, device=like.device, dtype=like.dtype)
        return torch.cat([half, half])
    if noise_mode == "const":
        return const.to(like.dtype)
    return None


class MappingNetwork(nn.Module):
    """z -> w: z normalised by its RMS, ``num_layers`` lrelu dense layers (lr multiplier), broadcast to
    ``num_ws`` copies; truncation towards the tracked average ``w_avg``."""

    # While the mapping trains (train mode, gradients on), w_avg follows the batch mean of w with this decay (NVlabs').
    W_AVG_BETA = 0.995

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, hidden: int | None = None,
                 lr_multiplier: float = 0.01):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        widths = [z_dim] + [hidden or w_dim] * (num_layers - 1) + [w_dim]
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(widths[i], widths[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape [N, {self.z_dim}], got {tuple(z.shape)}")
        x = normalize_2nd_moment(z.to(self.fc0.weight.dtype))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.training and torch.is_grad_enabled() and self.fc0.weight.requires_grad:   # training the mapping:
            # track the average w for truncation (a frozen mapping keeps the w_avg it came with)
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.W_AVG_BETA))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], truncation_psi)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated, demodulated 3x3 convolution (optionally x2 up-sampling), noise, bias, lrelu, clamp.

    ``styles = affine(w)``; the stored affine bias includes the +1 of StyleGAN2's style offset. ``fp`` [N, in]
    (optional) multiplies the styles: a fingerprint's per-input-channel weight modulation
    (``networks.sg2_fingerprint``); None is the plain layer.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: float | None = None, kernel_size: int = 3):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.up, self.conv_clamp = up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels)
        self.affine.bias = nn.Parameter(torch.ones(in_channels))   # styles start at 1
        _filter_buffer(self)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused: bool = True,
                fp: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.weight.flip([2, 3]) if self.up > 1 else self.weight
        styles = self.affine(w) if fp is None else self.affine(w) * fp
        x = modulated_conv2d(x, weight, styles, demodulate=True, up=self.up,
                             resample_filter=self.resample_filter, fused=fused)
        noise = _noise(x, self.noise_const, noise_mode)
        if noise is not None:
            x = x + noise * self.noise_strength.to(x.dtype)
        return bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, res={self.resolution}, up={self.up}, "
                f"conv_clamp={self.conv_clamp}")


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation, bias, linear, clamp (``fp`` as in SynthesisLayer)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.conv_clamp = in_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels)
        self.affine.bias = nn.Parameter(torch.ones(in_channels))   # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True,
                fp: torch.Tensor | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        if fp is not None:
            styles = styles * fp
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: const (at 4x4) or ``conv0`` (up x2), ``conv1``, ``torgb``; image path up-sampled."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        _filter_buffer(self)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                fused: bool = True, fp: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``ws`` [N, num_conv + 1, w_dim]: one w per conv, then the torgb's; ``fp``: the fingerprint scales
        of the network's layers by name (``b8.conv0``, ...), or None."""
        def scale(name: str) -> torch.Tensor | None:
            return None if fp is None else fp[f"b{self.resolution}.{name}"]

        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[:, 0], noise_mode, fused, scale("conv1"))
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, fused, scale("conv0"))
            x = self.conv1(x, ws[:, 1], noise_mode, fused, scale("conv1"))
        y = self.torgb(x, ws[:, self.num_conv], fused, scale("torgb"))
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, C, R, R] (skip architecture; linear output, about [-1, 1])."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: float | None = None):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = _log2_resolution(img_resolution)
        self.block_resolutions = [2**k for k in range(2, log2 + 1)]
        in_ch = 0
        for res in self.block_resolutions:
            out_ch = channels_at_resolution(res, channel_base, channel_max)
            setattr(self, f"b{res}", SynthesisBlock(in_ch, out_ch, w_dim, res, img_channels, conv_clamp))
            in_ch = out_ch
        self.num_ws = 2 * log2 - 2

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def layers(self) -> list[tuple[str, SynthesisLayer | ToRGBLayer]]:
        """(name, layer) of every style-modulated layer, in forward order: ``b4.conv1``, ``b4.torgb``, ..."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, SynthesisLayer | ToRGBLayer)]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", fused: bool = True,
                fp: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Images for ``ws``; ``fp`` (optional): per-input-channel scales [N, in] of every layer of ``layers()``,
        by name, multiplying its styles (a fingerprint's weight modulation; ``networks.sg2_fingerprint``)."""
        _check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"expected ws of shape [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(self.b4.const.dtype)
        x = img = None
        idx = 0
        for block in self.blocks():
            x, img = block(x, img, ws[:, idx: idx + block.num_conv + 1], noise_mode, fused, fp)
            idx += block.num_conv
        return img


class SG2Generator(nn.Module):
    """G(z) = synthesis(mapping(z)): a plain StyleGAN2 generator (no fingerprint input)."""

    def __init__(self,
                 z_dim: int = 512,
                 w_dim: int = 512,
                 img_resolution: int = 256,
                 img_channels: int = 3,
                 mapping_layers: int = 8,
                 mapping_hidden: int | None = None,       # Width of the mapping's hidden layers (None: w_dim).
                 mapping_lr_multiplier: float = 0.01,
                 channel_base: int = 32768,               # NVlabs' convention (see the module docstring).
                 channel_max: int = 512,
                 conv_clamp: float | None = None):        # Clamp of every conv's output (NVlabs: 256 with fp16).
        super().__init__()
        self.init_kwargs = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                mapping_layers=mapping_layers, mapping_hidden=mapping_hidden,
                                mapping_lr_multiplier=mapping_lr_multiplier, channel_base=channel_base,
                                channel_max=channel_max, conv_clamp=conv_clamp)
        self.z_dim, self.w_dim, self.c_dim, self.n_bits = z_dim, w_dim, 0, 0
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, mapping_hidden,
                                      mapping_lr_multiplier)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random", fused: bool = True) -> torch.Tensor:
        """Images [N, C, R, R] for latents z [N, z_dim]; ``c`` is the (empty) label: None or [N, 0]."""
        if c is not None and (c.ndim != 2 or c.shape != (z.shape[0], 0)):
            raise ValueError(f"this generator is unconditional: c must be None or of shape [N, 0], "
                             f"got {tuple(c.shape)}")
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused=fused)

    def styles_input(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The ws [N, num_ws, w_dim] that the path-length regulariser differentiates the images by."""
        return self.mapping(z)

    def synthesize(self, z: torch.Tensor, c: torch.Tensor, ws: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """The images of ``ws`` (from ``styles_input``)."""
        return self.synthesis(ws, fused=fused)


class SG2Conv2dLayer(Conv2dLayer):
    """``networks.layers.Conv2dLayer`` with an output clamp (``conv_clamp``, None: none)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: int = 1, conv_clamp: float | None = None):
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, activation=activation, down=down)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, down=self.down)
        return bias_act(x, self.bias, act=self.activation, clamp=self.conv_clamp)


class DiscriminatorBlock(nn.Module):
    """One resolution of the resnet D: [``fromrgb``], ``conv0``, ``conv1`` (down x2), ``skip`` (down x2)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = SG2Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = SG2Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = SG2Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = SG2Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)
        _filter_buffer(self)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: minibatch-stddev, ``conv`` 3x3, ``fc`` on the flattened NCHW tensor, ``out``."""

    def __init__(self, in_channels: int, mbstd_group_size: int = 4, mbstd_num_channels: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        use_mbstd = mbstd_num_channels > 0
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if use_mbstd else None
        extra = mbstd_num_channels if use_mbstd else 0
        self.conv = SG2Conv2dLayer(in_channels + extra, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * 16, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class SG2Discriminator(nn.Module):
    """D(images [N, C, R, R]) -> realness scores [N, 1] (resnet architecture, unconditional)."""

    def __init__(self,
                 img_resolution: int = 256,
                 img_channels: int = 3,
                 channel_base: int = 32768,
                 channel_max: int = 512,
                 conv_clamp: float | None = None,
                 mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1):
        super().__init__()
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
                                channel_max=channel_max, conv_clamp=conv_clamp, mbstd_group_size=mbstd_group_size,
                                mbstd_num_channels=mbstd_num_channels)
        self.img_resolution, self.img_channels, self.c_dim = img_resolution, img_channels, 0
        log2 = _log2_resolution(img_resolution)
        self.block_resolutions = [2**k for k in range(log2, 2, -1)]

        def ch(res: int) -> int:
            return channels_at_resolution(res, channel_base, channel_max)

        for res in self.block_resolutions:
            in_ch = ch(res) if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, ch(res), ch(res // 2), img_channels, conv_clamp))
        self.b4 = DiscriminatorEpilogue(ch(4), mbstd_group_size, mbstd_num_channels, conv_clamp)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ValueError(f"expected images of shape [N, {self.img_channels}, {self.img_resolution}, "
                             f"{self.img_resolution}], got {tuple(img.shape)}")
        if c is not None and (c.ndim != 2 or c.shape != (img.shape[0], 0)):
            raise ValueError(f"this discriminator is unconditional: c must be None or [N, 0], got {tuple(c.shape)}")
        img = img.to(torch.float32)
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)
