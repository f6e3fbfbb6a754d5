"""Soak: every algorithm for a long run under budget(499_000); are RSS, live arrays and pending nodes flat?

    python -m benchmarks.soak [--iterations 1000000] [--every N] [--out results/soak.json]

Each algorithm runs `--iterations` iterations (SMC: particle-steps, particles x time steps) keeping
almost nothing (thin so ~100 samples are kept), under `gm.memory.budget(499_000)`. A callback takes
a census every `--every` iterations after a 10% warm-up: RSS (psutil), live arrays outside the state
and kept samples, pending graph nodes. Reported per quantity: the least-squares slope per 1,000
iterations and its standard error (the noise), and the range. Not part of the test command.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import mlx.core as mx
import numpy as np
import psutil

import genmlx as gm
from genmlx import dist, memory
from genmlx import inference as infer


@gm.gen
def regression(xs):
    slope = gm.trace("slope", dist.normal(0.0, 2.0))
    noise = gm.trace("noise", dist.gamma(2.0, 2.0))
    for i, x in enumerate(xs):
        gm.trace(("y", i), dist.normal(slope * x, noise))
    return slope


@gm.gen
def walk(T):
    x = 0.0
    for t in range(T):
        x = gm.trace(("x", t), dist.normal(x, 1.0))
        gm.trace(("y", t), dist.normal(x, 0.5))
    return x


XS = [0.5, 1.0, 1.5, 2.0]
OBS = {("y", i): v for i, v in enumerate([0.9, 2.1, 2.8, 4.2])}


class Census:
    def __init__(self, every: int, warm: int, per_step: int = 1):
        self.every, self.warm, self.per_step = every, warm, per_step
        self.points: list = []
        self.proc = psutil.Process()
        self.keep = None  # the driver's store of kept samples (RunStarted.store): the caller's, not growth

    def on_run_start(self, e):
        self.keep = e.store

    def __call__(self, i, state, stats):
        it = (i + 1) * self.per_step
        if it >= self.warm and (i % max(1, self.every // self.per_step)) == 0:
            gc.collect()
            live = memory.live_arrays(exclude=(self.keep, state))
            self.points.append((it, self.proc.memory_info().rss, live,
                                memory.pending_nodes()))


def _slope(x, y) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    A = np.vstack([x, np.ones_like(x)]).T
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    n = len(x)
    resid = y - A @ coef
    se = float(np.sqrt(resid @ resid / max(n - 2, 1) / np.sum((x - x.mean()) ** 2))) if n > 2 else float("nan")
    return {"per_1000": 1000 * float(coef[0]), "se_per_1000": 1000 * se, "min": float(y.min()), "max": float(y.max())}


def run(alg: str, n: int, every: int) -> dict:
    key = mx.random.key(0)
    c = Census(every, n // 10)
    t0 = time.perf_counter()
    from genmlx import events

    with memory.budget(499_000), events.subscribed(c):
        if alg == "mh":
            infer.mh(regression, (XS,), OBS, n_samples=100, thin=n // 100, key=key, callback=c)
        elif alg == "hmc":
            infer.hmc(regression, (XS,), OBS, addresses=["slope", "noise"], n_samples=100, thin=n // 100,
                      n_leapfrog=5, step_size=0.2, key=key, callback=c)
        elif alg == "nuts":
            infer.nuts(regression, (XS,), OBS, addresses=["slope", "noise"], n_samples=100, thin=n // 100,
                       step_size=0.3, key=key, callback=c)
        elif alg == "vi":
            infer.vi(regression, (XS,), OBS, addresses=["slope", "noise"], iterations=n, n_traces=0,
                     n_posterior=100, key=key, callback=c)
        elif alg == "smc":  # particle-steps: 100 particles x n/100 time steps of a fixed-size model (args (1,))
            T, N = n // 100, 100
            c.per_step, c.warm = N, n // 10
            infer.smc(walk, [(1,)] * T, [{("y", 0): float(np.sin(t / 10))} for t in range(T)], n_particles=N,
                      ess_threshold=0.5, vectorized=False, key=key, callback=c)
    pts = np.array(c.points, dtype=float)
    return {"algorithm": alg, "iterations": n, "seconds": time.perf_counter() - t0, "points": len(pts),
            "rss_bytes": _slope(pts[:, 0], pts[:, 1]), "live_arrays": _slope(pts[:, 0], pts[:, 2]),
            "pending_nodes": _slope(pts[:, 0], pts[:, 3])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=0, help="census interval (default: iterations / 50)")
    ap.add_argument("--algorithms", default="mh,hmc,nuts,smc,vi")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rows = []
    for alg in a.algorithms.split(","):
        r = run(alg, a.iterations, a.every or max(1, a.iterations // 50))
        rows.append(r)
        print(json.dumps(r), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
