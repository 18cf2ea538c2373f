"""Rows of images of the same seeds from several generators: does each issued user's generator draw the
baseline's picture for a seed (one z), with the fingerprint invisible?

    python fig/same_seeds.py --row baseline=out/baseline_images --row alice=out/generated/alice \\
        --row bob=out/generated/bob --out out/same_seeds.png [--per-row 8] [--title ...]

Each FOLDER is one written by ``generate.py images`` (seed0000.png, ...). The columns are the first
``--per-row`` seeds that every folder holds; with two or more rows, a last row shows |row 2 - row 3| x 10
(the difference between two users' images of one seed), or |row 1 - row 2| x 10 for two rows.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as python fig/NAME.py
from dnnlib.util import OutputPathError, atomic_path, check_figure_output  # noqa: E402

SEED_PNG = re.compile(r"seed(\d{4,})\.png")


def seeds_in(folder: Path) -> dict[int, Path]:
    return {int(m.group(1)): p for p in folder.iterdir() if (m := SEED_PNG.fullmatch(p.name))}


def parse_row(text: str) -> tuple[str, Path]:
    label, sep, folder = text.partition("=")
    if not sep or not label or not Path(folder).is_dir():
        raise click.BadParameter(f"{text!r}: give LABEL=FOLDER, a folder written by generate.py images",
                                 param_hint="--row")
    return label, Path(folder)


def draw_rows(labels: list[str], rows: list[list[np.ndarray]], column_titles: list[str], out: Path,
              title: str = "") -> None:
    """A PNG (written atomically) of image rows ([H, W, 3] arrays in 0-255), a label left of each row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = len(rows[0])
    fig = Figure(figsize=(cols * 1.0, len(rows) * 1.05 + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = axes[i, j]
            ax.imshow(np.clip(img, 0, 255).astype(np.uint8), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and column_titles:
                ax.set_title(column_titles[j], fontsize=7)
        axes[i, 0].set_ylabel(labels[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


@click.command(help=__doc__)
@click.option("--row", "rows", multiple=True, required=True, help="LABEL=FOLDER (repeatable, top to bottom).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--per-row", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--title", default="", help="Figure title.")
def main(rows: tuple[str, ...], out: Path, per_row: int, title: str) -> None:
    parsed = [parse_row(r) for r in rows]
    try:
        check_figure_output(out, **{f"row_{i}": folder for i, (_, folder) in enumerate(parsed)})
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    found = [seeds_in(folder) for _, folder in parsed]
    seeds = sorted(set.intersection(*(set(f) for f in found)))[:per_row]
    if not seeds:
        raise click.ClickException("the folders share no seed: generate the same --seeds with each generator")
    images = [[np.asarray(Image.open(f[s]).convert("RGB"), dtype=np.float32) for s in seeds] for f in found]
    labels = [label for label, _ in parsed]
    if len(images) >= 2:
        a, b = (1, 2) if len(images) >= 3 else (0, 1)
        images.append([np.clip(np.abs(x - y) * 10, 0, 255) for x, y in zip(images[a], images[b])])
        labels.append(f"|{labels[a]} - {labels[b]}| x 10")

    out.parent.mkdir(parents=True, exist_ok=True)
    draw_rows(labels, images, [f"seed {s}" for s in seeds], out, title)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
