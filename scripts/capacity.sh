#!/usr/bin/env bash
# The capacity frontier (the paper's capacity section; issue 16's frontier): bits against image quality after the
# same budget, with the recipe that keeps the generator. From one plain baseline run (train_stylegan2_fp.py
# --bits 0, e.g. the baseline of scripts/quality_tax.sh), stage 2 (config cpu32ft: the consistency term holds every
# image to the baseline's image of its z) starts from its snapshot at STAGE1_KIMG for each number of bits in BITS
# and trains KIMG kimg; fig/quality_tax.py then measures each against the baseline's snapshot at REF_KIMG (the
# baseline trained for the whole budget) and the rows go into one table, $out/capacity.md, and one figure per
# number of bits ($out/bits<B>.png: rows of one z, baseline, fingerprints A and B, |A - B| x 10).
# The budget is in kimg (images), so runs may share the cores; a budget in minutes is KIMG = minutes x the
# img/s that the same stage measured alone (docs/results/quality.md).
#   BASELINE_RUN=runs/tax64/baseline/00000-... STAGE1_KIMG=88 REF_KIMG=116 KIMG=26 DATA=datasets/celeba64.zip \
#     bash scripts/capacity.sh [extra train_stylegan2_fp.py flags for every stage 2]
# Environment: BASELINE_RUN, STAGE1_KIMG, REF_KIMG (default: the baseline's last snapshot), KIMG, DATA, BITS
# ("32 64 128"), CAPACITY_OUT (runs/capacity), NUM (2000 samples for SWD and diversity), NUM_BITS (1000 for bits
# and consistency). The preset is the
# baseline's. Stages already finished are not rerun (a run resumes; a finished one stops at once).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "error: $*" >&2; exit 2; }
run=${BASELINE_RUN:?give BASELINE_RUN= a plain run folder (train_stylegan2_fp.py --bits 0)}
[ -f "$run/training_options.json" ] || fail "BASELINE_RUN=$run is not a run folder of train_stylegan2_fp.py"
: "${STAGE1_KIMG:?give STAGE1_KIMG= the kimg of the baseline snapshot stage 2 starts from}"
: "${KIMG:?give KIMG= the kimg of each stage 2}"
data=${DATA:?give DATA= the data set of the baseline}
out=${CAPACITY_OUT:-runs/capacity}
bits_list=${BITS:-32 64 128}
snap_at() {  # the baseline's snapshot at kimg $1 (network-snapshot-000088.safetensors or -000088_500)
  python - "$run" "$1" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "fig")
from quality_tax import run_snapshots
kimg = float(sys.argv[2])
hits = [s.path for s in run_snapshots(Path(sys.argv[1])) if abs(s.kimg - kimg) < 1e-6]
print(hits[0] if hits else "")
EOF
}
stage1=$(snap_at "$STAGE1_KIMG")
[ -n "$stage1" ] || fail "$run has no snapshot at STAGE1_KIMG=$STAGE1_KIMG kimg"
ref=${REF_KIMG:-$(python -c "
import sys; sys.path.insert(0, 'fig')
from pathlib import Path
from quality_tax import run_snapshots
print(f'{run_snapshots(Path(sys.argv[1]))[-1].kimg:g}')" "$run")}
[ -n "$(snap_at "$ref")" ] || fail "$run has no snapshot at REF_KIMG=$ref kimg"
preset=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['preset'])" "$run/training_options.json")
mkdir -p "$out"

tables=()
for b in $bits_list; do
  python train_stylegan2_fp.py --cfg cpu32ft --preset "$preset" --bits "$b" --baseline "$stage1" \
    --total-kimg "$KIMG" --data "$data" --outdir "$out/bits$b" "$@"
  fp=$(ls -d "$out/bits$b"/[0-9][0-9][0-9][0-9][0-9]-*/ | sort | tail -1)
  python fig/quality_tax.py --baseline "$run" --fingerprinted "$fp" --data "$data" --reference-kimg "$ref" \
    --out "$out/bits$b.png" --table "$out/bits$b.md" --num "${NUM:-2000}" --num-bits "${NUM_BITS:-1000}"
  tables+=("$out/bits$b.md")
done

# One table: the reference baseline once, then each number of bits.
python - "$out/capacity.md" "$preset" "$STAGE1_KIMG" "$KIMG" "$ref" "${tables[@]}" <<'EOF'
import os
import sys
from pathlib import Path
dest, preset, stage1, kimg, ref, *tables = sys.argv[1:]
rows = []
for i, t in enumerate(tables):
    lines = Path(t).read_text().splitlines()
    if i == 0:
        rows += [lines[0].replace("| model |", "| bits | model |"), lines[1].replace("|---|", "|---|---|", 1),
                 "| - " + lines[2]]
    bits = Path(t).stem.removeprefix("bits")
    rows.append(f"| {bits} " + lines[-1])
text = (f"Capacity frontier ({preset}): stage 2 from the baseline's {stage1}-kimg snapshot for {kimg} kimg; "
        f"SWD and diversity against the baseline at {ref} kimg.\n\n" + "\n".join(rows) + "\n")
tmp = dest + ".partial"
Path(tmp).write_text(text)
os.replace(tmp, dest)
print(text)
EOF
echo "wrote $out/capacity.md"
