#!/usr/bin/env bash
# One prepared run on a GPU machine (about 8 minutes on one H100), in this order, each step logged to OUTDIR:
#   1. the CUDA tests (tests/test_cuda.py and every test marked for CUDA) and the op oracles on the device;
#   2. a few kimg of celeba128 training on the built-in faces at 128x128 (the paper's config), single process,
#      then the same command again with more kimg: the run resumes from its training state on CUDA;
#   3. the same training launched by torchrun (--nproc_per_node 1, NCCL);
#   4. issue two users from the snapshot, generate, calibrate and detect on CUDA;
#   5. img/s of a training step per preset, float32 NCHW against --amp on and channels-last.
# No test depends on it; its output goes to docs/results/throughput.md when a GPU is lent.
#   SGF_SHARED_DIR=<copy of shared/> bash bench/gpu_check.sh [OUTDIR]
# Environment: DEVICE (cuda; cpu runs the same steps at toy sizes, as the test suite does), KIMG (2), PRESETS
# (tiny32 quick32 celeba128 bedroom128 cat256), FULL_SUITE=1 (run the whole test suite in step 1).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu_check}}
# Its own folder only: a new or empty one, or one an earlier gpu_check wrote (marked), never a folder of the user's.
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/.gpu_check" ]; then
  echo "error: $out holds files gpu_check did not write; give a new or empty OUTDIR" >&2; exit 2
fi
mkdir -p "$out" && touch "$out/.gpu_check"
device=${DEVICE:-cuda}
kimg=${KIMG:-2}
export PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run, log to $out/NAME.txt, report the time and exit status, go on after a failure
  local name=$1; shift
  local t0; t0=$(date +%s)
  "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc in $(( $(date +%s) - t0 )) s (log: $out/$name.txt)" | tee -a "$out/summary.txt"
  [ $rc -eq 0 ] || { status=1; tail -n 5 "$out/$name.txt"; }
}
: > "$out/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee -a "$out/summary.txt"

if [ "${FULL_SUITE:-0}" = 1 ]; then
  step pytest python3 -m pytest -q -p no:cacheprovider tests
else
  step pytest python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_checkpoint.py tests/test_op_*.py
fi

# Training at 128x128 on the built-in faces (no download): the paper's config, KIMG kimg, then resumed to 2 KIMG.
if [ "$device" = cpu ]; then res=32; preset=tiny32; batch=4; tick=0.008; else res=128; preset=celeba128; batch=16; tick=0.5; fi
data="$out/builtin$res.zip"
[ -f "$data" ] || step data python3 dataset_tool.py create_builtin --dest "$data" --resolution "$res" --max-images 512
train=(python3 train_stylegan2_fp.py --cfg paper --preset "$preset" --bits 128 --data "$data" --batch "$batch"
       --tick "$tick" --snap 1 --metrics none --device "$device" --workers 2)
step train "${train[@]}" --outdir "$out/runs" --total-kimg "$kimg"
step resume "${train[@]}" --outdir "$out/runs" --total-kimg "$(python3 -c "print(2 * $kimg)")"
grep -h "Resuming" "$out/resume.txt" | tee -a "$out/summary.txt"
if [ "$device" = cuda ]; then
  step torchrun torchrun --standalone --nproc_per_node 1 train_stylegan2_fp.py --cfg paper --preset "$preset" \
    --bits 128 --data "$data" --batch "$batch" --tick "$tick" --snap 1 --metrics none --device cuda \
    --outdir "$out/runs_torchrun" --total-kimg "$kimg"
fi

# Issue, generate, calibrate, detect on the device.
snap=$(ls -t "$out"/runs/*/network-snapshot-*.safetensors 2>/dev/null | head -n 1)
if [ -n "$snap" ]; then
  step issue python3 generate.py issue --network "$snap" --registry "$out/registry.sqlite" --users alice,bob \
    --outdir "$out/issued" --device "$device"
  step images python3 generate.py images --network "$out/issued/alice.safetensors" \
    --network "$out/issued/bob.safetensors" --seeds 0-7 --outdir "$out/generated" --force --device "$device"
  [ -d "$out/real" ] || step real python3 dataset_tool.py create_builtin --dest "$out/real" --resolution "$res" \
    --max-images 256 --seed 1
  step calibrate python3 detect_attribute.py calibrate --network "$snap" --real "$out/real" --device "$device"
  step detect python3 detect_attribute.py detect --network "$snap" --registry "$out/registry.sqlite" \
    --images "$out/generated" --out "$out/results.csv" --fpr 1e-3 --device "$device"
fi

# img/s of a training step per preset: float32 NCHW, then bfloat16 autocast and channels-last.
if [ "$device" = cpu ]; then presets=${PRESETS:-tiny32}; steps=2; else presets=${PRESETS:-tiny32 quick32 celeba128 bedroom128 cat256}; steps=10; fi
for p in $presets; do
  step "speed_${p}_fp32" python3 bench/bench_train_step.py --preset "$p" --device "$device" --steps "$steps"
  step "speed_${p}_amp_nhwc" python3 bench/bench_train_step.py --preset "$p" --device "$device" --steps "$steps" \
    --amp on --channels-last
  grep -h "img/s" "$out/speed_${p}_fp32.txt" "$out/speed_${p}_amp_nhwc.txt" | sed "s/^/$p: /" | tee -a "$out/summary.txt"
done
echo "gpu_check: $([ $status -eq 0 ] && echo all steps passed || echo some steps FAILED); summary in $out/summary.txt"
exit $status
