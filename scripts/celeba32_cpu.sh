#!/usr/bin/env bash
# CPU experiment: tiny32 on CelebA 32x32 made from the half-size copy in ../shared/data (research
# licence: read in place, never committed), 32-bit fingerprints, the fast recipe: config cpu32 of
# training/configs.py (the full GAN with the consistency and latent-reconstruction terms held off until F
# decodes 90% of the bits, c as +-1, a 1-layer E, F with a 512-wide head, lr 0.01, beta1 0.9, G_ema ramp-up;
# NHWC, bfloat16 where the CPU has it). docs/RESULTS.md records what it reaches (32 bits: G_ema + F 0.984 after
# 25 minutes on 2 cores; 128 bits, config cpu128: 0.909 after 35 minutes and 0.954 after 58).
#   bash scripts/celeba32_cpu.sh [extra train_stylegan2_fp.py flags, e.g. --cfg cpu128 or --preset quick32]
# Environment: DATA (datasets/celeba32.zip, made from SGF_SHARED_DIR if missing), OUT (runs/celeba32).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-datasets/celeba32.zip}
. scripts/lib/celeba32.sh
celeba32_data "$data"
python train_stylegan2_fp.py --cfg cpu32 --data "$data" --outdir "${OUT:-runs/celeba32}" "$@"
