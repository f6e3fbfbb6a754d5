"""HMC and NUTS on the 100-point regression and Neal's funnel, against plain-MLX floors (issue 8).

Run: python -m pytest benchmarks/test_bench_hmc_nuts.py --benchmark-only

* `infer.hmc` (10 leapfrog steps, one compiled kernel per iteration, warm-up
  adaptation of the step size and a diagonal mass matrix) vs `floors.HMC`:
  the same iteration on the hand-written log density, eager and
  `mx.compile`d (fixed step size: the floor does not adapt). Per iteration.
* `infer.nuts` (Stan's multinomial NUTS, one counted host sync per
  doubling) vs the compiled plain-MLX gradient of the same log density:
  per gradient evaluation, the floor evaluated once per gradient
  (`floor_grad`) and chained 16 to an `mx.eval` like a NUTS doubling
  (`floor_grad_chained16`). Target: NUTS within 2x of `floor_grad` per
  gradient (steady state: driver steps after the first).

Workload: 1,000 warm-up + 1,000 kept iterations with GENMLX_BENCH_FULL=1;
fewer by default (the per-iteration figures do not depend on it).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from benchmarks import floors as F
from benchmarks.common import size

N_ITER = {("hmc", "regression100"): size(100, 1_000), ("hmc", "funnel"): size(200, 1_000),
          ("nuts", "regression100"): size(50, 1_000), ("nuts", "funnel"): size(100, 1_000)}
N_LEAPFROG = 10
FLOOR_GRADS = 2_000
MODELS = ["regression100", "funnel"]


def _plain_logp(case):
    if case.name == "funnel":
        return case.floor, mx.zeros((10,))
    return F.regression_logp(case.args[0], [case.obs[("y", i)] for i in range(len(case.args[0]))]), mx.zeros((2,))


def _stats(res) -> dict:
    st = res.stats
    it = st.get("iterations") or 1
    out = {"syncs_per_iteration": st.get("syncs", 0) / it, "acceptance_rate": st.get("acceptance_rate"),
           "divergences": st.get("divergences"), "final_step_size": st.get("final_step_size"), "iterations": it}
    if "n_grad_evals" in st:
        out["grad_evals"] = int(sum(st["n_grad_evals"]))
        out["grad_evals_per_iteration"] = out["grad_evals"] / it
        out["mean_tree_depth"] = float(np.mean(st.get("tree_depth", [0])))
    return out


@pytest.mark.parametrize("model", MODELS)
def test_hmc(pair, record, cases, model):
    from genmlx import inference as infer

    c = cases[model]
    n = N_ITER[("hmc", model)]
    key = mx.random.key(7)
    logp, z0 = _plain_logp(c)
    eager, compiled = F.HMC(logp, N_LEAPFROG, compiled=False), F.HMC(logp, N_LEAPFROG, compiled=True)

    def genmlx():
        return infer.hmc(c.model, c.args, c.obs, addresses=c.addresses, n_samples=n, burn=n,
                         n_leapfrog=N_LEAPFROG, key=key)

    res = pair(genmlx, {"floor_eager": lambda: eager.run(z0, key, 2 * n, 0.05),
                        "floor_compiled": lambda: compiled.run(z0, key, 2 * n, 0.05)},
               rounds=2, per=2 * n, unit="iteration", warmup="baselines", steady=True,
               info={"group": "hmc", "model": model, "algorithm": "hmc", "variant": f"L={N_LEAPFROG}",
                     "burn": n, "n_samples": n})
    record(**_stats(res))


@pytest.mark.parametrize("model", MODELS)
def test_nuts(pair, record, cases, model):
    from genmlx import inference as infer

    c = cases[model]
    n = N_ITER[("nuts", model)]
    key = mx.random.key(8)
    logp, z0 = _plain_logp(c)
    vg = mx.compile(mx.value_and_grad(logp))

    def genmlx():
        return infer.nuts(c.model, c.args, c.obs, addresses=c.addresses, n_samples=n, burn=n, key=key)

    res = pair(genmlx, {"floor_grad": (lambda: F.gradient_chain(vg, z0, FLOOR_GRADS, per_eval=1), FLOOR_GRADS),
                        "floor_grad_chained16": (lambda: F.gradient_chain(vg, z0, FLOOR_GRADS, per_eval=16),
                                                 FLOOR_GRADS)},
               rounds=2, per=lambda r: int(sum(r.stats["n_grad_evals"])), unit="gradient evaluation",
               warmup="baselines",
               info={"group": "nuts", "model": model, "algorithm": "nuts", "variant": "multinomial, max depth 10",
                     "burn": n, "n_samples": n,
                     "targets": [{"name": f"NUTS cost per gradient within 2x of the compiled plain-MLX gradient ({model})",
                                  "ratio": "floor_grad", "statistic": "paired_median", "max": 2.0}]})
    record(**_stats(res))
