#!/usr/bin/env bash
# LSUN Bedroom 128x128, 128-bit fingerprints (paper: FID 20.50 / bit acc 0.993).
# Needs LSUN's bedroom_train_lmdb release folder.
#   bash scripts/bedroom128.sh /path/to/bedroom_train_lmdb [extra train_stylegan2_fp.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 /path/to/bedroom_train_lmdb [flags]}; shift
[ -f datasets/bedroom128.zip ] || python dataset_tool.py create_lsun --source "$src" --dest datasets/bedroom128.zip \
  --resolution 128 --max-images 30000
python train_stylegan2_fp.py --cfg paper --data datasets/bedroom128.zip --outdir runs/bedroom128 --preset bedroom128 \
  --watermark-size 128 --res-modulated-range 4-128 --batch 16 --gamma 100 \
  --decoupleL2-weight 2 --latentsRecL2-weight 1 --watermarkCls-weight 2 "$@"
