"""Plot the robustness suite (metrics/robustness.py) from its JSONL: curves like the paper's Fig. 5.

``metric-robustness_image.jsonl``: one panel per Fig. 5 axis (crop, blur, JPEG, noise, combined) with bit
accuracy (solid) and TPR at the metric's FPR (dashed; absent without a registry) against the strength,
plus a bar panel of the Stable Signature list when it was run. ``metric-robustness_model.jsonl``: one panel
per model attack; collusion shows the bit accuracy against each user and where detection attributes.
The last line of each file is drawn (``--line`` picks another); several files overlay (e.g. a plain and an
immunized model).

    python fig/plot_robustness.py --jsonl RUN/metric-robustness_image.jsonl --out fig/robustness.png
    python fig/plot_robustness.py --jsonl A/metric-robustness_image.jsonl --label plain \\
        --jsonl B/metric-robustness_image.jsonl --label immunized --out fig/robustness_ab.png
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as python fig/NAME.py
from dnnlib.util import OutputPathError, atomic_path, check_figure_output  # noqa: E402

FIG5 = {"crop": "centre crop: kept side (of 128)", "blur": "Gaussian blur: kernel size (at 128²)",
        "jpeg": "JPEG quality", "noise": "Gaussian noise std (images in [0, 1])", "combined": "combined level"}
MODEL = {"weight_noise": "weight noise: std (of each tensor's std)", "quantize": "quantisation: bits (0: float)",
         "prune": "magnitude pruning: fraction per tensor", "collusion": "collusion: weight of user B"}
STABLE = ("none", "crop_area", "rotate", "jpeg", "brightness", "contrast", "saturation", "sharpness", "resize",
          "overlay_text", "comb")
STABLE_JPEG = (80, 50)


def read_line(path: Path, index: int) -> dict:
    lines = [json.loads(t) for t in path.read_text().splitlines() if t.strip()]
    if not lines:
        raise click.ClickException(f"{path}: no results")
    try:
        return lines[index]
    except IndexError:
        raise click.ClickException(f"{path} has {len(lines)} line(s); --line {index} is not one") from None


def _axis(ax, strengths: list) -> list:
    """x positions: the strengths when they are monotonic (axis inverted when they fall), else their indices."""
    xs = [float(s) for s in strengths]
    rising = all(a < b for a, b in zip(xs, xs[1:]))
    falling = all(a > b for a, b in zip(xs, xs[1:]))
    if rising or falling or len(xs) < 2:
        if falling and not ax.xaxis_inverted():
            ax.invert_xaxis()
        return xs
    ax.set_xticks(range(len(xs)), [f"{s:g}" for s in xs])
    return list(range(len(xs)))


def _curves(ax, rows: list[dict], label: str, color, keys=(("bit_acc", "-", "bit acc"), ("tpr", "--", "TPR"))):
    xs = _axis(ax, [r["strength"] for r in rows])
    for key, style, name in keys:
        ys = [r.get(key) for r in rows]
        if any(v is not None for v in ys):
            ax.plot(xs, [math.nan if v is None else v for v in ys], style, marker="o", ms=3, color=color,
                    label=f"{label}: {name}" if label else name)


@click.command()
@click.option("--jsonl", "files", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="metric-robustness_image.jsonl or metric-robustness_model.jsonl (repeat to overlay).")
@click.option("--label", "labels", multiple=True, help="Legend label per --jsonl (default: none for one file).")
@click.option("--line", "line", type=int, default=-1, show_default=True, help="Which JSONL line (result) to draw.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output PNG.")
@click.option("--title", default="", help="Figure title.")
def main(files, labels, line, out, title):
    try:
        check_figure_output(out, jsonl=list(files))
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [read_line(f, line) for f in files]
    kinds = {r.get("metric") for r in results}
    if len(kinds) != 1 or kinds - {"robustness_image", "robustness_model"}:
        raise click.ClickException(f"expected results of one robustness metric, got {sorted(map(str, kinds))}")
    panels = FIG5 if kinds == {"robustness_image"} else MODEL
    present = [name for name in panels if any(r["attack"] == name for res in results for r in res["rows"])]
    stable = kinds == {"robustness_image"} and any(
        r["attack"] in STABLE and r["attack"] != "jpeg" for res in results for r in res["rows"])
    n = len(present) + stable
    if n == 0:
        raise click.ClickException("the results hold none of the attacks this script draws")
    cols = min(3, n)
    rows_n = -(-n // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
    axes = axes.reshape(-1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, res in enumerate(results):
        label = labels[k] if k < len(labels) else ("" if len(results) == 1 else files[k].parent.name)
        color = colors[k % len(colors)]
        for ax, name in zip(axes, present):
            rows = [r for r in res["rows"] if r["attack"] == name]
            if name == "collusion":
                _curves(ax, rows, label, color, (("bit_acc_a", "-", "bit acc vs A"), ("bit_acc_b", ":", "vs B"),
                                                 ("frac_a", "--", "attributed to A"),
                                                 ("frac_b", "-.", "to B")))
            else:
                _curves(ax, rows, label, color)
        if stable:
            ax = axes[len(present)]
            picked = [r for r in res["rows"] if r["attack"] in STABLE
                      and (r["attack"] != "jpeg" or r["strength"] in STABLE_JPEG)]
            names = [r["attack"] if r["attack"] == "none" else f"{r['attack']} {r['strength']:g}" for r in picked]
            width = 0.8 / len(results)
            xs = [i + (k - (len(results) - 1) / 2) * width for i in range(len(picked))]
            ax.bar(xs, [r["bit_acc"] for r in picked], width, color=color, label=f"{label}: bit acc" if label else
                   "bit acc")
            if any(r.get("tpr") is not None for r in picked):
                ax.plot(xs, [math.nan if r.get("tpr") is None else r["tpr"] for r in picked], "k_", ms=10,
                        label=f"{label}: TPR" if label else "TPR")
            ax.set_xticks(range(len(picked)), names, rotation=70, fontsize=7)
    fpr = results[0].get("fpr")
    for ax, name in zip(axes, present):
        ax.set(xlabel=panels[name], ylim=(-0.02, 1.02))
    if stable:
        axes[len(present)].set(title="Stable Signature list", ylim=(0, 1.02))
    for ax in axes[:n]:
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes[n:]:
        ax.axis("off")
    null = results[0].get("null_model")
    sub = f"TPR at FPR {fpr:g} ({null} null)" if null else "bit accuracy only (no registry)"
    fig.suptitle(f"{title}  {sub}".strip())
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
