"""Pipelined driver runs against unpipelined ones on the default device, alternating call by call.

`python -m benchmarks.gpu.pipeline_ab [OUT.json]`: `compiled_mh` (Beta-Bernoulli and the 5-site
regression, 2,000 iterations, K = 50 and 500), `hmc` and `mala` (the 100-point regression, one vector
site, 200 + 200 iterations): the median wall time of 9 calls each way (after 2 warm-up calls), whether
the two runs kept the same chain, and the ratio pipelined / unpipelined.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import mlx.core as mx

from benchmarks.common import device_description
from benchmarks.gpu.mh_per_iteration import CASES
from benchmarks.peers.genmlx_rows import cases
from genmlx import inference as infer
from genmlx.inference import driver

ROUNDS = 9


def _unpipelined(run):
    def run_(*a, **kw):
        kw["pipeline"] = False
        return run(*a, **kw)
    return run_


def _rows():
    for name, (model, args, obs, _) in CASES.items():
        for k in (50, 500):
            yield (f"compiled_mh {name} K={k}", "p" if name == "beta_bernoulli" else "slope",
                   lambda model=model, args=args, obs=obs, k=k: infer.compiled_mh(
                       model, args, obs, n_samples=2000, iterations_per_step=k, key=mx.random.key(4)))
    c = cases()["regression100_vec"]
    for alg, kw in (("hmc", {"n_leapfrog": 10}), ("mala", {})):
        yield (f"{alg} regression100_vec", c.addresses[0],
               lambda alg=alg, kw=kw: getattr(infer, alg)(c.model, c.args, c.obs, addresses=c.addresses,
                                                           n_samples=200, burn=200, key=mx.random.key(7), **kw))


def main(out: str | None) -> None:
    run = driver.run
    rows = []
    try:
        for label, addr, fn in _rows():
            times = {"pipelined": [], "unpipelined": []}
            values = {}
            for r in range(ROUNDS + 2):
                for mode in times:
                    driver.run = run if mode == "pipelined" else _unpipelined(run)
                    t0 = time.perf_counter()
                    res = fn()
                    times[mode].append(time.perf_counter() - t0)
                    values[mode] = res.values(addr)
            med = {m: statistics.median(ts[2:]) * 1e3 for m, ts in times.items()}
            same = values["pipelined"] == values["unpipelined"]
            rows.append({"row": label, "same_chain": same, **{f"{m}_ms": round(v, 2) for m, v in med.items()},
                         "ratio": round(med["pipelined"] / med["unpipelined"], 3)})
            print(f"{label}: pipelined {med['pipelined']:.2f} ms, unpipelined {med['unpipelined']:.2f} ms "
                  f"({rows[-1]['ratio']:.2f}x), same chain {same}", flush=True)
    finally:
        driver.run = run
    if out:
        with open(out, "w") as f:
            json.dump({"device": device_description(), "rounds": ROUNDS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
