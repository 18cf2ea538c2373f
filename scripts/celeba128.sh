#!/usr/bin/env bash
# CelebA 128x128, 128-bit fingerprints: the paper's Table 1 row (FID 11.50 / bit acc 0.991).
# Needs the aligned CelebA images (img_align_celeba/, 178x218): pass their folder.
#   bash scripts/celeba128.sh /path/to/img_align_celeba [extra train_stylegan2_fp.py flags]
# The release trained on 2 GPUs (batch 16). Rerunning the same command resumes the run.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 /path/to/img_align_celeba [flags]}; shift
[ -f datasets/celeba128.zip ] || python dataset_tool.py create_celeba --source "$src" --dest datasets/celeba128.zip \
  --cx 89 --cy 121 --size 128 --max-images 30000
python train_stylegan2_fp.py --cfg paper --data datasets/celeba128.zip --outdir runs/celeba128 --preset celeba128 \
  --watermark-size 128 --res-modulated-range 4-128 --batch 16 --gamma 100 \
  --decoupleL2-weight 2 --latentsRecL2-weight 1 --watermarkCls-weight 2 "$@"
