#!/usr/bin/env bash
# Quickstart: the whole responsible-disclosure loop on the built-in data set (procedural toy faces made
# from code: no download), on 2 CPU cores in 9 to 15 minutes as the host's speed varies
# (docs/results/quickstart.md has the measured times):
#   1. data: 2,000 toy faces to train on; 48 others as the real images to test; 3,000 more to calibrate;
#   2. stage 1, two jobs side by side, one thread each (two small jobs use 2 cores better than one job with two
#      threads): the fingerprint autoencoder (AE config quick32, 60 kimg or $AE_KIMG) and the plain quick32
#      StyleGAN2 baseline (GAN config quick32base, 50 kimg or $BASE_KIMG);
#   3. stage 2 (GAN config quick32ft, 64 kimg or $KIMG): G starts as the baseline with the fingerprint modulation at
#      the identity and learns 32-bit fingerprints that the autoencoder's frozen decoder reads, every image held to
#      the baseline's image of the same z (32 bits: the fewest that reach a false-positive rate of 1e-6 with 3 users);
#   4. issue 3 users (alice, bob, carol): a fresh fingerprint each, baked into a generator file, recorded in
#      the registry; 16 images with each user's generator and with the baseline, for the same seeds;
#   5. calibrate the decoder on the 3,000 real images, then detect and attribute the 48 + 48 images at FPR 1e-6
#      and print the table; two figures: detection.png (the decisions) and same_seeds.png (the baseline and the
#      three users for the same seeds: they should draw the same faces).
# Re-running continues where it stopped (training resumes; issued users are kept, not reissued).
#   bash scripts/quickstart.sh [path/to/network-snapshot.pkl]   # a release pickle is converted too
set -euo pipefail
cd "$(dirname "$0")/.."
out=${QUICKSTART_OUT:-out/quickstart}
mkdir -p "$out"
start=$(date +%s)

[ -f "$out/builtin32.zip" ] || python dataset_tool.py create_builtin --dest "$out/builtin32.zip" --max-images 2000
[ -d "$out/real" ] || python dataset_tool.py create_builtin --dest "$out/real" --max-images 48 --seed 1
[ -d "$out/calibration" ] || python dataset_tool.py create_builtin --dest "$out/calibration" --max-images 3000 --seed 2

newest() { ls -t "$@" 2>/dev/null | head -n 1; }
OMP_NUM_THREADS=1 python train_fingerprint_ae.py train --cfg quick32 --data "$out/builtin32.zip" --outdir "$out/ae" \
  ${AE_KIMG:+--total-kimg "$AE_KIMG"} > "$out/ae.log" 2>&1 &
ae_pid=$!
trap 'kill "$ae_pid" 2>/dev/null || true' EXIT
OMP_NUM_THREADS=1 python train_stylegan2_fp.py --cfg quick32base --data "$out/builtin32.zip" --outdir "$out/baseline" \
  ${BASE_KIMG:+--total-kimg "$BASE_KIMG"}
wait "$ae_pid" || { echo "the autoencoder's training failed: see $out/ae.log" >&2; tail -n 5 "$out/ae.log" >&2; exit 1; }
trap - EXIT
baseline=$(newest "$out"/baseline/*/network-snapshot-*.safetensors)
ae=$(newest "$out"/ae/*/ae-snapshot-*.safetensors)
echo "stage 1 in $(( $(date +%s) - start )) s: baseline $baseline, autoencoder $ae ($(grep metric "$out/ae.log" | tail -n 1))"

python train_stylegan2_fp.py --cfg quick32ft --baseline "$baseline" --fp-decoder "$ae" --data "$out/builtin32.zip" \
  --outdir "$out/runs" ${KIMG:+--total-kimg "$KIMG"}
snapshot=$(newest "$out"/runs/*/network-snapshot-*.safetensors)
echo "snapshot: $snapshot (trained in $(( $(date +%s) - start )) s)"

python generate.py issue --network "$snapshot" --registry "$out/registry.sqlite" --users alice,bob,carol \
  --outdir "$out/issued"
python generate.py images --network "$out/issued/alice.safetensors" --network "$out/issued/bob.safetensors" \
  --network "$out/issued/carol.safetensors" --seeds 0-15 --outdir "$out/generated" --force
python generate.py images --network "$baseline" --seeds 0-15 --outdir "$out/baseline_images" --force

# Truth for the table: each generated image belongs to its user, the 48 held-back toy faces are real.
python - "$out" <<'PY'
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
with open(out / "truth.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path", "label"])
    for user in ("alice", "bob", "carol"):
        for p in sorted((out / "generated" / user).glob("seed*.png")):
            w.writerow([p.as_posix(), user])
    for p in sorted((out / "real").rglob("*.png")):
        w.writerow([p.as_posix(), "real"])
PY

python detect_attribute.py calibrate --network "$snapshot" --real "$out/calibration"
python detect_attribute.py detect --network "$snapshot" --registry "$out/registry.sqlite" \
  --images "$out/generated" "$out/real" --out "$out/results.csv" --json "$out/results.json" \
  --truth "$out/truth.csv" --fpr 1e-6
python fig/detection_grid.py --results "$out/results.csv" --truth "$out/truth.csv" --out "$out/detection.png" \
  --title "quickstart: 3 issued generators + real toy faces, decisions at FPR 1e-6"
python fig/same_seeds.py --row "baseline=$out/baseline_images" --row "alice=$out/generated/alice" \
  --row "bob=$out/generated/bob" --row "carol=$out/generated/carol" --out "$out/same_seeds.png" \
  --title "quickstart: the baseline and three issued users, the same seeds"

if [ "$#" -ge 1 ]; then
  python legacy.py --source "$1" --dest "$out/converted.safetensors"
fi
echo "quickstart finished in $(( $(date +%s) - start )) s: results in $out (results.csv, detection.png, same_seeds.png)"
