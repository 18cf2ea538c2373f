#!/usr/bin/env bash
# One prepared run on a GPU machine: the test suite (CUDA tests included), then the benchmarks
# on the device. Usage: SGF_SHARED_DIR=<copy of shared/> bash bench/gpu_check.sh [OUTDIR]
set -uo pipefail
out=${1:-${OUT:-/tmp}}
export PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider -x tests 2>&1 | tail -n 15 | tee "$out/pytest.txt"
{
  python3 bench/bench_bake.py --device cuda --repeats 20
  python3 bench/bench_bake.py --device cpu --threads 16 --repeats 10
  python3 bench/bench_tiny32_step.py --device cuda --repeats 20
  python3 bench/bench_tiny32_step.py --preset celeba128 --device cuda --batch 16 --repeats 10
} 2>&1 | tee "$out/bench.txt"
