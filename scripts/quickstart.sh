#!/usr/bin/env bash
# Quickstart: the whole responsible-disclosure loop on the built-in data set (procedural toy faces made
# from code: no download), on 2 CPU cores in under 15 minutes (docs/RESULTS.md has the measured time and table):
#   1. data: 2,000 toy faces to train on; 48 others as the real images to test; 3,000 more to calibrate;
#   2. train the plain StyleGAN2 first (config quick32 of training/configs.py with --bits 0: the quick32 preset,
#      tiny32 at half the width, 2.5 times the images per second on CPU) for 20 kimg (or $BASE_KIMG), then
#      fingerprint it (config quick32ft, --baseline: 32-bit fingerprints, the modulation starting at the
#      identity so the first images are the baseline's, the consistency term holding every image to the
#      baseline's image of its z) for 40 kimg (or $KIMG); 32 bits: the fewest that can reach a false-positive
#      rate of 1e-6 with 3 users;
#   3. issue 3 users (alice, bob, carol): a fresh fingerprint each, baked into a generator file, recorded in
#      the registry;
#   4. generate 16 images with each user's generator, and the baseline's images of the same seeds (the same z);
#      a figure puts them in rows (same_seeds.png): each user's image of a seed should look like the baseline's;
#   5. calibrate the decoder on the 3,000 real images (300 left too wide a confidence bound per bit:
#      docs/RESULTS.md), then detect and attribute the 48 + 48 images at FPR 1e-6 and print the table; write a
#      figure (sample grid per source with the decisions).
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

# Stage 1: the plain StyleGAN2 (no fingerprint); stage 2: fingerprint it, starting from its snapshot.
python train_stylegan2_fp.py --cfg quick32 --bits 0 --data "$out/builtin32.zip" --outdir "$out/runs/baseline" \
  --total-kimg "${BASE_KIMG:-20}"
baseline=$(ls "$out"/runs/baseline/*/network-snapshot-*.safetensors | sort | tail -n 1)
python train_stylegan2_fp.py --cfg quick32ft --baseline "$baseline" --data "$out/builtin32.zip" \
  --outdir "$out/runs/fingerprinted" --total-kimg "${KIMG:-40}"
snapshot=$(ls "$out"/runs/fingerprinted/*/network-snapshot-*.safetensors | sort | tail -n 1)
echo "snapshot: $snapshot (trained in $(( $(date +%s) - start )) s)"

python generate.py issue --network "$snapshot" --registry "$out/registry.sqlite" --users alice,bob,carol \
  --outdir "$out/issued"
python generate.py images --network "$out/issued/alice.safetensors" --network "$out/issued/bob.safetensors" \
  --network "$out/issued/carol.safetensors" --seeds 0-15 --outdir "$out/generated" --force
# The baseline's images of the same seeds (the same z): each user's should look like them.
python generate.py images --network "$baseline" --seeds 0-15 --outdir "$out/baseline_images" --force
python fig/same_seeds.py --row "baseline=$out/baseline_images" --row "alice=$out/generated/alice" \
  --row "bob=$out/generated/bob" --row "carol=$out/generated/carol" --out "$out/same_seeds.png" \
  --title "quickstart: the same seed (one z) from the plain baseline and from each issued generator"

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

if [ "$#" -ge 1 ]; then
  python legacy.py --source "$1" --dest "$out/converted.safetensors"
fi
echo "quickstart finished in $(( $(date +%s) - start )) s: results in $out (results.csv, detection.png, same_seeds.png)"
