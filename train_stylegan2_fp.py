"""Train the fingerprinted StyleGAN2 (docs/method.md#scalable-fingerprinting).

Examples:

\b
  # CPU, 32-bit fingerprints with the measured CPU recipe (--cfg: training/configs.py; flags given win):
  python train_stylegan2_fp.py --cfg cpu32 --data datasets/celeba32.zip --outdir runs --total-kimg 200
\b
  # The paper's CelebA 128^2 run, with the release's flag names:
  python train_stylegan2_fp.py --data-dir datasets --dataset celeba128.zip --result-dir runs \\
      --preset celeba128 --watermark-size 128 --res-modulated-range 4-128 --num-gpus 2 --batch 16 \\
      --gamma 100 --decoupleL2-weight 2 --latentsRecL2-weight 1 --watermarkCls-weight 2

Re-running the same command continues the newest run with the same resolved options from its last
training state (``--resume auto``, the default), exactly where it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import torch

from dnnlib.cli import FiniteFloat, fail, parsed_by
from dnnlib.release_cli import CONFIG, ReleaseCommand
from metrics import metric_main
from metrics.fid import is_url, split_pin
from networks.presets import PRESETS
from networks.sg2_fingerprint import PARAMETER_GROUPS
from torch_utils import distributed as dist_utils
from training.augment import canonical_spec
from training.configs import GAN_CONFIGS, amp_option, config_flags, config_option, resolve_amp
from training.loss import LossWeights
from training.run_state import TRAINING_ERRORS, error_line
from training.training_loop import TrainingOptions, training_loop

MAX_BITS = 4096         # Fingerprint bits (network files of this project hold at most this many).
MAX_KIMG = 1e9          # --total-kimg and --tick (a billion kimg: far beyond any run, and exact in float).
MAX_MINUTES = 1e8       # --minutes (190 years).


class FloatOrOff(FiniteFloat):
    """A finite float, or 'off' (None): turns off on the command line what a config turns on."""

    name = "finite float or off"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "off":
            return None
        return super().convert(value, param, ctx)


def _parse_range(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        lo, hi = (int(v) for v in value.split("-"))
    except ValueError:
        raise click.BadParameter(f"expected A-B, e.g. 4-128, got {value!r}") from None
    if lo > hi or lo < 4:
        raise click.BadParameter(f"need 4 <= A <= B, got {value!r}")
    return lo, hi


@click.command(cls=ReleaseCommand, help=__doc__, release_forms={"--config": CONFIG})
@config_option(GAN_CONFIGS)
@click.option("--data", type=click.Path(path_type=Path), help="Dataset zip or folder (dataset_tool.py).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Release alias: folder of --dataset.")
@click.option("--dataset", help="Release alias: dataset name inside --data-dir.")
@click.option("--outdir", "--result-dir", "outdir", type=click.Path(path_type=Path), required=True,
              help="Parent folder of run folders.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="tiny32", show_default=True)
@click.option("--bits", "--watermark-size", "n_bits", type=click.IntRange(0, MAX_BITS),
              help="Fingerprint bits (default: the preset's; 0 trains the plain StyleGAN2 baseline).")
@click.option("--res-modulated-range", "mod_range", help="Modulated resolutions A-B (default: the preset's).")
@click.option("--gpus", "--num-gpus", "gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes (GPUs with --device cuda; gloo processes on CPU).")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Global batch.")
@click.option("--batch-gpu", type=click.IntRange(min=1), help="Per-process round size (default batch/gpus).")
@click.option("--gamma", type=FiniteFloat(min=0), default=100.0, show_default=True, help="R1 weight.")
@click.option("--consistency-weight", "--decoupleL2-weight", "consistency", type=FiniteFloat(min=0), default=2.0,
              show_default=True,
              help="Consistency term ||G(z,c) - G(z,c')||^2.")
@click.option("--consistency-noise", type=click.Choice(["independent", "paired"]), default="independent",
              show_default=True, help="Noise of the consistency pair G(z, c), G(z, c'): independent draws (the "
                                      "release) or one draw for both, so that the term sees only what c changes.")
@click.option("--consistency-to", type=click.Choice(["pair", "baseline"]), default="pair", show_default=True,
              help="What the consistency term holds G(z, c) to: G(z, c') for a second random fingerprint (the "
                   "release), or the --baseline snapshot's G_ema for the same z and noise (its plain image).")
@click.option("--shared-change-weight", "shared_change", type=FiniteFloat(min=0),
              help="With --consistency-to baseline: ||(G(z, c) - B(z) + G(z, 1 - c) - B(z)) / 2||^2, the part of the "
                   "change to the baseline's image B(z) that a fingerprint and its complement share (the same for "
                   "every user, so it carries no bit); each batch is then half fingerprints, half their complements.")
@click.option("--latent-rec-weight", "--latentsRecL2-weight", "latent_rec", type=FiniteFloat(min=0), default=1.0,
              show_default=True,
              help="Latent reconstruction ||z - F_z(G(z,c))||^2.")
@click.option("--fp-weight", "--watermarkCls-weight", "fingerprint", type=FiniteFloat(min=0), default=2.0,
              show_default=True, help="Fingerprint BCE.")
@click.option("--adversarial-weight", "adversarial", type=FiniteFloat(min=0), default=1.0, show_default=True,
              help="G's adversarial term (0: no D at all, G and F held by the other terms, as a fine-tune held to "
                   "a --baseline can be).")
@click.option("--pl-weight", type=FiniteFloat(min=0), default=2.0, show_default=True,
              help="Path-length regularisation (0: off).")
@click.option("--ema-kimg", type=FiniteFloat(min=0), default=10.0, show_default=True,
              help="Half-life of G_ema's moving average, in kimg.")
@click.option("--ema-rampup", type=FloatOrOff(min=0, min_open=True),
              help="Cap the half-life at this fraction of the images seen so far (e.g. 0.05), so G_ema keeps up "
                   "with G in short runs (default: off, as the release).")
@click.option("--mirror", "--mirror-augment", "mirror", type=bool, default=False, show_default=True,
              help="x-flip augmentation of the reals.")
@click.option("--total-kimg", type=FiniteFloat(0, MAX_KIMG, min_open=True), default=1000, show_default=True)
@click.option("--minutes", type=FiniteFloat(0, MAX_MINUTES, min_open=True),
              help="Stop at the first tick after this much training time (wall minutes over every start of the "
                   "run; snapshot, grids and metrics as at the end), or at --total-kimg if that comes first.")
@click.option("--tick", "tick_kimg", type=FiniteFloat(0, MAX_KIMG, min_open=True), default=4.0, show_default=True,
              help="kimg per tick (progress report and training state).")
@click.option("--snap", type=click.IntRange(min=1), default=50, show_default=True,
              help="Ticks between network snapshots, grids and metrics.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--resume", default="auto", show_default=True,
              help="'auto' (continue the newest run with the same options), 'none', or a network snapshot "
                   "(.safetensors) to start from.")
@click.option("--metrics", default="quality_snapshot", show_default=True,
              help="Comma-separated metrics at each snapshot, or 'none'. The default: bit accuracy beside image "
                   "quality (SWD, diversity, consistency) from one set of 512 samples; a plain run gets the "
                   "quality only.")
@click.option("--augment-fp", callback=parsed_by(canonical_spec),
              help="Immunized training: perturbations of generated images before F, "
              "NAME[:LO-HI][@P],... from crop, resize, blur, noise, brightness, contrast, saturation, jpeg, or 'all' "
              "(training/augment.py; default: none, as the release).")
@click.option("--inception", help="TorchScript Inception-v3 (path or URL) for the FID metrics in --metrics.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=0.002, show_default=True)
@click.option("--f-lr", type=FiniteFloat(min=0, min_open=True), help="Learning rate of F (default --lr).")
@click.option("--f-beta1", type=FiniteFloat(0, 1, max_open=True), default=0.0, show_default=True,
              help="Adam beta1 of F.")
@click.option("--c-encoding", type=click.Choice(["raw", "pm1"]), help="How c enters E (default: the preset's).")
@click.option("--embed-lrmul", "embed_lr_multiplier", type=FiniteFloat(min=0, min_open=True),
              help="E's lr multiplier (default: the preset's, 0.01 as the release).")
@click.option("--embed-layers", "embed_layers", type=click.IntRange(1, 32),
              help="Depth of E (default: the preset's, 8 as the release).")
@click.option("--f-head", type=click.IntRange(1, 4096), help="Width of F's last hidden layer (default: the preset's).")
@click.option("--fp-decoder", type=click.Path(exists=True, dir_okay=False),
              help="Start F from the decoder of this autoencoder snapshot (train_fingerprint_ae.py; same bits and "
                   "resolution); F then has the autoencoder decoder's architecture.")
@click.option("--baseline", "--init-from", "baseline", type=click.Path(exists=True, dir_okay=False),
              help="Start from a plain run's network snapshot (trained with --bits 0, the same preset): its G, D "
                   "and F, with the fingerprint modulation at the identity, so the first step draws its images. "
                   "Or fine-tune a standard StyleGAN2 (a file of legacy.py from an NVlabs pickle or state dict, or "
                   "a plain run of an sg2 preset): G starts as its G_ema with a fingerprint module at the identity, "
                   "D as its D, F new (--cfg sg2ft). With --resume PATH the run starts from that snapshot instead, "
                   "and the baseline is only what --consistency-to baseline holds the images to (e.g. immunizing a "
                   "cpu32ft model).")
@click.option("--train-params", type=click.Choice(list(PARAMETER_GROUPS)),
              help="Fine-tuning a standard StyleGAN2: what of G trains, the fingerprint module ('embedding'), also "
                   "the synthesis layers' style affines ('affine'), or everything ('all', the default).")
@click.option("--shared-lr", type=FiniteFloat(min=0, min_open=True),
              help="Fine-tuning a standard StyleGAN2: Adam's learning rate of the trained parameters every user shares "
                   "(all but the fingerprint module, which keeps --lr); each Adam step moves every weight by about "
                   "its lr, and these moves change every user's images alike (default: --lr).")
@click.option("--freeze-decoder", is_flag=True, help="With --fp-decoder: keep the decoder's weights fixed.")
@click.option("--fp-warmup", type=FloatOrOff(0, 1), help="Fingerprint warm-up: consistency, adversarial and "
              "latent-reconstruction terms off until F's batch bit accuracy exceeds this (e.g. 0.9; default: off).")
@click.option("--fp-warmup-terms", default="consistency,adversarial,latent_rec", show_default=True,
              help="Terms held off during the warm-up (comma-separated; without 'adversarial', D keeps training).")
@click.option("--fp-ramp-kimg", type=FiniteFloat(min=0), default=4.0, show_default=True,
              help="After the warm-up, ramp those terms in over this many kimg.")
@click.option("--guard-kimg", type=FiniteFloat(min=0), default=200.0, show_default=True,
              help="Warn loudly if bit accuracy is still ~0.5 after this many kimg.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@amp_option()
@click.option("--channels-last/--no-channels-last", default=False, show_default=True,
              help="NHWC memory format for the networks (faster on every CPU measured).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the networks.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="DataLoader workers.")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def main(**a):
    data, data_dir, dataset, device, gpus, batch = (a[k] for k in ("data", "data_dir", "dataset", "device", "gpus",
                                                                   "batch"))
    if data is None:
        if data_dir is None or dataset is None:
            raise click.UsageError("give --data, or --data-dir with --dataset")
        data = data_dir / dataset
        if not data.exists() and data.with_suffix(".zip").exists():
            data = data.with_suffix(".zip")
    if not data.exists():
        raise click.BadParameter(f"{data} does not exist", param_hint="--data")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available", param_hint="--device")
    if batch % gpus != 0:
        raise click.BadParameter(f"--batch {batch} is not divisible by --gpus {gpus}", param_hint="--batch")
    metric_names = () if a["metrics"] == "none" else tuple(m for m in a["metrics"].split(",") if m)
    try:
        metric_names = tuple(metric_main.canonical_name(m) for m in metric_names)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--metrics") from e
    fid_names = [m for m in metric_names if metric_main.needs_inception(m)]
    if fid_names and not a["inception"]:
        raise click.BadParameter(f"{', '.join(fid_names)} needs an Inception network: give --inception FILE (a "
                                 "TorchScript Inception-v3) or URL#sha256=HEX, or leave the metric out",
                                 param_hint="--metrics")
    if a["inception"] and not is_url(a["inception"]) and not Path(split_pin(a["inception"])[0]).is_file():
        raise click.BadParameter(f"{a['inception']}: no such file (a TorchScript Inception-v3, or URL#sha256=HEX)",
                                 param_hint="--inception")
    if a["freeze_decoder"] and a["fp_decoder"] is None:
        raise click.BadParameter("--freeze-decoder needs --fp-decoder", param_hint="--freeze-decoder")
    warmup_terms = tuple(t for t in a["fp_warmup_terms"].split(",") if t)
    if not set(warmup_terms) <= {"consistency", "adversarial", "latent_rec"}:
        raise click.BadParameter(f"{a['fp_warmup_terms']!r}: choose among consistency, adversarial, latent_rec",
                                 param_hint="--fp-warmup-terms")
    resume = a["resume"]
    if resume not in ("auto", "none") and not Path(resume).is_file():
        raise click.BadParameter(f"{resume} is not 'auto', 'none' or a network snapshot file", param_hint="--resume")
    if a["baseline"] is not None and a["n_bits"] == 0:
        raise click.BadParameter("--baseline starts a fingerprinted run: give --bits > 0", param_hint="--baseline")
    if a["shared_change"] and a["consistency_to"] != "baseline":
        raise click.BadParameter("it holds a change to the baseline's images: give --consistency-to baseline",
                                 param_hint="--shared-change-weight")
    if a["consistency_to"] == "baseline" and a["baseline"] is None:
        raise click.BadParameter("it holds the images to the --baseline snapshot's: give --baseline",
                                 param_hint="--consistency-to baseline")
    if dist_utils.launched_by_torchrun():
        gpus = int(os.environ["WORLD_SIZE"])
    # The options are valid: say what the config set and what the hardware decided.
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    flags = config_flags(click.get_current_context())
    if flags:
        log(f"--cfg {a['cfg']} sets {' '.join(flags)}")
    amp = resolve_amp(a["amp"], device, log)
    passthrough = ("cfg", "preset", "n_bits", "c_encoding", "embed_lr_multiplier", "embed_layers", "f_head",
                   "batch_gpu", "lr", "f_lr", "f_beta1", "mirror", "consistency_noise", "consistency_to", "total_kimg",
                   "minutes", "tick_kimg", "snap", "seed",
                   "channels_last", "workers", "fp_warmup", "fp_ramp_kimg", "guard_kimg", "ema_kimg", "ema_rampup",
                   "freeze_decoder", "train_params", "shared_change", "shared_lr")
    opts = TrainingOptions(
        data=str(data.resolve()), outdir=str(a["outdir"].resolve()), mod_range=_parse_range(a["mod_range"]),
        batch=batch, gpus=gpus, device=device, amp=amp, compile=a["compile_"], metrics=metric_names,
        inception=a["inception"],
        augment_fp=a["augment_fp"],
        fp_warmup_terms=warmup_terms,
        fp_decoder=None if a["fp_decoder"] is None else str(Path(a["fp_decoder"]).resolve()),
        baseline=None if a["baseline"] is None else str(Path(a["baseline"]).resolve()),
        weights=LossWeights(adversarial=a["adversarial"], consistency=a["consistency"], latent_rec=a["latent_rec"],
                            fingerprint=a["fingerprint"], r1_gamma=a["gamma"], pl_weight=a["pl_weight"]),
        **{k: a[k] for k in passthrough})
    if a["dry_run"]:
        click.echo(json.dumps(opts.to_json(), indent=2))
        return
    try:
        dist_utils.launch(training_loop, opts, gpus, device, resume=resume)
    except TRAINING_ERRORS as e:
        fail(error_line(e))


if __name__ == "__main__":
    main()
