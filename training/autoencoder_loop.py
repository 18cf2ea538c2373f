"""Training the fingerprint autoencoder (``docs/method.md#artificial-fingerprinting``; one process, or many).

Loss per batch: BCE(decoder(encoder(x, c)), c) + lambda_L2(t) * MSE(encoder(x, c), x) with images in
[0, 1] (the release's scale) and a fresh random fingerprint c per image. The L2 schedule: lambda is 0
until the first step whose batch bit accuracy exceeds ``l2_threshold``; ``l2_wait_steps`` later it
ramps linearly to ``l2_weight`` over ``l2_ramp_steps``. Same run-folder conventions, determinism and
exact resume as the GAN's training loop (the shared scaffold: training/run.py): everything random in a step
is drawn after seeding with (seed, step, round), and the real images come from a sampler whose order
depends only on (seed, position). With ``ema_kimg`` > 0 a moving average of the weights (like the GAN's
G_ema) is what snapshots, grids and the metric use; Adam's step-to-step noise otherwise shows in them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from data.dataset import ImageDataset
from dnnlib.util import seed_for
from metrics.fingerprint import autoencoder_metrics
from networks.autoencoder import AutoencoderDecoder, FingerprintEncoder, init_weights
from torch_utils import distributed as dist_utils
from torch_utils.bits import random_fingerprints
from torch_utils.images import save_image_grid, to_uint8
from torch_utils.misc import ema_beta, update_ema
from training.augment import FingerprintAugment
from training.run import Run, endless_batches, sanitize_grads_, split_batch
from training.run_state import first_line, writing


@dataclass(frozen=True)
class AETrainingOptions:
    data: str                                  # Dataset (zip, folder or LMDB).
    outdir: str                                # Parent folder of run folders.
    cfg: str | None = None                     # Named config the defaults came from (training/configs.py).
    resolution: int = 128                      # Image size the autoencoder works at (data resized if needed).
    n_bits: int = 100                          # Fingerprint length n (--bits).
    batch: int = 64                            # Global batch size.
    batch_gpu: int | None = None               # Per-process round size (None: batch / gpus).
    gpus: int = 1                              # Processes.
    lr: float = 1e-4                           # Adam learning rate (encoder and decoder).
    l2_weight: float = 10.0                    # Final lambda_L2.
    l2_threshold: float = 0.9                  # lambda_L2 stays 0 until the batch bit accuracy first exceeds this,
    l2_wait_steps: int = 1000                  # ... then waits this many steps,
    l2_ramp_steps: int = 3000                  # ... then ramps linearly over this many steps.
    residual: bool = False                     # Encoder outputs image + bounded residual instead of the image.
    antithetic: bool = False                   # Encoder outputs image + (U(x, c) - U(x, 1 - c)) / 2.
    init: str = "kaiming"                      # Weight initialisation (networks.autoencoder.INIT_SCHEMES).
    ema_kimg: float = 0.0                      # Half-life (kimg) of a weight moving average used for snapshots,
                                               # grids and the metric (0: off, the raw weights are used).
    holdout: int = 0                           # Last N dataset images kept out of training, for the metric.
    mirror: bool = False                       # x-flip augmentation.
    total_kimg: float = 4000.0                 # Training length (the release: 20 epochs of CelebA, ~4M images).
    tick_kimg: float = 4.0                     # Progress report and training-state interval.
    snap: int = 10                             # Ticks between snapshots, grids and the metric.
    seed: int = 0
    device: str = "cpu"
    workers: int = 2                           # DataLoader workers per process.
    guard_kimg: float = 200.0                  # Warn if bit accuracy is still ~0.5 after this many kimg.
    metric_images: int = 1000                  # Images for the snapshot metric.
    augment_fp: str | None = None              # Immunization: perturbations before the decoder (training/augment.py).

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def l2_lambda(step: int, l2_start_step: int, opts: AETrainingOptions) -> float:
    """lambda_L2 at ``step``, given the step at which the bit accuracy first passed the threshold (-1: not yet)."""
    if l2_start_step < 0:
        return 0.0
    since = step - l2_start_step - opts.l2_wait_steps
    if since < 0:
        return 0.0
    if opts.l2_ramp_steps <= 0:
        return opts.l2_weight
    return opts.l2_weight * min(since / opts.l2_ramp_steps, 1.0)


def autoencoder_loss(encoder: FingerprintEncoder, decoder: AutoencoderDecoder, x: torch.Tensor, c: torch.Tensor,
                     lam: float, transform=None) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE(decoder(encoder(x, c)), c) + lam * MSE(encoder(x, c), x), the MSE in [0, 1] units.

    ``transform`` (immunization) perturbs the fingerprinted images before the decoder; the MSE is taken
    before it.

    Returns the loss and its detached terms [bce, l2, bit accuracy, PSNR] (batch means).
    """
    fp = encoder(x, c)
    logits = decoder(fp if transform is None else transform(fp))
    bce = F.binary_cross_entropy_with_logits(logits, c)
    l2 = ((fp - x) / 2).square().mean()
    with torch.no_grad():
        acc = ((logits > 0).float() == c).float().mean()
        psnr = 10 * torch.log10(1 / l2.clamp(min=1e-12))
        terms = torch.stack([bce, l2, acc, psnr]).detach()
    return bce + lam * l2, terms


