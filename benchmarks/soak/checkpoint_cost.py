"""Checkpoint cost: milliseconds and bytes per checkpoint for MH, HMC, NUTS, SMC and VI.

    python -m benchmarks.soak.checkpoint_cost [--scale 1] [--out FILE.json]

Each run writes a checkpoint every `every` driver steps (`gm.checkpoint.checkpointing`) into a fresh
SQLite database; the driver's `Checkpointed` events carry each checkpoint's bytes and duration
(encoding and the transaction). A checkpoint holds the algorithm's state and what is new since the
last one (kept samples, per-iteration statistics), so its bytes are the state plus that delta. Reported
per algorithm: checkpoints, median / p90 / max ms, median bytes, the first and the last checkpoint's ms
and the medians of the first and last tenth (does the cost grow with the run?), the database's size, and the run's seconds with and without
checkpointing (the overhead). States: MH, HMC and NUTS on the soak's regression (1,000 kept samples of
10,000 iterations), SMC with 100 and 1,000 particles (their traces are the state), VI's parameters and
optimizer state (10,000 iterations), and MH with 100 checkpoints of 1,000 steps (100,000 iterations,
10,000 kept samples): each checkpoint also copies the whole database to its backup (`store.backup`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import mlx.core as mx
import numpy as np

import genmlx as gm
from genmlx import events
from genmlx import inference as infer

from .algorithms import LATENTS, OBS, XS, regression
from .models import walk, walk_observation


class Costs:
    def __init__(self):
        self.rows: list = []

    def on_checkpoint(self, e):
        if e.error is None:
            self.rows.append((e.step, e.bytes, 1000 * e.duration_s))


def _runs(scale: int) -> dict:
    n = 10_000 * scale
    mcmc = dict(n_samples=1_000 * scale, thin=10)
    T = 200 * scale
    seq = ([(1,)] * T, [walk_observation(t) for t in range(T)])
    return {
        "mh": (n // 10, lambda k: infer.mh(regression, (XS,), OBS, key=k, **mcmc)),
        "hmc": (n // 10, lambda k: infer.hmc(regression, (XS,), OBS, addresses=LATENTS, n_leapfrog=5, step_size=0.2,
                                              key=k, **mcmc)),
        "nuts": (n // 10, lambda k: infer.nuts(regression, (XS,), OBS, addresses=LATENTS, step_size=0.3, key=k,
                                                **mcmc)),
        "smc_100": (T // 10, lambda k: infer.smc(walk, *seq, n_particles=100, vectorized=False, key=k)),
        "smc_1000": (T // 10, lambda k: infer.smc(walk, *seq, n_particles=1000, vectorized=False, key=k)),
        # 100 checkpoints of the same size into a growing database: does a checkpoint's cost grow with it?
        "mh_100_checkpoints": (n // 10, lambda k: infer.mh(regression, (XS,), OBS, key=k, n_samples=10_000 * scale,
                                                            thin=10)),
        "vi": (n // 10, lambda k: infer.vi(regression, (XS,), OBS, addresses=LATENTS, iterations=n, n_traces=0,
                                            n_posterior=100, key=k)),
    }


def measure(name: str, every: int, call) -> dict:
    t0 = time.perf_counter()
    call(mx.random.key(0))
    plain = time.perf_counter() - t0  # on a shared box the overhead is noisy: ms x checkpoints / run_s is not
    c = Costs()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "run.db")
        t0 = time.perf_counter()
        with events.subscribed(c), gm.checkpoint.checkpointing(path, every=every):
            call(mx.random.key(0))
        with_ck = time.perf_counter() - t0
        db = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    ms = np.array([r[2] for r in c.rows])
    by = np.array([r[1] for r in c.rows])
    return {"algorithm": name, "every_steps": every, "checkpoints": len(c.rows),
            "ms_median": float(np.median(ms)), "ms_p90": float(np.percentile(ms, 90)), "ms_max": float(ms.max()),
            "ms_first": float(ms[0]), "ms_last": float(ms[-1]),
            "ms_first_tenth": float(np.median(ms[:max(1, len(ms) // 10)])),
            "ms_last_tenth": float(np.median(ms[-max(1, len(ms) // 10):])), "bytes_median": int(np.median(by)),
            "bytes_first": int(by[0]), "bytes_last": int(by[-1]), "db_bytes": db,
            "run_s": plain, "run_checkpointed_s": with_ck, "overhead_pct": 100 * (with_ck / plain - 1),
            "checkpoint_share_pct": 100 * ms.sum() / 1000 / with_ck}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak.checkpoint_cost")
    ap.add_argument("--scale", type=int, default=1, help="run length multiplier")
    ap.add_argument("--algorithms", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    runs = _runs(a.scale)
    rows = []
    for name in (a.algorithms.split(",") if a.algorithms else runs):
        every, call = runs[name]
        rows.append(measure(name, every, call))
        print(json.dumps(rows[-1]), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
