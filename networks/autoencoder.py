"""The fingerprint autoencoder of artificial fingerprinting (docs/method.md#artificial-fingerprinting).

``FingerprintEncoder(images, bits) -> images``: the fingerprint is embedded (dense -> 3x16x16 ->
nearest up-sampling to the image size), concatenated with the image and passed through a U-Net
whose output is the whole fingerprinted image (sigmoid), or, with ``residual=True``, the image
plus a bounded residual (an option measured in docs/RESULTS.md), or, with ``antithetic=True``, the image
plus half the difference of the U-Net's outputs for the bits and their complement: only the part of the
change that flips with the bits, on the untouched image (what a decoder reading a fine-tuned generator's
users sees; docs/results/sg2_finetune.md). ``up_conv`` and ``input_concat``
choose between this project's U-Net layout (the defaults) and the artificial-fingerprinting release's
(``RELEASE_ENCODER``), whose pretrained encoders ``legacy.py`` converts (interop/art_import.py).
``AutoencoderDecoder(images) -> logits [N, bits]``: strided 3x3 ReLU convs down to R/32, a 512-unit
dense layer and the bit logits; bits = logits > 0.
``DecoderWithLatent``: the decoder as the fingerprinted StyleGAN2's F (it adds the latent
reconstruction head F needs), so one decoder serves both stages.

Every network takes and returns images in [-1, 1] like the rest of the project; the release's
[0, 1] range is used inside. Plain PyTorch layers with their default initialisation (no
equalized learning rate): the early measurements (docs/method.md#learnability) found this decoder family
learns bits fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_resolution(resolution: int, minimum: int) -> None:
    if resolution < minimum or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= {minimum}, got {resolution}")


def _check_images(img: torch.Tensor, channels: int, resolution: int) -> None:
    if img.ndim != 4 or img.shape[1] != channels or img.shape[2] != resolution or img.shape[3] != resolution:
        raise ValueError(f"expected images of shape [N, {channels}, {resolution}, {resolution}], "
                         f"got {tuple(img.shape)}")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def _conv2x2(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 2)


INIT_SCHEMES = ("pytorch", "kaiming")


def init_weights(module: nn.Module, scheme: str) -> nn.Module:
    """Initialise every conv and dense layer of ``module`` in place; returns it.

    ``pytorch``: PyTorch's defaults (the release's), which shrink the signal by ~0.4 per ReLU layer, so
    at initialisation the decoder's logits barely depend on the image and the encoder's output barely
    on the bits. ``kaiming``: He-normal weights for ReLU (fan-in) and zero biases, which keep the signal's
    scale through the depth. Measured in docs/RESULTS.md.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init {scheme!r}; expected one of {INIT_SCHEMES}")
    if scheme == "kaiming":
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return module


UP_CONVS = ("3x3", "2x2")
INPUT_CONCATS = ("final", "last_fuse")
# The artificial-fingerprinting release's encoder layout (docs: interop/art_import.py).
RELEASE_ENCODER = dict(up_conv="2x2", input_concat="last_fuse")


