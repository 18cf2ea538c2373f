"""The table of scripts/table3.sh from its detection results (results_<N>.json for N = 1, 10, 100).

``--sizes`` (1,10,100) are the registries' sizes. Truth comes from the paths:
``generated/<user>/seed*.png`` belongs to <user>; the held-out zip's images are
real. For a registry of N users:
  * closed world: the N registered generators' images and the real images;
  * open world: those plus the images of the generators issued elsewhere (``unknown*``), whose right
    answer is "not attributed to anybody".
Accuracies (over the images of the world):
  * detection: fingerprinted (any decision but not-fingerprinted) for generated images, not-fingerprinted for
    real ones;
  * attribution: over the generated images, the registered user's images attributed to that user, the
    unknown generators' images attributed to nobody.
Decisions at 1e-6 are the detection run's; at 1e-3 they are re-decided from the same p-values
(``attribution.detection.decisions_at``).

    python scripts/table3_report.py --out out/table3 [--sizes 1,10,100]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attribution.detection import decisions_at  # noqa: E402
from dnnlib.util import OutputPathError, atomic_path, refuse_foreign  # noqa: E402

SIZES = (1, 10, 100)
FPRS = (1e-6, 1e-3)


def label_of(path: str) -> str:
    parts = Path(path.split(":")[0]).parts
    if "generated" in parts:
        return parts[parts.index("generated") + 1]
    return "real"


def world_metrics(labels, decisions, users, registered) -> dict:
    labels = np.asarray(labels, dtype=object)
    real = labels == "real"
    fingerprinted = np.asarray([d != "not-fingerprinted" for d in decisions])
    right = [(d == "attributed" and u == t) if t in registered else (d != "attributed")
             for t, d, u in zip(labels, decisions, users)]
    right = np.asarray(right)
    return {"images": int(len(labels)), "generated": int((~real).sum()), "real": int(real.sum()),
            "detection_accuracy": float((fingerprinted == ~real).mean()),
            "attribution_accuracy": float(right[~real].mean()) if (~real).any() else None,
            "false_positives_on_real": int((fingerprinted & real).sum()),
            "misattributed": int(sum(d == "attributed" and u != t for t, d, u in zip(labels, decisions, users)))}


def is_ours(path: Path) -> bool:
    """table3.json / table3.md as this script writes them (an existing one is replaced only then)."""
    try:
        text = path.read_text(encoding="utf-8")[: 1 << 20]
        if path.suffix == ".md":
            return text.startswith("| generators | world | FPR |")
        rows = json.loads(text)
        return isinstance(rows, list) and all(isinstance(r, dict) and "fpr" in r for r in rows)
    except (OSError, ValueError):
        return False


def markdown(table: list[dict], column: str, value) -> list[str]:
    """The rows of ``table`` as Markdown lines; the third column is ``column``, each row's ``value(row)``."""
    lines = [f"| generators | world | {column} | images (generated + real) | detection acc. | attribution acc. | "
             "false positives on real | misattributed |", "|---|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['generators']} | {t['world']} | {value(t)} | {t['generated']:,} + {t['real']:,} | "
                     f"{t['detection_accuracy']:.4f} | "
                     f"{t['attribution_accuracy']:.4f} | {t['false_positives_on_real']} | {t['misattributed']} |")
    return lines


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--sizes", default=",".join(map(str, SIZES)), show_default=True,
              help="Registry sizes N of results_<N>.json, comma-separated.")
def main(out_dir: Path, sizes: str) -> None:
    try:
        ns = [int(n) for n in sizes.split(",")]
    except ValueError:
        raise click.BadParameter(f"{sizes!r}: give comma-separated whole numbers", param_hint="--sizes") from None
    try:
        for name in ("table3.json", "table3.md"):
            refuse_foreign(out_dir / name, "--out", f"{name} of this script", is_ours)
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    table = []
    for n in ns:
        data = json.loads((out_dir / f"results_{n}.json").read_text())
        registered = {r["user"] for r in csv.DictReader(open(out_dir / f"registry_{n}.csv"))}
        rows = data["rows"]
        labels = [label_of(r["path"]) for r in rows]
        p_attr = np.array([r["p_attribution"] for r in rows], dtype=np.float64)
        p_unk = None if rows[0]["p_unknown"] == "" else np.array([r["p_unknown"] for r in rows], dtype=np.float64)
        for fpr in FPRS:
            used, _, decisions = decisions_at(fpr, p_attr, p_unk, data.get("unknown_test_min_p"))
            users = [r["nearest_user"] if d == "attributed" else "" for r, d in zip(rows, decisions)]
            for world in ("closed", "open"):
                keep = [i for i, t in enumerate(labels)
                        if t == "real" or t in registered or (world == "open" and t.startswith("unknown"))]
                m = world_metrics([labels[i] for i in keep], [decisions[i] for i in keep], [users[i] for i in keep],
                                  registered)
                table.append({"generators": n, "world": world, "fpr": fpr, "unknown_test": used, **m})
    lines = markdown(table, "FPR", lambda t: f"{t['fpr']:g}{' (+unknown test)' if t['unknown_test'] else ''}")
    for name, text in (("table3.json", json.dumps(table, indent=1)), ("table3.md", "\n".join(lines) + "\n")):
        with atomic_path(out_dir / name) as tmp:
            Path(tmp).write_text(text)
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
