"""compiled_mh per iteration on the default device, K = 50 and 500, against the plain-MLX upfront-key floor.

`python -m benchmarks.gpu.mh_per_iteration OUT.json`: wall time (the GPU convention of this suite), the
median of 5 rounds after a warm-up, genmlx and floor alternating within each round.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import mlx.core as mx

from benchmarks import floors as F
from benchmarks import models as M
from benchmarks.common import device_description
from genmlx import inference as infer

N = 20_000
CASES = {"beta_bernoulli": (M.beta_bernoulli, M.BB_ARGS, M.BB_OBS, F.BetaBernoulli(M.BB_DATA)),
         "regression5": (M.linreg, (M.LR5_XS,), M.obs_of(M.LR5_YS), F.Regression(M.LR5_XS, M.LR5_YS))}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(out: str) -> None:
    rows = []
    for name, (model, args, obs, floor) in CASES.items():
        for k in (50, 500):
            for keys in ("block", "per_iteration"):
                g = lambda: infer.compiled_mh(model, args, obs, n_samples=N, iterations_per_step=k, keys=keys,
                                              key=mx.random.key(1))
                kern = F.mh_upfront_kernel(floor, k) if keys == "block" else F.mh_fused_kernel(floor, k)
                st, ll = F.mh_init(floor, mx.random.key(0))
                run = F.mh_upfront if keys == "block" else F.mh_fused
                f = lambda: run(kern, k, st, ll, mx.random.key(2), N)
                g(), f()
                gs, fs = [], []
                for _ in range(5):
                    gs.append(timed(g) / N)
                    fs.append(timed(f) / N)
                row = {"model": name, "k": k, "keys": keys, "genmlx_us": statistics.median(gs) * 1e6,
                       "floor_us": statistics.median(fs) * 1e6,
                       "ratio": statistics.median(a / b for a, b in zip(gs, fs))}
                print(row, flush=True)
                rows.append(row)
    with open(out, "w") as fh:
        json.dump({"device": device_description(), "mlx": mx.__version__, "n": N, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
