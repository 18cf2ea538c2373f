"""How fast does the fingerprint autoencoder learn its bits? Variants side by side (issue 4).

Trains encoder + decoder on real images held in memory with the training loop's loss and L2
schedule (training/autoencoder_loop.py), and prints one JSON line per window: steps, kimg,
seconds, batch bit accuracy and PSNR (float images, window means), lambda_L2.

    python bench/ae_learnability.py --data datasets/celeba64ae.zip --resolution 32 --bits 100 \
        --steps 600 --every 50 --variants release,kaiming,kaiming_lr1e-3 [--jobs 2 --threads 1]

A variant is a name of comma-free tokens joined by '_': ``release`` (the release's settings),
``kaiming`` (He initialisation), ``lr<x>``, ``batch<n>``, ``residual``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.dataset import ImageDataset  # noqa: E402
from networks.autoencoder import AutoencoderDecoder, FingerprintEncoder, init_weights  # noqa: E402
from training.autoencoder_loop import AETrainingOptions, autoencoder_loss, l2_lambda  # noqa: E402


def parse_variant(name: str) -> dict:
    cfg = dict(init="pytorch", lr=1e-4, batch=64, residual=False)
    for tok in name.split("_"):
        if tok == "release":
            continue
        elif tok in ("kaiming", "pytorch"):
            cfg["init"] = tok
        elif tok == "residual":
            cfg["residual"] = True
        elif tok.startswith("lr"):
            cfg["lr"] = float(tok[2:])
        elif tok.startswith("batch"):
            cfg["batch"] = int(tok[5:])
        else:
            raise SystemExit(f"unknown variant token {tok!r} in {name!r}")
    return cfg


def load_images(path: str, count: int, resolution: int) -> torch.Tensor:
    ds = ImageDataset(path, max_size=count)
    x = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))])).float() / 127.5 - 1
    if x.shape[-1] != resolution:
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True,
                                            align_corners=False).clamp(-1, 1)
    return x


def run(args: argparse.Namespace, name: str) -> list[dict]:
    torch.set_num_threads(args.threads)
    cfg = parse_variant(name)
    images = load_images(args.data, args.images, args.resolution)
    opts = AETrainingOptions(data=args.data, outdir="", resolution=args.resolution, bits=args.bits,
                             batch=cfg["batch"], lr=cfg["lr"], residual=cfg["residual"],
                             l2_wait_steps=args.l2_wait, l2_ramp_steps=args.l2_ramp, init=cfg["init"])
    torch.manual_seed(args.seed)
    enc = FingerprintEncoder(args.bits, args.resolution, 3, residual=cfg["residual"])
    dec = AutoencoderDecoder(args.bits, args.resolution, 3)
    init_weights(enc, cfg["init"])
    init_weights(dec, cfg["init"])
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(args.seed)
    rows, window, l2_start, t0 = [], [], -1, time.time()
    for step in range(args.steps):
        idx = torch.randint(len(images), (cfg["batch"],), generator=gen)
        x = images[idx]
        bits = torch.randint(0, 2, (cfg["batch"], args.bits), generator=gen).float()
        lam = l2_lambda(step, l2_start, opts)
        loss, terms = autoencoder_loss(enc, dec, x, bits, lam)
        stats = dict(bit_acc=float(terms[2]), psnr=float(terms[3]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if l2_start < 0 and stats["bit_acc"] > opts.l2_threshold:
            l2_start = step
        window.append((stats["bit_acc"], stats["psnr"]))
        if (step + 1) % args.every == 0:
            acc, psnr = np.mean(window, axis=0)
            rows.append(dict(variant=name, bits=args.bits, res=args.resolution, step=step + 1,
                             kimg=round((step + 1) * cfg["batch"] / 1000, 2), sec=round(time.time() - t0, 1),
                             bit_acc=round(float(acc), 4), psnr=round(float(psnr), 2), l2_lambda=lam))
            print(json.dumps(rows[-1]), flush=True)
            window = []
            if args.max_sec and time.time() - t0 > args.max_sec:
                break
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--bits", type=int, default=100)
    p.add_argument("--images", type=int, default=4096, help="images held in memory")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--l2-wait", type=int, default=1000)
    p.add_argument("--l2-ramp", type=int, default=3000)
    p.add_argument("--variants", default="release,kaiming")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-sec", type=float, default=0)
    p.add_argument("--out", help="append the rows to this JSONL file")
    args = p.parse_args()
    names = args.variants.split(",")
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.starmap(run, [(args, n) for n in names])
    else:
        results = [run(args, n) for n in names]
    if args.out:
        with open(args.out, "a") as f:
            for rows in results:
                for r in rows:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
