#!/usr/bin/env bash
# The GPU rows of this stop on a lent CUDA machine (see /work/shared/GPU.md), in two calls after the one
# that carried .whl/p1 (mkdir -p /tmp/cu && cp .whl/p1/* /tmp/cu/). Both carry .whl/p2:
#   bash benchmarks/gpu/run_session.sh A   # distributed algorithms on one NCCL rank (issue 19), test_bench_mh.py
#   bash benchmarks/gpu/run_session.sh B   # compiled_mh per iteration against its floors, the scalar-site rows
#   bash benchmarks/gpu/run_session.sh P   # a compiled_mh block's time split (kernel call, eval, Python), fused rows
#   bash benchmarks/gpu/run_session.sh Q   # the block time split, then compiled_mh per iteration
#   bash benchmarks/gpu/run_session.sh R   # Q, then the MH module
#   bash benchmarks/gpu/run_session.sh M   # issue 14's MH module whole, compiled_mh per iteration, the PTX cache
#   bash benchmarks/gpu/run_session.sh D   # the block time split, then the IS and distribution modules
#   bash benchmarks/gpu/run_session.sh J   # GenJAX and NumPyro on this GPU beside genmlx (benchmarks.peers):
#                                          # J1 (compiled_mh rows) then J2 (NUTS, MH rows), one call each
#   bash benchmarks/gpu/run_session.sh S   # the scalar-site module, then NUTS against NumPyro's funnel
#   bash benchmarks/gpu/run_session.sh I   # vectorized IS, 102 scalar sites against one vector site
#   bash benchmarks/gpu/run_session.sh K   # the accept scan's CUDA kernel: tests, timing, block split, pipelining, cmh peers
#   bash benchmarks/gpu/run_session.sh L1  # fewer launches a block: tests, block split, cmh peers, the kernel's timing
#   bash benchmarks/gpu/run_session.sh G   # L1 and L2's key rows in one call, then H: the suite's IS and MH rows
#   bash benchmarks/gpu/run_session.sh N   # NUTS's new-machine first run fused and unfused, then the IS rows
#   bash benchmarks/gpu/run_session.sh T   # NUTS beside NumPyro with the tiered leapfrog (fuse="auto"), both forms
#   bash benchmarks/gpu/run_session.sh T2  # T's NUTS rows first, a shorter IS profile after
#   bash benchmarks/gpu/run_session.sh H3  # the MH module's fused and compiled-step rows, the kernel cache back
#   bash benchmarks/gpu/run_session.sh L2  # then IS's fixed cost split (is_split.py), the MH rows against their
#                                          # floors and the IS rows (the suite's JSON)
# A lent machine's copy of the tree carries the .git of the session's start: a JSON written there
# names that commit with a dirty tree. Record the local commit the tree matched when merging.
# The image has JAX 0.11.2 with its CUDA 13 plugin and NumPyro 0.21; GenJAX 1.0.14, NumPyro 0.22 (the
# CPU run's) and their pure-Python dependencies travel as .whl/peers (carry it with .whl/p1).
set -uo pipefail
OUT=${OUT:-/tmp/out}
if [ ! -d /tmp/site/mlx ]; then
  cat /tmp/cu/cu13.part.aa .whl/p2/cu13.part.ab > /tmp/cu/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    /tmp/cu/mlx_cuda_13-*.whl .whl/p2/mlx-0.32.4-*.whl .whl/p2/small/*.whl .whl/p2/otel/*.whl
fi
if [ ! -d /tmp/peersite/genjax ] && [ -d /tmp/cu/peers ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peersite /tmp/cu/peers/*.whl
fi
export PYTHONPATH=/tmp/site:/tmp/peersite:$PWD MLX_PTX_CACHE_DIR=/tmp/ptx
# JAX takes 75% of the GPU's memory at start unless told not to; MLX runs beside it
export GENMLX_PEERS_PYTHON=$(command -v python3) XLA_PYTHON_CLIENT_PREALLOCATE=false
# a kernel cache from an earlier machine (mode M brings one back as ptx.tgz; keep it as .whl/ptx/ptx.tgz
# and carry .whl/ptx with .whl/p2): a fresh machine otherwise spends minutes in NVRTC
if [ ! -d /tmp/ptx ] && [ -f .whl/ptx/ptx.tgz ]; then tar xzf .whl/ptx/ptx.tgz -C /tmp; fi
python3 -c "import mlx.core as mx; print(mx.default_device(), mx.device_info().get('device_name'))"
bench() {  # pytest-benchmark rows into $OUT/$1.json
  local name=$1 limit=$2; shift 2
  timeout "$limit" python3 -m pytest "$@" -q -p no:cacheprovider -o addopts="" \
    --benchmark-json="$OUT/$name.json" 2>&1 | tail -3
}
gpu_tests() {  # the GPU paths' tests (accept kernel, compiled blocks, launches, the GPU normal), under a time limit
  timeout "$1" python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/inference/test_accept_scan.py \
    tests/inference/test_compiled.py tests/distributions/test_normal_gpu_form.py \
    -k "accept_scan or resolve or chain_states or posterior_no_syncs or posterior_of_beta or launches_do_not_grow or gpu or lanes or ks_test" 2>&1 | tail -3
}
peers() {  # peers rows (its --only arguments) into $OUT/peers.json, under a time limit (each row is kept as it ends)
  local limit=$1; shift
  timeout "$limit" python3 -m benchmarks.peers --merge --out "$OUT/peers.json" "$@" 2>&1 | grep -v "^ *$"
}
case "${1:-A}" in
  J)  # J1 then J2: more than one call's 10 minutes, so in two calls on a warm machine
    bash "$0" J1
    bash "$0" J2
    ;;
  J1)
    python3 -c "import jax, genjax, numpyro; print('jax', jax.__version__, jax.devices(), 'numpyro', numpyro.__version__)"
    peers 150 --only cmh
    ;;
  J2)  # NUTS first runs: genmlx's on a new machine and in a later process (new processes), NumPyro's
    peers 300 --only nuts-reg100
    peers 150 --only mh- --only mhc
    ;;
  K)  # the accept recursion as one CUDA kernel (accept_scan.py): its tests, its time against the doubling
      # form, a compiled_mh block's split, then compiled_mh beside GenJAX's scan; the kernel cache comes back
    timeout 120 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/inference/test_accept_scan.py \
      tests/inference/test_compiled.py -k "accept_scan or posterior_no_syncs or posterior_of_beta" 2>&1 | tail -3
    timeout 90 python3 -m benchmarks.gpu.accept_scan "$OUT/accept-scan.json" 2>&1 | tail -4
    timeout 120 python3 -m benchmarks.gpu.profile_blocks 2000 2>&1 | tee "$OUT/profile-blocks.txt" | grep -v "^ "
    python3 -c "import jax, genjax, numpyro; print('jax', jax.__version__, jax.devices(), 'numpyro', numpyro.__version__)"
    peers 200 --only cmh
    tar czf "$OUT/ptx.tgz" -C /tmp ptx 2>/dev/null; du -sh "$OUT/ptx.tgz"
    timeout 100 python3 -m benchmarks.gpu.pipeline_ab "$OUT/pipeline-ab.json" 2>&1 | tail -6
    ;;
  L1)  # a compiled_mh block with ~15 launches fewer (MLX's normal on a GPU, the accept kernel's four outputs,
       # views for keys and the last state): its tests, its time split, then beside GenJAX's scan
    timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/inference/test_accept_scan.py \
      tests/inference/test_compiled.py tests/inference/test_stats.py \
      -k "accept_scan or resolve or chain_states or posterior_no_syncs or posterior_of_beta or summaries or launches_do_not_grow" 2>&1 | tail -3
    python3 -m benchmarks.gpu.launch_count 2>&1 | cut -c1-120 | tee "$OUT/launch-count.txt"
    [ -n "${PROFILE:-}" ] && timeout 120 python3 -m benchmarks.gpu.profile_blocks 2000 2>&1 | tee "$OUT/profile-blocks.txt" | grep -v "^ "
    python3 -c "import jax, genjax, numpyro; print('jax', jax.__version__, jax.devices(), 'numpyro', numpyro.__version__)"
    timeout 60 python3 -m benchmarks.gpu.accept_scan "$OUT/accept-scan.json" 2>&1 | tail -4
    peers 180 --only cmh
    tar czf "$OUT/ptx.tgz" -C /tmp ptx 2>/dev/null; du -sh "$OUT/ptx.tgz"
    ;;
  G)  # L1 and L2's key rows in one call (a lease with little budget left): the GPU paths' tests, the launch
      # count, compiled_mh beside GenJAX's scan, the accept kernels, IS's fixed cost split; then H
    gpu_tests 100
    python3 -m benchmarks.gpu.launch_count 2>&1 | cut -c1-120 | tee "$OUT/launch-count.txt"
    peers 170 --only cmh
    timeout 60 python3 -m benchmarks.gpu.accept_scan "$OUT/accept-scan.json" 2>&1 | tail -4
    timeout 60 python3 -m benchmarks.gpu.is_split 1 100000 2>&1 | tee "$OUT/is-split.txt"
    ;;
  G2)  # G within little budget: the GPU paths' tests, the launch count, compiled_mh beside GenJAX's scan, the kernels
    gpu_tests 90
    python3 -m benchmarks.gpu.launch_count 2>&1 | cut -c1-120 | tee "$OUT/launch-count.txt"
    peers 150 --only cmh50
    timeout 45 python3 -m benchmarks.gpu.accept_scan "$OUT/accept-scan.json" 2>&1 | tail -4
    ;;
  G3)  # the least: the GPU paths' tests, the launch count, compiled_mh K = 50 on the regression beside GenJAX's scan
    gpu_tests 90
    python3 -m benchmarks.gpu.launch_count 2>&1 | cut -c1-120 | tee "$OUT/launch-count.txt"
    peers 100 --only cmh50-reg5
    ;;
  H)
    bench gpu-is-regression 130 benchmarks/test_bench_is.py -k "regression100 and test_is_vectorized"
    bench gpu-scalar-sites-is 110 benchmarks/test_bench_scalar_sites.py -k importance
    bench gpu-mh 200 benchmarks/test_bench_mh.py -k "fused or compiled_step"
    ;;
  N)
    timeout 300 python3 -m benchmarks.gpu.nuts_first_run "$OUT/nuts-first-run.json" 2>&1 | tail -6
    bench gpu-is-regression 130 benchmarks/test_bench_is.py -k "regression100 and test_is_vectorized"
    bench gpu-scalar-sites-is 110 benchmarks/test_bench_scalar_sites.py -k importance
    ;;
  T2)  # T within little budget: the NUTS rows first (each kept as it ends), then the IS profile
    peers 230 --only nuts-reg100
    timeout 25 python3 -m benchmarks.gpu.is_profile regression100_vec 100000 100 > "$OUT/is-profile.txt" 2>&1
    head -40 "$OUT/is-profile.txt"
    ;;
  T)
    timeout 40 python3 -m benchmarks.gpu.is_profile > "$OUT/is-profile.txt" 2>&1; head -40 "$OUT/is-profile.txt"
    peers 360 --only nuts-reg100
    ;;
  H3)
    bench gpu-mh 200 benchmarks/test_bench_mh.py -k "fused or compiled_step"
    tar czf "$OUT/ptx.tgz" -C /tmp ptx 2>/dev/null; du -sh "$OUT/ptx.tgz"
    ;;
  L2)
    timeout 60 python3 -m benchmarks.gpu.is_split 1 100000 2>&1 | tee "$OUT/is-split.txt"
    bench gpu-mh 200 benchmarks/test_bench_mh.py -k "fused or compiled_step"
    bench gpu-scalar-sites-is 110 benchmarks/test_bench_scalar_sites.py -k importance
    bench gpu-is-regression 130 benchmarks/test_bench_is.py -k "regression100 and test_is_vectorized"
    tar czf "$OUT/ptx.tgz" -C /tmp ptx 2>/dev/null; du -sh "$OUT/ptx.tgz"
    ;;
  I)  # vectorized IS on the 102-site regression against its vector form, then the IS module's regression rows
    bench gpu-scalar-sites-is 120 benchmarks/test_bench_scalar_sites.py -k importance
    bench gpu-is-regression 150 benchmarks/test_bench_is.py -k "regression100 and test_is_vectorized"
    ;;
  S)
    bench gpu-scalar-sites 330 benchmarks/test_bench_scalar_sites.py
    peers 120 --only nuts-funnel
    peers 100 --only is-
    ;;
  A)
    timeout 150 python3 -m genmlx.distributed.launch -n 1 --backend nccl benchmarks/distributed_gpu.py \
      "$OUT/distributed-gpu.json" > "$OUT/distributed-gpu.log" 2>&1; echo "distributed rc=$?"
    tail -8 "$OUT/distributed-gpu.log"
    bench gpu-mh 200 benchmarks/test_bench_mh.py -k "fused or compiled_step"
    # 1 rank against 2 ranks on this machine's 16 CPU cores (ring backend): the cost ratio without two
    # ranks contending for two cores, as they do on the 2-core box
    GENMLX_BENCH_DEVICE=cpu timeout 100 python3 -m benchmarks.distributed --reps 3 \
      --out "$OUT/distributed-cpu16.json" 2>&1 | tail -8
    ;;
  P)  # where a compiled_mh block's time goes (benchmarks/gpu/profile_blocks.py), then the fused rows
    timeout 200 python3 -m benchmarks.gpu.profile_blocks 20000 2>&1 | tee "$OUT/profile-blocks.txt" | head -70
    bench gpu-mh-fused 300 benchmarks/test_bench_mh.py -k "fused and not per_iteration"
    ;;
  Q)  # the block time split, then compiled_mh per iteration against its floors
    timeout 150 python3 -m benchmarks.gpu.profile_blocks 20000 2>&1 | tee "$OUT/profile-blocks.txt" | grep -v "^ "
    timeout 150 python3 -m benchmarks.gpu.profile_blocks 20000 500 2>&1 | tee "$OUT/profile-blocks-500.txt" | grep -v "^ "
    timeout 200 python3 -m benchmarks.gpu.mh_per_iteration "$OUT/mh-per-iteration.json" 2>&1 | tail -8
    ;;
  R)  # Q, then issue 14's MH module whole
    bash "$0" Q
    bench gpu-mh 280 benchmarks/test_bench_mh.py
    ;;
  M)  # MLX compiles each fused kernel with NVRTC once per machine: the cache comes back as ptx.tgz
    bench gpu-mh 260 benchmarks/test_bench_mh.py
    timeout 150 python3 -m benchmarks.gpu.mh_per_iteration "$OUT/mh-per-iteration.json" 2>&1 | tail -8
    tar czf "$OUT/ptx.tgz" -C /tmp ptx 2>/dev/null; du -sh "$OUT/ptx.tgz"
    ;;
  D)
    timeout 120 python3 -m benchmarks.gpu.profile_blocks 20000 2>&1 | tee "$OUT/profile-blocks.txt" | head -40
    bench gpu-is 200 benchmarks/test_bench_is.py
    bench gpu-distributions 230 benchmarks/test_bench_distributions.py
    ;;
  B)
    timeout 200 python3 -m benchmarks.gpu.mh_per_iteration "$OUT/mh-per-iteration.json" 2>&1 | tail -8
    bench gpu-scalar-sites 330 benchmarks/test_bench_scalar_sites.py
    ;;
esac
ls -la "$OUT"
