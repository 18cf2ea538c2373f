"""The built-in default data set: procedural toy faces, made from code (no download, no licence).

Image k depends only on (seed, k): every random choice is drawn from ``default_rng([seed, k])`` in
unit coordinates and the face is drawn at 4x the resolution with PIL.ImageDraw, then box-filtered
down, so one seed gives the same faces at every resolution. Used by ``dataset_tool.py
create_builtin``, the quickstart and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

_SKIN = np.array([[247, 219, 196], [233, 188, 150], [198, 145, 105], [141, 94, 62], [92, 58, 38]], np.float64)
_HAIR = np.array([[28, 24, 22], [84, 56, 34], [140, 92, 50], [212, 178, 110], [168, 70, 32], [170, 170, 170]],
                 np.float64)
_IRIS = np.array([[70, 45, 25], [60, 110, 170], [70, 120, 70], [110, 85, 50]], np.float64)
_SUPERSAMPLE = 4


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))


def make_builtin_image(index: int, resolution: int = 32, seed: int = 0) -> Image.Image:
    """Toy face ``index`` of the built-in data set: a function of ``(seed, index)`` only.

    A linear two-colour background gradient in a random direction; shoulders in a shirt colour;
    an elliptical head (skin tone interpolated along five tones) with ears and neck, jittered in
    position, width and aspect; hair (short cap with a random hairline, long, or bald; six hair
    colours); eyes with irises of four colours and a shared gaze, eyebrows, a nose, an open or
    closed mouth; glasses on 20% of faces. Every random choice is drawn in unit coordinates, so
    one face looks the same at every resolution; it is drawn at 4x and box-filtered down.
    """
    rng = np.random.default_rng([seed, index])
    u = rng.uniform
    S = resolution * _SUPERSAMPLE

    def px(x: float, y: float) -> tuple[float, float]:
        return x * S, y * S

    def ell(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        return (*px(cx - rx, cy - ry), *px(cx + rx, cy + ry))

    # Background: a linear gradient between two muted colours, in a random direction.
    c0, c1 = u(40, 220, 3), u(40, 220, 3)
    theta = u(0, 2 * np.pi)
    g = (np.arange(S) + 0.5) / S
    t = (np.cos(theta) * (g[None, :] - 0.5) + np.sin(theta) * (g[:, None] - 0.5)) / math.sqrt(2) + 0.5  # In [0, 1].
    bg = c0 * (1 - t[..., None]) + c1 * t[..., None]
    img = Image.fromarray(np.round(bg).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)

    # Face geometry and colours.
    hx, hy = 0.5 + u(-0.06, 0.06), 0.47 + u(-0.05, 0.05)
    a = u(0.19, 0.25)                       # head half-width
    b = a * u(1.15, 1.4)                    # head half-height
    k = u(0, len(_SKIN) - 1)
    skin = _SKIN[int(k)] * (1 - k % 1) + _SKIN[min(int(k) + 1, len(_SKIN) - 1)] * (k % 1) + u(-8, 8, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] + u(-15, 15, 3)
    style = rng.choice(["short", "long", "bald"], p=[0.55, 0.35, 0.10])
    shirt = u(20, 235, 3)

    # Body, long hair behind the head, neck, ears, head.
    draw.ellipse(ell(hx + u(-0.03, 0.03), 1.08, u(0.38, 0.5), 0.3), fill=_rgb(shirt))
    if style == "long":
        draw.ellipse(ell(hx, hy + b * 0.45, a * u(1.2, 1.4), b * u(1.1, 1.35)), fill=_rgb(hair))
    draw.rectangle((*px(hx - a * 0.4, hy + b * 0.5), *px(hx + a * 0.4, 0.86)), fill=_rgb(skin * 0.85))
    for side in (-1, 1):
        draw.ellipse(ell(hx + side * a * 0.98, hy + b * 0.05, a * 0.16, b * 0.18), fill=_rgb(skin * 0.92))
    draw.ellipse(ell(hx, hy, a, b), fill=_rgb(skin))
    if style != "bald":  # A cap of hair over the top of the head, with a random hairline.
        depth = u(0.25, 0.55)
        draw.chord(ell(hx, hy - b * 0.04, a * 1.06, b * 1.04), 180 + depth * 40, 360 - depth * 40, fill=_rgb(hair))

    # Eyes (white, iris, pupil; a shared gaze), eyebrows, nose, mouth.
    ey = hy - b * u(0.0, 0.18)
    dx = a * u(0.36, 0.48)
    erx = a * u(0.15, 0.21)
    ery = erx * u(0.55, 0.85)
    gaze = u(-0.3, 0.3) * erx
    iris = _IRIS[rng.integers(len(_IRIS))]
    brow_tilt, brow_up = u(-0.4, 0.4) * ery, u(1.6, 2.4) * ery
    brow_w = max(1, int(round(S * a * u(0.04, 0.08))))
    for side in (-1, 1):
        ex = hx + side * dx
        draw.ellipse(ell(ex, ey, erx, ery), fill=(245, 245, 245))
        draw.ellipse(ell(ex + gaze, ey, ery * 0.85, ery * 0.85), fill=_rgb(iris))
        draw.ellipse(ell(ex + gaze, ey, ery * 0.4, ery * 0.4), fill=(10, 10, 10))
        draw.line((*px(ex - erx, ey - brow_up + side * brow_tilt), *px(ex + erx, ey - brow_up - side * brow_tilt)),
                  fill=_rgb(hair * 0.8), width=brow_w)
    ny = hy + b * u(0.2, 0.32)
    draw.polygon([px(hx, ey + ery), px(hx - a * 0.12, ny), px(hx + a * 0.12, ny)], fill=_rgb(skin * 0.8))
    my, mw = hy + b * u(0.5, 0.62), a * u(0.3, 0.5)
    mh = b * u(0.05, 0.16)
    lips = _rgb(np.array([150, 45, 50]) + u(-20, 20, 3))
    if rng.random() < 0.6:  # Open smile: the lower half of an ellipse.
        draw.chord(ell(hx, my - mh * 0.5, mw, mh), 0, 180, fill=lips)
    else:  # Closed mouth: a thin ellipse.
        draw.ellipse(ell(hx, my, mw, mh * 0.35), fill=lips)

    if rng.random() < 0.2:  # Glasses: two rims and a bridge.
        rim = _rgb(u(0, 80, 3))
        width = max(1, int(round(S * a * 0.05)))
        r = erx * 1.35
        for side in (-1, 1):
            draw.ellipse(ell(hx + side * dx, ey, r, r * 0.85), outline=rim, width=width)
        draw.line((*px(hx - dx + r, ey), *px(hx + dx - r, ey)), fill=rim, width=width)

    return img.resize((resolution, resolution), Image.Resampling.BOX)


def make_builtin_images(n: int, resolution: int = 32, seed: int = 0) -> Iterator[Image.Image]:
    """The first ``n`` toy faces of the built-in data set (lazily; deterministic from ``seed``)."""
    for index in range(n):
        yield make_builtin_image(index, resolution, seed)
