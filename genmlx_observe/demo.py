"""`genmlx-observe demo`: several algorithms on standard models, observed, each posterior checked.

Four workloads on the models of `demo_models`, whose posteriors are exact:
importance sampling and MH on Beta-Bernoulli, NUTS on a linear regression,
SMC on a linear-Gaussian state space model. Each estimate is compared with
its exact value; an estimate passes when it is within `TOLERANCE_SE` of its
own Monte Carlo standard error (from the run's effective sample size):

* MCMC means: the MCSE of `infer.summary` (ess_bulk).
* Self-normalized importance / particle means: weighted sd / sqrt(ESS).
* Log evidence: sqrt(sum over steps of (N / ESS_t - 1) / N), the delta-method
  variance of each step's average weight (one step for IS).

`run_demo` returns the checks; the CLI prints them with the run table.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from . import demo_models as dm

__all__ = ["Check", "Workload", "WORKLOADS", "TOLERANCE_SE", "run_workloads", "checks_table"]

TOLERANCE_SE = 4.0  # an estimate passes within 4 of its Monte Carlo standard errors
FLOOR = 2e-3  # float32 arithmetic: errors below this are never failures


class Check(NamedTuple):
    """One posterior quantity: the estimate, its exact value and its Monte Carlo standard error."""

    algorithm: str
    model: str
    quantity: str
    estimate: float
    exact: float
    mc_error: float

    @property
    def ok(self) -> bool:
        return math.isfinite(self.estimate) and abs(self.estimate - self.exact) <= max(
            TOLERANCE_SE * self.mc_error, FLOOR)


class Workload(NamedTuple):
    algorithm: str
    model: str
    run: Callable[[int, object], list[Check]]  # (iterations, key) -> checks


def _weighted(log_weights, values) -> tuple[float, float, float]:
    """Self-normalized mean, its standard error (weighted sd / sqrt(ESS)) and the ESS."""
    lw = np.asarray(log_weights, dtype=np.float64)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    v = np.asarray(values, dtype=np.float64)
    mean = float(w @ v)
    ess = float(1.0 / (w @ w))
    sd = float(math.sqrt(max(w @ (v - mean) ** 2, 0.0)))
    return mean, sd / math.sqrt(ess), ess


def _log_ml_se(n: int, ess_per_step) -> float:
    return math.sqrt(sum(max(n / e - 1.0, 0.0) for e in ess_per_step) / n)


def _importance(iterations: int, key) -> list[Check]:
    import genmlx as gm
    from genmlx import inference as infer

    n = 10 * iterations
    obs = gm.choicemap({f"y{i}": bool(v) for i, v in enumerate(dm.COIN)})
    res = infer.importance_sampling(dm.beta_bernoulli(), (len(dm.COIN),), obs, n_particles=n, vectorized=True,
                                    key=key)
    mean, se, ess = _weighted(res.log_weights, res.traces.values("p"))
    exact = dm.beta_bernoulli_exact()
    return [Check("importance", "beta_bernoulli", "mean of p", mean, exact["p"].mean, se),
            Check("importance", "beta_bernoulli", "log evidence", res.log_ml, exact["log_ml"].mean,
                  _log_ml_se(n, [ess]))]


def _mh(iterations: int, key) -> list[Check]:
    import genmlx as gm
    from genmlx import inference as infer

    obs = gm.choicemap({f"y{i}": bool(v) for i, v in enumerate(dm.COIN)})
    res = infer.mh(dm.beta_bernoulli(), (len(dm.COIN),), obs, selection=gm.select("p"), n_samples=iterations,
                   burn=max(iterations // 10, 10), key=key)
    s = infer.summary(res, ["p"])["p"]
    return [Check("mh", "beta_bernoulli", "mean of p", s["mean"], dm.beta_bernoulli_exact()["p"].mean, s["mcse"])]


def _nuts(iterations: int, key) -> list[Check]:
    import genmlx as gm
    from genmlx import inference as infer

    obs = gm.choicemap({f"y{i}": y for i, y in enumerate(dm.YS)})
    half = max(iterations // 2, 20)
    res = infer.nuts(dm.linreg(), (list(dm.XS),), obs, addresses=["slope", "intercept"], n_samples=half, burn=half,
                     key=key)
    s = infer.summary(res, ["slope", "intercept"])
    exact = dm.linreg_exact()
    return [Check("nuts", "linreg", f"mean of {a}", s[a]["mean"], exact[a].mean, s[a]["mcse"])
            for a in ("slope", "intercept")]


def _smc(iterations: int, key) -> list[Check]:
    from genmlx import inference as infer

    T, n = len(dm.SSM_YS), max(iterations, 50)
    args = [(t + 1, 0.0) for t in range(T)]
    obs = [{(t, "y"): y} for t, y in enumerate(dm.SSM_YS)]
    res = infer.smc(dm.ssm(), args, obs, n_particles=n, key=key)
    mean, se, _ = _weighted(res.log_weights, res.traces.values((T - 1, "x")))
    exact = dm.kalman()
    return [Check("smc", "ssm", f"mean of x[{T - 1}]", mean, exact["x_last"].mean, se),
            Check("smc", "ssm", "log evidence", res.log_ml, exact["log_ml"].mean, _log_ml_se(n, res.stats["ess"]))]


WORKLOADS: tuple[Workload, ...] = (
    Workload("importance", "beta_bernoulli", _importance),
    Workload("mh", "beta_bernoulli", _mh),
    Workload("nuts", "linreg", _nuts),
    Workload("smc", "ssm", _smc),
)


def run_workloads(iterations: int, seed: int = 0, before: Callable[[Workload], None] | None = None) -> list[Check]:
    """Run every workload with `iterations` (fixed keys from `seed`); returns every check."""
    import mlx.core as mx

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 20:
        raise ValueError(f"demo: iterations must be an int >= 20, got {iterations!r}")
    out: list[Check] = []
    keys = mx.random.split(mx.random.key(seed), len(WORKLOADS))
    for i, w in enumerate(WORKLOADS):
        if before is not None:
            before(w)
        out.extend(w.run(iterations, keys[i]))
    return out


def checks_table(checks: list[Check]) -> str:
    """The closing table: each estimate beside its exact value."""
    rows = [("algorithm", "model", "quantity", "estimate", "exact", "MC error", "check")]
    for c in checks:
        rows.append((c.algorithm, c.model, c.quantity, f"{c.estimate:.4f}", f"{c.exact:.4f}", f"{c.mc_error:.4f}",
                     "ok" if c.ok else f"FAILED (off by {abs(c.estimate - c.exact) / max(c.mc_error, 1e-12):.1f} SE)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
