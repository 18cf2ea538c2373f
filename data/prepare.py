"""Preparing a data set: the recipes that turn source images into dataset images, and ``prepare_dataset``.

Preparation (``Recipe``) mirrors the paper's recipes (``docs/method.md#dataset-preparation``): CelebA
crops a ``size x size`` box centred at ``(cx, cy)`` (128 at (89, 121) on the 178x218 aligned images);
other sources are centre-cropped to a square and resized. Resizing uses Pillow's LANCZOS filter when
down-sampling (Pillow widens the kernel by the scale factor, so it is properly anti-aliased) and BICUBIC
when up-sampling (no LANCZOS ringing); boxes with fractional corners are resampled directly from the
source (one filter pass, no rounding).

``prepare_dataset`` reads ``(name, image)`` items from a source reader (``data/sources.py``), applies the
recipe and writes the result with ``DatasetWriter`` (``data/dataset_writer.py``: atomic, replaces only
what it wrote, cleans up after killed runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from data.dataset_writer import DatasetError, DatasetWriter
from data.sources import SourceItem


class SkipImage(ValueError):
    """One source image cannot be prepared (e.g. it is smaller than the crop box)."""


# --- image preparation (pure functions) ------------------------------------------------------------

def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB.

    Grayscale and palette images are expanded; 16-bit grayscale is scaled (65535 -> 255); images
    with transparency (RGBA, LA, PA, palette with a transparent colour) are composited on black,
    i.e. premultiplied by alpha, so fully transparent pixels become black whatever colour they hide.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float64) / 257.0
        img = Image.fromarray(np.round(arr).astype(np.uint8), "L")
    elif img.mode in ("I", "F"):
        arr = np.clip(np.asarray(img, dtype=np.float64), 0, 255)
        img = Image.fromarray(np.round(arr).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def center_crop_square(img: Image.Image) -> Image.Image:
    """The largest centred square (the odd pixel of an odd difference goes to the right/bottom)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img if (w, h) == (side, side) else img.crop((left, top, left + side, top + side))


def resize_square(img: Image.Image, resolution: int, box: Sequence[float] | None = None) -> Image.Image:
    """Resize ``img`` (or its region ``box = (x0, y0, x1, y1)``, fractional allowed) to ``resolution``².

    LANCZOS when down-sampling or at equal size, BICUBIC when up-sampling. A square image already
    at ``resolution`` is returned as is.
    """
    if box is None:
        if img.size == (resolution, resolution):
            return img
        box = (0, 0, *img.size)
    src_side = min(box[2] - box[0], box[3] - box[1])
    resample = Image.Resampling.LANCZOS if resolution <= src_side else Image.Resampling.BICUBIC
    return img.resize((resolution, resolution), resample, box=tuple(float(v) for v in box))


def crop_box(img: Image.Image, cx: float, cy: float, size: int, resolution: int | None = None) -> Image.Image:
    """The ``size x size`` box centred at ``(cx, cy)``: x in [cx - size/2, cx + size/2), same for y.

    Integer corners and no resize: an exact pixel crop. Otherwise the box is resampled to
    ``resolution`` (default ``size``) in one pass. Raises ``SkipImage`` when the box leaves the image.
    """
    half = size / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    w, h = img.size
    if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
        raise SkipImage(f"image is {w}x{h}, smaller than the crop box x [{box[0]:g}, {box[2]:g}) "
                        f"y [{box[1]:g}, {box[3]:g})")
    out = resolution or size
    if out == size and all(float(v).is_integer() for v in box):
        return img.crop(tuple(int(v) for v in box))
    return resize_square(img, out, box=box)


