#!/usr/bin/env bash
# The issue-14 GPU run (MCMC at a jitted peer's speed) on a lent CUDA machine; see /work/shared/GPU.md.
# Call 1 carries .whl/p1 (the first half of MLX's CUDA wheel) and copies it: mkdir -p /tmp/cu && cp .whl/p1/* /tmp/cu/
# Call 2 carries .whl/p2 (the second half, MLX, small wheels) and runs this script; results go to $OUT.
set -uo pipefail
cat /tmp/cu/cu13.part.aa .whl/p2/cu13.part.ab > /tmp/cu/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  /tmp/cu/mlx_cuda_13-*.whl .whl/p2/mlx-0.32.4-*.whl .whl/p2/small/*.whl
export PYTHONPATH=/tmp/site:$PWD MLX_PTX_CACHE_DIR=/tmp/ptx
python3 -c "import mlx.core as mx; print(mx.default_device(), mx.device_info().get('device_name'))"
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# compiled_mh per iteration, K = 50 and 500, both key layouts, against the upfront-key floor (one process, same run)
timeout 200 python3 -m benchmarks.gpu.mh_per_iteration "$OUT/mh-per-iteration.json"
# the pytest-benchmark rows: fused MH and the scalar-site forms
timeout 330 python3 -m pytest benchmarks/test_bench_mh.py -k "fused" benchmarks/test_bench_scalar_sites.py \
  -q -p no:cacheprovider -o addopts="" --benchmark-json="$OUT/gpu-issue14.json" 2>&1 | tail -5
ls -la "$OUT"
