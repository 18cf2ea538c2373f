"""Benchmark: baking one fingerprint into a per-user generator (target: celeba128 <= 100 ms on CPU).

Usage: python bench/bench_bake.py [--preset celeba128] [--repeats 20] [--threads 2] [--device cpu]
Prints the median and the best of ``repeats`` bakes, after warm-up.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from networks import build_networks  # noqa: E402


@click.command()
@click.option("--preset", default="celeba128", show_default=True)
@click.option("--repeats", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
def main(preset: str, repeats: int, threads: int, device: str) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    G = build_networks(preset, which=("G",))["G"].to(device).eval()
    c = torch.randint(0, 2, (1, G.n_bits), device=device).float()
    for _ in range(3):
        G.bake(c)
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        baked = G.bake(c)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    n = sum(p.numel() for p in baked.parameters())
    print(f"bake {preset} on {device} ({threads} threads): median {statistics.median(times) * 1e3:.1f} ms, "
          f"best {min(times) * 1e3:.1f} ms over {repeats} runs; baked generator has {n:,} parameters")


if __name__ == "__main__":
    main()
