"""Discrete distributions: bernoulli, categorical, poisson, binomial, geometric, neg_binomial, discrete_uniform.

Values are int32 when sampled; `log_prob` accepts integer or float arrays and
gives -inf at non-integers and outside the support. Count log-pmfs use
Loader's stirlerr/bd0 form (`discrete_samplers.pois_raw`/`binom_raw`), accurate
in float32 for counts up to 1e4 and beyond.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from .. import rng
from ..special import host
from ..special.fuse import as_float, fused
from ..special.gamma import bd0_fast, stirlerr_raw
from . import support
from ._common import HALF_LOG_2PI, POS, PROB, ok_count, uniform01
from .base import Distribution, batch_shape
from .discrete_samplers import binomial_draw, poisson_draw
from .gamma_sampler import gamma_full

__all__ = ["Bernoulli", "Categorical", "Poisson", "Binomial", "Geometric", "NegBinomial", "DiscreteUniform",
           "bernoulli", "categorical", "poisson", "binomial", "geometric", "neg_binomial", "discrete_uniform"]


def _is_int(x):
    return x == mx.floor(x)


# -- bernoulli ---------------------------------------------------------------------------------


@fused
def _bernoulli_lp(x, p):
    # x + 0 p is x for every valid p; it puts x in p's batch first: under mx.vmap an observed x is
    # unbatched, and its two comparisons would run as kernels of their own (one pair per site)
    x = as_float(x) + 0.0 * p
    l1, l0 = mx.log(p), mx.log1p(-p)
    lp = mx.where(x == 1, l1, mx.where(x == 0, l0, -mx.inf))
    # p outside [0, 1] makes one of the two logs NaN: the density is then NaN at every value, so a
    # weight guards the check on p (Bernoulli._score_guards)
    return mx.where(mx.isnan(l1 + l0), mx.nan, lp)


@fused
def _below(u, p):
    return (u < p).astype(mx.int32)


class Bernoulli(Distribution):
    """Bernoulli(p): 1 with probability p, else 0."""

    name = "bernoulli"
    support = support.boolean
    _score_guards = frozenset({"p"})

    def __init__(self, p):
        super().__init__()
        self.p = self._param("p", p, *PROB)

    def _sample(self, key, shape):
        return _below(rng.uniform(key, shape + batch_shape(self.p)), self.p)

    def _log_prob(self, x):
        return _bernoulli_lp(x, self.p)


# -- categorical --------------------------------------------------------------------------------


def _cat_ok(x, k):
    return (x >= 0) & (x < k) & _is_int(x)


@fused
def _categorical_index(x, k):
    x = as_float(x)
    return mx.where(_cat_ok(x, k), x, 0.0).astype(mx.int32)


@fused
def _categorical_pick(x, k, chosen):
    return mx.where(_cat_ok(as_float(x), k), chosen, -mx.inf)


def _categorical_lp(x, log_probs):
    """log_probs: normalized (..., K); x integer (...)."""
    k = float(log_probs.shape[-1])
    idx = _categorical_index(x, k)
    if log_probs.ndim == 1:
        chosen = mx.take(log_probs, idx)
    else:
        lp = mx.broadcast_to(log_probs, tuple(mx.broadcast_shapes(idx.shape, log_probs.shape[:-1])) + (int(k),))
        chosen = mx.take_along_axis(lp, mx.broadcast_to(idx, lp.shape[:-1])[..., None], axis=-1)[..., 0]
    return _categorical_pick(x, k, chosen)


@fused
def _log_normalize(logits):
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


class Categorical(Distribution):
    """Categorical over {0, ..., K-1} with unnormalized log-probabilities `logits` (last axis)."""

    name = "categorical"

    def __init__(self, logits):
        super().__init__()
        self._log_probs = None
        # host data is checked and normalized on the host; arrays (and flat_density's symbolic values,
        # computed from other choices) as arrays
        if not isinstance(logits, mx.array) and not getattr(logits, "_genmlx_symbolic", False):
            try:
                arr = np.asarray(logits, dtype=np.float64)
            except (TypeError, ValueError):
                self._fail(ValueError(f"categorical: parameter logits must be an array of numbers, got {logits!r}"))
                arr = np.zeros((1,))
            if arr.ndim and arr.shape[-1] and not (np.all(arr < np.inf) and np.all(np.any(arr > -np.inf, axis=-1))
                                                   and not np.any(np.isnan(arr))):
                self._fail(ValueError("categorical: parameter logits must be finite or -inf, with at least one "
                                      f"finite entry per row, got {logits!r}"))
            elif arr.ndim and arr.shape[-1]:
                m = np.max(arr, axis=-1, keepdims=True)
                norm = arr - (m + np.log(np.sum(np.exp(arr - m), axis=-1, keepdims=True)))
                self._log_probs = mx.array(norm.astype(np.float32))  # normalized on the host: a constant
            logits = mx.array(arr.astype(np.float32))
        if logits.ndim == 0 or logits.shape[-1] == 0:
            self._fail(ValueError(f"categorical: parameter logits must have at least one category (shape {tuple(logits.shape)})"))
        if self._log_probs is None:
            self.logits = self._param("logits", logits, lambda v: mx.all(v < mx.inf) & mx.any(v > -mx.inf, axis=-1),
                                      "finite or -inf, with at least one finite entry per row")
        else:
            self.logits = logits
        k = self.logits.shape[-1] if self.logits.ndim else 1
        self.support = support.integer_interval(0, k - 1)

    def _sample(self, key, shape):
        batch = tuple(self.logits.shape[:-1])
        return rng.categorical(self.logits, key, shape + batch).astype(mx.int32)

    def _log_prob(self, x):
        lp = self._log_probs if self._log_probs is not None else _log_normalize(self.logits)
        return _categorical_lp(x if isinstance(x, mx.array) else mx.array(x), lp)


# -- poisson -----------------------------------------------------------------------------------


@fused
def _stirlerr_value(x):
    """stirlerr(k): the value-only stage of the count log-pmfs (inf/NaN at k <= 0, masked later)."""
    return stirlerr_raw(as_float(x))


@fused
def _poisson_finish(x, lam, st_k):
    k = as_float(x)
    valid = (k >= 0) & _is_int(k)
    lp = ((-HALF_LOG_2PI - 0.5 * mx.log(k)) - st_k) - bd0_fast(k, lam)
    return mx.where(valid & (k > 0), lp, mx.where(valid & (k == 0), -lam, -mx.inf))


class Poisson(Distribution):
    """Poisson(rate)."""

    name = "poisson"
    support = support.nonnegative_integer

    def __init__(self, rate):
        super().__init__()
        self.rate = self._param("rate", rate, lambda v: (v >= 0) & mx.isfinite(v) if isinstance(v, mx.array)
                                else (v >= 0 and math.isfinite(v)), ">= 0 and finite")

    def _sample(self, key, shape):
        return poisson_draw(key, self.rate, shape + batch_shape(self.rate))

    def _log_prob(self, x):
        # Loader: -stirlerr(k) - bd0(k, rate) - log sqrt(2 pi k); two fused stages
        return _poisson_finish(x, self.rate, _stirlerr_value(x))


# -- binomial ----------------------------------------------------------------------------------


@fused
def _binom_a2(x, n):
    return stirlerr_raw(n - as_float(x))


@fused
def _stirlerr_param(n):
    return stirlerr_raw(as_float(n))


def _binomial_body(x, n, p, q, st_n, a1, a2):
    k = as_float(x)
    valid = (k >= 0) & (k <= n) & _is_int(k)
    nk = n - k
    c = ((st_n - a1) - a2) + (0.5 * (mx.log(n) - mx.log(k) - mx.log(nk)) - HALF_LOG_2PI)
    lp = (c - bd0_fast(k, n * p)) - bd0_fast(nk, n * q)
    edge = mx.where(k == 0, mx.where(n == 0, 0.0, n * mx.log1p(-p)), n * mx.log(p))
    return mx.where(valid & (k > 0) & (k < n), lp, mx.where(valid, edge, -mx.inf))


@fused
def _binomial_finish(x, n, p, q, st_n, a1, a2):
    return _binomial_body(x, n, p, q, st_n, a1, a2)


@fused
def _binomial_finish_arrays(x, n, p, st_n, a1, a2):
    return _binomial_body(x, n, p, 1.0 - p, st_n, a1, a2)


class Binomial(Distribution):
    """Binomial(n, p): successes in n trials of probability p."""

    name = "binomial"

    def __init__(self, n, p):
        super().__init__()
        self.n = self._param("n", n, ok_count, "a non-negative integer")
        self.p = self._param("p", p, *PROB)
        self._check_shapes(n=self.n, p=self.p)
        self.support = support.integer_interval(0, int(self.n)) if isinstance(self.n, float) else support.nonnegative_integer
        ok = self._invalid is None
        self._st_n = host.stirlerr(self.n) if ok and isinstance(self.n, float) and self.n > 0 else None
        self._q = 1.0 - self.p if ok and isinstance(self.p, float) else None

    def _sample(self, key, shape):
        return binomial_draw(key, self.n, self.p, shape + batch_shape(self.n, self.p))

    def _log_prob(self, x):
        # Loader's dbinom_raw in three fused stages (two value-only stirlerr terms, then the rest)
        st_n = self._st_n if self._st_n is not None else _stirlerr_param(self.n)
        a1, a2 = _stirlerr_value(x), _binom_a2(x, self.n)
        if self._q is not None:
            return _binomial_finish(x, self.n, self.p, self._q, st_n, a1, a2)
        return _binomial_finish_arrays(x, self.n, self.p, st_n, a1, a2)


# -- geometric ---------------------------------------------------------------------------------


@fused
def _geometric_lp(x, p):
    k = as_float(x)
    ok = (k >= 0) & _is_int(k)
    lp = mx.log(p) + mx.where(k == 0, 0.0, k * mx.log1p(-p))
    return mx.where(ok, lp, -mx.inf)


@fused
def _geometric_draw(u, p):
    return mx.floor(mx.log(u) / mx.log1p(-p)).astype(mx.int32)


class Geometric(Distribution):
    """Geometric(p): the number of failures before the first success (support 0, 1, 2, ...)."""

    name = "geometric"
    support = support.nonnegative_integer

    def __init__(self, p):
        super().__init__()
        self.p = self._param("p", p, lambda v: (v > 0) & (v <= 1) if isinstance(v, mx.array) else 0 < v <= 1,
                             "in (0, 1]")

    def _sample(self, key, shape):
        return _geometric_draw(uniform01(key, shape + batch_shape(self.p)), self.p)

    def _log_prob(self, x):
        return _geometric_lp(x, self.p)


# -- negative binomial -------------------------------------------------------------------------


@fused
def _nb_a2(x, r):
    return stirlerr_raw(as_float(x) + r)


def _neg_binomial_body(x, r, p, q, st_r, a1, a2):
    # R's dnbinom: dbinom_raw(r; k + r, p) + log(r / (k + r)), Loader's terms
    k = as_float(x)
    valid = (k >= 0) & _is_int(k)
    n = k + r
    c = (a2 - a1) + ((0.5 * (mx.log(r) - mx.log(k) - mx.log(n)) - st_r) - HALF_LOG_2PI)
    lp = (c - bd0_fast(r, n * p)) - bd0_fast(k, n * q)
    return mx.where(valid & (k > 0), lp, mx.where(valid & (k == 0), r * mx.log(p), -mx.inf))


@fused
def _neg_binomial_finish(x, r, p, q, st_r, a1, a2):
    return _neg_binomial_body(x, r, p, q, st_r, a1, a2)


@fused
def _neg_binomial_finish_arrays(x, r, p, st_r, a1, a2):
    return _neg_binomial_body(x, r, p, 1.0 - p, st_r, a1, a2)


class NegBinomial(Distribution):
    """NegBinomial(r, p): failures before the r-th success, pmf C(k+r-1, k) p^r (1-p)^k (r > 0 real)."""

    name = "neg_binomial"
    support = support.nonnegative_integer

    def __init__(self, r, p):
        super().__init__()
        self.r = self._param("r", r, *POS)
        self.p = self._param("p", p, lambda v: (v > 0) & (v <= 1) if isinstance(v, mx.array) else 0 < v <= 1,
                             "in (0, 1]")
        self._check_shapes(r=self.r, p=self.p)
        ok = self._invalid is None
        self._st_r = host.stirlerr(self.r) if ok and isinstance(self.r, float) else None
        self._q = 1.0 - self.p if ok and isinstance(self.p, float) else None

    def _sample(self, key, shape):
        # Gamma-Poisson mixture: lam ~ Gamma(r, rate p / (1 - p)), k ~ Poisson(lam)
        k1, k2 = mx.random.split(key)
        full = shape + batch_shape(self.r, self.p)
        logg = gamma_full(k1, self.r, shape, full)
        lam = _nb_rate(logg, self.p)
        return poisson_draw(k2, lam, full)

    def _log_prob(self, x):
        st_r = self._st_r if self._st_r is not None else _stirlerr_param(self.r)
        a1, a2 = _stirlerr_value(x), _nb_a2(x, self.r)
        if self._q is not None:
            return _neg_binomial_finish(x, self.r, self.p, self._q, st_r, a1, a2)
        return _neg_binomial_finish_arrays(x, self.r, self.p, st_r, a1, a2)


@fused
def _nb_rate(logg, p):
    return mx.exp(logg + (mx.log1p(-p) - mx.log(p)))  # G (1 - p) / p; 0 at p = 1


# -- discrete uniform --------------------------------------------------------------------------


@fused
def _discrete_uniform_lp(x, lo, hi):
    x = as_float(x)
    ok = (x >= lo) & (x <= hi) & _is_int(x)
    return mx.where(ok, -mx.log(hi - lo + 1.0), -mx.inf)


@fused
def _discrete_uniform_draw(u, lo, hi):
    return mx.minimum(lo + mx.floor(u * (hi - lo + 1.0)), hi).astype(mx.int32)


def _ok_int(v):
    if isinstance(v, mx.array):
        return _is_int(v) & mx.isfinite(v)
    return math.isfinite(v) and float(v).is_integer()


class DiscreteUniform(Distribution):
    """Uniform over the integers lo, lo + 1, ..., hi (both included)."""

    name = "discrete_uniform"

    def __init__(self, lo, hi):
        super().__init__()
        self.lo = self._param("lo", lo, _ok_int, "an integer")
        self.hi = self._param("hi", hi, _ok_int, "an integer")
        self._check_shapes(lo=self.lo, hi=self.hi)
        if isinstance(self.lo, float) and isinstance(self.hi, float):
            if not self.lo <= self.hi:
                self._fail(ValueError(f"discrete_uniform: parameter hi must be >= lo, got lo={lo!r}, hi={hi!r}"))
            if self.lo.is_integer() and self.hi.is_integer():
                self.support = support.integer_interval(int(self.lo), int(self.hi))
        else:
            self._lazy_checks.append(("hi", ">= lo", mx.array(self.hi) - self.lo, lambda d: d >= 0))
            self.support = support.Support("integer_interval", discrete=True)

    def _sample(self, key, shape):
        return _discrete_uniform_draw(uniform01(key, shape + batch_shape(self.lo, self.hi)), self.lo, self.hi)

    def _log_prob(self, x):
        return _discrete_uniform_lp(x, self.lo, self.hi)


bernoulli = Bernoulli
categorical = Categorical
poisson = Poisson
binomial = Binomial
geometric = Geometric
neg_binomial = NegBinomial
discrete_uniform = DiscreteUniform
