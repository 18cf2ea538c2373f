"""The robustness suite: image attacks on generated images and model attacks on baked generators.

Two metrics (``metrics.metric_registry``), each returning ``rows`` (one dict per attack and strength) and
summary numbers; ``fig/plot_robustness.py`` draws them.

**Images.** An attack is ``attack(images, strength, rng) -> images``: ``images`` [N, C, H, W] (C = 1 or 3),
uint8 (0..255) or float in [0, 1]; ``rng`` a ``numpy.random.Generator`` (or an int seed; None is seed 0);
the result is float in [0, 1] (float32 for uint8 input, else the input's dtype), of the input's size, on
its device. Every image the decoder sees therefore has the decoder's resolution: attacks that cut or
shrink the image resize it back. Resizing uses Pillow, per channel on 32-bit float images (mode ``F``, no
8-bit rounding): Lanczos when shrinking, bicubic when enlarging, which is exactly what ``detect_attribute.py
detect --resize`` does to an image of another size, so the numbers are what the detector would report.
*Float-domain* attacks (crop, blur, noise, rotation, resize, combined without its JPEG step) work on
floats and return the input unchanged (bit for bit) at their identity strength. *Pillow-domain* attacks
(JPEG, the ImageEnhance factors, text) round to 8 bits first, as saving a file does; their identity
strengths (factor 1, text 0) are short-cut to exact no-ops too. Values are clipped to [0, 1].

Fig. 5 of the scalable-fingerprinting paper (strengths are for 128x128 and scale with the resolution R,
so every resolution sees the same fractions):
  * ``crop`` s: centre crop keeping round(R s / 128) pixels of each side, s = 128 ... 8;
  * ``blur`` k: Gaussian blur with kernel size k at 128x128, sigma = 0.3 ((k - 1) / 2 - 1) + 0.8 (the usual
    rule for a kernel given by its size); at R the radius is max(1, round((k - 1) / 2 * R / 128)) and sigma
    is scaled by R / 128; k = 0 (and 1) is the identity; replicate padding at the borders;
  * ``jpeg`` q: a real Pillow JPEG encode and decode at quality q (Pillow's defaults otherwise: standard
    tables, 4:2:0 chroma subsampling), q = 100 ... 10;
  * ``noise`` std: additive Gaussian noise of that standard deviation on images in [0, 1] (std 0.1 here is
    0.2 on the networks' [-1, 1] scale), clipped to [0, 1], std = 0 ... 0.5;
  * ``combined`` level 0 ... 9: level k applies, in this order, crop s = 128 - 8k, blur k' = 2k + 1, JPEG
    quality 100 - 10k and noise std 0.02k (``COMBINED_LEVELS``); level 0 is the identity (nothing applied).

The Stable Signature list (its strengths are fractions, the same at every resolution):
  * ``none``; ``crop_area`` a: centre crop keeping the fraction a of the *area* (side sqrt(a)), a = 0.5, 0.1;
  * ``rotate`` degrees (counter-clockwise about the centre, bilinear, black corners, same size): 25, 90;
  * ``jpeg`` 80 and 50 (rows of the ``jpeg`` attack above);
  * ``brightness``, ``contrast``, ``saturation`` (``ImageEnhance.Color``), ``sharpness``: Pillow
    ImageEnhance factors 1.5 and 2;
  * ``resize`` f: shrink each side to round(f R) (Lanczos) and enlarge back (bicubic), f = 0.5, 0.1;
  * ``overlay_text`` h: 8 random letters and digits in white, Pillow's default font at a size of round(h R)
    pixels, at a random position inside the image, h = 0.125;
  * ``comb``: crop keeping 50% of the area, then brightness 1.5, then JPEG 80 (Stable Signature's
    combination, as shared/spec/EVALUATION.md gives it; strength 1 applies it, 0 is the identity).

**Models.** A model attack is ``attack(generator, strength, rng) -> a new generator`` (the input is not
changed); it acts on the *weight tensors*: every parameter with at least two dimensions (convolution and
dense weights, including ToRGB and the latent layer). Biases, noise strengths and buffers (the stored noise,
FIR filters) are kept.
  * ``weight_noise`` s: W + s std(W) N(0, 1) per tensor (std over the tensor's elements), s = 0 ... 0.5;
  * ``quantize`` b: uniform quantisation per tensor to 2^b levels from its minimum to its maximum (both
    kept exactly), b = 8 ... 2; b = 0 means unquantised (the identity);
  * ``prune`` p: per tensor, the floor(p numel) entries of smallest magnitude set to 0 (ties broken by
    position), p = 0 ... 0.9. Per tensor, not global: a global threshold would empty the small layers;
  * ``collusion`` t: the element-wise mixture A + t (B - A) of two users' baked weights (``torch.lerp``;
    every parameter and buffer), t = 0 (A), 0.25, 0.5 (the average), 0.75, 1 (B). Users are paired in issue
    order (1st with 2nd, 3rd with 4th, ...).

**Protocol.** With a registry (``MetricOptions.registry``): the first ``users`` registered users in issue
order; each user's generator makes ``images_per_user`` images from seeds ``first_seed`` ... (z drawn by
``RandomState(seed)`` as ``generate.py images`` does, const noise, batched: equal to its PNGs up to float
rounding), rounded to 8 bits as the PNG files are (``quantize``; set False to attack the float images). A
user's generator is ``G.bake(fingerprint)`` of the measured snapshot (``generators='bake'``) or the baked
file the registry records, checked by SHA-256 (``'files'``); ``'auto'`` bakes when G takes a fingerprint.
Per attack and strength, over all images: ``bit_acc`` (mean over images of the fraction of the user's
registered bits decoded right; ``bit_acc_min`` the worst image), ``tpr`` (the fraction decided fingerprinted
at ``fpr``, default 1e-6: attributed or fingerprinted-unknown; at 1e-6 the unknown test would need two
million held-out calibration images to take part, so this is in practice the attributed fraction),
``attribution_acc`` (attributed to the right user) and ``misattributed`` (attributed to another user), with
``attribution.detection.decide`` against the whole registry (Bonferroni over its size). Decisions use the
decoder's calibration when there is one: ``MetricOptions.calibration`` (a path, a ``Calibration``, or
``'none'``), else ``<extra['decoder_file']>.calibration.json`` when present, else fair coins; ``null_model``
in the output says which. Collusion rows give instead ``bit_acc_a`` / ``bit_acc_b`` (against each user's
fingerprint) and the fractions attributed to A, to B, to someone else and to nobody (``frac_a``,
``frac_b``, ``frac_other``, ``frac_nobody``, summing to 1).
Without a registry, images come from G with a fresh random fingerprint per seed (generate.py's draw), and
model attacks use ``users`` fingerprints drawn at random: only bit accuracy is meaningful then (detection
needs the registry it searches), so ``tpr``, ``attribution_acc`` and the collusion fractions are None.

``MetricOptions.extra`` (all optional): ``users`` (8 for images, 4 for models), ``images_per_user`` (16 /
8), ``num_images`` (128; without a registry), ``first_seed`` (0), ``attacks`` (names; default all of the
table), ``strengths`` ({name: [...]}, replacing the table's), ``fpr`` (1e-6), ``batch`` (32, decoding and
generation), ``quantize`` (True), ``generators`` ('auto'), ``decoder_file`` and ``decoder_sha256`` (to find
and check the calibration). Random draws (noise, text, weight noise) come from ``MetricOptions.seed``, the
attack, the strength and the image chunk (or user), so a row does not depend on which other rows run or on
``batch``.
"""

