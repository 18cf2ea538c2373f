"""Benchmark: training throughput (img/s) of full fingerprinted-StyleGAN2 steps.

One step = G_main (adversarial + consistency + latent + BCE; G and F updated) and D_main, plus the
lazy regularisers at their intervals (path length every 4 steps, R1 every 16), as the training
loop runs them; reals are random tensors, so data loading is not timed. Every timing names the
machine's CPU capability (the kernels PyTorch dispatches to) and whether the device computes bfloat16
natively, which decides what --amp costs (training/configs.py).
Usage: python bench/bench_train_step.py [--preset tiny32] [--batch 16] [--steps 16] [--threads 2] [--device cpu]
                                       [--amp auto|on|off] [--channels-last] [--fused]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from networks import build_networks  # noqa: E402
from torch_utils.bits import random_fingerprints  # noqa: E402
from training.configs import amp_option, native_bf16, resolve_amp  # noqa: E402
from training.loss import FingerprintGANLoss, LossWeights  # noqa: E402


@click.command()
@click.option("--preset", default="tiny32", show_default=True)
@click.option("--batch", default=16, show_default=True, type=click.IntRange(min=4))
@click.option("--steps", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
@amp_option()
@click.option("--channels-last", is_flag=True, help="NHWC memory format (train_stylegan2_fp.py --channels-last).")
@click.option("--fused", is_flag=True,
              help="Fused (grouped) modulated convolutions instead of the training default (unfused).")
def main(preset: str, batch: int, steps: int, threads: int, device: str, amp: str, channels_last: bool,
         fused: bool) -> None:
    torch.set_num_threads(threads)
    amp = resolve_amp(amp, device, lambda msg: click.echo(msg, err=True))
    native, why = native_bf16(device)
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    nets = {k: v.to(device, memory_format=fmt) for k, v in build_networks(preset).items()}
    G, D, F = nets["G"], nets["D"], nets["F"]
    loss = FingerprintGANLoss(G, D, F, LossWeights(), fused_modconv=fused)
    opt_g = torch.optim.Adam(list(G.parameters()) + list(F.parameters()), lr=0.002, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
    R = G.img_resolution

    def step(i: int) -> None:
        z = torch.randn(batch, G.z_dim, device=device)
        c = random_fingerprints(batch, G.n_bits, device=device)
        c2 = random_fingerprints(batch, G.n_bits, device=device)
        real = torch.rand(batch, 3, R, R, device=device) * 2 - 1
        phases = [(lambda: loss.generator_main(z, c, c2, {})[0], opt_g, 1),
                  (lambda: loss.generator_pl(z, c)[0] * 4, opt_g, 4),
                  (lambda: loss.discriminator_main(real, z, c)[0], opt_d, 1),
                  (lambda: loss.discriminator_r1(real)[0] * 16, opt_d, 16)]
        for fn, opt, interval in phases:
            if i % interval == 0:
                opt.zero_grad(set_to_none=True)
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                    value = fn()
                value.backward()
                opt.step()

    step(0)
    step(1)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    flags = ", ".join(n for n, on in (("bf16", amp), ("channels_last", channels_last), ("fused", fused)) if on)
    print(f"{preset} training, batch {batch}, {device} ({threads} threads{', ' + flags if flags else ''}): "
          f"{steps * batch / dt:.1f} img/s "
          f"({dt / steps * 1e3:.0f} ms/step over {steps} steps, regularisers included at their intervals); "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, bfloat16 {'native' if native else 'not native'} "
          f"({why})")


if __name__ == "__main__":
    main()
