"""The standard benchmark models (issue 8), their saved data and exact answers.

Use exactly these so that figures compare across runs and with other systems:

* Beta-Bernoulli: p ~ Beta(2, 2); y_i ~ Bernoulli(p), data [1,1,0,1,1,1,0,1,1,0];
  exact log evidence log B(9, 5) - log B(2, 2) = -6.9778.
* 5-site linear regression: slope, intercept ~ N(0, 10); y_i ~ N(slope x_i + intercept, 1),
  xs [1, 2, 3], ys [3.1, 5.0, 6.9].
* 100-point linear regression: the same model on `data/regression100.json`.
* Linear-Gaussian state space, T = 100: x_0 = 0, x_t ~ N(x_{t-1}, 1), y_t ~ N(x_t, 0.5),
  data `data/ssm100.json`; exact log evidence by a Kalman filter.
* Neal's funnel (9 + 1 dimensions): v ~ N(0, 3), x_i ~ N(0, exp(v / 2)).

Each model is written the way a genmlx user writes it (`@gm.gen`, one
`gm.trace` per random choice); the state-space model also as an `unfold`, the
form whose particle filter is vectorized (`infer.smc` picks `vsmc` for it).
The 100-point regression and the funnel come in two forms with the same log
density: one scalar site per observation / coordinate (`linreg`, `funnel`)
and one vector site (`linreg_vec`, `funnel_vec`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlx.core as mx
import numpy as np

import genmlx as gm
from genmlx import dist

DATA_DIR = Path(__file__).parent / "data"

# -- Beta-Bernoulli ------------------------------------------------------------------------

BB_DATA = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
BB_LOG_EVIDENCE = math.lgamma(9) + math.lgamma(5) - math.lgamma(14) - (2 * math.lgamma(2) - math.lgamma(4))


@gm.gen
def beta_bernoulli(n):
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(n):
        gm.trace(("y", i), dist.bernoulli(p))
    return p


BB_ARGS = (len(BB_DATA),)
BB_OBS = {("y", i): float(y) for i, y in enumerate(BB_DATA)}


@gm.gen
def beta_bernoulli_vec(n):
    """The same model with the observations as one vector site `"y"` (GenJAX: `bernoulli.repeat(n)`)."""
    p = gm.trace("p", dist.beta(2.0, 2.0))
    gm.trace("y", dist.bernoulli(mx.broadcast_to(p, (n,))))
    return p


BB_VEC_OBS = {"y": mx.array([float(y) for y in BB_DATA])}


# -- linear regression ----------------------------------------------------------------------

@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    for i, x in enumerate(xs):
        gm.trace(("y", i), dist.normal(slope * x + intercept, 1.0))
    return slope


@gm.gen
def linreg_vec(xs):
    """The same model with the observations as one vector site `"y"` (xs: an [n] array).

    How n iid observations are written in genmlx (and in GenJAX or NumPyro):
    one choice scored as the sum of its elements. Same log density as `linreg`.
    """
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    gm.trace("y", dist.normal(slope * xs + intercept, 1.0))
    return slope


LR5_XS = [1.0, 2.0, 3.0]
LR5_YS = [3.1, 5.0, 6.9]
PRIOR_SD = 10.0


def _load(name: str) -> dict:
    with open(DATA_DIR / name) as f:
        return json.load(f)


def regression100() -> tuple[list[float], list[float]]:
    d = _load("regression100.json")
    return d["xs"], d["ys"]


def ssm100() -> list[float]:
    return _load("ssm100.json")["ys"]


def obs_of(ys) -> dict:
    return {("y", i): float(y) for i, y in enumerate(ys)}


def regression_log_evidence(xs, ys, prior_sd: float = PRIOR_SD, noise_sd: float = 1.0) -> float:
    """Exact log p(ys | xs): ys ~ N(0, X diag(prior_sd^2) X^T + noise_sd^2 I)."""
    x = np.column_stack([np.asarray(xs, float), np.ones(len(xs))])
    cov = prior_sd ** 2 * x @ x.T + noise_sd ** 2 * np.eye(len(xs))
    y = np.asarray(ys, float)
    _, logdet = np.linalg.slogdet(cov)
    return float(-0.5 * (len(y) * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(cov, y)))


# -- linear-Gaussian state space --------------------------------------------------------------

SSM_Q, SSM_R = 1.0, 0.5


@gm.gen
def ssm(T):
    x = 0.0
    for t in range(T):
        x = gm.trace(("x", t), dist.normal(x, SSM_Q))
        gm.trace(("y", t), dist.normal(x, SSM_R))
    return x


@gm.gen
def ssm_step(t, x):
    x = gm.trace("x", dist.normal(x, SSM_Q))
    gm.trace("y", dist.normal(x, SSM_R))
    return x


ssm_unfold = gm.unfold(ssm_step)


def ssm_sequence(ys):
    """args_seq, observations_seq for `ssm` (step t: args (t + 1,), observes ("y", t))."""
    return [(t + 1,) for t in range(len(ys))], [{("y", t): float(y)} for t, y in enumerate(ys)]


def ssm_unfold_sequence(ys):
    """args_seq, observations_seq for `ssm_unfold` (step t: args (t + 1, 0.0), observes (t, "y"))."""
    return [(t + 1, 0.0) for t in range(len(ys))], [{(t, "y"): float(y)} for t, y in enumerate(ys)]


def kalman_log_evidence(ys, q: float = SSM_Q, r: float = SSM_R) -> float:
    m, p, ll = 0.0, 0.0, 0.0
    for y in ys:
        p = p + q * q
        s = p + r * r
        ll += -0.5 * math.log(2 * math.pi * s) - 0.5 * (y - m) ** 2 / s
        k = p / s
        m, p = m + k * (y - m), (1 - k) * p
    return ll


# -- Neal's funnel ------------------------------------------------------------------------------

FUNNEL_DIM = 9


@gm.gen
def funnel():
    v = gm.trace("v", dist.normal(0.0, 3.0))
    scale = mx.exp(v / 2.0)
    for i in range(FUNNEL_DIM):
        gm.trace(("x", i), dist.normal(0.0, scale))
    return v


FUNNEL_ADDRESSES = ["v"] + [("x", i) for i in range(FUNNEL_DIM)]


@gm.gen
def funnel_vec():
    """The funnel with x as one vector site of FUNNEL_DIM values (same log density as `funnel`)."""
    v = gm.trace("v", dist.normal(0.0, 3.0))
    gm.trace("x", dist.iid(dist.normal(0.0, mx.exp(v / 2.0)), FUNNEL_DIM))
    return v


FUNNEL_VEC_ADDRESSES = ["v", "x"]