from __future__ import annotations

import copy
import io
import math
import string
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as tF
from PIL import Image, ImageDraw, ImageEnhance, ImageFont
from torch import nn

from attribution.detection import Calibration, calibration_path, decide, load_calibration
from dnnlib.util import sha256_file
from metrics.metric_registry import MetricOptions, register_metric

REFERENCE_RESOLUTION = 128          # Fig. 5's strengths are given for 128x128 images.
DOWN_FILTER = Image.Resampling.LANCZOS
UP_FILTER = Image.Resampling.BICUBIC
ATTACK_CHUNK = 64                   # Images attacked at once (and the unit of the random draws).
TEXT_ALPHABET = string.ascii_letters + string.digits

ImageLike = torch.Tensor | np.ndarray
Rng = np.random.Generator | int | None


# -- image helpers ----------------------------------------------------------------------------------

def to_unit_float(images: ImageLike) -> torch.Tensor:
    """[N, C, H, W] uint8 (0..255) or float in [0, 1] -> float in [0, 1] (uint8: float32; floats: unchanged)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255
    if not x.is_floating_point():
        raise TypeError(f"images must be uint8 or float, got {x.dtype}")
    return x


def _rng(rng: Rng) -> np.random.Generator:
    """A Generator as given, or one seeded with the int (None: seed 0, so that every call is reproducible)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)


def _to_pil_uint8(x: torch.Tensor) -> list[Image.Image]:
    arr = (x.detach().cpu().double() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a if a.shape[2] == 3 else a[..., 0]) for a in arr]


def _from_pil_uint8(imgs: list[Image.Image], like: torch.Tensor) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in imgs])
    if arr.ndim == 3:
        arr = arr[..., None]
    return (torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255).to(dtype=like.dtype, device=like.device)


def _per_image_uint8(images: ImageLike, fn: Callable[[Image.Image, int], Image.Image]) -> torch.Tensor:
    """Apply ``fn(PIL image, index)`` to each image rounded to 8 bits (the Pillow domain)."""
    x = to_unit_float(images)
    return _from_pil_uint8([fn(im, i) for i, im in enumerate(_to_pil_uint8(x))], x)


