#!/usr/bin/env bash
# Quickstart: the whole responsible-disclosure loop on the built-in data set (procedural toy faces made
# from code: no download), on 2 CPU cores in under 15 minutes (docs/RESULTS.md has the measured time and table):
#   1. data: 2,000 toy faces to train on; 48 others as the real images to test; 3,000 more to calibrate;
#   2. train config quick32 of training/configs.py: the quick32 preset (tiny32 at half the width: 2.5 times the
#      images per second on CPU, and per image it learns a 32-bit fingerprint about as fast) with 32-bit
#      fingerprints for 52 kimg (or $KIMG): the CPU recipe of scripts/celeba32_cpu.sh, except that the adversarial
#      term (and with it D) also waits until F reads 90% of the bits, and no path-length regularisation: G and F
#      learn the fingerprint first at about three times the speed, then the GAN learns the faces (32 bits: the
#      fewest that can reach a false-positive rate of 1e-6 with 3 users, 30 of 32 bits; 52 kimg: where the
#      measured G_ema + F reads 0.995 of the bits);
#   3. issue 3 users (alice, bob, carol): a fresh fingerprint each, baked into a generator file, recorded in
#      the registry;
#   4. generate 16 images with each user's generator;
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

python train_stylegan2_fp.py --cfg quick32 --data "$out/builtin32.zip" --outdir "$out/runs" \
  ${KIMG:+--total-kimg "$KIMG"}
snapshot=$(ls -t "$out"/runs/*/network-snapshot-*.safetensors | head -n 1)
echo "snapshot: $snapshot (trained in $(( $(date +%s) - start )) s)"

python generate.py issue --network "$snapshot" --registry "$out/registry.sqlite" --users alice,bob,carol \
  --outdir "$out/issued"
python generate.py images --network "$out/issued/alice.safetensors" --network "$out/issued/bob.safetensors" \
  --network "$out/issued/carol.safetensors" --seeds 0-15 --outdir "$out/generated" --force

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
echo "quickstart finished in $(( $(date +%s) - start )) s: results in $out (results.csv, detection.png)"
