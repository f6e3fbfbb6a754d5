"""HMC and NUTS on the 100-point regression and Neal's funnel, against plain-MLX floors (issue 8).

Run: python -m pytest benchmarks/test_bench_hmc_nuts.py --benchmark-only

Each model in two forms with the same log density: one vector site
(`regression100_vec`: "y" holds the 100 observations; `funnel_vec`: "x" is
one iid site of 9 values), the way iid observations are written in genmlx,
GenJAX or NumPyro, and one scalar site per observation / coordinate
(`regression100`, `funnel`). The targets are judged on the vector-site forms;
the per-site rows are informational (their compiled log density alone is
2.5-16x the hand-vectorized one: docs/benchmarks.md).

* `infer.hmc` (10 leapfrog steps, one compiled kernel per iteration, warm-up
  adaptation of the step size and a diagonal mass matrix) vs `floors.HMC`:
  the same iteration on the hand-written log density, eager and
  `mx.compile`d (fixed step size: the floor does not adapt). Per iteration.
* `infer.nuts` (Stan's multinomial NUTS, one counted host sync per
  doubling) vs the compiled plain-MLX gradient of the same log density:
  per leapfrog step the algorithm uses (Stan's `num_steps`: a subtree that
  stops early counts only its steps up to the stop, while the gradients of
  its remaining leaves are computed anyway and their time is charged to the
  steps used; `wasted_grad_fraction` reports them), against the floor
  evaluated once per gradient (`floor_grad`) and chained 16 to an `mx.eval`
  like a NUTS doubling (`floor_grad_chained16`). Target: NUTS within 2x of
  `floor_grad_chained16` (the faster floor) per step in the steady state (`steady_paired_median`: the
  run's iterations after the first, timed between the driver's callbacks,
  paired with the floor of the same round); `paired_median` is the whole
  run (setup, compilation, traces and diagnostics included).

Workload: 1,000 warm-up + 1,000 kept iterations with GENMLX_BENCH_FULL=1;
fewer by default (the per-iteration figures do not depend on it).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from benchmarks import floors as F
from benchmarks import models as M
from benchmarks.common import primary_clock, size

N_ITER = {"hmc": {"regression": size(100, 1_000), "funnel": size(200, 1_000)},
          "nuts": {"regression": size(100, 1_000), "funnel": size(100, 1_000)}}
N_LEAPFROG = 10
FLOOR_GRADS = 2_000
MODELS = ["regression100_vec", "funnel_vec", "regression100", "funnel"]
TARGETED = {"regression100_vec", "funnel_vec"}  # the per-site forms are informational rows


def _n(alg, model):
    return N_ITER[alg]["funnel" if model.startswith("funnel") else "regression"]


def _plain_logp(case):
    if case.name.startswith("funnel"):
        return case.floor, mx.zeros((10,))
    xs, ys = M.regression100()
    return F.regression_logp(xs, ys), mx.zeros((2,))


def _stats(res) -> dict:
    st = res.stats
    it = st.get("iterations") or 1
    out = {"syncs_per_iteration": st.get("syncs", 0) / it, "acceptance_rate": st.get("acceptance_rate"),
           "divergences": st.get("divergences"), "final_step_size": st.get("final_step_size"), "iterations": it}
    if "n_grad_evals" in st:
        out["grad_evals"] = int(sum(st["n_grad_evals"]))
        out["grad_evals_per_iteration"] = out["grad_evals"] / it
        out["mean_tree_depth"] = float(np.mean(st.get("tree_depth", [0])))
        out["steps"] = int(sum(st["num_steps"]))
        out["steps_per_iteration"] = out["steps"] / it
        out["wasted_grad_fraction"] = 1.0 - out["steps"] / max(out["grad_evals"], 1)
    return out


@pytest.mark.parametrize("model", MODELS)
def test_hmc(pair, record, cases, model):
    from genmlx import inference as infer

    c = cases[model]
    n = _n("hmc", model)
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
def test_nuts(benchmark, pair, record, cases, model):
    from genmlx import inference as infer

    c = cases[model]
    n = _n("nuts", model)
    key = mx.random.key(8)
    logp, z0 = _plain_logp(c)
    vg = mx.compile(mx.value_and_grad(logp))

    clock = primary_clock()
    runs = []  # per genmlx call: [(time at each iteration's end, its num_steps)]

    def callback(_i, _state, stats):
        runs[-1].append((clock(), stats["num_steps"]))

    def genmlx():
        runs.append([])
        return infer.nuts(c.model, c.args, c.obs, addresses=c.addresses, n_samples=n, burn=n, key=key,
                          callback=callback)

    # judged against the faster floor: the gradients chained 16 to an eval, as a NUTS doubling chains them
    targets = ([{"name": f"NUTS cost per gradient within 2x of the chained compiled plain-MLX gradient ({model})",
                 "ratio": "floor_grad_chained16", "statistic": "steady_paired_median", "max": 2.0}]
               if model in TARGETED else [])
    res = pair(genmlx, {"floor_grad": (lambda: F.gradient_chain(vg, z0, FLOOR_GRADS, per_eval=1), FLOOR_GRADS),
                        "floor_grad_chained16": (lambda: F.gradient_chain(vg, z0, FLOOR_GRADS, per_eval=16),
                                                 FLOOR_GRADS)},
               rounds=2, per=lambda r: int(sum(r.stats["num_steps"])), unit="leapfrog step used",
               warmup="baselines",
               info={"group": "nuts", "model": model, "algorithm": "nuts", "variant": "multinomial, max depth 10",
                     "form": "vector sites" if model in TARGETED else "scalar sites (informational)",
                     "burn": n, "n_samples": n, "targets": targets})
    # steady state: the iterations after each run's first, per step used, paired with the round's floors
    ex = benchmark.extra_info
    steady = [_steady_of(r) for r in runs[-len(ex["genmlx"]["times_s"]):]]
    ex["genmlx"]["steady_per_unit_s"] = steady
    for name, b in ex["baselines"].items():
        per_round = [s / (t / FLOOR_GRADS) for s, t in zip(steady, b["times_s"])]
        ex["ratios"][name].update(steady_paired_median=float(np.median(per_round)), steady_per_round=per_round,
                                  steady_of_min=min(steady) / (min(b["times_s"]) / FLOOR_GRADS))
    record(**_stats(res))


def _steady_of(run) -> float:
    (t0, _), rest = run[0], run[1:]
    return (rest[-1][0] - t0) / max(1, sum(s for _, s in rest))
