"""Learnability sweep: how fast G and F co-adapt to carry fingerprint bits (BCE + latent rec., no D).

Runs each named variant of the recipe for ``--steps`` optimisation steps of G and F together and
prints one JSON line per variant with the batch bit accuracy averaged over every ``--every``
steps. It isolates the fingerprint pathway, which the full training's warm-up phase trains
(LEARNABILITY.md: the bottleneck is how fast G and F co-adapt). Variants run in parallel
processes with ``--jobs``.
Usage: python bench/learnability_sweep.py --bits 32 --steps 2000 [--variants base,all] [--device cuda]
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training import build_networks  # noqa: E402
from training.loss import random_fingerprints  # noqa: E402

RELEASE = dict(c_encoding="raw", embed_lr_multiplier=0.01, f_head=None, f_lr=0.002, f_beta1=0.0, latent_rec=1.0,
               g_lr=0.002, g_beta1=0.0)
FAST = dict(c_encoding="pm1", f_head=512, f_lr=0.01, f_beta1=0.9, latent_rec=0.0)   # the warm-up of --fp-warmup
VARIANTS = {
    "base": {},
    "nozrec": dict(latent_rec=0.0),
    "head512": dict(f_head=512),
    "head512_nozrec": dict(f_head=512, latent_rec=0.0),
    "all": dict(c_encoding="pm1", embed_lr_multiplier=1.0, f_beta1=0.9, f_lr=0.01),
    "all_head512": dict(c_encoding="pm1", embed_lr_multiplier=1.0, f_beta1=0.9, f_lr=0.01, f_head=512),
    "all_head512_nozrec": dict(c_encoding="pm1", embed_lr_multiplier=1.0, f_beta1=0.9, f_lr=0.01, f_head=512,
                               latent_rec=0.0),
    "maplr1_head512": dict(embed_lr_multiplier=1.0, f_head=512),
    "fbeta_flr_head512": dict(f_beta1=0.9, f_lr=0.01, f_head=512),
    "fast": FAST,
    "fast_gbeta0.9": dict(FAST, g_beta1=0.9),
    "fast_glr0.005": dict(FAST, g_lr=0.005),
    "fast_gbeta0.9_glr0.005": dict(FAST, g_beta1=0.9, g_lr=0.005),
    "fast_maplr1": dict(FAST, embed_lr_multiplier=1.0),
}


def run(name: str, bits: int, steps: int, every: int, batch: int, device: str, threads: int, seed: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    v = dict(RELEASE, **VARIANTS[name])
    nets = build_networks("tiny32", which=("G", "F"), c_dim=bits, c_encoding=v["c_encoding"],
                          embed_lr_multiplier=v["embed_lr_multiplier"], f_head=v["f_head"])
    G, Fd = nets["G"].to(device), nets["F"].to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=v["g_lr"], betas=(v["g_beta1"], 0.99))
    opt_f = torch.optim.Adam(Fd.parameters(), lr=v["f_lr"], betas=(v["f_beta1"], 0.99))
    accs, curve, t0 = [], [], time.time()
    for step in range(steps):
        z = torch.randn(batch, G.z_dim, device=device)
        c = random_fingerprints(batch, bits, device=device)
        z_hat, logits = Fd(G(z, c))
        loss = 2 * F.binary_cross_entropy_with_logits(logits, c) + v["latent_rec"] * (z - z_hat).square().mean()
        opt_g.zero_grad(set_to_none=True)
        opt_f.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        opt_f.step()
        accs.append(((logits.detach() > 0).float() == c).float().mean())
        if (step + 1) % every == 0:
            curve.append(round(float(torch.stack(accs[-every:]).mean()), 3))
    return {"variant": name, "bits": bits, "batch": batch, "steps": steps, "every": every, "curve": curve,
            "sec": round(time.time() - t0, 1), "device": device, **{k: v[k] for k in RELEASE}}


@click.command()
@click.option("--bits", default="32", show_default=True, help="Comma-separated bit counts.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--every", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
def main(bits, steps, every, batch, variants, device, jobs, threads, seed):
    tasks = [(name, int(b)) for b in bits.split(",") for name in variants.split(",")]
    unknown = {n for n, _ in tasks} - set(VARIANTS)
    if unknown:
        raise click.BadParameter(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run, n, b, steps, every, batch, device, threads, seed) for n, b in tasks]
        for fut in futures:
            print(json.dumps(fut.result()), flush=True)


if __name__ == "__main__":
    main()
