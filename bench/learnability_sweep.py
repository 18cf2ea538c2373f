"""Learnability sweep: how fast G and F co-adapt to carry fingerprint bits (BCE + latent rec., no D).

Runs each named variant of the recipe for ``--steps`` optimisation steps of G and F together and
prints one JSON line per variant with the batch bit accuracy averaged over every ``--every``
steps. It isolates the fingerprint pathway, which the full training's warm-up phase trains
(docs/method.md#learnability: the bottleneck is how fast G and F co-adapt). Variants run in parallel
processes with ``--jobs``.
Usage: python bench/learnability_sweep.py --bits 32 --kimg 32 [--variants base,all] [--device cuda]
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
from networks import build_networks, load_network  # noqa: E402
from networks.autoencoder import DecoderWithLatent, init_weights  # noqa: E402
from networks.presets import PRESETS  # noqa: E402
from torch_utils.bits import random_fingerprints  # noqa: E402
from training.configs import fingerprint_pathway  # noqa: E402

RELEASE = dict(c_encoding="raw", embed_lr_multiplier=0.01, f_head=None, f_lr=0.002, f_beta1=0.0, latent_rec=1.0,
               g_lr=0.002, g_beta1=0.0, embed_layers=8, w_dim=128, channel_max=64, batch=None, style_gain=1.0,
               f_arch="stylegan", f_init="pytorch", f_frozen=False)
FAST = dict(c_encoding="pm1", f_head=512, f_lr=0.01, f_beta1=0.9, latent_rec=0.0)   # the warm-up of --fp-warmup
# The warm-up of scripts/celeba32_cpu.sh as it was in sweep 5 (a two-layer E; docs/results/learnability.md): the
# base of the cpu_* variants, kept for their recorded curves. Config cpu32 uses a one-layer E (= cpu_map1).
CPU = dict(FAST, embed_layers=2, embed_lr_multiplier=1.0)


def from_config(name: str) -> dict:
    """The G + F warm-up of a training config of training/configs.py, as a variant."""
    p = fingerprint_pathway(name)
    preset = PRESETS[p["preset"]]
    if preset.channel_base != 32 * preset.channel_max or preset.w_dim != RELEASE["w_dim"]:
        raise ValueError(f"config {name}: preset {p['preset']} is not tiny32 at another width")
    return {**{k: v for k, v in p.items() if k != "preset" and v is not None}, "channel_max": preset.channel_max}


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
    "cpu": CPU,
    "cpu_b8": dict(CPU, batch=8),
    "cpu_b32": dict(CPU, batch=32),
    "cpu_b64": dict(CPU, batch=64),
    "cpu_map1": dict(CPU, embed_layers=1),
    "cpu_w512": dict(CPU, w_dim=512),
    "cpu_glr0.005": dict(CPU, g_lr=0.005),
    "cpu_glr0.01": dict(CPU, g_lr=0.01),
    "cpu_flr0.02": dict(CPU, f_lr=0.02),
    "cpu_flr0.003": dict(CPU, f_lr=0.003),
    "cpu_sgain0.1": dict(CPU, style_gain=0.1),
    "cpu_sgain0.3": dict(CPU, style_gain=0.3),
    "cpu_sgain0.1_glr0.005": dict(CPU, style_gain=0.1, g_lr=0.005),
    "cpu_ch128": dict(CPU, channel_max=128),
    "cpu_maplr0.1": dict(CPU, embed_lr_multiplier=0.1),
    "cpu_sgain0.03": dict(CPU, style_gain=0.03),
    "cpu_b32_glr0.005": dict(CPU, batch=32, g_lr=0.005),
    # A stronger initial influence of c on the styles (a more decodable code at initialisation).
    **{f"cpu_map1_sgain{g}": dict(CPU, embed_layers=1, style_gain=g) for g in (2, 3, 5, 10)},
    "cpu_map1_w512": dict(CPU, embed_layers=1, w_dim=512),
    # Narrower networks (a cheaper step on CPU).
    **{f"cpu_map1_ch{ch}": dict(CPU, embed_layers=1, channel_max=ch) for ch in (16, 32)},
    "cpu_map1_glr0.005": dict(CPU, embed_layers=1, g_lr=0.005),
    # F with the fingerprint autoencoder's decoder architecture (plain ReLU convs, default init).
    **{f"map1_fae_lr{lr}": dict(CPU, embed_layers=1, f_arch="ae", f_lr=lr) for lr in (1e-4, 3e-4, 1e-3, 3e-3)},
    "map1_fae_lr1e-3_b32": dict(CPU, embed_layers=1, f_arch="ae", f_lr=1e-3, batch=32),
    "map1_fae_lr1e-3_glr0.005": dict(CPU, embed_layers=1, f_arch="ae", f_lr=1e-3, g_lr=0.005),
    # The same architecture with He initialisation (the autoencoder's fix, issue 4).
    **{f"map1_fae_kaiming_lr{lr}": dict(CPU, embed_layers=1, f_arch="ae", f_init="kaiming", f_lr=lr)
       for lr in (1e-4, 1e-3)},
    # F started from a trained autoencoder's decoder (--fp-decoder PATH), fine-tuned or frozen.
    **{f"map1_aeF_lr{lr}": dict(CPU, embed_layers=1, f_arch="checkpoint", f_lr=lr) for lr in (1e-4, 1e-3)},
    "map1_aeF_frozen": dict(CPU, embed_layers=1, f_arch="checkpoint", f_frozen=True),
    # The training configs' warm-ups (cpu32 = cpu_map1, quick32 = cpu_map1_ch32; cpu128 is cpu32 at --bits 128).
    "cpu32": from_config("cpu32"),
    "quick32": from_config("quick32"),
}


def run(name: str, bits: int, kimg: float, every_kimg: float, batch: int, device: str, threads: int, seed: int,
        deadline: float, fp_decoder: str | None = None) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    v = dict(RELEASE, **VARIANTS[name])
    batch = v["batch"] or batch
    steps, every = round(kimg * 1000 / batch), max(1, round(every_kimg * 1000 / batch))
    nets = build_networks("tiny32", which=("G", "F"), n_bits=bits, c_encoding=v["c_encoding"],
                          embed_lr_multiplier=v["embed_lr_multiplier"], f_head=v["f_head"],
                          embed_layers=v["embed_layers"], w_dim=v["w_dim"], embed_hidden=v["w_dim"],
                          channel_max=v["channel_max"], channel_base=32 * v["channel_max"])
    if v["f_arch"] == "ae":
        nets["F"] = init_weights(DecoderWithLatent(z_dim=nets["G"].z_dim, bits=bits, img_resolution=32), v["f_init"])
    elif v["f_arch"] == "checkpoint":
        if fp_decoder is None:
            raise click.UsageError(f"variant {name} needs --fp-decoder")
        nets["F"] = DecoderWithLatent.from_decoder(load_network(fp_decoder, names=["decoder"])["decoder"],
                                                   nets["G"].z_dim)
    G, Fd = nets["G"].to(device), nets["F"].to(device)
    with torch.no_grad():   # style_gain < 1: c starts with a smaller (more linear) influence on the image
        for _, layer in G.synthesis.layers():
            if layer.affine is not None:
                layer.affine.weight.mul_(v["style_gain"])
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
        if not v["f_frozen"]:
            opt_f.step()
        accs.append(((logits.detach() > 0).float() == c).float().mean())
        if (step + 1) % every == 0:
            curve.append(round(float(torch.stack(accs[-every:]).mean()), 3))
            if time.time() > deadline:
                break
    return {"variant": name, "bits": bits, "batch": batch, "kimg_per_point": every * batch / 1000, "curve": curve,
            "sec": round(time.time() - t0, 1), "device": device, **{k: v[k] for k in RELEASE if k != "batch"}}


@click.command()
@click.option("--bits", default="32", show_default=True, help="Comma-separated bit counts.")
@click.option("--kimg", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Training length in thousands of images.")
@click.option("--every-kimg", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="One curve point (mean batch bit accuracy) per this many kimg.")
@click.option("--batch", default=16, show_default=True, type=click.IntRange(min=1),
              help="Batch size (variants may set their own).")
@click.option("--max-sec", default=None, type=float, help="Stop every variant after this many seconds.")
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--fp-decoder", type=click.Path(exists=True, dir_okay=False),
              help="Autoencoder snapshot for the map1_aeF_* variants (F starts from its decoder).")
def main(bits, kimg, every_kimg, batch, max_sec, variants, device, jobs, threads, seed, fp_decoder):
    tasks = [(name, int(b)) for b in bits.split(",") for name in variants.split(",")]
    unknown = {n for n, _ in tasks} - set(VARIANTS)
    if unknown:
        raise click.BadParameter(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        deadline = time.time() + max_sec if max_sec else float("inf")
        futures = [pool.submit(run, n, b, kimg, every_kimg, batch, device, threads, seed, deadline, fp_decoder)
                   for n, b in tasks]
        for fut in futures:
            print(json.dumps(fut.result()), flush=True)


if __name__ == "__main__":
    main()
