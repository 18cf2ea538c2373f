"""Reading a run's ``metric-<name>.jsonl`` files back, and one figure of all of them.

``plot_run(run_dir)`` writes ``<run_dir>/metrics.png`` (atomically): each numeric result of each metric file
(not the bookkeeping: ``kimg``, ``seed``, ``total_time``, counts such as ``num``, ``num_gen``, ``n_bits``) as
a line against ``kimg``, one panel per value (one per metric for the attack suites' many values). The training
loop rewrites it after every snapshot's metrics, so bits and image quality are seen side by side. Lines
without a ``kimg`` are placed at their line number; non-finite values are left out. Uses matplotlib's
object API with the Agg canvas: no pyplot, no global backend switch.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from dnnlib.util import atomic_path

PANELS_PER_METRIC = 8     # A metric with more values than this is drawn in one panel.
BOOKKEEPING = {"kimg", "seed", "total_time", "num", "num_gen", "num_real", "n_bits", "per_generator", "generators",
               "group"}


def read_metric_file(path: str | os.PathLike) -> list[dict]:
    """The JSON lines of one metric file (unreadable lines are skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def metric_series(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """{value name: (kimg list, value list)} of the plottable numbers of one metric file, by kimg."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in enumerate(rows):
        x = row.get("kimg")
        x = float(i) if not isinstance(x, (int, float)) or isinstance(x, bool) else float(x)
        for key, value in row.items():
            if key in BOOKKEEPING or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(x)
            ys.append(float(value))
    for key, (xs, ys) in series.items():
        order = sorted(range(len(xs)), key=xs.__getitem__)
        series[key] = ([xs[i] for i in order], [ys[i] for i in order])
    return series


def plot_run(run_dir: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path | None:
    """Write the figure of every ``metric-*.jsonl`` in ``run_dir``; None when there is none.

    Each value of a metric gets a panel of its own (bits, SWD, diversity and PSNR live on different scales),
    except a metric of more than ``PANELS_PER_METRIC`` values (the attack suites), which gets one panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    panels = []
    for f in sorted(run_dir.glob("metric-*.jsonl")):
        name = f.name[len("metric-"):-len(".jsonl")]
        series = metric_series(read_metric_file(f))
        if len(series) > PANELS_PER_METRIC:
            panels.append((name, series))
        else:
            panels += [(f"{name}: {key}", {key: xy}) for key, xy in series.items()]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.0 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for k, (title, series) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        for key, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    dest = Path(dest) if dest is not None else run_dir / "metrics.png"
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return dest
