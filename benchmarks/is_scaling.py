"""Vectorized importance sampling against its compiled plain-MLX floor as N grows.

    python -m benchmarks.is_scaling [--max-n 1000000]

Prints, for Beta-Bernoulli and the vector-site regression at N = 1e3 ... 1e7,
the median wall time of 20 whole `importance_sampling` calls and of the
compiled floor (`floors.is_vectorized`, one call and one `mx.eval`), their
ratio and difference. The difference that stays as N grows is the per-call
fixed cost (driver, compiled calls, read-back, result); the ratio at large N is
the per-particle cost. The numbers in `analysis.md`'s GPU section come from
this script on an H100.
"""

from __future__ import annotations

import argparse
import time

import mlx.core as mx
import numpy as np

import genmlx as gm
from benchmarks import floors as F
from benchmarks import models as M
from genmlx import inference as infer

SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)


def _median_us(f, reps: int = 20) -> float:
    for _ in range(4):
        f()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e6


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=SIZES[-1], help="largest N (the regression's pass holds N x 100 floats)")
    max_n = ap.parse_args(argv).max_n
    gm.memory.set_cache_limit(8 << 30)
    xs, ys = M.regression100()
    key = mx.random.key(1)
    cases = {"beta_bernoulli": (M.beta_bernoulli, M.BB_ARGS, M.BB_OBS, F.BetaBernoulli(M.BB_DATA)),
             "regression100_vec": (M.linreg_vec, (mx.array(xs),), {"y": mx.array(ys)}, F.Regression(xs, ys))}
    print(mx.default_device())
    for name, (model, args, obs, floor) in cases.items():
        for n in (n for n in SIZES if n <= max_n):
            fc = mx.compile(F.is_vectorized(floor, n))
            before = _median_us(lambda: mx.eval(fc(key)))
            ours = _median_us(lambda: infer.importance_sampling(model, args, obs, n_particles=n, vectorized=True,
                                                                key=key))
            fl = min(before, _median_us(lambda: mx.eval(fc(key))))
            print(f"{name} N={n:,}: floor {fl:.0f} us, genmlx {ours:.0f} us, "
                  f"ratio {ours / fl:.2f}, difference {ours - fl:.0f} us", flush=True)


if __name__ == "__main__":
    main()
