"""Stack image grids (PNG) side by side or one above the other, with a white gap, scaled up by an
integer factor with nearest-neighbour sampling (the figures of docs/RESULTS.md).

    python fig/stack_grids.py --out fig/grids.png --scale 2 [--horizontal] a.png b.png ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as python fig/NAME.py
from dnnlib.util import OutputPathError, atomic_path, check_figure_output  # noqa: E402


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scale", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--gap", default=8, show_default=True, type=click.IntRange(min=0), help="Gap in source pixels.")
@click.option("--horizontal", is_flag=True, help="Side by side (default: one above the other).")
def main(images, out, scale, gap, horizontal):
    try:
        check_figure_output(out, images=list(images))
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    ims = [Image.open(p).convert("RGB") for p in images]
    if horizontal:
        size = (sum(im.width for im in ims) + gap * (len(ims) - 1), max(im.height for im in ims))
    else:
        size = (max(im.width for im in ims), sum(im.height for im in ims) + gap * (len(ims) - 1))
    canvas = Image.new("RGB", size, "white")
    offset = 0
    for im in ims:
        canvas.paste(im, (offset, 0) if horizontal else (0, offset))
        offset += (im.width if horizontal else im.height) + gap
    canvas = canvas.resize((size[0] * scale, size[1] * scale), Image.Resampling.NEAREST)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    click.echo(f"wrote {out} ({canvas.width}x{canvas.height})")


if __name__ == "__main__":
    main()
