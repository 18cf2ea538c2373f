"""Fingerprint fine-tuning of a standard StyleGAN2, measured against the original generator (issue 18's bar).

    python fig/sg2_finetune.py --original imported.safetensors --run RUN --data DATA --out fig/sg2_finetune.png \\
        [--stage1 RUN1] [--table curve.md] [--curve curve.png] [--num 2000] [--num-bits 1000] [--every 1] [--device cpu]

``--original`` is the network file the run fine-tuned (legacy.py's import: its G_ema is the original generator);
RUN is the run folder of ``train_stylegan2_fp.py --cfg sg2ft --baseline ORIGINAL``; when RUN continued another run
from its last snapshot (``--cfg sg2ft2 --resume SNAPSHOT``), ``--stage1 RUN1`` names that run: its snapshots come
first and RUN's kimg and minutes count on from its last. At each snapshot (every ``--every``-th, always the last),
G_ema and F are measured:

    minutes | kimg | bit acc (8-bit) | PSNR | SSIM | SWD | SWD / original

* bit acc: G_ema + F on ``--num-bits`` fresh samples, a random fingerprint each (float images; 8-bit in brackets);
* PSNR / SSIM: each of those samples against the original's image of the same z (const noise), PSNR from the
  pooled MSE: how far a user's generator is from the original;
* SWD: ``--num`` samples against as many training images, beside the original's SWD measured the same way.

The table is the curve (``--curve`` plots it against minutes), and the figure holds rows of the same z: the
original, three users (three fingerprints, baked as ``generate.py issue`` bakes them), and |user 1 - original| x 10.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as python fig/NAME.py
sys.path.insert(0, str(Path(__file__).resolve().parent))     # ... and its siblings
from quality_tax import Snapshot, run_snapshots  # noqa: E402
from same_seeds import draw_rows  # noqa: E402

from dnnlib.util import OutputPathError, atomic_path, check_outputs, is_png, refuse_foreign  # noqa: E402
from metrics import metric_main  # noqa: E402
from metrics.quality import consistency  # noqa: E402
from networks.checkpoint import load_network  # noqa: E402
from torch_utils.bits import random_fingerprints  # noqa: E402

TABLE_HEADER = "| minutes | kimg | bit acc (8-bit) | PSNR to original | SSIM | SWD | SWD / original |"


def _is_table(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(TABLE_HEADER)) == TABLE_HEADER.encode()


@torch.no_grad()
def fidelity(G, original, num: int, device: str, seed: int = 0) -> dict[str, float]:
    """PSNR and SSIM of G(z, c) (a random c per sample) against original(z), const noise, ``num`` samples."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num, G.z_dim, generator=gen)
    c = random_fingerprints(num, G.n_bits, gen)
    ours, theirs = [], []
    for zb, cb in zip(z.split(64), c.split(64)):
        zb, cb = zb.to(device), cb.to(device)
        ours.append(G(zb, cb, noise_mode="const").float().cpu())
        theirs.append(original(zb, noise_mode="const").float().cpu())
    return consistency(torch.cat(ours), torch.cat(theirs))


def measure(snap: Snapshot, original, data: str, num: int, num_bits: int, device: str) -> dict[str, float]:
    nets = load_network(snap.path, device=device, names=["G_ema", "F"])
    opts = metric_main.MetricOptions(G=nets["G_ema"], F=nets["F"], data=data, device=device)
    bits = metric_main.calc_metric("bit_acc", dataclasses.replace(opts, extra={"num": num_bits}))
    out = {"bit_acc": bits["bit_acc"], "bit_acc_8bit": bits["bit_acc_8bit"],
           "swd": metric_main.calc_metric("swd", dataclasses.replace(opts, extra={"num": num}))["swd_mean"]}
    return {**out, **fidelity(nets["G_ema"], original, num_bits, device)}


