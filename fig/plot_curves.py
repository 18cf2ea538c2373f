"""Plot training curves from run folders (the figures of docs/RESULTS.md).

GAN runs (train_stylegan2_fp.py): bit accuracy of G_ema + F on 1,000 fresh samples
(``metric-fp_bit_acc1k.jsonl``), or where a run has none, on the 512 samples of
``metric-quality_snapshot.jsonl`` (the default since issue 16), and G + F on the training batches
(``stats.jsonl``), and the consistency PSNR, against kimg. Autoencoder runs (train_fingerprint_ae.py): bit
accuracy and PSNR of the 8-bit metric (``metric-ae_quantized.jsonl``) and of the training batches.

    python fig/plot_curves.py --run runs/bar32e/00000-... --label "32 bits" --out fig/learnability_32.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as python fig/NAME.py
from dnnlib.util import OutputPathError, atomic_path, check_figure_output  # noqa: E402


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


@click.command()
@click.option("--run", "runs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False,
                                                                            path_type=Path), help="Run folder(s).")
@click.option("--label", "labels", multiple=True, help="Legend label per --run (default: folder name).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output PNG.")
@click.option("--title", default="", help="Figure title.")
def main(runs, labels, out, title):
    try:
        check_figure_output(out, run=list(runs))
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    for i, run in enumerate(runs):
        label = labels[i] if i < len(labels) else run.name
        stats = _rows(run / "stats.jsonl")
        gan, n = _rows(run / "metric-fp_bit_acc1k.jsonl"), "1k"
        if not gan:
            gan, n = [r for r in _rows(run / "metric-quality_snapshot.jsonl") if "bit_acc" in r], "512"
        ae = _rows(run / "metric-ae_quantized.jsonl")
        if gan:
            ax_acc.plot([r["kimg"] for r in gan], [r["bit_acc"] for r in gan], "o-", label=f"{label}: G_ema + F, {n}")
            ax_psnr.plot([r["kimg"] for r in gan], [r["consistency_psnr"] for r in gan], "o-",
                         label=f"{label}: G(z,c) vs G(z,c')")
        if ae:
            ax_acc.plot([r["kimg"] for r in ae], [r["bit_acc"] for r in ae], "o-", label=f"{label}: 8-bit, held out")
            ax_psnr.plot([r["kimg"] for r in ae], [r["psnr"] for r in ae], "o-", label=f"{label}: 8-bit, held out")
        if stats:
            kimg = [r["Progress/kimg"] for r in stats]
            ax_acc.plot(kimg, [r["Metrics/bit_acc"] for r in stats], "--", alpha=0.7, label=f"{label}: batch")
            if "Metrics/psnr" in stats[0]:
                ax_psnr.plot(kimg, [r["Metrics/psnr"] for r in stats], "--", alpha=0.7, label=f"{label}: batch")
    ax_acc.set(xlabel="kimg", ylabel="bit accuracy", ylim=(0.45, 1.0))
    ax_acc.axhline(0.5, color="grey", lw=0.5)
    ax_psnr.set(xlabel="kimg", ylabel="PSNR (dB)")
    for ax in (ax_acc, ax_psnr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
