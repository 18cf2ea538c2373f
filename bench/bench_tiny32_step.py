"""Benchmark: one forward + backward of G, D and F of the tiny32 preset on a batch of 16.

Target (issue: networks): < 0.5 s on 2 CPU cores.
Usage: python bench/bench_tiny32_step.py [--batch 16] [--repeats 10] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import torch
from torch.nn import functional as nnf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from networks import build_networks  # noqa: E402


@click.command()
@click.option("--preset", default="tiny32", show_default=True)
@click.option("--batch", default=16, show_default=True, type=click.IntRange(min=4))
@click.option("--repeats", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
def main(preset: str, batch: int, repeats: int, threads: int, device: str) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nets = {k: v.to(device) for k, v in build_networks(preset).items()}
    G, D, F = nets["G"], nets["D"], nets["F"]

    def step() -> None:
        z = torch.randn(batch, G.z_dim, device=device)
        c = torch.randint(0, 2, (batch, G.n_bits), device=device).float()
        img = G(z, c)
        z_hat, logits = F(img)
        loss = nnf.softplus(-D(img)).mean() + (z_hat - z).square().mean() + nnf.binary_cross_entropy_with_logits(
            logits, c)
        loss.backward()

    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(f"{preset} forward+backward of G, D, F, batch {batch}, {device} ({threads} threads): "
          f"median {statistics.median(times) * 1e3:.0f} ms, best {min(times) * 1e3:.0f} ms over {repeats} runs")


if __name__ == "__main__":
    main()