@dataclass(frozen=True)
class Recipe:
    """How a decoded source image becomes a dataset image (stored in ``dataset.json``).

    ``crop='center'``: largest centred square, resized to ``resolution``. ``crop='box'``: the
    ``size x size`` box centred at ``(cx, cy)``, resized to ``resolution`` (CelebA).
    """

    crop: str                       # 'center' | 'box'
    resolution: int                 # side of the stored images
    cx: float | None = None         # box centre, x (crop='box')
    cy: float | None = None         # box centre, y (crop='box')
    size: int | None = None         # box side (crop='box')

    def __post_init__(self) -> None:
        if self.crop not in ("center", "box"):
            raise ValueError(f"crop must be 'center' or 'box', got {self.crop!r}")
        if self.crop == "box" and None in (self.cx, self.cy, self.size):
            raise ValueError("crop='box' needs cx, cy and size")
        if self.resolution < 1:
            raise ValueError(f"resolution must be positive, got {self.resolution}")

    def __call__(self, img: Image.Image) -> Image.Image:
        img = to_rgb(img)
        if self.crop == "box":
            return crop_box(img, self.cx, self.cy, self.size, self.resolution)
        return resize_square(center_crop_square(img), self.resolution)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["filter"] = "lanczos (down-sampling), bicubic (up-sampling)"
        d["alpha"] = "composited on black"
        return d


# --- preparing a data set --------------------------------------------------------------------------

@dataclass
class PrepareReport:
    """What ``prepare_dataset`` wrote."""

    dest: Path
    num_images: int
    resolution: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source name, reason)


def _reason(err: Exception) -> str:
    if isinstance(err, SkipImage):
        return str(err)
    return f"cannot decode ({type(err).__name__}: {err})"


def prepare_dataset(
    items: Iterable[SourceItem],            # (name, decoded image or decoding exception), e.g. read_image_files
    dest: str | os.PathLike,                # output zip (.zip) or folder
    recipe: Recipe,                         # preparation of each image
    *,
    source: dict[str, Any],                 # description of the source for dataset.json
    selection: dict[str, Any] | None = None,  # max images, shuffle, seed: for dataset.json
    max_images: int | None = None,          # stop after writing this many images
    total: int | None = None,               # number of source items, for the progress bar
    force: bool = False,                    # replace an existing dest
    progress: bool = True,                  # tqdm progress bar on stderr (when it is a terminal)
    log: Callable[[str], None] | None = None,  # receives one message per skipped image (and stale clean-up)
) -> PrepareReport:
    """Prepare source images with ``recipe`` and write them to ``dest`` atomically.

    Undecodable images and images the recipe cannot use are reported through ``log`` (name and
    reason) and skipped; the next source images take their places, so ``max_images`` counts
    written images. Raises ``DatasetError`` (and leaves nothing at ``dest``) if none was written.
    """
    from tqdm import tqdm

    skipped: list[tuple[str, str]] = []
    known = [x for x in (max_images, total) if x is not None]
    bar_total = min(known) if known else None
    bar = tqdm(total=bar_total, unit="img", disable=None if progress else True, dynamic_ncols=True)
    try:
        with DatasetWriter(dest, force=force, log=log) as writer:
            for name, img in items:
                try:
                    if isinstance(img, Exception):
                        raise img
                    out = recipe(img)
                except Exception as e:
                    skipped.append((name, _reason(e)))
                    if log is not None:
                        log(f"skipped {name}: {skipped[-1][1]}")
                    bar.set_postfix(skipped=len(skipped))
                    continue
                writer.add(out, name)
                bar.update(1)
                if max_images is not None and writer.num_images >= max_images:
                    break
            if writer.num_images == 0:
                raise DatasetError(f"no image could be written ({len(skipped)} skipped); nothing written to {dest}")
            writer.metadata.update(source=source, recipe=recipe.to_json(), selection=selection or {},
                                   skipped=[{"name": n, "reason": r} for n, r in skipped])
    finally:
        bar.close()
        if hasattr(items, "close"):
            items.close()  # Generators: release file / LMDB handles now.
    return PrepareReport(Path(dest), writer.num_images, writer.resolution, skipped)

