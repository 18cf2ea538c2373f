#!/usr/bin/env bash
# Fig. 5 of the paper: robustness of the fingerprint, immunized vs not. By default tiny32 on CelebA 32x32
# (../shared/data, read in place), 32-bit fingerprints, 2 CPU cores; RECIPE=paper is the paper's scale (CelebA
# 128x128, a celeba128 model; a GPU job). (This script was scripts/immunize32.sh until 2026-12-07.)
#   1. the fingerprinted model, by RECIPE:
#      finetune (default): the recipe that keeps the generator (config cpu32ft, scripts/quality_tax.sh): give
#        FINGERPRINTED= its stage-2 snapshot and BASELINE= the plain snapshot that stage 2 started from;
#      scratch: the older single-stage recipe, scripts/celeba32_cpu.sh to 44 kimg (or FINGERPRINTED= its snapshot);
#      paper: FINGERPRINTED= a model trained with the paper's config (scripts/celeba128.sh, or a release pickle
#        converted by legacy.py), PRESET (celeba128) its preset, BITS (128) its fingerprint length, DATA its
#        training images;
#   2. the immunized model: that snapshot fine-tuned for KIMG kimg (24; RECIPE=paper 500) with --augment-fp (centre
#      crop 60-100% of the side, JPEG quality 50-100, Gaussian noise std 0-0.15 in [0, 1] units, each with
#      probability 0.5) and the same recipe without its warm-up: finetune keeps every image held to BASELINE's image
#      of its z (--cfg cpu32ft --resume FINGERPRINTED --baseline BASELINE); scratch is --cfg cpu32 --fp-warmup off;
#      paper is --cfg paper --preset PRESET --bits BITS;
#   3. for both: the decoder calibrated on CAL (2,000) real images, USERS (8) users issued into a registry, then
#      calc_metrics.py's quality_snapshot (bits beside SWD, diversity and consistency), consistency, bit_acc and
#      robustness_image (the Fig. 5 axes and the Stable Signature list), and the curves in $out/robustness.png.
# docs/results/robustness.md records what it gave.
#   FINGERPRINTED=runs/.../network-snapshot-000062.safetensors BASELINE=runs/.../network-snapshot-000212.safetensors \
#     bash scripts/immunize.sh [extra train_stylegan2_fp.py flags for the immunizing run]
#   RECIPE=paper FINGERPRINTED=runs/table1/celeba128/.../network-snapshot-025000.safetensors \
#     DATA=runs/table1/celeba128/data/celeba128.zip bash scripts/immunize.sh --gpus 8
# Environment: RECIPE, FINGERPRINTED, BASELINE, PRESET, BITS, KIMG, IMMUNE_OUT (runs/immune_<recipe>), DATA (the CelebA
# 32x32 zip; RECIPE=paper: datasets/celeba128.zip), CAL (2000), USERS (8), IMAGES_PER_USER (16), NUM (samples of the
# quality metrics: 1000).
# Steps already done are skipped (a finished immunizing run is found by its last snapshot's name).
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${RECIPE:-finetune}
out=${IMMUNE_OUT:-runs/immune_$recipe}
if [ "$recipe" = paper ]; then data=${DATA:-datasets/celeba128.zip}; kimg=${KIMG:-500}
else data=${DATA:-datasets/celeba32.zip}; kimg=${KIMG:-24}; fi
preset=${PRESET:-celeba128}
aug="crop:0.6-1@0.5,jpeg:50-100@0.5,noise:0-0.15@0.5"
fingerprinted=${FINGERPRINTED:-}
fail() { echo "error: $*" >&2; exit 2; }

case "$recipe" in
  finetune)
    [ -n "$fingerprinted" ] && [ -n "${BASELINE:-}" ] || fail "RECIPE=finetune needs FINGERPRINTED (a cpu32ft" \
      "snapshot) and BASELINE (the plain snapshot it started from); scripts/quality_tax.sh trains both"
    cfg=(--cfg cpu32ft --baseline "$BASELINE");;
  scratch)
    if [ -z "$fingerprinted" ]; then
      bash scripts/celeba32_cpu.sh --outdir "$out/fingerprinted" --total-kimg 44
      fingerprinted=$(ls "$out"/fingerprinted/*/network-snapshot-000044.safetensors | head -n 1)
    fi
    cfg=(--cfg cpu32 --fp-warmup off);;
  paper)
    [ -n "$fingerprinted" ] || fail "RECIPE=paper needs FINGERPRINTED (a model trained with --cfg paper, e.g. by" \
      "scripts/celeba128.sh, or a release pickle converted by legacy.py)"
    cfg=(--cfg paper --preset "$preset" --bits "${BITS:-128}");;
  *) fail "RECIPE must be finetune, scratch or paper, not $recipe";;
esac
[ -f "$fingerprinted" ] || fail "FINGERPRINTED=$fingerprinted is not a file"
[ -e "$data" ] || fail "DATA=$data does not exist (scripts/quality_tax.sh makes datasets/celeba32.zip;" \
  "scripts/celeba128.sh makes runs/table1/celeba128/data/celeba128.zip)"

last=$(python -c "import sys; from training.run_state import snapshot_tag; print(snapshot_tag(round(float(sys.argv[1]) * 1000)))" "$kimg")
immunized=$(ls "$out"/immunized/*/network-snapshot-"$last".safetensors 2>/dev/null | head -n 1 || true)
if [ -z "$immunized" ]; then
  python train_stylegan2_fp.py "${cfg[@]}" --resume "$fingerprinted" --augment-fp "$aug" --total-kimg "$kimg" \
    --data "$data" --outdir "$out/immunized" "$@"
  immunized=$(ls -t "$out"/immunized/*/network-snapshot-"$last".safetensors | head -n 1)
fi

for name in fingerprinted immunized; do
  mkdir -p "$out/$name" "$out/$name-metrics"
  snap="$out/$name/snapshot.safetensors"     # a copy: the calibration lives beside it
  [ -f "$snap" ] && cmp -s "${!name}" "$snap" || cp "${!name}" "$snap"
  python detect_attribute.py calibrate --network "$snap" --real "$data" --max-images "${CAL:-2000}"
  [ -f "$out/$name.sqlite" ] || python generate.py issue --network "$snap" --registry "$out/$name.sqlite" \
    --count "${USERS:-8}" --outdir "$out/$name-issued"
  python calc_metrics.py --metrics quality_snapshot,consistency,bit_acc,robustness_image --network "$snap" \
    --data "$data" --registry "$out/$name.sqlite" --run-dir "$out/$name-metrics" --users "${USERS:-8}" \
    --images-per-user "${IMAGES_PER_USER:-16}" --num "${NUM:-1000}" --no-progress
done
python fig/plot_robustness.py --jsonl "$out/fingerprinted-metrics/metric-robustness_image.jsonl" \
  --label fingerprinted --jsonl "$out/immunized-metrics/metric-robustness_image.jsonl" --label immunized \
  --out "$out/robustness.png" \
  --title "$([ "$recipe" = paper ] && echo "$preset" || echo "tiny32, CelebA 32x32, 32 bits") ($recipe): fingerprinted vs immunized (8-bit images)"
