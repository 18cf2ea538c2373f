"""Immunized training: differentiable perturbations of generated images before the decoder sees them.

The paper reports an "immunized" model (perturbations applied to generated images before F during
training) but the release ships no recipe; this module is the project's. ``FingerprintAugment`` takes
a list of perturbations, each with a probability and a strength range; for every image and every
perturbation in turn it draws whether to apply it (probability p) and a strength uniformly in the
range, so combinations arise whenever several fire. Everything is differentiable (JPEG through a
straight-through rounding, ``torch_utils/ops/jpeg.py``), and draws use torch's global generator, which
the training loops seed per step: resuming stays exact.

Perturbations (images in [0, 1] inside; G's images are mapped from [-1, 1] and back), each matching
an attack of the robustness suite (``metrics/image_attacks.py``) so that training and evaluation mean
the same thing:

==========  =====================================================================  =============
name        strength                                                               default range
==========  =====================================================================  =============
crop        fraction of the side kept (centre crop), resized back to the full      0.6 - 1.0
            resolution (bilinear)
resize      scale factor: down-sampled (bilinear, antialiased) and back up         0.5 - 1.0
blur        Gaussian sigma in pixels                                               0.0 - 1.0
noise       standard deviation of added Gaussian noise, in [0, 1] image units      0.0 - 0.15
brightness  factor on the pixel values (Pillow's ImageEnhance.Brightness)          0.7 - 1.3
contrast    factor around the mean grey level (ImageEnhance.Contrast)              0.7 - 1.3
saturation  factor around each pixel's grey level (ImageEnhance.Color)             0.7 - 1.3
jpeg        quality 1..100 (differentiable JPEG approximation)                     50 - 100
==========  =====================================================================  =============

Spec strings (``--augment-fp``): comma-separated ``NAME[:LO-HI][@P]``, e.g.
``crop:0.6-1@0.5,jpeg:50-100,noise``; a missing range takes the default above, a missing probability
``default_p`` (0.5). ``all`` stands for every perturbation with its defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from torch_utils.ops.jpeg import jpeg_approx

DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "crop": (0.6, 1.0),
    "resize": (0.5, 1.0),
    "blur": (0.0, 1.0),
    "noise": (0.0, 0.15),
    "brightness": (0.7, 1.3),
    "contrast": (0.7, 1.3),
    "saturation": (0.7, 1.3),
    "jpeg": (50.0, 100.0),
}
# Strengths allowed at all (a range outside is refused).
LIMITS: dict[str, tuple[float, float]] = {
    "crop": (0.05, 1.0), "resize": (0.05, 1.0), "blur": (0.0, 10.0), "noise": (0.0, 1.0),
    "brightness": (0.0, 5.0), "contrast": (0.0, 5.0), "saturation": (0.0, 5.0), "jpeg": (1.0, 100.0),
}
DEFAULT_P = 0.5


@dataclass(frozen=True)
class Perturbation:
    name: str
    lo: float
    hi: float
    p: float

    def __post_init__(self) -> None:
        if self.name not in DEFAULT_RANGES:
            raise ValueError(f"unknown perturbation {self.name!r}; choose from {', '.join(DEFAULT_RANGES)}")
        lo_lim, hi_lim = LIMITS[self.name]
        if not (lo_lim <= self.lo <= self.hi <= hi_lim):
            raise ValueError(f"{self.name}: range {self.lo}-{self.hi} must satisfy {lo_lim} <= lo <= hi <= {hi_lim}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"{self.name}: probability {self.p} is not in [0, 1]")

    def spec(self) -> str:
        return f"{self.name}:{self.lo:g}-{self.hi:g}@{self.p:g}"


def parse_spec(spec: str, default_p: float = DEFAULT_P) -> list[Perturbation]:
    """``'crop:0.6-1@0.5,jpeg,noise:0-0.1'`` -> perturbations (see the module docstring); ValueError if malformed."""
    out: list[Perturbation] = []
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise ValueError("empty perturbation spec")
    for item in items:
        if item == "all":
            out.extend(Perturbation(n, *DEFAULT_RANGES[n], default_p) for n in DEFAULT_RANGES)
            continue
        body, _, p_text = item.partition("@")
        name, _, range_text = body.partition(":")
        try:
            p = float(p_text) if p_text else default_p
            if range_text:
                lo_text, sep, hi_text = range_text.partition("-")
                if not sep:
                    raise ValueError
                lo, hi = float(lo_text), float(hi_text)
            else:
                lo, hi = DEFAULT_RANGES.get(name, (0.0, 0.0))
        except ValueError:
            raise ValueError(f"cannot read perturbation {item!r}: expected NAME[:LO-HI][@P], "
                             "e.g. crop:0.6-1@0.5") from None
        out.append(Perturbation(name, lo, hi, p))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ValueError(f"a perturbation is listed twice in {spec!r}")
    return out


def canonical_spec(spec: str) -> str:
    """The spec with every range and probability spelled out (what run options store); ValueError if malformed."""
    return ",".join(p.spec() for p in parse_spec(spec))


def _grey(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601 luma, as Pillow's convert('L').
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def centre_crop_resize(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Centre crop keeping ``keep`` [N] of the side, bilinearly resized back to the full size."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = keep
    theta[:, 1, 1] = keep
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_down_up(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Down-sample each image by ``scale`` (bilinear, antialiased), then back to its size."""
    h, w = x.shape[2:]
    out = []
    for i in range(x.shape[0]):
        size = (max(1, round(h * float(scale[i]))), max(1, round(w * float(scale[i]))))
        xi = x[i:i + 1]
        if size != (h, w):
            xi = F.interpolate(xi, size=size, mode="bilinear", antialias=True, align_corners=False)
            xi = F.interpolate(xi, size=(h, w), mode="bilinear", align_corners=False)
        out.append(xi)
    return torch.cat(out)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur with standard deviations ``sigma`` [N] (pixels), reflect padding."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    radius = min(radius, (min(h, w) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)                                     # [N, K]
    k = k[:, None].repeat(1, c, 1).reshape(n * c, 1, -1)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, :, None, :], groups=n * c)
    y = F.conv2d(y, k[:, :, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def _apply(name: str, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    col = s[:, None, None, None].to(x.dtype)
    if name == "crop":
        return centre_crop_resize(x, s.to(x.dtype))
    if name == "resize":
        return resize_down_up(x, s)
    if name == "blur":
        return gaussian_blur(x, s)
    if name == "noise":
        return x + torch.randn_like(x) * col
    if name == "brightness":
        return x * col
    if name == "contrast":
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        return mean + (x - mean) * col
    if name == "saturation":
        g = _grey(x)
        return g + (x - g) * col
    if name == "jpeg":
        return jpeg_approx(x, s)
    raise ValueError(f"unknown perturbation {name!r}")


class FingerprintAugment(nn.Module):
    """Applies the listed perturbations (each per image with its probability) to images in [-1, 1]."""

    def __init__(self, perturbations: list[Perturbation]):
        super().__init__()
        self.perturbations = list(perturbations)

    @classmethod
    def from_spec(cls, spec: str) -> FingerprintAugment:
        return cls(parse_spec(spec))

    def spec(self) -> str:
        return ",".join(p.spec() for p in self.perturbations)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = (img + 1) / 2
        n = x.shape[0]
        for p in self.perturbations:
            fire = torch.rand(n, device=x.device) < p.p
            strength = p.lo + (p.hi - p.lo) * torch.rand(n, device=x.device)
            idx = fire.nonzero().flatten()
            if idx.numel() == 0:
                continue
            # Some perturbations compute in float32 (JPEG's transforms): back to the batch's dtype under autocast.
            x = x.index_put((idx,), _apply(p.name, x[idx], strength[idx]).to(x.dtype))
        return x * 2 - 1
