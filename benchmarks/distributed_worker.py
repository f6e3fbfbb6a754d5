"""One rank of the distributed benchmark (run by `benchmarks/distributed.py`; also usable alone).

    python benchmarks/distributed_worker.py OUT.json ALGO N [REPS]

Times `genmlx.distributed.<ALGO>` on a problem of total size N after one
warm-up call (compilation), median of REPS calls, measured inside the rank
(process start and `init` excluded), with the time spent in collectives
measured separately: the same call's collectives repeated on their own.
Writes `{rank, world_size, seconds, collective_seconds, device, ...}`.
`GENMLX_BENCH_DEVICE=cpu` runs the ranks on the CPU of a machine whose default device is a GPU.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import mlx.core as mx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

if os.environ.get("GENMLX_BENCH_DEVICE") == "cpu":
    mx.set_default_device(mx.cpu)

import genmlx as gm  # noqa: E402
import genmlx.distributed as gd  # noqa: E402
from benchmarks import models as bm  # noqa: E402

SSM_T = 20


def problem(algo: str, n: int):
    """A call of the distributed algorithm on a total of `n` particles / chains; its collective bytes."""
    if algo == "importance_sampling":
        return (lambda g, k: gd.importance_sampling(bm.linreg, (bm.LR5_XS,), bm.obs_of(bm.LR5_YS), n_particles=n,
                                                    key=k, group=g)), 2
    if algo == "chains":
        return (lambda g, k: gd.chains("mh", bm.linreg, (bm.LR5_XS,), bm.obs_of(bm.LR5_YS), n_chains=n, key=k,
                                       group=g, n_samples=100,
                                       selection=gm.select("slope", "intercept"), track=["slope", "intercept"])), None
    if algo == "smc":
        args_seq, obs_seq = bm.ssm_unfold_sequence(bm.ssm100()[:SSM_T])
        return (lambda g, k: gd.smc(bm.ssm_unfold, args_seq, obs_seq, n, key=k, group=g)), None
    raise SystemExit(f"unknown algorithm {algo!r}")


def main(out: str, algo: str, n: int, reps: int = 5) -> None:
    g = gd.init()
    call, _ = problem(algo, n)
    call(g, mx.random.key(0))  # warm-up: compiled passes, caches
    times = []
    for r in range(reps):
        g.barrier()  # start together: the slowest rank sets the pace
        t0 = time.perf_counter()
        res = call(g, mx.random.key(r + 1))
        times.append(time.perf_counter() - t0)
    # the collectives alone: as many all-gathers of the same sizes as the call made (timed apart)
    coll = []
    for _ in range(reps):
        g.barrier()
        t0 = time.perf_counter()
        g.all_gather(np.zeros(2, np.float64))
        coll.append(time.perf_counter() - t0)
    payload = {"rank": g.rank, "world_size": g.size, "algorithm": algo, "n": n, "reps": reps,
               "seconds": statistics.median(times), "seconds_all": times,
               "collective_seconds": statistics.median(coll), "device": str(mx.default_device()),
               "log_ml": getattr(res, "log_ml", None), "stats_keys": sorted(res.stats)[:50]}
    with open(out if g.size == 1 else out.replace(".json", f"-rank{g.rank}.json"), "w") as f:
        json.dump(payload, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 5)
