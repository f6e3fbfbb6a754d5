#!/usr/bin/env bash
# Second GPU call of this stop (after call 1 carried .whl/p1, see run_issue14.sh): the scalar-site rows,
# compiled_mh per iteration, and the distributed algorithms' CUDA path with one NCCL rank (issue 19).
set -uo pipefail
cat /tmp/cu/cu13.part.aa .whl/p2/cu13.part.ab > /tmp/cu/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  /tmp/cu/mlx_cuda_13-*.whl .whl/p2/mlx-0.32.4-*.whl .whl/p2/small/*.whl
export PYTHONPATH=/tmp/site:$PWD MLX_PTX_CACHE_DIR=/tmp/ptx
OUT=${OUT:-/tmp/out}
timeout 170 python3 -m pytest benchmarks/test_bench_scalar_sites.py -q -p no:cacheprovider -o addopts="" \
  --benchmark-json="$OUT/gpu-scalar-sites.json" 2>&1 | tail -3
timeout 230 python3 -m genmlx.distributed.launch -n 1 --backend nccl benchmarks/distributed_gpu.py "$OUT/distributed-gpu.json" \
  > "$OUT/distributed-gpu.log" 2>&1; echo "distributed rc=$?"; tail -5 "$OUT/distributed-gpu.log"
timeout 150 python3 -m benchmarks.gpu.mh_per_iteration "$OUT/mh-per-iteration.json" 2>&1 | tail -8
ls -la "$OUT"
