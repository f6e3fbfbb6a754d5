"""The demo's standard models and their exact posteriors (conjugate formulas, a Kalman filter).

Three models whose posteriors are known in closed form, so that the demo can
check every estimate it prints:

* Beta-Bernoulli: p ~ Beta(2, 2), y_i ~ Bernoulli(p); posterior Beta(2 + k, 2 + n - k),
  evidence B(2 + k, 2 + n - k) / B(2, 2).
* Linear regression: slope, intercept ~ N(0, 10^2), y_i ~ N(slope x_i + intercept, 1);
  a Gaussian posterior (conjugate update of the prior with known noise).
* Linear-Gaussian state space: x_t ~ N(x_{t-1}, 1), y_t ~ N(x_t, 0.5^2), x_{-1} = 0,
  as an `unfold`; evidence and filtering moments from a Kalman filter.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["COIN", "XS", "YS", "SSM_YS", "Q", "R", "Exact", "beta_bernoulli", "linreg", "ssm",
           "beta_bernoulli_exact", "linreg_exact", "kalman"]

COIN = (1, 1, 0, 1, 1, 1, 0, 1, 1, 0)  # 7 ones in 10
XS = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
YS = (-2.9, -1.6, -0.4, 0.1, 1.2, 1.9, 2.8, 3.5, 5.2, 5.9)
SSM_YS = (0.4, 1.1, 0.6, 1.9, 2.7, 2.2, 3.4, 3.1, 2.5, 3.8, 4.6, 4.1, 5.0, 5.7, 5.2, 6.3)
PRIOR_SD = 10.0
NOISE_SD = 1.0
Q, R = 1.0, 0.5


class Exact(NamedTuple):
    """An exact posterior quantity: its mean and standard deviation (sd 0 for a log evidence)."""

    mean: float
    sd: float


def _gen():
    import genmlx as gm
    from genmlx import dist

    return gm, dist


def beta_bernoulli():
    gm, dist = _gen()

    @gm.gen
    def beta_bernoulli(n):
        p = gm.trace("p", dist.beta(2.0, 2.0))
        for i in range(n):
            gm.trace(f"y{i}", dist.bernoulli(p))
        return p

    return beta_bernoulli


def linreg():
    gm, dist = _gen()

    @gm.gen
    def linreg(xs):
        slope = gm.trace("slope", dist.normal(0.0, PRIOR_SD))
        intercept = gm.trace("intercept", dist.normal(0.0, PRIOR_SD))
        for i, x in enumerate(xs):
            gm.trace(f"y{i}", dist.normal(slope * x + intercept, NOISE_SD))
        return slope

    return linreg


def ssm():
    gm, dist = _gen()

    @gm.gen
    def ssm_step(t, x):
        x = gm.trace("x", dist.normal(x, Q))
        gm.trace("y", dist.normal(x, R))
        return x

    return gm.unfold(ssm_step)


def beta_bernoulli_exact(data=COIN, a: float = 2.0, b: float = 2.0) -> dict[str, Exact]:
    """`{"p": posterior, "log_ml": evidence}`."""
    k, n = sum(data), len(data)
    a2, b2 = a + k, b + n - k
    var = a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))

    def lbeta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    return {"p": Exact(a2 / (a2 + b2), math.sqrt(var)), "log_ml": Exact(lbeta(a2, b2) - lbeta(a, b), 0.0)}


def linreg_exact(xs=XS, ys=YS) -> dict[str, Exact]:
    """`{"slope": ..., "intercept": ...}`: the Gaussian posterior's marginals."""
    X = np.column_stack([np.asarray(xs, float), np.ones(len(xs))])
    prec = X.T @ X / NOISE_SD**2 + np.eye(2) / PRIOR_SD**2
    cov = np.linalg.inv(prec)
    mean = cov @ X.T @ np.asarray(ys, float) / NOISE_SD**2
    return {"slope": Exact(float(mean[0]), float(math.sqrt(cov[0, 0]))),
            "intercept": Exact(float(mean[1]), float(math.sqrt(cov[1, 1])))}


def kalman(ys=SSM_YS, q: float = Q, r: float = R) -> dict[str, Exact]:
    """`{"log_ml": evidence, "x_last": filtering posterior of the last state}`."""
    m, p, ll = 0.0, 0.0, 0.0
    for y in ys:
        p = p + q * q
        s = p + r * r
        ll += -0.5 * math.log(2 * math.pi * s) - 0.5 * (y - m) ** 2 / s
        k = p / s
        m, p = m + k * (y - m), (1 - k) * p
    return {"log_ml": Exact(ll, 0.0), "x_last": Exact(m, math.sqrt(p))}
