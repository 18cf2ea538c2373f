#!/usr/bin/env bash
# Immunized vs plain, tiny32 on CelebA 32x32 (../shared/data, read in place), 32-bit fingerprints, 2 CPU cores:
#   1. the plain model: scripts/celeba32_cpu.sh to 44 kimg (G_ema + F ~0.99, about 25 minutes);
#   2. the immunized model: the plain snapshot fine-tuned for 24 kimg with --augment-fp (centre crop 60-100% of
#      the side, JPEG quality 50-100, Gaussian noise std 0-0.15 in [0, 1] units, each with probability 0.5);
#   3. for both: the decoder calibrated on 2,000 real faces, 8 users issued into a registry, then
#      calc_metrics.py's robustness_image (the Fig. 5 axes and the Stable Signature list), consistency and
#      bit_acc, and the curves in fig/.
# docs/RESULTS.md ("Robustness and immunized training") records what it gave.
#   bash scripts/immunize32.sh            (IMMUNE_OUT=runs/immune by default; steps already done are skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${IMMUNE_OUT:-runs/immune}
aug="crop:0.6-1@0.5,jpeg:50-100@0.5,noise:0-0.15@0.5"

snapshot() { ls "$1"/*/network-snapshot-"$2".safetensors 2>/dev/null | head -n 1; }

[ -n "$(snapshot "$out/plain" 000044)" ] || bash scripts/celeba32_cpu.sh --outdir "$out/plain" --total-kimg 44
plain=$(snapshot "$out/plain" 000044)
# The plain model's config, without the warm-up (F already reads the bits), fine-tuned under the perturbations.
[ -n "$(snapshot "$out/immunized" 000024)" ] || python train_stylegan2_fp.py --cfg cpu32 --fp-warmup off \
  --data datasets/celeba32.zip --outdir "$out/immunized" --total-kimg 24 --resume "$plain" --augment-fp "$aug"
immunized=$(snapshot "$out/immunized" 000024)

for name in plain immunized; do
  snap=${!name}
  python detect_attribute.py calibrate --network "$snap" --real datasets/celeba32.zip --max-images 2000
  [ -f "$out/$name.sqlite" ] || python generate.py issue --network "$snap" --registry "$out/$name.sqlite" \
    --count 8 --outdir "$out/$name-issued"
  mkdir -p "$out/$name-metrics"
  python calc_metrics.py --metrics consistency,bit_acc,robustness_image --network "$snap" \
    --registry "$out/$name.sqlite" --run-dir "$out/$name-metrics" --users 8 --images-per-user 16 --no-progress
done
python fig/plot_robustness.py --jsonl "$out/plain-metrics/metric-robustness_image.jsonl" --label plain \
  --jsonl "$out/immunized-metrics/metric-robustness_image.jsonl" --label immunized \
  --out fig/robustness_immunized_vs_plain.png \
  --title "tiny32, CelebA 32x32, 32 bits: plain vs immunized (8 users x 16 images, 8-bit)"
