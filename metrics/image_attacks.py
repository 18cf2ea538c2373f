"""Image attacks of the robustness suite, and their tables (Fig. 5 and the Stable Signature list).

``metrics/robustness.py`` runs them on generated images (the ``robustness_image`` metric);
``docs/method.md#evaluation`` lists the attack suites of the field.

An attack is ``attack(images, strength, rng) -> images``: ``images`` [N, C, H, W] (C = 1 or 3),
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
    combination, as ``docs/method.md#evaluation`` gives it; strength 1 applies it, 0 is the identity).
"""

from __future__ import annotations

import io
import math
import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as tF
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

REFERENCE_RESOLUTION = 128          # Fig. 5's strengths are given for 128x128 images.
DOWN_FILTER = Image.Resampling.LANCZOS
UP_FILTER = Image.Resampling.BICUBIC
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
