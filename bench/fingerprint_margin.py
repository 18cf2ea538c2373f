"""How many bits each generated image gets wrong: the margin that attribution at a strict FPR needs.

Usage: python bench/fingerprint_margin.py SNAPSHOT... [--num 1000] [--users 100] [--fpr 1e-6]

For each snapshot: ``num`` fresh (z, c) pairs through G_ema with the stored noise, quantised to 8 bits as a
PNG stores them, decoded by F; prints the mean bit accuracy, the histogram of wrong bits per image, and the
share of images read well enough to be attributed among ``users`` registered fingerprints at ``fpr``
(fair-coin Bonferroni test: at least ``attribution.detection.threshold_bits`` matched bits).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attribution.detection import threshold_bits  # noqa: E402
from metrics.fingerprint import quantize  # noqa: E402
from networks import load_network  # noqa: E402


@click.command()
@click.argument("snapshots", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--num", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--users", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--fpr", default=1e-6, show_default=True, type=float)
@click.option("--seed", default=123, show_default=True)
def main(snapshots, num, users, fpr, seed):
    for snap in snapshots:
        nets = load_network(snap, names=["G_ema", "F"])
        G, F = nets["G_ema"], nets["F"]
        need = threshold_bits(G.n_bits, fpr, users)
        gen = torch.Generator().manual_seed(seed)
        errors = []
        with torch.no_grad():
            for start in range(0, num, 100):
                n = min(100, num - start)
                z = torch.randn(n, G.z_dim, generator=gen)
                c = torch.randint(0, 2, (n, G.n_bits), generator=gen).float()
                _, logits = F(quantize(G(z, c, noise_mode="const")))
                errors.append(((logits > 0).float() != c).sum(dim=1))
        e = torch.cat(errors).numpy().astype(int)
        hist = np.bincount(e, minlength=4)
        ok = "n/a" if need is None else f"{(G.n_bits - e >= need).mean():.4f}"
        click.echo(f"{snap.name}: bits {G.n_bits}, bit accuracy (8-bit) {1 - e.mean() / G.n_bits:.4f}; images with "
                   f"0/1/2/3+ wrong bits: {hist[0]}/{hist[1]}/{hist[2]}/{hist[3:].sum()}; attributable among "
                   f"{users} at FPR {fpr:g} (>= {need} bits): {ok}")


if __name__ == "__main__":
    main()
