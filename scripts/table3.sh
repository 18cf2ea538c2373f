#!/usr/bin/env bash
# Paper Table 3 at small scale: detection and attribution accuracy for 1, 10 and 100 issued generators,
# closed and open world, at FPR 1e-6 (and 1e-3), from a tiny32 model trained on CelebA 32x32.
#   * data: the half-size CelebA copy of ../shared/data (research licence: read in place, never committed):
#     train on the first 8,000 images; the other 2,000 are the real test images (never seen in training);
#     the decoder is calibrated on 4,000 training images (F itself never sees real images);
#   * model, the first that applies:
#       SNAPSHOT=  a fingerprinted network snapshot;
#       BASELINE=  a plain snapshot (--bits 0) trained on the 8,000 training images: stage 2 of the recipe that
#                  keeps the generator, config cpu32ft, for KIMG kimg (or MINUTES minutes), $BITS bits (issue 16);
#       neither:   tiny32 with $BITS-bit fingerprints (default 64) trained with config cpu32 (warm-up threshold
#                  0.85) for $MINUTES (55) minutes. 64 bits, because attributing among 100 users at FPR 1e-6
#                  needs 54 of 64 bits right but 31 of 32: the 32-bit model (0.996 bit accuracy on its PNGs)
#                  left 1.7% of images with 2 wrong bits (docs/RESULTS.md);
#   * USERS (100) generators issued into the registry, UNKNOWN (20) more issued from the same snapshot into
#     another registry (the open world's unknown generators), IMAGES (100) images each;
#   * for N in SIZES (1 10 100): a registry holding the first N users; closed world = those N generators' images
#     + the 2,000 real; open world = + the unknown generators' images. scripts/table3_report.py defines the
#     accuracies and writes $out/table3.md and table3.json.
#   SNAPSHOT=runs/.../network-snapshot-000052.safetensors bash scripts/table3.sh
#   BASELINE=runs/.../network-snapshot-000212.safetensors BITS=32 KIMG=62 bash scripts/table3.sh
# Environment also: TABLE3_OUT (out/table3), TRAIN, HELDOUT, CALIBRATION (the three data sets: made from
# CelebA when absent), SGF_SHARED_DIR (../shared); extra arguments go to train_stylegan2_fp.py.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${SGF_SHARED_DIR:-../shared}/data/celeba_89x109
out=${TABLE3_OUT:-out/table3}
MINUTES=${MINUTES:-55}
BITS=${BITS:-64}
train=${TRAIN:-datasets/celeba32_train8k.zip}
heldout=${HELDOUT:-$out/real_heldout.zip}
calibration=${CALIBRATION:-$out/calibration.zip}
users=${USERS:-100}
unknown=${UNKNOWN:-20}
images=${IMAGES:-100}
sizes=${SIZES:-1 10 100}
mkdir -p "$out"
celeba() { python dataset_tool.py create_celeba --source "$src" --cx 44.5 --cy 60.5 --size 64 --resolution 32 "$@"; }
[ -f "$train" ] || celeba --dest "$train" --max-images 8000
[ -f "$heldout" ] || celeba --dest "$heldout" --skip 8000 --max-images 2000
[ -f "$calibration" ] || celeba --dest "$calibration" --max-images 4000

if [ -z "${SNAPSHOT:-}" ] && [ -n "${BASELINE:-}" ]; then
  budget=(--minutes "$MINUTES"); [ -z "${KIMG:-}" ] || budget=(--total-kimg "$KIMG")
  python train_stylegan2_fp.py --cfg cpu32ft --baseline "$BASELINE" --bits "$BITS" --data "$train" \
    --outdir "$out/runs" "${budget[@]}" "$@"
  SNAPSHOT=$(ls -t "$out"/runs/*/network-snapshot-*.safetensors | head -n 1)
elif [ -z "${SNAPSHOT:-}" ]; then
  timeout $(( MINUTES * 60 )) python train_stylegan2_fp.py --cfg cpu32 --data "$train" \
    --outdir "$out/runs" --bits "$BITS" --fp-warmup 0.85 --snap 4 --total-kimg 10000 "$@" || [ $? -eq 124 ]
  SNAPSHOT=$(ls -t "$out"/runs/*/network-snapshot-*.safetensors | head -n 1)
fi
echo "snapshot: $SNAPSHOT"
snap="$out/snapshot.safetensors"         # a copy: the calibration lives beside it
[ -f "$snap" ] && cmp -s "$SNAPSHOT" "$snap" || cp "$SNAPSHOT" "$snap"

python generate.py issue --network "$snap" --registry "$out/registry.sqlite" --count "$users" --outdir "$out/issued"
python generate.py issue --network "$snap" --registry "$out/elsewhere.sqlite" \
  --users "$(python -c 'import sys; print(",".join(f"unknown{i:02d}" for i in range(int(sys.argv[1]))))' "$unknown")" \
  --outdir "$out/issued_elsewhere"
python generate.py export-registry --registry "$out/registry.sqlite" --out "$out/registry.csv"
nets=()
for f in "$out"/issued/*.safetensors "$out"/issued_elsewhere/*.safetensors; do nets+=(--network "$f"); done
last=$(printf "unknown%02d/seed%04d.png" $(( unknown - 1 )) $(( images - 1 )))
[ -f "$out/generated/$last" ] || python generate.py images "${nets[@]}" --seeds "0-$(( images - 1 ))" --outdir "$out/generated"

python detect_attribute.py calibrate --network "$snap" --real "$calibration"
for n in $sizes; do
  head -n $(( n + 1 )) "$out/registry.csv" > "$out/registry_$n.csv"
  rm -f "$out/registry_$n.sqlite"*
  python generate.py import-registry --registry "$out/registry_$n.sqlite" --csv "$out/registry_$n.csv"
  python detect_attribute.py detect --network "$snap" --registry "$out/registry_$n.sqlite" \
    --images "$out/generated" "$heldout" --out "$out/results_$n.csv" --json "$out/results_$n.json" \
    --fpr 1e-6
done
python scripts/table3_report.py --out "$out" --sizes "${sizes// /,}"
