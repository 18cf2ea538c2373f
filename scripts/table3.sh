#!/usr/bin/env bash
# Paper Table 3 at small scale: detection and attribution accuracy for 1, 10 and 100 issued generators,
# closed and open world, at FPR 1e-6 (and 1e-3), from a tiny32 model trained on CelebA 32x32.
#   * data: the half-size CelebA copy of ../shared/data (research licence: read in place, never committed):
#     train on the first 8,000 images; the other 2,000 are the real test images (never seen in training);
#     the decoder is calibrated on 4,000 training images (F itself never sees real images);
#   * model: $SNAPSHOT if given, else tiny32 with $BITS-bit fingerprints (default 64) trained with config cpu32
#     of training/configs.py (warm-up threshold 0.85) for $MINUTES minutes. 64 bits, because
#     attributing among 100 users at FPR 1e-6 needs 54 of 64 bits right but 31 of 32: the 32-bit model
#     (0.996 bit accuracy on its PNGs) left 1.7% of images with 2 wrong bits (docs/RESULTS.md);
#   * 100 generators issued into the registry, 20 more issued from the same snapshot into another registry
#     (the open world's unknown generators), 100 images each;
#   * for N = 1, 10, 100: a registry holding the first N users; closed world = those N generators' images +
#     the 2,000 real; open world = + the 20 unknown generators' images. scripts/table3_report.py defines the
#     accuracies and writes $out/table3.md and table3.json.
#   SNAPSHOT=runs/.../network-snapshot-000052.safetensors bash scripts/table3.sh
set -euo pipefail
cd "$(dirname "$0")/.."
src=${SGF_SHARED_DIR:-../shared}/data/celeba_89x109
out=${TABLE3_OUT:-out/table3}
MINUTES=${MINUTES:-55}
BITS=${BITS:-64}
mkdir -p "$out"
celeba() { python dataset_tool.py create_celeba --source "$src" --cx 44.5 --cy 60.5 --size 64 --resolution 32 "$@"; }
[ -f datasets/celeba32_train8k.zip ] || celeba --dest datasets/celeba32_train8k.zip --max-images 8000
[ -f "$out/real_heldout.zip" ] || celeba --dest "$out/real_heldout.zip" --skip 8000 --max-images 2000
[ -f "$out/calibration.zip" ] || celeba --dest "$out/calibration.zip" --max-images 4000

if [ -z "${SNAPSHOT:-}" ]; then
  timeout $(( MINUTES * 60 )) python train_stylegan2_fp.py --cfg cpu32 --data datasets/celeba32_train8k.zip \
    --outdir "$out/runs" --bits "$BITS" --fp-warmup 0.85 --snap 4 --total-kimg 10000 || [ $? -eq 124 ]
  SNAPSHOT=$(ls -t "$out"/runs/*/network-snapshot-*.safetensors | head -n 1)
fi
echo "snapshot: $SNAPSHOT"
snap="$out/snapshot.safetensors"         # a copy: the calibration lives beside it
[ -f "$snap" ] && cmp -s "$SNAPSHOT" "$snap" || cp "$SNAPSHOT" "$snap"

python generate.py issue --network "$snap" --registry "$out/registry.sqlite" --count 100 --outdir "$out/issued"
python generate.py issue --network "$snap" --registry "$out/elsewhere.sqlite" \
  --users "$(python -c 'print(",".join(f"unknown{i:02d}" for i in range(20)))')" --outdir "$out/issued_elsewhere"
python generate.py export-registry --registry "$out/registry.sqlite" --out "$out/registry.csv"
nets=()
for f in "$out"/issued/*.safetensors "$out"/issued_elsewhere/*.safetensors; do nets+=(--network "$f"); done
[ -f "$out/generated/unknown19/seed0099.png" ] || python generate.py images "${nets[@]}" --seeds 0-99 --outdir "$out/generated"

python detect_attribute.py calibrate --network "$snap" --real "$out/calibration.zip"
for n in 1 10 100; do
  head -n $(( n + 1 )) "$out/registry.csv" > "$out/registry_$n.csv"
  rm -f "$out/registry_$n.sqlite"*
  python generate.py import-registry --registry "$out/registry_$n.sqlite" --csv "$out/registry_$n.csv"
  python detect_attribute.py detect --network "$snap" --registry "$out/registry_$n.sqlite" \
    --images "$out/generated" "$out/real_heldout.zip" --out "$out/results_$n.csv" --json "$out/results_$n.json" \
    --fpr 1e-6
done
python scripts/table3_report.py --out "$out"
