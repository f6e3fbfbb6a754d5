"""The CUDA path of every distributed algorithm, one rank on the lent single-GPU machine.

    # on the GPU machine, with MLX's CUDA wheel installed (see /work/shared/GPU.md):
    python -m genmlx.distributed.launch -n 1 --backend nccl benchmarks/distributed_gpu.py OUT.json
    python benchmarks/distributed_gpu.py OUT.json          # the same without a launcher (world size 1)

Checks (raises on failure) and times, on `mx.default_device()` (a GPU there):

* `importance_sampling` (vectorized compiled pass on the GPU, weights' sums in float64 on the host):
  log-ML against the exact evidence of the 5-site regression, and equal to the single-process
  `infer.importance_sampling` with the same key;
* `chains` with `mh` (per chain) and `mh_chains` (vectorized) on Beta-Bernoulli: R-hat over 4 chains < 1.1;
* `smc` (global resampling; `_migrate` gathers the batched leaves through the host) and
  `island_smc`: log-ML within tolerance of the Kalman filter on the linear-Gaussian SSM;
* `Group` collectives at world size 1 and, launched with `--backend nccl`, `mx.distributed.init`
  with the NCCL backend (rank 0 of 1: `CUDA_VISIBLE_DEVICES=0`).

Writes a JSON of the timings and checks; prints one line per algorithm.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import mlx.core as mx
import numpy as np

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import genmlx as gm  # noqa: E402
import genmlx.distributed as gd  # noqa: E402
from benchmarks import models as bm  # noqa: E402
from genmlx import inference as infer  # noqa: E402


def timed(f, reps: int = 3):
    f()  # warm-up (CUDA kernels are compiled on first use)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts))


def main(out: str) -> int:
    backend = "nccl" if os.environ.get("NCCL_HOST_IP") else "any"
    g = gd.init(backend=backend)
    report = {"device": str(mx.default_device()), "device_info": {k: str(v) for k, v in mx.device_info().items()},
              "backend": g.backend, "world_size": g.size, "rank": g.rank, "checks": {}, "seconds": {}}
    key = mx.random.key(0)
    obs = bm.obs_of(bm.LR5_YS)
    exact = bm.regression_log_evidence(bm.LR5_XS, bm.LR5_YS)

    res, t = timed(lambda: gd.importance_sampling(bm.linreg, (bm.LR5_XS,), obs, n_particles=1_000_000, key=key))
    ref = infer.importance_sampling(bm.linreg, (bm.LR5_XS,), obs, n_particles=1_000_000, vectorized=True, key=key)
    report["seconds"]["importance_sampling_1e6"] = t
    report["checks"]["is_log_ml_vs_exact"] = abs(res.log_ml - exact)
    report["checks"]["is_equals_single_process"] = abs(res.log_ml - ref.log_ml)
    assert abs(res.log_ml - exact) < 0.05 and abs(res.log_ml - ref.log_ml) < 1e-4, (res.log_ml, ref.log_ml, exact)

    for sampler in ("mh", "mh_chains"):  # Beta-Bernoulli: prior proposals on p mix well
        res, t = timed(lambda: gd.chains(sampler, bm.beta_bernoulli, bm.BB_ARGS, bm.BB_OBS, n_chains=4, key=key,
                                         n_samples=300, burn=50, selection=gm.select("p"), track=["p"]), reps=1)
        report["seconds"][f"chains_{sampler}_4x350"] = t
        report["checks"][f"chains_{sampler}_r_hat"] = res.stats["r_hat"]["p"]
        assert res.stats["r_hat"]["p"] < 1.1, res.stats["r_hat"]

    ys = bm.ssm100()[:20]
    args_seq, obs_seq = bm.ssm_unfold_sequence(ys)
    kal = bm.kalman_log_evidence(ys)
    for name, f in (("smc", gd.smc), ("island_smc", gd.island_smc)):
        res, t = timed(lambda: f(bm.ssm_unfold, args_seq, obs_seq, 10_000, key=key), reps=1)
        report["seconds"][f"{name}_T20_N1e4"] = t
        report["checks"][f"{name}_log_ml_vs_kalman"] = res.log_ml - kal
        assert abs(res.log_ml - kal) < 0.6, (name, res.log_ml, kal)

    x = np.arange(4.0)
    assert np.array_equal(g.all_gather(x)[g.rank], x)
    g.barrier()
    with open(out, "w") as fh:
        json.dump(report, fh, indent=1)
    for k, v in report["seconds"].items():
        print(f"{k}: {v * 1e3:.1f} ms")
    print(json.dumps(report["checks"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "distributed-gpu.json"))
