#!/usr/bin/env bash
# Stage 1 on CPU: the fingerprint autoencoder on CelebA 64x64 made from the half-size copy in
# ../shared/data (research licence: read in place, never committed) with the release's AE crop
# (148 of the 178x218 aligned image, centred; here 74 of 89x109), 100 bits, the last 1,000 of the
# 10,000 faces held out for the 8-bit metric: config cpu64 of training/configs.py (He initialisation, the
# default, and lr 1e-3 with a short L2 wait/ramp fit the one-hour CPU budget); docs/RESULTS.md records what it
# reaches.
#   bash scripts/celeba64_ae.sh [extra train_fingerprint_ae.py train flags]
# For full-size CelebA at 128x128: dataset_tool.py create_celeba --cx 89 --cy 109 --size 148 --resolution 128.
# Environment: DATA (datasets/celeba64ae.zip, made from SGF_SHARED_DIR if missing), OUT (runs/ae64).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-datasets/celeba64ae.zip}
if [ ! -f "$data" ]; then
  [ "$data" = datasets/celeba64ae.zip ] || { echo "error: DATA=$data does not exist" >&2; exit 2; }
  python dataset_tool.py create_celeba --source "${SGF_SHARED_DIR:-../shared}/data/celeba_89x109" --dest "$data" \
    --cx 44.5 --cy 54.5 --size 74 --resolution 64 --max-images 10000
fi
python train_fingerprint_ae.py train --cfg cpu64 --data "$data" --outdir "${OUT:-runs/ae64}" "$@"
