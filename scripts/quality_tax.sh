#!/usr/bin/env bash
# The quality tax of a 32-bit fingerprint on CelebA 32x32 (made from the half-size copy in ../shared/data;
# research licence: read in place, never committed), 2 CPU cores: the plain baseline (config cpu32 with
# --bits 0) and the fingerprinted model trained for the same wall time, then one table (bit accuracy, SWD,
# diversity, consistency, kimg, img/s; the baseline at the same wall time and at the same kimg) and one
# figure (rows of one z: baseline, fingerprint A, fingerprint B, |A - B| x 10), by fig/quality_tax.py.
#
#   RECIPE=finetune (default): the fingerprinted model is config cpu32ft started from the baseline's snapshot
#     at STAGE1 minutes (default three quarters of MINUTES: the baseline's SWD has levelled off by then, and
#     the bits need about a quarter hour) and trained for the rest of MINUTES: the baseline run's first
#     STAGE1 minutes are that recipe's stage 1, so they are trained once and charged to both.
#   RECIPE=scratch: config cpu32 from scratch for MINUTES.
#
#   MINUTES=60 bash scripts/quality_tax.sh [extra train_stylegan2_fp.py flags for both runs]
# Environment: MINUTES (60), STAGE1, RECIPE, OUT (runs/quality_tax), DATA (the CelebA 32x32 zip), NUM (2000
# samples for SWD and diversity), NUM_BITS (1000 for bits and consistency), and SGF_SHARED_DIR (../shared). docs/results/quality.md records what it gives.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${MINUTES:-60}
recipe=${RECIPE:-finetune}
case "$recipe" in finetune|scratch) ;; *) echo "error: RECIPE must be finetune or scratch, not $recipe" >&2; exit 2;; esac
out=${OUT:-runs/quality_tax}
data=${DATA:-datasets/celeba32.zip}
. scripts/lib/celeba32.sh
celeba32_data "$data"
newest_run() { ls -d "$1"/[0-9][0-9][0-9][0-9][0-9]-*/ | sort | tail -1; }

python train_stylegan2_fp.py --cfg cpu32 --bits 0 --minutes "$minutes" --data "$data" --outdir "$out/baseline" "$@"
base=$(newest_run "$out/baseline")
case "$recipe" in
  finetune)
    # The baseline's last snapshot written by STAGE1 minutes, and the minutes it took.
    read -r snap used < <(python - "$base" "${STAGE1:-$(python -c "print($minutes * 3 / 4)")}" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "fig")
from quality_tax import run_snapshots
snaps = run_snapshots(Path(sys.argv[1]))
early = [s for s in snaps if s.minutes <= float(sys.argv[2])] or snaps[:1]
print(early[-1].path, early[-1].minutes)
EOF
)
    rest=$(python -c "print(max($minutes - $used, 0.01))")
    python train_stylegan2_fp.py --cfg cpu32ft --baseline "$snap" --minutes "$rest" --data "$data" \
      --outdir "$out/fingerprinted" "$@";;
  scratch)
    python train_stylegan2_fp.py --cfg cpu32 --minutes "$minutes" --data "$data" --outdir "$out/fingerprinted" "$@";;
esac
python fig/quality_tax.py --baseline "$base" --fingerprinted "$(newest_run "$out/fingerprinted")" --data "$data" \
  --out "$out/quality_tax.png" --table "$out/quality_tax.md" --num "${NUM:-2000}" --num-bits "${NUM_BITS:-1000}"
