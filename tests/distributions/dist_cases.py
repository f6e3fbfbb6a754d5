"""Reference cases: every scalar-parameter distribution against scipy.stats (float64), with extremes.

Each case lists parameter tuples (including the extremes of issue 3: sigma 1e-10
and 1e10, values 100 sigma out, Beta values within 1e-6 of 0 and 1, shapes and
rates 1e-3..1e4, counts up to 1e4, von Mises kappa up to 500) and a value
generator. Values are rounded to float32 first, so the reference is evaluated
at exactly the point genmlx sees.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from scipy import special as sp
from scipy import stats

from genmlx import dist

LGAMMA_TOL = 1e-4
PLAIN_TOL = 1e-5


class Case(NamedTuple):
    name: str
    make: Callable
    ref: Callable  # ref(x, *params) -> float64 log density
    params: list
    values: Callable  # values(*params) -> 1-d float array
    tol: float = PLAIN_TOL
    discrete: bool = False


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _around(center, scale, extra=()):
    z = np.array([-100, -30, -5, -1, -0.1, 0, 0.1, 1, 5, 30, 100], dtype=np.float64)
    return np.concatenate([center + scale * z, np.asarray(extra, dtype=np.float64)])


def _pos_values(mean, spread):
    return np.concatenate([[-1.0, 0.0], np.geomspace(max(mean, 1e-30) * 1e-4, max(mean, 1e-30) * 1e2, 13),
                           mean + spread * np.array([-3, -1, 0, 1, 3.0])])


def _counts(mean, spread, hi=None):
    base = np.round(mean + spread * np.array([-8, -3, -1, 0, 1, 3, 8]))
    v = np.concatenate([[-1, 0, 1, 2, 0.5], base, [np.round(mean) + 0.25]])
    if hi is not None:
        v = np.concatenate([v, [hi, hi + 1]])
    return np.unique(v)


SHAPES = [1e-3, 0.1, 0.5, 1.0, 2.5, 10.0, 11.0, 100.0, 1e4]
RATES = [1e-3, 1.0, 1e4]


def _wrapped_normal_ref(x, mu, s):
    k = np.arange(-3000, 3001)[:, None]
    t = (np.asarray(x) - mu)
    t = t - 2 * np.pi * np.floor((t + np.pi) / (2 * np.pi))
    return sp.logsumexp(stats.norm.logpdf(t[None, :] + 2 * np.pi * k, 0, s), axis=0)


def _trunc_ref(x, mu, s, lo, hi):
    a, b = (lo - mu) / s, (hi - mu) / s
    with np.errstate(divide="ignore"):
        return stats.truncnorm.logpdf(x, a, b, loc=mu, scale=s)


def _geometric_ref(x, p):
    # genmlx: failures before the first success (support 0, 1, ...); scipy counts trials
    return stats.geom.logpmf(np.asarray(x) + 1, p)


CASES = [
    Case("normal", dist.normal, lambda x, m, s: stats.norm.logpdf(x, m, s),
         [(0.0, 1.0), (3.0, 1e-10), (-2.0, 1e10), (1e3, 0.5), (0.0, 1e-3)],
         lambda m, s: _around(m, s, [m + 1e-3, 1e30 if s > 1 else m + 1e4 * s])),
    Case("uniform", dist.uniform, lambda x, a, b: stats.uniform.logpdf(x, a, b - a),
         [(0.0, 1.0), (-1e4, 1e4), (1.0, 1.0 + 1e-3)],
         lambda a, b: np.array([a - 1, a, (a + b) / 2, b, b + 1, a + (b - a) * 0.3])),
    Case("exponential", dist.exponential, lambda x, r: stats.expon.logpdf(x, scale=1 / r),
         [(1.0,), (1e-3,), (1e4,)], lambda r: _pos_values(1 / r, 1 / r)),
    Case("laplace", dist.laplace, lambda x, m, s: stats.laplace.logpdf(x, m, s),
         [(0.0, 1.0), (5.0, 1e-10), (0.0, 1e10)], lambda m, s: _around(m, s)),
    Case("cauchy", dist.cauchy, lambda x, m, s: stats.cauchy.logpdf(x, m, s),
         [(0.0, 1.0), (5.0, 1e-10), (0.0, 1e10)], lambda m, s: _around(m, s, [1e30, -1e30])),
    Case("lognormal", dist.lognormal, lambda x, m, s: stats.lognorm.logpdf(x, s, scale=np.exp(m)),
         [(0.0, 1.0), (2.0, 0.01), (-3.0, 3.0)],
         lambda m, s: np.concatenate([[-1.0, 0.0], np.exp(_around(m, s)[2:-2])])),
    Case("gamma", dist.gamma, lambda x, a, b: stats.gamma.logpdf(x, a, scale=1 / b),
         [(a, b) for a in SHAPES for b in RATES],
         lambda a, b: _pos_values(a / b, np.sqrt(a) / b), tol=LGAMMA_TOL),
    Case("inv_gamma", dist.inv_gamma, lambda x, a, s: stats.invgamma.logpdf(x, a, scale=s),
         [(a, s) for a in [1e-3, 0.5, 2.5, 11.0, 1e4] for s in RATES],
         lambda a, s: _pos_values(s / max(a, 1.0), s / max(a, 1.0) / np.sqrt(max(a, 1.0))), tol=LGAMMA_TOL),
    Case("beta", dist.beta, lambda x, a, b: stats.beta.logpdf(x, a, b),
         [(a, b) for a in [1e-3, 0.5, 1.0, 2.5, 11.0, 1e4] for b in [1e-3, 1.0, 3.0, 11.0, 1e4]],
         lambda a, b: np.array([-0.5, 0.0, 1e-6, 1e-3, 0.1, a / (a + b), 0.5, 0.9, 1 - 1e-3, 1 - 1e-6, 1.0, 1.5,
                                min(max(a / (a + b) + 3 * np.sqrt(a * b / (a + b) ** 2 / (a + b + 1)), 0.0), 1.0)]),
         tol=LGAMMA_TOL),
    Case("student_t", dist.student_t, lambda x, n, m, s: stats.t.logpdf(x, n, m, s),
         [(1.0, 0.0, 1.0), (1e-3, 0.0, 1.0), (3.0, 2.0, 1e-10), (30.0, 0.0, 1e10), (1e4, 0.0, 1.0), (1e8, 1.0, 2.0)],
         lambda n, m, s: _around(m, s, [m + 1e20 * s]), tol=LGAMMA_TOL),
    Case("truncated_normal", dist.truncated_normal, _trunc_ref,
         [(0.0, 1.0, -1.0, 2.0), (0.0, 1.0, 5.0, 6.0), (0.0, 1.0, -40.0, -38.0), (1.0, 2.0, -np.inf, 0.0),
          (0.0, 1e-10, -1e-10, 1e-9), (0.0, 1.0, 0.5, np.inf)],
         lambda m, s, lo, hi: np.array([lo - 1 if np.isfinite(lo) else -1e3, lo if np.isfinite(lo) else -50.0,
                                        (max(lo, -60) + min(hi, 60)) / 2, hi if np.isfinite(hi) else 50.0,
                                        hi + 1 if np.isfinite(hi) else 1e3])),
    Case("von_mises", dist.von_mises, lambda x, m, k: stats.vonmises.logpdf(x, k, loc=m),
         [(0.0, 0.0), (0.0, 1e-3), (1.0, 2.0), (-2.0, 50.0), (0.5, 500.0)],
         lambda m, k: m + np.array([-np.pi, -1.0, -0.1, -1e-3, 0.0, 1e-2, 0.5, 2.0, np.pi - 1e-3, 7.0])),
    Case("wrapped_cauchy", dist.wrapped_cauchy, lambda x, m, r: stats.wrapcauchy.logpdf(
        np.mod(np.asarray(x) - m, 2 * np.pi), r) if r > 0 else np.full(np.shape(x), -np.log(2 * np.pi)),
         [(0.0, 0.0), (1.0, 0.5), (0.0, 0.999), (-1.0, 1e-3)],
         lambda m, r: m + np.array([-3.0, -1.0, -0.01, 0.0, 0.01, 1.0, 3.0, 10.0])),
    Case("wrapped_normal", dist.wrapped_normal, _wrapped_normal_ref,
         [(0.0, 1e-3), (1.0, 0.5), (0.0, 1.49), (0.0, 1.51), (2.0, 3.0), (0.0, 100.0)],
         lambda m, s: m + np.array([-3.0, -1.0, -1e-3, 0.0, 1e-3, 0.3, 1.0, 3.0, 9.0])),
    Case("bernoulli", dist.bernoulli, lambda x, p: stats.bernoulli.logpmf(x, p),
         [(0.0,), (1e-6,), (0.3,), (1.0,)], lambda p: np.array([-1, 0, 1, 2, 0.5]), discrete=True),
    Case("poisson", dist.poisson, lambda x, r: stats.poisson.logpmf(x, r),
         [(0.0,), (1e-3,), (3.0,), (10.0,), (1e4,)], lambda r: _counts(r, np.sqrt(r) + 1),
         tol=LGAMMA_TOL, discrete=True),
    Case("binomial", dist.binomial, lambda x, n, p: stats.binom.logpmf(x, n, p),
         [(0, 0.5), (10, 0.0), (10, 1.0), (10, 0.3), (100, 1e-4), (10_000, 0.5), (10_000, 0.999)],
         lambda n, p: _counts(n * p, np.sqrt(n * p * (1 - p)) + 1, hi=n), tol=LGAMMA_TOL, discrete=True),
    Case("geometric", dist.geometric, _geometric_ref,
         [(1.0,), (0.5,), (1e-4,)], lambda p: _counts(1 / p, 1 / p), discrete=True),
    Case("neg_binomial", dist.neg_binomial, lambda x, r, p: stats.nbinom.logpmf(x, r, p),
         [(1.0, 0.5), (1e-3, 0.5), (3.5, 1.0), (10.0, 0.01), (1e4, 0.5), (0.5, 1e-4)],
         lambda r, p: _counts(r * (1 - p) / p, np.sqrt(r * (1 - p)) / p + 1), tol=LGAMMA_TOL, discrete=True),
    Case("discrete_uniform", dist.discrete_uniform, lambda x, lo, hi: stats.randint.logpmf(x, lo, hi + 1),
         [(0, 0), (1, 6), (-10_000, 10_000)], lambda lo, hi: np.array([lo - 1, lo, (lo + hi) // 2, hi, hi + 1, lo + 0.5]),
         discrete=True),
]

BY_NAME = {c.name: c for c in CASES}