def _per_channel_float(x: torch.Tensor, fn: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    """Apply ``fn`` to every channel as a 32-bit float Pillow image (mode F); result clipped to [0, 1]."""
    arr = x.detach().cpu().numpy().astype(np.float32)
    out = np.stack([np.stack([np.asarray(fn(Image.fromarray(ch)), dtype=np.float32) for ch in img]) for img in arr])
    return torch.from_numpy(out).to(dtype=x.dtype, device=x.device).clamp(0, 1)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float images to ``size`` = (H, W): Lanczos when shrinking, bicubic when enlarging."""
    h, w = size
    if (x.shape[2], x.shape[3]) == (h, w):
        return x
    filt = DOWN_FILTER if h * w < x.shape[2] * x.shape[3] else UP_FILTER
    return _per_channel_float(x, lambda im: im.resize((w, h), resample=filt))


def _center_crop_back(x: torch.Tensor, ch: int, cw: int) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    if (ch, cw) == (h, w):
        return x.clone()
    top, left = (h - ch) // 2, (w - cw) // 2
    return _resize(x[:, :, top:top + ch, left:left + cw], (h, w))


def _check(name: str, strength: float, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name}: strength must be {what}, got {strength!r}")


# -- image attacks ----------------------------------------------------------------------------------

def identity(images: ImageLike, strength: float = 0, rng: Rng = None) -> torch.Tensor:
    """No attack (the clean row)."""
    return to_unit_float(images).clone()


def center_crop(images: ImageLike, side: float, rng: Rng = None) -> torch.Tensor:
    """Keep round(R side / 128) pixels of each side around the centre, resized back (Fig. 5's crop)."""
    _check("crop", side, 0 < side <= REFERENCE_RESOLUTION, f"in (0, {REFERENCE_RESOLUTION}]")
    x = to_unit_float(images)
    h, w = x.shape[2], x.shape[3]
    frac = side / REFERENCE_RESOLUTION
    return _center_crop_back(x, max(1, round(h * frac)), max(1, round(w * frac)))


def crop_area(images: ImageLike, area: float, rng: Rng = None) -> torch.Tensor:
    """Keep the fraction ``area`` of the area (each side scaled by sqrt(area)) around the centre, resized back."""
    _check("crop_area", area, 0 < area <= 1, "in (0, 1]")
    x = to_unit_float(images)
    h, w = x.shape[2], x.shape[3]
    side = math.sqrt(area)
    return _center_crop_back(x, max(1, round(h * side)), max(1, round(w * side)))


def blur_kernel(kernel_size: int, resolution: int) -> tuple[int, float]:
    """(radius, sigma) at ``resolution`` of the blur of kernel size ``kernel_size`` at 128x128 (radius 0: none)."""
    if kernel_size <= 1:
        return 0, 0.0
    scale = resolution / REFERENCE_RESOLUTION
    sigma = (0.3 * ((kernel_size - 1) / 2 - 1) + 0.8) * scale
    return max(1, round((kernel_size - 1) / 2 * scale)), sigma


def gaussian_blur(images: ImageLike, kernel_size: float, rng: Rng = None) -> torch.Tensor:
    """Gaussian blur, kernel size given at 128x128 and scaled to the image (see ``blur_kernel``)."""
    _check("blur", kernel_size, kernel_size >= 0 and float(kernel_size).is_integer(), "an integer >= 0")
    x = to_unit_float(images)
    radius, sigma = blur_kernel(int(kernel_size), x.shape[2])
    if radius == 0:
        return x.clone()
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-t.square() / (2 * sigma * sigma))
    g = (g / g.sum()).to(dtype=x.dtype, device=x.device)
    c = x.shape[1]
    y = tF.pad(x, (radius, radius, radius, radius), mode="replicate")
    y = tF.conv2d(y, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = tF.conv2d(y, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return y.clamp(0, 1)


def jpeg(images: ImageLike, quality: float, rng: Rng = None) -> torch.Tensor:
    """A JPEG encode and decode with Pillow at ``quality`` (1..100)."""
    _check("jpeg", quality, 1 <= quality <= 100 and float(quality).is_integer(), "an integer in [1, 100]")

    def one(im: Image.Image, _i: int) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as out:
            return out.convert(im.mode)
    return _per_image_uint8(images, one)


def gaussian_noise(images: ImageLike, std: float, rng: Rng = None) -> torch.Tensor:
    """Add N(0, std^2) per pixel and channel to images in [0, 1], clip to [0, 1]."""
    _check("noise", std, std >= 0, ">= 0")
    x = to_unit_float(images)
    if std == 0:
        return x.clone()
    noise = torch.from_numpy(_rng(rng).standard_normal(tuple(x.shape))).to(dtype=x.dtype, device=x.device)
    return (x + std * noise).clamp(0, 1)


def rotate(images: ImageLike, degrees: float, rng: Rng = None) -> torch.Tensor:
    """Rotate counter-clockwise about the centre (bilinear; corners black; same size)."""
    x = to_unit_float(images)
    if degrees % 360 == 0:
        return x.clone()
    return _per_channel_float(x, lambda im: im.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False,
                                                      fillcolor=0.0))


def resize(images: ImageLike, scale: float, rng: Rng = None) -> torch.Tensor:
    """Shrink each side to round(scale R) (Lanczos), enlarge back (bicubic)."""
    _check("resize", scale, 0 < scale <= 1, "in (0, 1]")
    x = to_unit_float(images)
    h, w = x.shape[2], x.shape[3]
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    if small == (h, w):
        return x.clone()
    return _resize(_resize(x, small), (h, w))


def _enhancer(name: str, cls) -> Callable[[ImageLike, float, Rng], torch.Tensor]:
    def attack(images: ImageLike, factor: float, rng: Rng = None) -> torch.Tensor:
        _check(name, factor, factor >= 0, ">= 0")
        if factor == 1:
            return to_unit_float(images).clone()
        return _per_image_uint8(images, lambda im, _i: cls(im).enhance(factor))
    attack.__name__ = name
    attack.__doc__ = f"Pillow ImageEnhance.{cls.__name__} with this factor (1: the identity)."
    return attack


brightness = _enhancer("brightness", ImageEnhance.Brightness)
contrast = _enhancer("contrast", ImageEnhance.Contrast)
saturation = _enhancer("saturation", ImageEnhance.Color)
sharpness = _enhancer("sharpness", ImageEnhance.Sharpness)


def overlay_text(images: ImageLike, height: float, rng: Rng = None) -> torch.Tensor:
    """8 random letters and digits in white, Pillow's default font of round(height R) px, at a random place."""
    _check("overlay_text", height, 0 <= height <= 1, "in [0, 1]")
    x = to_unit_float(images)
    if height == 0:
        return x.clone()
    gen = _rng(rng)
    font = ImageFont.load_default(size=max(1, round(height * x.shape[2])))

    def one(im: Image.Image, _i: int) -> Image.Image:
        text = "".join(TEXT_ALPHABET[j] for j in gen.integers(0, len(TEXT_ALPHABET), 8))
        draw = ImageDraw.Draw(im)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x0 = int(gen.integers(0, max(1, im.width - (right - left) + 1)))
        y0 = int(gen.integers(0, max(1, im.height - (bottom - top) + 1)))
        draw.text((x0 - left, y0 - top), text, fill=255 if im.mode == "L" else (255, 255, 255), font=font)
        return im
    return _per_image_uint8(x, one)


@dataclass(frozen=True)
class CombinedLevel:
    crop: int             # kept side, of 128
    blur: int             # kernel size at 128x128
    jpeg: int | None      # quality (None: no JPEG step)
    noise: float          # std on [0, 1] images


COMBINED_LEVELS: tuple[CombinedLevel, ...] = tuple(
    CombinedLevel(crop=128 - 8 * k, blur=0 if k == 0 else 2 * k + 1, jpeg=None if k == 0 else 100 - 10 * k,
                  noise=round(0.02 * k, 2)) for k in range(10))


def combined(images: ImageLike, level: float, rng: Rng = None) -> torch.Tensor:
    """Level k of ``COMBINED_LEVELS``: crop, blur, JPEG, noise, in this order (level 0: the identity)."""
    _check("combined", level, float(level).is_integer() and 0 <= level < len(COMBINED_LEVELS),
           f"an integer level in 0..{len(COMBINED_LEVELS) - 1}")
    lv = COMBINED_LEVELS[int(level)]
    x = gaussian_blur(center_crop(images, lv.crop), lv.blur)
    if lv.jpeg is not None:
        x = jpeg(x, lv.jpeg)
    return gaussian_noise(x, lv.noise, rng)


def comb(images: ImageLike, on: float = 1, rng: Rng = None) -> torch.Tensor:
    """Stable Signature's combination: crop keeping 50% of the area, brightness 1.5, JPEG 80 (0: the identity)."""
    _check("comb", on, on in (0, 1), "0 or 1")
    if on == 0:
        return to_unit_float(images).clone()
    return jpeg(brightness(crop_area(images, 0.5), 1.5), 80)


@dataclass(frozen=True)
class ImageAttack:
    name: str
    fn: Callable[[ImageLike, float, Rng], torch.Tensor]
    strengths: tuple[float, ...]       # default strengths, from the identity (or the mildest) to the strongest
    identity: float | None             # the strength that changes nothing (None: there is none)
    unit: str                          # what the strength means (axis label)
    suite: str                         # 'fig5', 'stable' or 'both'


IMAGE_ATTACKS: dict[str, ImageAttack] = {a.name: a for a in (
    ImageAttack("none", identity, (0,), 0, "", "stable"),
    ImageAttack("crop", center_crop, (128, 120, 112, 104, 96, 88, 80, 72, 64, 56, 48, 40, 32, 24, 16, 8), 128,
                "kept side (of 128)", "fig5"),
    ImageAttack("blur", gaussian_blur, (0, 3, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45), 0,
                "Gaussian kernel size (at 128x128)", "fig5"),
    ImageAttack("jpeg", jpeg, (100, 90, 80, 70, 60, 50, 40, 30, 20, 10), None, "JPEG quality", "both"),
    ImageAttack("noise", gaussian_noise, (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5), 0.0,
                "noise std (images in [0, 1])", "fig5"),
    ImageAttack("combined", combined, tuple(range(len(COMBINED_LEVELS))), 0, "combined level", "fig5"),
    ImageAttack("crop_area", crop_area, (0.5, 0.1), 1.0, "kept area fraction", "stable"),
    ImageAttack("rotate", rotate, (25, 90), 0, "degrees", "stable"),
    ImageAttack("brightness", brightness, (1.5, 2.0), 1.0, "factor", "stable"),
    ImageAttack("contrast", contrast, (1.5, 2.0), 1.0, "factor", "stable"),
    ImageAttack("saturation", saturation, (1.5, 2.0), 1.0, "factor", "stable"),
    ImageAttack("sharpness", sharpness, (1.5, 2.0), 1.0, "factor", "stable"),
    ImageAttack("resize", resize, (0.5, 0.1), 1.0, "side scale", "stable"),
    ImageAttack("overlay_text", overlay_text, (0.125,), 0, "text height (of the side)", "stable"),
    ImageAttack("comb", comb, (1,), 0, "on", "stable"),
)}
FIG5_ATTACKS = ("crop", "blur", "jpeg", "noise", "combined")


# -- model attacks ----------------------------------------------------------------------------------

def weight_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, parameter) of every parameter with at least two dimensions: the tensors model attacks change."""
    return [(n, p) for n, p in module.named_parameters() if p.ndim >= 2]


def _copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)


@torch.no_grad()
def weight_noise(generator: nn.Module, strength: float, rng: Rng = None) -> nn.Module:
    """W + strength std(W) N(0, 1) for every weight tensor (a new module)."""
    _check("weight_noise", strength, strength >= 0, ">= 0")
    out = _copy(generator)
    if strength == 0:
        return out
    gen = _rng(rng)
    for _, w in weight_tensors(out):
        noise = torch.from_numpy(gen.standard_normal(tuple(w.shape))).to(dtype=w.dtype, device=w.device)
        w.add_(noise * (strength * w.std(correction=0)))
    return out


@torch.no_grad()
def quantize_weights(generator: nn.Module, bits: float, rng: Rng = None) -> nn.Module:
    """Every weight tensor rounded to 2^bits levels, uniform from its min to its max (bits 0: unchanged)."""
    _check("quantize", bits, float(bits).is_integer() and (bits == 0 or 1 <= bits <= 16), "0 or an integer in 1..16")
    out = _copy(generator)
    if bits == 0:
        return out
    for _, w in weight_tensors(out):
        lo, hi = w.min(), w.max()
        if hi <= lo:
            continue
        step = (hi - lo) / (2 ** int(bits) - 1)
        q = ((w - lo) / step).round().clamp(0, 2 ** int(bits) - 1)
        w.copy_(torch.where(q == 2 ** int(bits) - 1, hi, lo + q * step))
    return out


@torch.no_grad()
def prune_weights(generator: nn.Module, fraction: float, rng: Rng = None) -> nn.Module:
    """Per weight tensor, its floor(fraction numel) smallest-magnitude entries set to 0 (ties by position)."""
    _check("prune", fraction, 0 <= fraction <= 1, "in [0, 1]")
    out = _copy(generator)
    for _, w in weight_tensors(out):
        k = int(math.floor(fraction * w.numel()))
        if k:
            order = torch.argsort(w.detach().abs().flatten(), stable=True)
            w.view(-1)[order[:k]] = 0
    return out


@torch.no_grad()
def collude(a: nn.Module, b: nn.Module, t: float = 0.5) -> nn.Module:
    """A + t (B - A) element-wise over every parameter and buffer (t = 0.5: the average); a new module."""
    _check("collusion", t, 0 <= t <= 1, "in [0, 1]")
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError("collusion needs two generators of the same architecture")
    out = _copy(a)
    out.load_state_dict({k: torch.lerp(v, sb[k].to(v), t) if v.is_floating_point() else v
                         for k, v in sa.items()})
    return out


@dataclass(frozen=True)
class ModelAttack:
    name: str
    fn: Callable
    strengths: tuple[float, ...]
    identity: float
    unit: str


MODEL_ATTACKS: dict[str, ModelAttack] = {a.name: a for a in (
    ModelAttack("weight_noise", weight_noise, (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5), 0.0,
                "noise std (of each tensor's std)"),
    ModelAttack("quantize", quantize_weights, (0, 8, 7, 6, 5, 4, 3, 2), 0, "bits per weight (0: float32)"),
    ModelAttack("prune", prune_weights, (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), 0.0,
                "pruned fraction per tensor"),
    ModelAttack("collusion", collude, (0.0, 0.25, 0.5, 0.75, 1.0), 0.0, "weight of user B"),
)}


# -- evaluation -------------------------------------------------------------------------------------

@dataclass
class _Setup:
    F: nn.Module
    device: torch.device | str
    batch: int
    quantize: bool
    fpr: float
    registry: Any                       # an open Registry, or None
    calibration: Calibration | None
    null_model: str | None              # 'calibrated' / 'fair-coin' / None (no registry)
    calibration_file: str | None


def _opt(extra: dict, key: str, default, kind: type):
    value = extra.get(key, default)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"extra[{key!r}] must be a positive integer, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"extra[{key!r}] must be True or False, got {value!r}")
    return value


def _load_calibration(opts: MetricOptions) -> tuple[Calibration | None, str | None]:
    cal = opts.calibration
    if isinstance(cal, Calibration):
        return cal, "(given)"
    if isinstance(cal, str) and cal == "none":
        return None, None
    path = Path(cal) if cal is not None else None
    if path is None and opts.extra.get("decoder_file"):
        beside = calibration_path(opts.extra["decoder_file"])
        path = beside if beside.is_file() else None
    if path is None:
        return None, None
    return load_calibration(path, opts.extra.get("decoder_sha256")), str(path)


def _setup(opts: MetricOptions) -> _Setup:
    if opts.F is None:
        raise ValueError("the robustness metrics need a fingerprint decoder (MetricOptions.F)")
    extra = opts.extra
    fpr = float(extra.get("fpr", 1e-6))
    if not 0 < fpr < 1:
        raise ValueError(f"extra['fpr'] must be in (0, 1), got {fpr}")
    registry = None
    if opts.registry is not None:
        from attribution.registry import Registry
        registry = Registry(opts.registry, readonly=True)
        if len(registry) == 0:
            registry.close()
            raise ValueError(f"{opts.registry}: the registry is empty")
    try:
        cal, cal_file = _load_calibration(opts) if registry is not None else (None, None)
    except Exception:
        registry.close()
        raise
    null = None if registry is None else ("calibrated" if cal is not None else "fair-coin")
    return _Setup(F=opts.F, device=opts.device, batch=_opt(extra, "batch", 32, int),
                  quantize=_opt(extra, "quantize", True, bool), fpr=fpr, registry=registry, calibration=cal,
                  null_model=null, calibration_file=cal_file)


def _latents(seeds: Sequence[int], z_dim: int, c_dim: int) -> tuple[torch.Tensor, np.ndarray]:
    """generate.py's draw per seed: RandomState(seed) gives z, then c."""
    zs, cs = [], []
    for s in seeds:
        rs = np.random.RandomState(s)
        zs.append(rs.randn(z_dim))
        cs.append(rs.randint(0, 2, size=c_dim) if c_dim else np.zeros(0, dtype=np.int64))
    return torch.from_numpy(np.stack(zs)).float(), np.stack(cs).astype(np.uint8)


@torch.no_grad()
def _generate(setup: _Setup, gen: Callable[[torch.Tensor, slice], torch.Tensor], n: int) -> torch.Tensor:
    """Images of ``gen(z batch, index slice)`` in [-1, 1] -> CPU uint8 (8-bit as a PNG) or float [0, 1]."""
    out = []
    for start in range(0, n, setup.batch):
        img = gen(slice(start, min(n, start + setup.batch))).float()
        if setup.quantize:
            out.append(((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
        else:
            out.append(((img + 1) / 2).clamp(0, 1).cpu())
    return torch.cat(out)


@torch.no_grad()
def _decode(setup: _Setup, images01: torch.Tensor) -> np.ndarray:
    out = []
    for start in range(0, len(images01), setup.batch):
        x = images01[start:start + setup.batch].to(setup.device).float() * 2 - 1
        logits = setup.F(x)
        out.append((logits[1] if isinstance(logits, tuple) else logits).float().cpu().numpy())
    return np.concatenate(out)


def _check_resolution(G: nn.Module, F: nn.Module) -> None:
    rg, rf = getattr(G, "img_resolution", None), getattr(F, "img_resolution", None)
    if rg is not None and rf is not None and rg != rf:
        raise ValueError(f"the generator makes {rg}x{rg} images, the decoder reads {rf}x{rf}")


def _bit_acc(logits: np.ndarray, fingerprints: np.ndarray) -> np.ndarray:
    return ((logits > 0) == fingerprints.astype(bool)).mean(axis=1)


def _score(setup: _Setup, logits: np.ndarray, fingerprints: np.ndarray, owners: np.ndarray) -> dict[str, Any]:
    acc = _bit_acc(logits, fingerprints)
    row: dict[str, Any] = {"n": int(len(acc)), "bit_acc": float(acc.mean()), "bit_acc_min": float(acc.min()),
                           "tpr": None, "attribution_acc": None, "misattributed": None}
    if setup.registry is not None:
        d = decide(logits, setup.registry, setup.fpr, setup.calibration)
        dec = np.asarray(d.decision)
        attributed = dec == "attributed"
        row.update(tpr=float((dec != "not-fingerprinted").mean()),
                   attribution_acc=float((attributed & (d.nearest_id == owners)).mean()),
                   misattributed=float((attributed & (d.nearest_id != owners)).mean()))
    return row


@dataclass
class _User:
    id: int                  # registry id (-1: a drawn fingerprint, no registry)
    name: str
    bits: np.ndarray         # uint8 [n]
    generator: nn.Module     # baked: generator(z, noise_mode=...)
    source: str              # 'baked from G' or 'registry file'


def _users(opts: MetricOptions, setup: _Setup, count: int) -> list[_User]:
    """The first ``count`` registered users with their generators (or drawn fingerprints without a registry)."""
    G = opts.G
    can_bake = hasattr(G, "bake") and int(getattr(G, "c_dim", 0)) > 0
    mode = opts.extra.get("generators", "auto")
    if mode not in ("auto", "bake", "files"):
        raise ValueError(f"extra['generators'] must be 'auto', 'bake' or 'files', got {mode!r}")
    if mode == "auto":
        mode = "bake" if can_bake or setup.registry is None else "files"
    if mode == "bake" and not can_bake:
        raise ValueError("generators='bake' needs a fingerprinted generator (G.bake); this G takes no fingerprint")
    if setup.registry is None:
        if not can_bake:
            raise ValueError("without a registry the robustness metrics need a fingerprinted G to draw users from")
        fps = np.random.default_rng([opts.seed, 0x5EED]).integers(0, 2, size=(count, G.c_dim)).astype(np.uint8)
        return [_User(-1, f"drawn{k}", fps[k], G.bake(torch.from_numpy(fps[k]).float()[None]), "baked from G")
                for k in range(count)]
    from networks.checkpoint import load_network
    reg = setup.registry
    ids, _ = reg.packed()
    users = []
    for e in reg.entries(ids[:count].tolist()):
        bits = np.frombuffer(e.bits.encode(), dtype=np.uint8) - ord("0")
        if mode == "bake":
            if len(bits) != G.c_dim:
                raise ValueError(f"the registry holds {len(bits)}-bit fingerprints; G takes {G.c_dim} bits")
            users.append(_User(e.id, e.user, bits, G.bake(torch.from_numpy(bits).float()[None]), "baked from G"))
            continue
        if not e.file or not Path(e.file).is_file():
            raise ValueError(f"user {e.user}: the registry records no readable generator file ({e.file!r}); "
                             "use generators='bake'")
        if e.file_sha256 and sha256_file(e.file) != e.file_sha256:
            raise ValueError(f"user {e.user}: {e.file} is not the file that was issued (SHA-256 differs)")
        nets = load_network(e.file, device=opts.device)
        if "G" not in nets:
            raise ValueError(f"user {e.user}: {e.file} holds no generator")
        users.append(_User(e.id, e.user, bits, nets["G"], "registry file"))
    return users


def _user_images(setup: _Setup, generator: nn.Module, zs: torch.Tensor) -> torch.Tensor:
    generator = generator.to(setup.device)
    return _generate(setup, lambda sl: generator(zs[sl].to(setup.device), noise_mode="const"), len(zs))


def _row_seed(seed: int, attack: str, index: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(attack.encode()), index, *more])


def _selected(extra: dict, table: dict) -> list[tuple[str, tuple]]:
    """The attacks of ``table`` named in extra['attacks'] (all when absent) with their strengths.

    One list may name image and model attacks together (both metrics of one ``calc_metrics.py`` call read
    it): each metric takes the names of its own table; a name in neither table is an error.
    """
    known = set(IMAGE_ATTACKS) | set(MODEL_ATTACKS)
    names = extra.get("attacks")
    if isinstance(names, str):
        names = [names]
    overrides = extra.get("strengths") or {}
    for label, given in (("attack(s)", names or []), ("extra['strengths'] names attack(s)", overrides)):
        unknown = [n for n in given if n not in known]
        if unknown:
            raise ValueError(f"unknown {label} {unknown}; available: {', '.join([*IMAGE_ATTACKS, *MODEL_ATTACKS])}")
    names = list(table) if names is None else [n for n in names if n in table]
    return [(n, tuple(overrides.get(n, table[n].strengths))) for n in names]


def _summary(setup: _Setup, rows: list[dict], users: list[_User]) -> dict[str, Any]:
    clean = next((r for r in rows if r["strength"] == _identity_of(r["attack"])), None)
    worst = min(rows, key=lambda r: r["bit_acc"]) if rows else None
    return {
        "registry": None if setup.registry is None else str(setup.registry.path),
        "registry_size": None if setup.registry is None else len(setup.registry),
        "num_users": len(users), "fpr": setup.fpr, "null_model": setup.null_model,
        "calibration": setup.calibration_file, "quantized_8bit": setup.quantize,
        "bit_acc_clean": None if clean is None else clean["bit_acc"],
        "tpr_clean": None if clean is None else clean["tpr"],
        "attribution_acc_clean": None if clean is None else clean.get("attribution_acc"),
        "bit_acc_worst": None if worst is None else worst["bit_acc"],
        "worst_attack": None if worst is None else f"{worst['attack']} {worst['strength']}",
    }


def _identity_of(name: str) -> float | None:
    table = IMAGE_ATTACKS if name in IMAGE_ATTACKS else MODEL_ATTACKS
    return table[name].identity


@register_metric("robustness_image")
@torch.no_grad()
def robustness_image(opts: MetricOptions) -> dict[str, Any]:
    """Bit accuracy, TPR at the FPR and attribution accuracy per image attack and strength (module docstring)."""
    from tqdm import tqdm

    setup = _setup(opts)
    try:
        _check_resolution(opts.G, opts.F)
        extra = opts.extra
        first = int(extra.get("first_seed", 0))
        attacks = _selected(extra, IMAGE_ATTACKS)
        if setup.registry is None:
            if int(getattr(opts.G, "c_dim", 0)) <= 0:
                raise ValueError("robustness_image needs a fingerprinted G (or a registry of issued generators)")
            num = _opt(extra, "num_images", 128, int)
            zs, fps = _latents(range(first, first + num), opts.G.z_dim, opts.G.c_dim)
            c = torch.from_numpy(fps).float()
            images = _generate(setup, lambda sl: opts.G(zs[sl].to(setup.device), c[sl].to(setup.device),
                                                        noise_mode="const"), num)
            owners = np.full(num, -1)
            users: list[_User] = []
            source, per = "G with a random fingerprint per seed", None
        else:
            users = _users(opts, setup, _opt(extra, "users", 8, int))
            per = _opt(extra, "images_per_user", 16, int)
            zs, _ = _latents(range(first, first + per), users[0].generator.z_dim, 0)
            images = torch.cat([_user_images(setup, u.generator, zs) for u in users])
            fps = np.repeat(np.stack([u.bits for u in users]), per, axis=0)
            owners = np.repeat(np.asarray([u.id for u in users]), per)
            source = users[0].source
        rows = []
        jobs = [(name, i, s) for name, strengths in attacks for i, s in enumerate(strengths)]
        for name, i, s in tqdm(jobs, desc="robustness_image", disable=not opts.progress):
            fn = IMAGE_ATTACKS[name].fn
            logits = np.concatenate([
                _decode(setup, fn(images[k:k + ATTACK_CHUNK], s, _row_seed(opts.seed, name, i, k // ATTACK_CHUNK)))
                for k in range(0, len(images), ATTACK_CHUNK)])
            rows.append({"attack": name, "strength": s, **_score(setup, logits, fps, owners)})
        return {**_summary(setup, rows, users), "num_images": int(len(images)), "images_per_user": per,
                "first_seed": first, "generators": source, "users": [u.name for u in users], "rows": rows}
    finally:
        if setup.registry is not None:
            setup.registry.close()


def _collusion_rows(opts: MetricOptions, setup: _Setup, users: list[_User], zs: torch.Tensor,
                    strengths: tuple) -> list[dict]:
    pairs = [(users[k], users[k + 1]) for k in range(0, len(users) - 1, 2)]
    rows = []
    for t in strengths:
        acc_a, acc_b, decided = [], [], []
        for a, b in pairs:
            logits = _decode(setup, to_unit_float(_user_images(setup, collude(a.generator, b.generator, t), zs)))
            acc_a.append(_bit_acc(logits, a.bits[None]))
            acc_b.append(_bit_acc(logits, b.bits[None]))
            if setup.registry is not None:
                d = decide(logits, setup.registry, setup.fpr, setup.calibration)
                att = np.asarray(d.decision) == "attributed"
                decided.append(np.stack([att & (d.nearest_id == a.id), att & (d.nearest_id == b.id), ~att]))
        row: dict[str, Any] = {"attack": "collusion", "strength": t, "n": int(sum(len(x) for x in acc_a)),
                               "pairs": len(pairs)}
        if pairs:
            aa, bb = np.concatenate(acc_a), np.concatenate(acc_b)
            row.update(bit_acc=float(aa.mean()), bit_acc_min=float(aa.min()), bit_acc_a=float(aa.mean()),
                       bit_acc_b=float(bb.mean()))
        else:
            row.update(bit_acc=None, bit_acc_min=None, bit_acc_a=None, bit_acc_b=None)
        if decided:
            fa, fb, none = (np.concatenate([x[j] for x in decided]) for j in range(3))
            row.update(frac_a=float(fa.mean()), frac_b=float(fb.mean()), frac_nobody=float(none.mean()),
                       frac_other=float((~fa & ~fb & ~none).mean()), tpr=float(1 - none.mean()))
        else:
            row.update(frac_a=None, frac_b=None, frac_other=None, frac_nobody=None, tpr=None)
        rows.append(row)
    return rows


@register_metric("robustness_model")
@torch.no_grad()
def robustness_model(opts: MetricOptions) -> dict[str, Any]:
    """Bit accuracy and decisions of F on baked generators under weight noise, quantisation, pruning, collusion."""
    from tqdm import tqdm

    setup = _setup(opts)
    try:
        _check_resolution(opts.G, opts.F)
        extra = opts.extra
        attacks = _selected(extra, MODEL_ATTACKS)
        users = _users(opts, setup, _opt(extra, "users", 4, int))
        per = _opt(extra, "images_per_user", 8, int)
        first = int(extra.get("first_seed", 0))
        zs, _ = _latents(range(first, first + per), users[0].generator.z_dim, 0)
        rows = []
        jobs = [(name, i, s) for name, strengths in attacks if name != "collusion" for i, s in enumerate(strengths)]
        for name, i, s in tqdm(jobs, desc="robustness_model", disable=not opts.progress):
            logits, fps, owners = [], [], []
            for k, u in enumerate(users):
                attacked = MODEL_ATTACKS[name].fn(u.generator, s, _row_seed(opts.seed, name, i, k))
                logits.append(_decode(setup, to_unit_float(_user_images(setup, attacked, zs))))
                fps.append(np.repeat(u.bits[None], per, axis=0))
                owners.append(np.full(per, u.id))
            rows.append({"attack": name, "strength": s,
                         **_score(setup, np.concatenate(logits), np.concatenate(fps), np.concatenate(owners))})
        for name, strengths in attacks:
            if name == "collusion":
                rows += _collusion_rows(opts, setup, users, zs, strengths)
        return {**_summary(setup, [r for r in rows if r["attack"] != "collusion"], users),
                "images_per_user": per, "first_seed": first, "generators": users[0].source,
                "users": [u.name for u in users],
                "rows": rows}
    finally:
        if setup.registry is not None:
            setup.registry.close()
