"""A figure of detection results: one row of sample images per true source (each user, and 'real'),
each image framed green when its decision is right and red when wrong, with the row's tally.

    python fig/detection_grid.py --results out/quickstart/results.csv --truth out/quickstart/truth.csv \\
        --out out/quickstart/detection.png [--per-row 8]

Right means: a user's image attributed to that user; a real image not-fingerprinted; an image of a
user missing from the registry not attributed to anybody.
"""

from __future__ import annotations

import csv
import io
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as python fig/NAME.py
from dnnlib.util import OutputPathError, atomic_path, check_figure_output  # noqa: E402


def open_image(path: str) -> np.ndarray:
    """A results path: a file, or 'archive.zip:member'."""
    if ":" in path and not Path(path).exists():
        archive, member = path.split(":", 1)
        with zipfile.ZipFile(archive) as zf:
            return np.asarray(Image.open(io.BytesIO(zf.read(member))).convert("RGB"))
    return np.asarray(Image.open(path).convert("RGB"))


def is_right(label: str, decision: str, user: str, registered: set[str]) -> bool:
    if label == "real":
        return decision == "not-fingerprinted"
    if label in registered:
        return decision == "attributed" and user == label
    return decision != "attributed"


@click.command()
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--truth", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--per-row", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--title", default="", help="Figure title.")
def main(results: Path, truth: Path, out: Path, per_row: int, title: str) -> None:
    try:
        check_figure_output(out, results=results, truth=truth)
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    rows = list(csv.DictReader(open(results)))
    labels = {r["path"]: r["label"] for r in csv.DictReader(open(truth))}
    registered = {r["user"] for r in rows if r["user"]}
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["path"] in labels:
            groups[labels[r["path"]]].append(r)
    if not groups:
        raise click.ClickException("no result row has a truth label")
    order = sorted(k for k in groups if k != "real") + (["real"] if "real" in groups else [])
    fig, axes = plt.subplots(len(order), per_row, figsize=(per_row * 1.1, len(order) * 1.35), squeeze=False)
    for i, label in enumerate(order):
        items = groups[label]
        right = [is_right(label, r["decision"], r["user"], registered) for r in items]
        decisions = sorted({r["decision"] for r in items})
        axes[i, 0].set_title(f"{label}: {sum(right)}/{len(items)} right ({', '.join(decisions)})", loc="left",
                             fontsize=8)
        for j in range(per_row):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(items):
                ax.axis("off")
                continue
            ax.imshow(open_image(items[j]["path"]), interpolation="nearest")
            for side in ax.spines.values():
                side.set_edgecolor("tab:green" if right[j] else "tab:red")
                side.set_linewidth(3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