def curve_figure(rows: list[tuple[Snapshot, dict]], original_swd: float, out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    minutes = [s.minutes for s, _ in rows]
    for ax, (key, label, bar) in zip(axes, (("bit_acc", "bit accuracy (G_ema + F)", 0.99),
                                            ("psnr", "PSNR to the original (dB)", 30.0),
                                            ("swd_ratio", "SWD / original's", 1.1))):
        values = [m["swd"] / original_swd if key == "swd_ratio" else m[key] for _, m in rows]
        ax.plot(minutes, values, marker="o")
        ax.axhline(bar, color="gray", linestyle="--", linewidth=0.8)
        ax.set_xlabel("fine-tuning minutes")
        ax.set_title(label, fontsize=9)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


@torch.no_grad()
def draw(original, snap: Snapshot, out: Path, title: str, device: str, seed: int = 0) -> None:
    """Rows of the same z: the original, three users (baked), |user 1 - original| x 10 (const noise)."""
    G = load_network(snap.path, device=device, names=["G_ema"])["G_ema"]
    gen = torch.Generator().manual_seed(seed)
    n = 8
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    users = [G.bake(random_fingerprints(1, G.n_bits, gen).to(device)) for _ in range(3)]
    images = [original(z, noise_mode="const")] + [u(z, noise_mode="const") for u in users]
    rows = [list(((img.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()) for img in images]
    rows.append([np.abs(a - b) * 10 for a, b in zip(rows[1], rows[0])])
    draw_rows(["original", "user 1", "user 2", "user 3", "|user 1 - orig.| x 10"], rows, [], out, title)


@click.command(help=__doc__)
@click.option("--original", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--stage1", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The run RUN continued from its last snapshot (--resume): measured first, RUN counted on from it.")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Figure (PNG).")
@click.option("--table", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
@click.option("--curve", type=click.Path(dir_okay=False, path_type=Path), help="Also plot the curve here (PNG).")
@click.option("--num", type=click.IntRange(64, 50_000), default=2000, show_default=True, help="Samples for SWD.")
@click.option("--num-bits", type=click.IntRange(16, 50_000), default=1000, show_default=True,
              help="Samples for bit accuracy and PSNR.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Measure every N-th snapshot (the last always).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def main(original: Path, run: Path, stage1: Path | None, data: Path, out: Path, table: Path | None,
         curve: Path | None, num: int, num_bits: int, every: int, device: str) -> None:
    outputs = {k: v for k, v in {"--out": out, "--table": table, "--curve": curve}.items() if v is not None}
    try:
        check_outputs(outputs, {"--original": original, "--run": run, "--stage1": stage1, "--data": data})
        for option, path in outputs.items():
            if option == "--table":
                refuse_foreign(path, option, "table of this tool", _is_table)
            else:
                refuse_foreign(path, option, "PNG image", is_png)
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    orig = load_network(original, device=device, names=["G_ema"])["G_ema"]
    first = run_snapshots(stage1) if stage1 else []
    snaps = first + run_snapshots(run, offset=first[-1] if first else None)
    snaps = [s for i, s in enumerate(snaps) if i % every == 0 or i == len(snaps) - 1]
    opts = metric_main.MetricOptions(G=orig, data=str(data), device=device)
    original_swd = metric_main.calc_metric("swd", dataclasses.replace(opts, extra={"num": num}))["swd_mean"]
    rows = []
    for snap in snaps:
        click.echo(f"measuring {snap.path.name}", err=True)
        rows.append((snap, measure(snap, orig, str(data), num, num_bits, device)))
    lines = [TABLE_HEADER, "|---|---|---|---|---|---|---|",
             f"| original | - | - | - | - | {original_swd:.2f} | 1.00 |"]
    lines += [f"| {s.minutes:.1f} | {s.kimg:g} | {m['bit_acc']:.4f} ({m['bit_acc_8bit']:.4f}) | {m['psnr']:.2f} | "
              f"{m['ssim']:.4f} | {m['swd']:.2f} | {m['swd'] / original_swd:.2f} |" for s, m in rows]
    text = "\n".join(lines) + "\n"
    click.echo(text)
    if table is not None:
        with atomic_path(table) as tmp:
            Path(tmp).write_text(text)
    if curve is not None:
        curve_figure(rows, original_swd, curve)
    last = snaps[-1]
    draw(orig, last, out, f"same z per column: {original.name} and three users of {run.name} "
         f"({last.minutes:.0f} min)", device)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
