"""The quality tax of a fingerprint: a fingerprinted run against the plain baseline trained the same way.

    python fig/quality_tax.py --baseline RUN --fingerprinted RUN --data DATA --out fig/quality_tax.png \\
        [--table quality_tax.md] [--num 2000] [--num-bits 1000] [--device cpu]

RUN is a run folder of train_stylegan2_fp.py: the baseline's trained with ``--bits 0``. A fingerprinted run
started from a baseline snapshot (``--baseline``) is charged the baseline's wall time and kimg up to that
snapshot (its stage 1). The table compares the fingerprinted run's last snapshot with the baseline's
snapshot at the same wall time (the nearest at or before it) and at the same kimg; for runs budgeted in kimg
(trained under load, where their wall time says nothing), ``--reference-kimg K`` makes the baseline's snapshot
at K kimg the reference instead of the same-wall-time one:

    model | minutes | kimg | img/s | bit acc | SWD | SWD / baseline | diversity | / baseline | PSNR | SSIM

with the metrics of metrics/: ``bit_acc`` (float images; 8-bit in brackets), ``swd`` (``--num`` samples),
``diversity`` (groups of one fingerprint) and ``consistency`` (same z, two fingerprints, const noise). The
figure holds rows of the same z: the baseline (same wall time), fingerprint A, fingerprint B, |A - B| x 10.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as python fig/NAME.py
sys.path.insert(0, str(Path(__file__).resolve().parent))     # ... and its sibling fig/same_seeds.py
from same_seeds import draw_rows  # noqa: E402

from dnnlib.util import OutputPathError, atomic_path, check_outputs, is_png, refuse_foreign  # noqa: E402
from metrics import metric_main  # noqa: E402
from networks.checkpoint import load_network  # noqa: E402
from torch_utils.bits import random_fingerprints  # noqa: E402

TABLE_HEADER = ("| model | minutes | kimg | img/s | bit acc (8-bit) | SWD | SWD / baseline | diversity | / baseline "
                "| consistency PSNR | SSIM |")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    kimg: float          # Images trained on, stage 1 included.
    minutes: float       # Wall time of the run when the snapshot was written, stage 1 included.


def _stats(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise click.ClickException(f"{run}/stats.jsonl has no rows: not a training run that reached a tick")
    return rows


def run_snapshots(run: Path, offset: Snapshot | None = None) -> list[Snapshot]:
    """The network snapshots of ``run`` with their kimg and wall minutes (from ``stats.jsonl``: the
    ``Progress/wall_min`` column, or for runs of earlier versions the tick timestamps), plus ``offset``'s."""
    rows = _stats(run)
    t0 = rows[0]["timestamp"] - rows[0]["Timing/sec_per_tick"]
    minutes = {round(r["Progress/kimg"], 3): r.get("Progress/wall_min", (r["timestamp"] - t0) / 60) for r in rows}
    out = []
    for path in sorted(run.glob("network-snapshot-*.safetensors")):
        tag = path.stem.split("-")[-1]
        kimg = round(int(tag.split("_")[0]) + (int(tag.split("_")[1]) / 1000 if "_" in tag else 0), 3)
        if kimg in minutes:
            out.append(Snapshot(path, kimg + (offset.kimg if offset else 0),
                                minutes[kimg] + (offset.minutes if offset else 0)))
    if not out:
        raise click.ClickException(f"{run} has no network snapshot written at a tick")
    return out


def stage1(run: Path) -> Snapshot | None:
    """The baseline snapshot a fine-tuned run started from (its kimg and wall minutes), or None."""
    start = json.loads((run / "training_options.json").read_text()).get("baseline")
    if not start:
        return None
    start = Path(start)
    for snap in run_snapshots(start.parent):
        if snap.path.resolve() == start.resolve():
            return snap
    raise click.ClickException(f"{run} started from {start}, which is not a snapshot listed in its run's stats")


def pick_reference(base: list[Snapshot], fp: Snapshot, reference_kimg: float | None = None) -> tuple[str, Snapshot]:
    """(row name, snapshot) of the baseline that SWD and diversity are divided by: the last snapshot written by
    the fingerprinted run's wall time (half a minute of slack), or the one at ``reference_kimg`` (ValueError if
    there is none)."""
    if reference_kimg is None:
        return ("baseline, same wall time",
                max((s for s in base if s.minutes <= fp.minutes + 0.5), key=lambda s: s.minutes, default=base[0]))
    at = [s for s in base if abs(s.kimg - reference_kimg) < 1e-6]
    if not at:
        have = ", ".join(f"{s.kimg:g}" for s in base)
        raise ValueError(f"has no snapshot at {reference_kimg:g} kimg (it has {have})")
    return f"baseline, {reference_kimg:g} kimg (reference)", at[0]