class FingerprintEncoder(nn.Module):
    """Fingerprinted image = encoder(image, bits); U-Net with skip concatenations, no normalisation.

    Layout options (the defaults are this project's; ``RELEASE_ENCODER`` holds the release's):
      * ``up_conv``: each up-sampling step is nearest x2 then a 3x3 conv with padding 1 (``"3x3"``), or
        nearest x2, zero padding of one pixel on the right and bottom, and a 2x2 conv without padding (``"2x2"``).
      * ``input_concat``: the network's input (fingerprint map, image) is concatenated after the last skip
        fusion, then two 3x3 convs (``"final"``), or into the last skip fusion itself as [skip, up-sampled,
        input], then one 3x3 conv (``"last_fuse"``).
    """

    def __init__(self, n_bits: int = 100, img_resolution: int = 128, img_channels: int = 3,
                 residual: bool = False, up_conv: str = "3x3", input_concat: str = "final",
                 antithetic: bool = False):
        super().__init__()
        _check_resolution(img_resolution, 16)
        if residual and antithetic:
            raise ValueError("residual and antithetic are two different outputs: choose one")
        if n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {n_bits}")
        if up_conv not in UP_CONVS:
            raise ValueError(f"up_conv must be one of {UP_CONVS}, got {up_conv!r}")
        if input_concat not in INPUT_CONCATS:
            raise ValueError(f"input_concat must be one of {INPUT_CONCATS}, got {input_concat!r}")
        self.init_kwargs = dict(n_bits=n_bits, img_resolution=img_resolution, img_channels=img_channels,
                                residual=residual, up_conv=up_conv, input_concat=input_concat)
        if antithetic:          # only when set, so files written before the option keep their exact kwargs
            self.init_kwargs["antithetic"] = True
        self.antithetic = antithetic
        self.n_bits = n_bits
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.residual = residual
        self.up_conv = up_conv
        self.input_concat = input_concat
        self.fingerprint_dense = nn.Linear(n_bits, img_channels * 16 * 16)
        ch = [32, 32, 64, 128, 256]
        self.down = nn.ModuleList([_conv(2 * img_channels, ch[0])] +
                                  [_conv(ch[i - 1], ch[i], stride=2) for i in range(1, len(ch))])
        # Up path: up-sample, conv to the skip's width, concatenate the skip, conv.
        proj = _conv if up_conv == "3x3" else _conv2x2
        self.up_proj = nn.ModuleList([proj(ch[i], ch[i - 1]) for i in range(len(ch) - 1, 0, -1)])
        into_last = 2 * img_channels if input_concat == "last_fuse" else 0
        self.up_fuse = nn.ModuleList([_conv(2 * ch[i - 1] + (into_last if i == 1 else 0), ch[i - 1])
                                      for i in range(len(ch) - 1, 0, -1)])
        if input_concat == "final":
            self.final = nn.Sequential(_conv(ch[0] + 2 * img_channels, ch[0]), nn.ReLU(), _conv(ch[0], ch[0]),
                                       nn.ReLU())
        else:
            self.final = nn.Sequential(_conv(ch[0], ch[0]), nn.ReLU())
        self.to_rgb = nn.Conv2d(ch[0], img_channels, 1)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.up_conv == "3x3" else F.pad(x, (0, 1, 0, 1))

    def fingerprint_map(self, bits: torch.Tensor) -> torch.Tensor:
        """bits [N, n] in {0, 1} -> [N, C, R, R] (dense, ReLU, nearest up-sampling)."""
        if bits.ndim != 2 or bits.shape[1] != self.n_bits:
            raise ValueError(f"expected fingerprints of shape [N, {self.n_bits}], got {tuple(bits.shape)}")
        x = F.relu(self.fingerprint_dense(bits.to(self.fingerprint_dense.weight.dtype)))
        x = x.view(-1, self.img_channels, 16, 16)
        return F.interpolate(x, scale_factor=self.img_resolution // 16, mode="nearest")

    def forward(self, img: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        _check_images(img, self.img_channels, self.img_resolution)
        if bits.shape[0] != img.shape[0]:
            raise ValueError(f"{img.shape[0]} images but {bits.shape[0]} fingerprints")
        x01 = (img + 1) / 2
        if self.antithetic:     # one pass over [bits; 1 - bits]: x + (U(x, c) - U(x, 1 - c)) / 2
            own, complement = torch.sigmoid(self._unet(torch.cat([x01, x01]), torch.cat([bits, 1 - bits]))).chunk(2)
            out01 = (x01 + (own - complement) / 2).clamp(0, 1)
        elif self.residual:
            out01 = (x01 + torch.tanh(self._unet(x01, bits)) / 2).clamp(0, 1)
        else:
            out01 = torch.sigmoid(self._unet(x01, bits))
        return out01 * 2 - 1

    def _unet(self, x01: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """The U-Net's output before its last activation, for images in [0, 1]."""
        inputs = torch.cat([self.fingerprint_map(bits), x01], dim=1)
        skips, x = [], inputs
        for conv in self.down:
            x = F.relu(conv(x))
            skips.append(x)
        last = len(self.up_fuse) - 1
        for i, (proj, fuse, skip) in enumerate(zip(self.up_proj, self.up_fuse, reversed(skips[:-1]))):
            x = F.relu(proj(self._upsample(x)))
            joined = [skip, x, inputs] if i == last and self.input_concat == "last_fuse" else [skip, x]
            x = F.relu(fuse(torch.cat(joined, dim=1)))
        if self.input_concat == "final":
            x = torch.cat([x, inputs], dim=1)
        return self.to_rgb(self.final(x))


class AutoencoderDecoder(nn.Module):
    """logits [N, bits] = decoder(images); strided ReLU convs (stride 32 in all), dense 512, dense n."""

    def __init__(self, n_bits: int = 100, img_resolution: int = 128, img_channels: int = 3, hidden: int = 512):
        super().__init__()
        _check_resolution(img_resolution, 32)
        if n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {n_bits}")
        self.init_kwargs = dict(n_bits=n_bits, img_resolution=img_resolution, img_channels=img_channels, hidden=hidden)
        self.n_bits = n_bits
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        layers, cin = [], img_channels
        for cout, stride in [(32, 2), (32, 1), (64, 2), (64, 1), (64, 2), (128, 2), (128, 2)]:
            layers += [_conv(cin, cout, stride), nn.ReLU()]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.hidden = nn.Linear(cin * (img_resolution // 32) ** 2, hidden)
        self.out = nn.Linear(hidden, n_bits)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """The 512-d hidden features the bit logits are read from."""
        _check_images(img, self.img_channels, self.img_resolution)
        x = self.convs((img.to(self.hidden.weight.dtype) + 1) / 2)
        return F.relu(self.hidden(x.flatten(1)))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(img))


class DecoderWithLatent(nn.Module):
    """The autoencoder's decoder as the fingerprinted StyleGAN2's F: img -> (z_hat, bit logits).

    ``decoder`` is an ``AutoencoderDecoder``; the latent-reconstruction head reads its hidden features.
    """

    def __init__(self, z_dim: int = 512, n_bits: int = 128, img_resolution: int = 128, img_channels: int = 3,
                 hidden: int = 512):
        super().__init__()
        self.init_kwargs = dict(z_dim=z_dim, n_bits=n_bits, img_resolution=img_resolution, img_channels=img_channels,
                                hidden=hidden)
        self.decoder = AutoencoderDecoder(n_bits, img_resolution, img_channels, hidden)
        self.z_head = nn.Linear(hidden, z_dim)
        self.z_dim = z_dim
        self.n_bits = n_bits
        self.img_resolution = img_resolution

    @classmethod
    def from_decoder(cls, decoder: AutoencoderDecoder, z_dim: int) -> DecoderWithLatent:
        """F starting from a trained decoder (copied; the latent head is fresh)."""
        kw = decoder.init_kwargs
        f = cls(z_dim=z_dim, n_bits=kw["n_bits"], img_resolution=kw["img_resolution"],
                img_channels=kw["img_channels"], hidden=kw["hidden"])
        f.decoder.load_state_dict(decoder.state_dict())
        return f.to(next(decoder.parameters()).device)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.decoder.features(img)
        return self.z_head(h), self.decoder.out(h)
