"""Named training configs (``--cfg``) and the hardware checks behind ``--amp auto``.

A config is a named set of option values for a training command. It fills every option that the
command line leaves unset, so a recipe is written once, here, and scripts, benches and tests name
it. The command line always wins: ``--cfg cpu32 --bits 128`` is the 32-bit CPU recipe with 128
bits. Option names are the commands' parameter names (``n_bits`` is ``--bits``, ``embed_layers``
is ``--embed-layers``, ``latent_rec`` is ``--latent-rec-weight``, ``tick_kimg`` is ``--tick``); the
values are what the command line would give, and they pass through the same checks.

``paper`` is the release's recipe: the commands' own defaults, nothing added. The CPU configs are
the recipes measured on 2 CPU cores (docs/method.md#learnability explains each lever; the
measurements are in docs/RESULTS.md). They turn on the two speed options: NHWC memory format
(faster on every CPU measured) and bfloat16 autocast where the hardware computes bfloat16
natively (``--amp auto``; on a CPU without it autocast is about 15 times slower).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from click.core import ParameterSource


@dataclass(frozen=True)
class Config:
    description: str                  # One line, shown by --help.
    options: Mapping[str, Any]        # Parameter name -> value, as the command line would give it.


# The 32-bit CPU recipe (tiny32, CelebA 32x32): the full GAN, with the consistency and latent-reconstruction
# terms held off until F's batch bit accuracy passes 0.9, then ramped in over 4 kimg; c as +-1, a one-layer E
# at full learning rate, F with a 512-wide head, lr 0.01 and beta1 0.9; G_ema's half-life ramped up. A snapshot
# (with its metrics: bits and image quality) every 20 kimg, a few percent of the run's time.
_CPU32 = dict(
    preset="tiny32", n_bits=32, fp_warmup=0.9, fp_warmup_terms="consistency,latent_rec", fp_ramp_kimg=4.0,
    c_encoding="pm1", embed_layers=1, embed_lr_multiplier=1.0, f_lr=0.01, f_beta1=0.9, f_head=512,
    ema_rampup=0.05, tick_kimg=2.0, snap=10, amp="auto", channels_last=True)

# Stage 2 of the recipe that keeps the generator (issue 16; docs/results/quality.md): G, D and F start from a plain
# cpu32 baseline (--baseline), and the consistency term holds every fingerprinted image to the baseline's image of
# the same z (--consistency-to baseline) with this weight from the first step.
CPU32FT_CONSISTENCY = 20.0
# sg2ft holds each image to the original three times as hard: at 20 the bits passed 0.99 at 40 of the 108 kimg and the
# images ended 26.4 dB from the original's (SWD 1.32 x); at 60 they pass 0.99 between 90 and 108 kimg and end
# 0.992, the images 29.2 dB (SWD 1.20 x) (docs/results/sg2_finetune.md).
SG2FT_CONSISTENCY = 60.0
# Neither stage trains D (--adversarial-weight 0): with the images held to the original's, D changed nothing measurable
# at equal kimg (40 kimg: the same bits and PSNR to 0.01 dB) and costs half the time. Stage 2 (sg2ft2) continues from
# stage 1's snapshot: the decoder trains at a small lr (it reads the bits G has learned to write, as G's changes
# shrink) and the change that a fingerprint and its complement share is held at weight 200 (each batch half
# complements): what was left after stage 1 was a smoothing common to every user (docs/results/sg2_finetune.md).
_SG2FT = dict(_CPU32, preset="sg2tiny32", fp_warmup="off", consistency=SG2FT_CONSISTENCY, consistency_to="baseline",
              latent_rec=0.0, adversarial=0.0)
SG2FT2_SHARED_CHANGE = 200.0
SG2FT2_F_LR = 3e-4
SG2FT2_FP_WEIGHT = 3.0      # the BCE at 1.5 x (docs/results/sg2_finetune.md)

# The quickstart's recipe (quick32 preset: tiny32 at half the width).
_QUICK32 = dict(_CPU32, preset="quick32", fp_warmup_terms="consistency,latent_rec,adversarial", pl_weight=0.0,
                total_kimg=52.0, workers=1, amp="off", channels_last=False)

# The quickstart's two stages on the built-in toy faces (scripts/quickstart.sh; docs/results/quickstart.md): a plain
# quick32 baseline (R1 weight 1: the toy faces' SWD is a third lower at 20 kimg than with 100), then 32 bits held to it
# with F the frozen decoder of an autoencoder trained on the same faces (AE config quick32): a new F does not start
# from a young toy-face baseline, a trained decoder does. The BCE at twice cpu32ft's weight: 0.88 bits after 20 kimg
# instead of 0.77, for 1 dB of consistency.
_QUICK32BASE = dict(_CPU32, preset="quick32", n_bits=0, gamma=1.0, pl_weight=0.0, fp_warmup="off", total_kimg=50.0,
                    workers=0)
_QUICK32FT = dict(_QUICK32BASE, n_bits=32, consistency=CPU32FT_CONSISTENCY, consistency_to="baseline", fingerprint=4.0,
                  freeze_decoder=True, total_kimg=64.0, workers=1)

GAN_CONFIGS: dict[str, Config] = {
    "paper": Config("the release's recipe: the option defaults (float32, NCHW), the network from --preset", {}),
    "cpu32": Config("32 bits on CPU (tiny32): fingerprint warm-up to 0.9, then the full GAN "
                    "(scripts/celeba32_cpu.sh)", _CPU32),
    "cpu128": Config("128 bits on CPU (tiny32): G + F warm-up without D to 0.86, no latent reconstruction, "
                     "no path-length term",
                     dict(_CPU32, n_bits=128, fp_warmup=0.86, fp_warmup_terms="consistency,adversarial,latent_rec",
                          latent_rec=0.0, pl_weight=0.0, tick_kimg=4.0, snap=5)),
    "cpu32ft": Config("32 bits on CPU that keep the generator: stage 2 from a plain cpu32 baseline's snapshot "
                      "(--baseline; trained with --bits 0), the fingerprint modulation at the identity, the "
                      "consistency term holding each image to the baseline's image of its z from the first step "
                      "(scripts/quality_tax.sh)",
                      dict(_CPU32, fp_warmup="off", consistency=CPU32FT_CONSISTENCY, consistency_to="baseline")),
    "sg2cpu32": Config("a plain standard StyleGAN2 (NVlabs' layout) on CPU at 32x32: cpu32's options, preset "
                       "sg2tiny32, no fingerprint, no latent reconstruction (the network that sg2ft fingerprints)",
                       dict(_CPU32, preset="sg2tiny32", n_bits=0, latent_rec=0.0)),
    "sg2ft": Config("32 bits fine-tuned into a standard StyleGAN2 on CPU, stage 1 (--init-from FILE from legacy.py; "
                    "give --fp-decoder AE --freeze-decoder, a trained autoencoder's decoder: a new F does not start): "
                    "G starts as its G_ema with the fingerprint module at the identity, each image held to the "
                    "original's image of its z from the first step (weight 60), no latent reconstruction, no D "
                    "(scripts/sg2_finetune.sh, docs/results/sg2_finetune.md)", _SG2FT),
    "sg2ft2": Config("stage 2 of sg2ft, from its last snapshot (--resume SNAPSHOT, with stage 1's --init-from and "
                     "--fp-decoder, without --freeze-decoder): the decoder trains (lr 3e-4) and the change a "
                     "fingerprint and its complement share is held (weight 200), the BCE at weight 3 "
                     "(scripts/sg2_finetune.sh)",
                     dict(_SG2FT, shared_change=SG2FT2_SHARED_CHANGE, f_lr=SG2FT2_F_LR,
                          fingerprint=SG2FT2_FP_WEIGHT)),
    # float32 NCHW, as the quickstart was measured (8 min 25 s from a fresh clone); bf16 is not re-measured there.
    "quick32": Config("the quickstart (quick32 preset, 32 bits, 52 kimg): G + F warm-up without D to 0.9, "
                      "no path-length term (scripts/quickstart.sh)",
                      _QUICK32),
    "quick32base": Config("stage 1 of the quickstart: a plain quick32 StyleGAN2 on the toy faces, R1 weight 1, 50 kimg "
                          "(scripts/quickstart.sh)", _QUICK32BASE),
    "quick32ft": Config("stage 2 of the quickstart: 32 bits held to a quick32base baseline (--baseline) from the first "
                        "step, F the frozen decoder of an AE quick32 autoencoder (--fp-decoder), 64 kimg "
                        "(scripts/quickstart.sh)", _QUICK32FT),
}

AE_CONFIGS: dict[str, Config] = {
    "paper": Config("the release's recipe at 128x128, 100 bits (the option defaults)", {}),
    "cpu64": Config("CelebA 64x64, 100 bits, in a CPU hour: lr 1e-3, a short L2 wait and ramp, 1,000 images held "
                    "out for the metric (scripts/celeba64_ae.sh)",
                    dict(resolution=64, n_bits=100, holdout=1000, lr=1e-3, l2_wait_steps=100, l2_ramp_steps=600,
                         tick_kimg=4.0, snap=5, workers=1)),
    "cpu32": Config("CelebA 32x32, 32 bits: cpu64's options at 32x32, the decoder that sg2ft fine-tuning reads the "
                    "bits with (--fp-decoder; scripts/sg2_finetune.sh)",
                    dict(resolution=32, n_bits=32, holdout=1000, lr=1e-3, l2_wait_steps=100, l2_ramp_steps=600,
                         tick_kimg=4.0, snap=2, workers=1)),
    "quick32": Config("the quickstart's toy faces at 32x32, 32 bits, 60 kimg (1.0 of the bits at ~26 dB): the decoder "
                      "that GAN config quick32ft reads the bits with (scripts/quickstart.sh)",
                      dict(resolution=32, n_bits=32, holdout=200, lr=1e-3, l2_wait_steps=100, l2_ramp_steps=600,
                           tick_kimg=4.0, snap=5, total_kimg=60.0, workers=0)),
}


def config_option(configs: Mapping[str, Config], default: str = "paper") -> Callable:
    """The ``--cfg`` option: the named config becomes the defaults of the command's other options.

    It is processed before every other option (click's eager options) and fills click's ``default_map``,
    so an option given on the command line keeps its value and ``ctx.get_parameter_source`` tells
    COMMANDLINE from DEFAULT_MAP (the config) and DEFAULT (the option's own default).
    """
    def apply(ctx: click.Context, param: click.Parameter, name: str) -> str:
        names = {p.name for p in ctx.command.params}
        unknown = sorted(set(configs[name].options) - names)
        if unknown:       # a typo in a config would otherwise be ignored silently
            raise click.BadParameter(f"config {name!r} sets unknown options {unknown}", ctx=ctx, param=param)
        ctx.default_map = {**(ctx.default_map or {}), **configs[name].options}
        return name

    listing = "; ".join(f"{name}: {cfg.description}" for name, cfg in configs.items())
    return click.option("--cfg", type=click.Choice(list(configs)), default=default, show_default=True,
                        is_eager=True, callback=apply,
                        help=f"Named config (training/configs.py) filling every option not given here. {listing}.")


def config_flags(ctx: click.Context) -> list[str]:
    """The options that took their value from the config (not from the command line or the option's own
    default), written as command-line flags: what ``--cfg`` added to this command."""
    flags = []
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT_MAP:
            continue
        value = ctx.params.get(p.name)
        if p.is_bool_flag:
            flags.append(p.opts[0] if value else (p.secondary_opts or ["(off)"])[0])
        else:
            flags.append(f"{p.opts[0]} {'off' if value is None else value}")
    return flags


# --- Speed options decided by the hardware ------------------------------------------------------------

CPUINFO = Path("/proc/cpuinfo")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")     # x86 flags of native bfloat16 arithmetic (AVX-512 BF16, AMX)
AMP_SLOW = ("bfloat16 autocast without native support was measured 15x slower (28.3 img/s in float32 against 1.9 "
            "with --amp on an AVX2-only EPYC, docs/results/throughput.md)")


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is no such file, e.g. macOS or Windows)."""
    try:
        text = (cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether ``device`` ('cpu' or 'cuda') computes bfloat16 natively, and what says so (for the log)."""
    if torch.device(device).type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, f"{torch.cuda.get_device_name()} {'supports' if native else 'lacks'} native bfloat16"
    found = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    if found:
        return True, f"the CPU has {', '.join(found)}"
    return False, f"the CPU has none of {', '.join(BF16_CPU_FLAGS)}"


def resolve_amp(choice: str, device: str, log: Callable[[str], None]) -> bool:
    """``--amp auto|on|off`` -> whether to autocast to bfloat16 on ``device``; logs the decision.

    'auto' turns it on only where the hardware computes bfloat16 natively; an explicit 'on' elsewhere is
    obeyed with a warning.
    """
    if choice == "off":
        return False
    native, why = native_bf16(device)
    if choice == "auto":
        log(f"--amp auto: bfloat16 autocast {'on' if native else 'off'} ({why})")
        return native
    if choice != "on":
        raise ValueError(f"--amp must be auto, on or off, not {choice!r}")
    if not native:
        log(f"WARNING: --amp on, but {why}: {AMP_SLOW}. Use --amp auto to decide from the hardware.")
    return True


def amp_option(default: str = "off") -> Callable:
    """``--amp auto|on|off``; a bare ``--amp`` means on (the flag of earlier versions)."""
    return click.option("--amp", type=click.Choice(["auto", "on", "off"]), is_flag=False, flag_value="on",
                        default=default, show_default=True,
                        help="bfloat16 autocast. auto: on where the device computes bfloat16 natively (CUDA GPUs "
                             f"that support it; CPUs with {' or '.join(BF16_CPU_FLAGS)}); a bare --amp means on.")


def fingerprint_pathway(name: str) -> dict[str, Any]:
    """What a GAN config trains in its fingerprint warm-up, for the G + F experiments (tests, sweeps).

    The network overrides (``preset``, ``c_encoding``, ``embed_layers``, ``embed_lr_multiplier``,
    ``f_head``), the optimisers (``g_lr``, ``f_lr``, ``f_beta1``; G's beta1 is 0) and the weight of the
    latent reconstruction during the warm-up (0 when the warm-up holds it off). Options the config leaves
    unset come back as None: the preset's value, or for ``f_lr`` the GAN's lr.
    """
    o = GAN_CONFIGS[name].options
    held_off = o.get("fp_warmup") is not None and "latent_rec" in o.get("fp_warmup_terms", "latent_rec")
    lr = o.get("lr", 0.002)
    return dict(preset=o.get("preset", "tiny32"), c_encoding=o.get("c_encoding"), embed_layers=o.get("embed_layers"),
                embed_lr_multiplier=o.get("embed_lr_multiplier"), f_head=o.get("f_head"), g_lr=lr,
                f_lr=o.get("f_lr") or lr, f_beta1=o.get("f_beta1", 0.0),
                latent_rec=0.0 if held_off else o.get("latent_rec", 1.0))