def measure(snap: Snapshot, data: str, num: int, device: str, num_bits: int = 1000) -> dict[str, float]:
    nets = load_network(snap.path, device=device, names=["G_ema", "F"])
    opts = metric_main.MetricOptions(G=nets["G_ema"], F=nets["F"], data=data, device=device)
    fingerprinted = nets["G_ema"].n_bits > 0
    out = {"swd": metric_main.calc_metric("swd", _with(opts, num=num))["swd_mean"],
           "diversity": metric_main.calc_metric("diversity", _with(opts, num=num))["diversity"]}
    if fingerprinted:
        bits = metric_main.calc_metric("bit_acc", _with(opts, num=num_bits))
        cons = metric_main.calc_metric("consistency", _with(opts, num=num_bits))
        out.update(bit_acc=bits["bit_acc"], bit_acc_8bit=bits["bit_acc_8bit"], psnr=cons["psnr"], ssim=cons["ssim"])
    return out


def _with(opts: metric_main.MetricOptions, **extra) -> metric_main.MetricOptions:
    return dataclasses.replace(opts, extra=extra)


def _is_table(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(TABLE_HEADER)) == TABLE_HEADER.encode()


def _row(name: str, snap: Snapshot, m: dict, base: dict) -> str:
    bits = f"{m['bit_acc']:.4f} ({m['bit_acc_8bit']:.4f})" if "bit_acc" in m else "-"
    cons = (f"{m['psnr']:.2f} | {m['ssim']:.4f}") if "psnr" in m else "- | -"
    speed = snap.kimg * 1000 / (snap.minutes * 60)
    return (f"| {name} | {snap.minutes:.1f} | {snap.kimg:g} | {speed:.1f} | {bits} | {m['swd']:.2f} | "
            f"{m['swd'] / base['swd']:.2f} | {m['diversity']:.4f} | {m['diversity'] / base['diversity']:.2f} | "
            f"{cons} |")


@torch.no_grad()
def draw(baseline: Path, fingerprinted: Path, out: Path, title: str, device: str, seed: int = 0) -> None:
    """Rows of the same z: baseline, fingerprint A, fingerprint B, |A - B| x 10 (const noise)."""
    Gb = load_network(baseline, device=device, names=["G_ema"])["G_ema"]
    Gf = load_network(fingerprinted, device=device, names=["G_ema"])["G_ema"]
    gen = torch.Generator().manual_seed(seed)
    n = 8
    z = torch.randn(n, Gf.z_dim, generator=gen).to(device)
    ca, cb = (random_fingerprints(1, Gf.n_bits, gen).to(device).expand(n, -1) for _ in range(2))
    images = [Gb(z, torch.zeros(n, 0, device=device), noise_mode="const"), Gf(z, ca, noise_mode="const"),
              Gf(z, cb, noise_mode="const")]
    rows = [list(((img.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()) for img in images]
    rows.append([np.abs(a - b) * 10 for a, b in zip(rows[1], rows[2])])
    draw_rows(["baseline", "fingerprint A", "fingerprint B", "|A - B| x 10"], rows, [], out, title)


@click.command(help=__doc__)
@click.option("--baseline", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--fingerprinted", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Figure (PNG).")
@click.option("--table", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
@click.option("--num", type=click.IntRange(64, 50_000), default=2000, show_default=True,
              help="Samples for SWD and diversity.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--num-bits", type=click.IntRange(16, 50_000), default=1000, show_default=True,
              help="Samples for bit accuracy and consistency.")
@click.option("--reference-kimg", type=click.FloatRange(min=0),
              help="The baseline's snapshot at this kimg is the reference (default: the one at the same wall time).")
def main(baseline: Path, fingerprinted: Path, data: Path, out: Path, table: Path | None, num: int,
         device: str, num_bits: int, reference_kimg: float | None) -> None:
    try:
        inputs = {"--baseline": baseline, "--fingerprinted": fingerprinted, "--data": data}
        check_outputs({"--out": out, "--table": table} if table else {"--out": out}, inputs)
        refuse_foreign(out, "--out", "PNG image", is_png)
        if table is not None:
            refuse_foreign(table, "--table", "table of this tool", _is_table)
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    fp = run_snapshots(fingerprinted, offset=stage1(fingerprinted))[-1]
    base = run_snapshots(baseline)
    try:
        reference = pick_reference(base, fp, reference_kimg)
    except ValueError as e:
        raise click.BadParameter(f"{baseline} {e}", param_hint="--reference-kimg") from None
    same_time = reference[1]
    same_kimg = min(base, key=lambda s: abs(s.kimg - fp.kimg))
    measured = {}
    for name, snap in (reference, ("baseline, same kimg", same_kimg), ("fingerprinted", fp)):
        click.echo(f"measuring {name}: {snap.path}", err=True)
        measured[name] = (snap, measure(snap, str(data), num, device, num_bits))
    ref = measured[reference[0]][1]
    lines = [TABLE_HEADER, "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(name, snap, m, ref) for name, (snap, m) in measured.items()]
    text = "\n".join(lines) + "\n"
    click.echo(text)
    if table is not None:
        with atomic_path(table) as tmp:
            Path(tmp).write_text(text)
    draw(same_time.path, fp.path, out, f"same z per column: {same_time.path.parent.name} / {fp.path.parent.name} "
         f"({fp.minutes:.0f} min)", device)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
