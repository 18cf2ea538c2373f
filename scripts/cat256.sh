#!/usr/bin/env bash
# LSUN Cat 256x256, 128-bit fingerprints, all resolutions modulated (paper: FID 33.94 / bit acc 0.996).
# Needs LSUN's cat lmdb release folder.
#   bash scripts/cat256.sh /path/to/cat_lmdb [extra train_stylegan2_fp.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 /path/to/cat_lmdb [flags]}; shift
[ -f datasets/cat256.zip ] || python dataset_tool.py create_lsun --source "$src" --dest datasets/cat256.zip \
  --resolution 256 --max-images 50000
python train_stylegan2_fp.py --cfg paper --data datasets/cat256.zip --outdir runs/cat256 --preset cat256 \
  --watermark-size 128 --res-modulated-range 4-256 --batch 16 --gamma 100 \
  --decoupleL2-weight 2 --latentsRecL2-weight 1 --watermarkCls-weight 2 "$@"
