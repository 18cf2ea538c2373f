"""Stage 1: the fingerprint autoencoder of artificial fingerprinting (train it; fingerprint a data set).

\b
Train (images prepared with dataset_tool.py; CelebA as the release: create_celeba --cx 89 --cy 109
--size 148 --resolution 128, or --cx 44.5 --cy 54.5 --size 74 --resolution 64 for the half-size copy;
--cfg names a recipe of training/configs.py, and flags given win):
  python train_fingerprint_ae.py train --cfg cpu64 --data celeba64.zip --outdir runs/ae
Fingerprint a data set (one fingerprint for all images, or one per image):
  python train_fingerprint_ae.py embed --network runs/ae/00000-.../ae-snapshot-000100.safetensors \\
      --source images/ --dest fingerprinted/ --fingerprint 0110...
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click
import torch

from attribution.registry import Registry, RegistryError
from data.dataset_writer import DatasetError
from data.fingerprint_dataset import CSV_NAME, fingerprint_images, parse_bits
from dnnlib.cli import FiniteFloat, device_param, fail, parsed_by
from dnnlib.util import check_outputs, sha256_file
from networks.autoencoder import INIT_SCHEMES
from networks.checkpoint import CheckpointError, load_network
from torch_utils import distributed as dist_utils
from training.augment import canonical_spec
from training.autoencoder_loop import AETrainingOptions, autoencoder_training_loop
from training.configs import AE_CONFIGS, config_flags, config_option
from training.run_state import TRAINING_ERRORS, error_line

MAX_BITS = 4096         # Fingerprint bits (network files of this project hold at most this many).
MAX_RESOLUTION = 1024   # Image size (likewise).
MAX_KIMG = 1e9          # --total-kimg and --tick (a billion kimg: far beyond any run, and exact in float).


@click.group(help=__doc__)
def cli():
    pass


@cli.command(help="Train the encoder and decoder on real images.")
@config_option(AE_CONFIGS)
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset zip, folder or LMDB.")
@click.option("--outdir", type=click.Path(path_type=Path), required=True, help="Parent folder of run folders.")
@click.option("--resolution", type=click.IntRange(32, MAX_RESOLUTION), default=128, show_default=True,
              help="Image size (a power of two, 32 to 1024); the data are resized if they differ.")
@click.option("--bits", "n_bits", type=click.IntRange(1, MAX_BITS), default=100, show_default=True,
              help="Fingerprint length (128 to share the decoder with stage 2).")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--batch-gpu", type=click.IntRange(min=1), help="Per-process round size (default batch/gpus).")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes (GPUs with --device cuda; gloo processes on CPU).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--l2-weight", type=FiniteFloat(min=0), default=10.0, show_default=True,
              help="Final weight of the image L2 term.")
@click.option("--l2-threshold", type=FiniteFloat(0, 1), default=0.9, show_default=True,
              help="The L2 term stays off until the batch bit accuracy first exceeds this ...")
@click.option("--l2-wait-steps", type=click.IntRange(min=0), default=1000, show_default=True,
              help="... then waits this many steps ...")
@click.option("--l2-ramp-steps", type=click.IntRange(min=0), default=3000, show_default=True,
              help="... then ramps in linearly over this many steps.")
@click.option("--residual", is_flag=True, help="The encoder outputs image + a bounded residual (not the release's "
              "whole image).")
@click.option("--antithetic", is_flag=True, help="The encoder outputs image + (U(image, c) - U(image, 1 - c)) / 2: "
              "the decoder learns to read the part of a change that flips with the bits on an untouched image, as "
              "it sees a fine-tuned StyleGAN2's users (--fp-decoder of --cfg sg2ft; docs/results/sg2_finetune.md).")
@click.option("--init", type=click.Choice(INIT_SCHEMES), default="kaiming", show_default=True,
              help="Weight initialisation: He-normal ('kaiming'), or PyTorch's defaults as in the release ('pytorch'), "
              "with which the bits stay at chance for thousands of steps (docs/RESULTS.md).")
@click.option("--ema-kimg", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help="Half-life in kimg of a moving average of the weights that snapshots, grids and the metric "
              "use (0: the raw weights).")
@click.option("--holdout", type=click.IntRange(min=0), default=0, show_default=True,
              help="Keep the last N images out of training; the snapshot metric uses them.")
@click.option("--mirror", type=bool, default=False, show_default=True, help="x-flip augmentation.")
@click.option("--total-kimg", type=FiniteFloat(0, MAX_KIMG, min_open=True), default=4000, show_default=True)
@click.option("--tick", "tick_kimg", type=FiniteFloat(0, MAX_KIMG, min_open=True), default=4.0, show_default=True,
              help="kimg per tick (progress report and training state).")
@click.option("--snap", type=click.IntRange(min=1), default=10, show_default=True,
              help="Ticks between snapshots, sample grids and the metric.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--resume", type=click.Choice(["auto", "none"]), default="auto", show_default=True,
              help="'auto': continue the newest run with the same options.")
@click.option("--guard-kimg", type=FiniteFloat(min=0), default=200.0, show_default=True,
              help="Warn loudly if bit accuracy is still ~0.5 (or images ruined) after this many kimg.")
@click.option("--augment-fp", callback=parsed_by(canonical_spec),
              help="Immunized training: perturbations of the fingerprinted images before the "
              "decoder, NAME[:LO-HI][@P],... or 'all' (training/augment.py; default: none, as the release).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="DataLoader workers.")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def train(**a):
    if not a["data"].exists():
        raise click.BadParameter(f"{a['data']} does not exist", param_hint="--data")
    res = a["resolution"]
    if res < 32 or res & (res - 1):
        raise click.BadParameter(f"{res} is not a power of two >= 32", param_hint="--resolution")
    device, gpus = device_param(a["device"]), a["gpus"]
    if dist_utils.launched_by_torchrun():
        gpus = int(os.environ["WORLD_SIZE"])
    if a["residual"] and a["antithetic"]:
        raise click.UsageError("--residual and --antithetic are two different encoder outputs: choose one")
    if a["batch"] % gpus != 0:
        raise click.BadParameter(f"--batch {a['batch']} is not divisible by --gpus {gpus}", param_hint="--batch")
    flags = config_flags(click.get_current_context())
    if flags:
        click.echo(f"--cfg {a['cfg']} sets {' '.join(flags)}", err=True)
    keys = ("cfg", "resolution", "n_bits", "batch", "batch_gpu", "lr", "l2_weight", "l2_threshold", "l2_wait_steps",
            "l2_ramp_steps", "residual", "antithetic", "init", "ema_kimg", "holdout", "mirror", "total_kimg",
            "tick_kimg", "snap", "seed", "workers", "guard_kimg")
    opts = AETrainingOptions(data=str(a["data"].resolve()), outdir=str(a["outdir"].resolve()), gpus=gpus,
                             device=device, augment_fp=a["augment_fp"], **{k: a[k] for k in keys})
    if a["dry_run"]:
        click.echo(json.dumps(opts.to_json(), indent=2))
        return
    try:
        dist_utils.launch(autoencoder_training_loop, opts, gpus, device, resume=a["resume"])
    except TRAINING_ERRORS as e:
        fail(error_line(e))


def _embed_registered(encoder, decoder, network, source, dest, registry, user, batch, force, device, log):
    """Embed a fingerprint drawn and recorded by the registry (one transaction: no row without the folder)."""
    holder = {}

    def write(bits):
        holder["report"] = fingerprint_images(encoder, decoder, source, dest, batch=batch, force=force,
                                              device=device, log=log,
                                              fingerprint=torch.from_numpy(bits.astype("float32")))
        return str(Path(dest).resolve()), sha256_file(Path(dest) / CSV_NAME)

    def remove_folder(path):
        shutil.rmtree(path, ignore_errors=True)

    with Registry(registry) as reg:
        entry = reg.issue(user, encoder.n_bits, write, source=str(Path(network).resolve()),
                          source_sha256=sha256_file(network), remove=remove_folder)
    log(f"{user}: fingerprint {entry.bits[:16]}... recorded in {registry} (id {entry.id})")
    return holder["report"]


@cli.command(help="Write a fingerprinted copy of a data set (PNGs, fingerprints.csv, fingerprint_report.json).")
@click.option("--network", type=click.Path(path_type=Path), required=True,
              help="Autoencoder snapshot (ae-snapshot-*.safetensors).")
@click.option("--source", type=click.Path(path_type=Path), required=True,
              help="Folder of PNG/JPEG images (recursive), dataset zip or LMDB.")
@click.option("--dest", type=click.Path(path_type=Path), required=True, help="New output folder.")
@click.option("--fingerprint", help="The same fingerprint for every image: a string of 0/1, one per bit.")
@click.option("--random-per-image", is_flag=True, help="A fresh random fingerprint for every image (from --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--force", is_flag=True, help="Replace --dest if it exists.")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the data set's fingerprint from this registry (cryptographic, at the minimum distance from "
              "all registered ones) and record it under --user, with --dest as its file.")
@click.option("--user", help="With --registry: who the fingerprinted data set (and models trained on it) belong to.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def embed(network, source, dest, fingerprint, random_per_image, seed, batch, force, registry, user, device):
    if registry is not None:
        if fingerprint is not None or random_per_image or user is None:
            raise click.UsageError("--registry draws the fingerprint itself: give --user NAME, and neither "
                                   "--fingerprint nor --random-per-image")
    elif (fingerprint is None) == (not random_per_image):
        raise click.UsageError("give exactly one of --fingerprint BITS and --random-per-image (or --registry)")
    elif user is not None:
        raise click.UsageError("--user goes with --registry")
    device = device_param(device)
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    try:
        check_outputs({"--dest": dest, "--registry": registry}, {"--source": source, "--network": network})
        nets = load_network(network, device=device, names=["encoder", "decoder"])
        encoder, decoder = nets["encoder"].eval(), nets["decoder"].eval()
        if registry is not None:
            report = _embed_registered(encoder, decoder, network, source, dest, registry, user, batch, force,
                                       device, log)
        else:
            bits = None if fingerprint is None else parse_bits(fingerprint, encoder.n_bits)
            report = fingerprint_images(encoder, decoder, source, dest, fingerprint=bits, seed=seed, batch=batch,
                                        force=force, device=device, log=log)
    except (CheckpointError, DatasetError, RegistryError, ValueError, OSError) as e:
        fail(e)
    click.echo(f"Wrote {report.num_images} fingerprinted images to {report.dest} ({len(report.skipped)} skipped); "
               f"on the written PNGs: bit accuracy {report.bit_acc:.4f} (worst image {report.bit_acc_min:.4f}), "
               f"PSNR {report.psnr:.2f} dB")


if __name__ == "__main__":
    cli()