def _images(batch: torch.Tensor, resolution: int, device: torch.device) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float [-1, 1] at ``resolution`` (antialiased resize when the data differ)."""
    x = batch.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True,
                          align_corners=False).clamp(-1, 1)
    return x


def _build(opts: AETrainingOptions, channels: int, device: torch.device) \
        -> tuple[FingerprintEncoder, AutoencoderDecoder]:
    """The initialised encoder and decoder on ``device``; running out of memory is one clear ``ValueError``."""
    try:
        encoder = FingerprintEncoder(opts.n_bits, opts.resolution, channels, residual=opts.residual,
                                     antithetic=opts.antithetic)
        decoder = AutoencoderDecoder(opts.n_bits, opts.resolution, channels)
        return init_weights(encoder, opts.init).to(device), init_weights(decoder, opts.init).to(device)
    except (RuntimeError, MemoryError) as e:
        raise ValueError(f"cannot allocate the autoencoder for {opts.n_bits}-bit fingerprints at {opts.resolution}x"
                         f"{opts.resolution} on {device} ({first_line(e)}); use fewer --bits, a smaller --resolution "
                         "or a device with more memory") from e


def autoencoder_training_loop(opts: AETrainingOptions, info: dist_utils.ProcessInfo, resume: str = "auto") -> Path:
    """Train; returns the run folder. ``resume``: 'auto' (continue the newest run with the same
    options) or 'none'."""
    device = info.device
    batch_gpu, rounds = split_batch(opts.batch, opts.batch_gpu, info.world_size)

    full = ImageDataset(opts.data)
    if opts.holdout < 0 or opts.holdout >= len(full):
        raise ValueError(f"--holdout {opts.holdout} must leave training images (the dataset has {len(full)})")
    n_train = len(full) - opts.holdout
    dataset = ImageDataset(opts.data, max_size=n_train, xflip=opts.mirror)

    torch.manual_seed(opts.seed)
    encoder, decoder = _build(opts, full.num_channels, device)
    params = list(encoder.parameters()) + list(decoder.parameters())
    # What snapshots, grids and the metric use: the moving average when --ema-kimg > 0, else the networks.
    encoder_ema = copy.deepcopy(encoder).eval().requires_grad_(False) if opts.ema_kimg > 0 else encoder
    decoder_ema = copy.deepcopy(decoder).eval().requires_grad_(False) if opts.ema_kimg > 0 else decoder
    opt = torch.optim.Adam(params, lr=opts.lr)
    fp_transform = FingerprintAugment.from_spec(opts.augment_fp) if opts.augment_fp else None

    # Fixed images for the grids and the metric: held-out ones when there are any.
    metric_idx = (range(n_train, len(full)) if opts.holdout else range(min(opts.metric_images, n_train)))
    metric_idx = list(metric_idx)[: opts.metric_images]
    metric_images = None
    if info.is_main:
        metric_images = torch.stack([full[i][0] for i in metric_idx])
        if metric_images.shape[-1] != opts.resolution:
            resized = _images(metric_images, opts.resolution, torch.device("cpu"))
            metric_images = torch.from_numpy(to_uint8(resized)).permute(0, 3, 1, 2).contiguous()
    grid_bits = random_fingerprints(16, opts.n_bits, torch.Generator().manual_seed(seed_for(opts.seed, 321)))

    def save_grids(tag: str) -> None:
        with torch.no_grad():
            x = metric_images[:16].to(device).float() / 127.5 - 1
            fp = encoder_ema(x, grid_bits[: x.shape[0]].to(device))
            residual = fp - x
            amplified = (residual / residual.abs().amax().clamp(min=1e-8)).clamp(-1, 1)
            path = run.dir / f"samples-{tag}.png"
            with writing(path):
                save_image_grid(torch.cat([x, fp, amplified]), path, x.shape[0])

    # Everything that can fail without a run folder has been checked; a start that fails from here
    # on removes the run folder it created (and only that).
    counters = {"step": 0, "cur_nimg": 0, "cur_tick": 0, "tick_start_nimg": 0, "l2_start_step": -1}
    training_state = {"encoder": encoder, "decoder": decoder, "opt": opt,
                      **({"encoder_ema": encoder_ema, "decoder_ema": decoder_ema} if opts.ema_kimg > 0 else {})}
    cfg = f"-{opts.cfg}" if opts.cfg else ""
    desc = f"{Path(opts.data).name.split('.')[0]}{cfg}-ae{opts.resolution}-bits{opts.n_bits}-batch{opts.batch}"
    run = Run(info, opts.outdir, desc, opts.to_json(), counters, training_state, total_kimg=opts.total_kimg,
              tick_kimg=opts.tick_kimg, resume=resume == "auto")
    log = run.log
    with run.starting():
        resumed = run.resume(map_location=device)
        if not resumed:
            log(f"Starting {run.dir} ({n_train} training images, {opts.holdout} held out)")
        if full.resolution != opts.resolution:
            log(f"Note: the data are {full.resolution}x{full.resolution}; resized to {opts.resolution} on the fly "
                "(prepare them at that size with dataset_tool.py to skip this)")
        data_iter = endless_batches(dataset, opts.batch, opts.seed, counters["step"], opts.workers, device)
        if info.is_main and not resumed:
            save_grids("init")

    while not run.done:
        step = counters["step"]
        images, _ = next(data_iter)
        lam = l2_lambda(step, counters["l2_start_step"], opts)
        for p in params:
            p.grad = None
        sums = torch.zeros(4, device=device)   # bce, l2, bit acc, psnr (batch means)
        for r in range(rounds):
            g_round = info.rank * rounds + r
            torch.manual_seed(seed_for(opts.seed, step, g_round))
            x = _images(images[g_round * batch_gpu:(g_round + 1) * batch_gpu], opts.resolution, device)
            c = random_fingerprints(x.shape[0], opts.n_bits, device=device)
            loss, terms = autoencoder_loss(encoder, decoder, x, c, lam, fp_transform)
            (loss * (x.shape[0] / opts.batch)).backward()
            sums += terms * (x.shape[0] / opts.batch)
        dist_utils.all_reduce_grads_(params, info)
        dist_utils.all_reduce_sum_([sums], info)
        sanitize_grads_(params)
        opt.step()
        if opts.ema_kimg > 0:
            beta = ema_beta(opts.batch, opts.ema_kimg, counters["cur_nimg"])
            update_ema(encoder_ema, encoder, beta)
            update_ema(decoder_ema, decoder, beta)

        bce_v, l2_v, acc_v, psnr_v = (float(v) for v in sums)
        if counters["l2_start_step"] < 0 and acc_v > opts.l2_threshold:
            counters["l2_start_step"] = step
            ramp_at = step + opts.l2_wait_steps
            log(f"Bit accuracy {acc_v:.3f} > {opts.l2_threshold} at step {step}: lambda_L2 ramps to "
                f"{opts.l2_weight} over steps {ramp_at}..{ramp_at + opts.l2_ramp_steps}")
        run.accumulate({"Loss/bce": bce_v, "Loss/l2": l2_v, "Metrics/bit_acc": acc_v, "Metrics/psnr": psnr_v,
                        "Schedule/lambda_l2": lam})
        counters["step"] += 1
        counters["cur_nimg"] += opts.batch
        if not run.tick_due():
            continue

        # --- Tick ------------------------------------------------------------------------------
        row = run.end_tick(progress={"Progress/step": counters["step"]})
        run.report(row, f"step {counters['step']:<6d} bit_acc {row['Metrics/bit_acc']:.3f} "
                        f"psnr {row['Metrics/psnr']:.2f} lambda_l2 {row['Schedule/lambda_l2']:.2f}")
        if warning := _guard_warning(row, opts):
            run.warn_once(warning)
        if run.snapshot_due(opts.snap):
            snap_path = run.save_snapshot("ae", save_grids, encoder=encoder_ema, decoder=decoder_ema)
            result = autoencoder_metrics(encoder_ema, decoder_ema, metric_images, seed=opts.seed, device=device)
            run.report_metric({**result, "metric": "ae_quantized"}, snap_path,
                              note=f"{'held-out' if opts.holdout else 'training'} images, 8-bit",
                              step=counters["step"], held_out=bool(opts.holdout))
        run.save_state()
    return run.finish()


def _guard_warning(row: dict[str, float], opts: AETrainingOptions) -> str | None:
    """What to warn about (from ``guard_kimg`` on), if anything: the two failures users of the release report,
    bits stuck at chance, or bits bought with ruined images."""
    kimg = row["Progress/kimg"]
    if kimg < opts.guard_kimg:
        return None
    acc, psnr = row["Metrics/bit_acc"], row["Metrics/psnr"]
    if acc < 0.55:
        return (f"the decoder's bit accuracy is {acc:.3f} after {kimg:.0f} kimg: the fingerprint is not being "
                "learned (a failure users of the release report).\nWhat was measured to fix it (docs/RESULTS.md): "
                f"--init kaiming (this run: --init {opts.init}; PyTorch's default initialisation, the release's, keeps "
                "the bits at chance for thousands of steps) and an --lr of 3e-4 to 1e-3 (this run: "
                f"{opts.lr:g}; 1e-3 saturated the images at 128 bits on 32x32); fewer --bits also learn faster.")
    if acc > 0.9 and psnr < 25 and row["Schedule/lambda_l2"] >= opts.l2_weight:
        return (f"bit accuracy {acc:.3f} but PSNR only {psnr:.1f} dB after {kimg:.0f} kimg with the L2 term at full "
                f"weight: the fingerprint is bought with visibly changed images.\nTry a larger --l2-weight, "
                "or --residual.")
    return None

