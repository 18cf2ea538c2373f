#!/usr/bin/env bash
# Fingerprinting a StyleGAN2 you already have (issue 18's bar), on CelebA 32x32, 2 CPU cores:
#   1. a plain standard StyleGAN2 (NVlabs' layout; config sg2cpu32) trained here for BASE_MINUTES (45), or
#      BASE_KIMG kimg when given (a budget in images, for runs that share the cores);
#   2. its last snapshot written as NVlabs state dicts and imported back, as a user with NVlabs' code would bring it
#      (legacy.py both ways);
#   3. the decoder that reads the bits: an autoencoder trained on the real images (config cpu32 of
#      train_fingerprint_ae.py, BITS bits) for AE_KIMG kimg (113), or the one given as AE=ae-snapshot-*.safetensors.
#      It is trained once and serves any generator of this resolution (a new F does not start: the consistency term
#      keeps the images where F reads nothing; docs/results/sg2_finetune.md);
#   4. fingerprint fine-tuning of the import in two stages, BITS bits, --train-params TRAIN_PARAMS: config sg2ft with F
#      the frozen decoder for FT1_MINUTES (5), or FT1_KIMG kimg when given; then config sg2ft2 from its last snapshot
#      (the decoder trains, the change every user shares is held) for FT2_MINUTES (15), or FT2_KIMG kimg;
#   5. fig/sg2_finetune.py: the curve (bits, PSNR to the original, SWD / original's at each snapshot of both stages)
#      as a table and a plot, and the figure of the original beside three users for the same z.
#
#   bash scripts/sg2_finetune.sh [extra train_stylegan2_fp.py flags for every training]
# Environment: BASE_MINUTES, BASE_KIMG, AE, AE_KIMG, AE_FLAGS (extra train_fingerprint_ae.py flags), FT1_MINUTES,
# FT1_KIMG, FT2_MINUTES, FT2_KIMG, BITS (32), TRAIN_PARAMS (all), OUT (runs/sg2_finetune), DATA (the CelebA 32x32
# zip of scripts/lib/celeba32.sh), NUM (2000 samples for SWD), NUM_BITS (1000 for bits and PSNR), SGF_SHARED_DIR
# (../shared). Finished stages are not rerun (a run resumes; a finished one stops at once; stage 2, a new run from
# stage 1's snapshot, is skipped once a run of it has finished).
# docs/results/sg2_finetune.md records what it gives.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/sg2_finetune}
data=${DATA:-datasets/celeba32.zip}
. scripts/lib/celeba32.sh
celeba32_data "$data"
budget() {  # --total-kimg K when a kimg budget is given, else --minutes M
  if [ -n "$1" ]; then echo "--total-kimg $1"; else echo "--minutes $2"; fi
}
newest_run() { ls -d "$1"/[0-9][0-9][0-9][0-9][0-9]-*/ | sort | tail -1; }

# shellcheck disable=SC2046
python train_stylegan2_fp.py --cfg sg2cpu32 $(budget "${BASE_KIMG:-}" "${BASE_MINUTES:-45}") --data "$data" \
  --outdir "$out/baseline" "$@"
base=$(newest_run "$out/baseline")
snap=$(ls "$base"network-snapshot-*.safetensors | sort | tail -1)
mkdir -p "$out"
python legacy.py --source "$snap" --dest "$out/original_nvlabs.pt"
python legacy.py --source "$out/original_nvlabs.pt" --dest "$out/original.safetensors"

ae=${AE:-}
if [ -z "$ae" ]; then
  # shellcheck disable=SC2046
  python train_fingerprint_ae.py train --cfg cpu32 --bits "${BITS:-32}" --total-kimg "${AE_KIMG:-113}" --data "$data" \
    --outdir "$out/ae" ${AE_FLAGS:-}
  ae=$(ls "$(newest_run "$out/ae")"ae-snapshot-*.safetensors | sort | tail -1)
fi

tp=${TRAIN_PARAMS:-all}
# shellcheck disable=SC2046
python train_stylegan2_fp.py --cfg sg2ft --bits "${BITS:-32}" --init-from "$out/original.safetensors" \
  --fp-decoder "$ae" --freeze-decoder --train-params "$tp" $(budget "${FT1_KIMG:-}" "${FT1_MINUTES:-5}") \
  --data "$data" --outdir "$out/finetune-$tp" "$@"
ft1=$(newest_run "$out/finetune-$tp")
last1=$(ls "$ft1"network-snapshot-*.safetensors | sort | tail -1)
if ! { ls -d "$out/finetune2-$tp"/[0-9]*/ >/dev/null 2>&1 && grep -q "^Done" "$(newest_run "$out/finetune2-$tp")log.txt"; }; then
  # shellcheck disable=SC2046
  python train_stylegan2_fp.py --cfg sg2ft2 --bits "${BITS:-32}" --init-from "$out/original.safetensors" \
    --fp-decoder "$ae" --resume "$last1" --train-params "$tp" $(budget "${FT2_KIMG:-}" "${FT2_MINUTES:-15}") \
    --data "$data" --outdir "$out/finetune2-$tp" "$@"
fi
ft2=$(newest_run "$out/finetune2-$tp")
python fig/sg2_finetune.py --original "$out/original.safetensors" --stage1 "$ft1" --run "$ft2" --data "$data" \
  --out "$out/finetune-$tp.png" --table "$out/finetune-$tp.md" --curve "$out/finetune-$tp-curve.png" \
  --num "${NUM:-2000}" --num-bits "${NUM_BITS:-1000}"
