"""gamma (shape, rate), inv_gamma (shape, scale), beta (a, b).

Log-densities: below shape 11 the textbook formula (no large terms cancel
there); from 11 up, Loader's saddle-point form as in R's dgamma/dbeta —
gamma(x; a, b) = b * poisson(a - 1; b x) and beta(x; a, b) = (a + b - 1) *
binomial(a - 1; a + b - 2, x) — so float32 stays within 1e-5 of SciPy for
shapes up to 1e4. Sampling: Marsaglia-Tsang in log space (`gamma_sampler`);
beta is sigmoid(log G_a - log G_b), which cannot produce 0/0 at tiny shapes.
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx

from ..special.fuse import as_float, fused
from ..special import host
from ..special.gamma import (bd0_fast, bd0_given_ratio, bd0_logs, bd0_ratio, lbeta_mixed, log1p_fast, lbeta_small,
                             lgamma_pos, stirlerr_big)
from . import support
from ._common import LOG_2PI, POS
from .base import Distribution, batch_shape
from ..rng import shared_lanes
from .gamma_sampler import beta_draw, gamma_full, log_gamma_pair, other_key

__all__ = ["Gamma", "InvGamma", "Beta", "gamma", "inv_gamma", "beta"]

_BIG = 11.0  # Loader's form from this shape on (its stirlerr terms are then the series alone)


# -- gamma: lp = where(a < 11, (a - 1) log x - b x + c, c - bd0(a - 1, b x)) ----------------------


def _gamma_c_host(a: float, b: float) -> float:
    if a < _BIG:
        return a * math.log(b) - host.lgamma(a)
    k = a - 1.0
    return math.log(b) - host.stirlerr(k) - 0.5 * (host.LOG_2PI + math.log(k))


def _gamma_c(a, b):
    ks = mx.where(a < _BIG, _BIG - 1.0, a - 1.0)
    direct = a * mx.log(b) - lgamma_pos(a)
    loader = mx.log(b) - (stirlerr_big(ks) + 0.5 * (LOG_2PI + mx.log(ks)))
    return mx.where(a < _BIG, direct, loader)


def _gamma_at0_host(a: float, b: float) -> float:
    """The log density at x = 0: +inf for a < 1, log b for a = 1, -inf above."""
    return math.inf if a < 1.0 else (math.log(b) if a == 1.0 else -math.inf)


def _gamma_value(x, a, b, k, c, at0, branch):
    """Python-number parameters: the host knows which form applies (`branch`: "direct" for a < 11,
    else "loader"); k = a - 1 where a >= 11 (any value >= 10 elsewhere)."""
    bx = b * x
    edge = mx.where(x == 0, at0, -mx.inf)
    if branch == "direct":
        return mx.where(x > 0, ((a - 1.0) * mx.log(x) - bx) + c, edge)
    return mx.where(x > 0, c - bd0_fast(k, bx), edge)


_gamma_lp_host = {br: fused(lambda x, a, b, k, c, at0, br=br: _gamma_value(as_float(x), a, b, k, c, at0, br))
                  for br in ("direct", "loader")}


_gamma_c_fused = fused(_gamma_c)


def _loader_k(a):
    # k only feeds Loader's branch (a >= 11): clamped like `_host_k`, so the branch not taken
    # never sees bd0(0, .) -- its infinite derivative made gradients NaN at a = 1
    return mx.maximum(a - 1.0, _BIG - 1.0)


@fused
def _gamma_logs(x, a, b):
    """log x and Loader's log(k / (b x)), one kernel: `log1p_fast` near 1 (MLX's CPU log1p costs about
    5 logs), else log k - log b - log x. A kernel of its own: inside the density's kernel its depth
    split that kernel in several."""
    x = as_float(x)
    k, lx = _loader_k(a), mx.log(x)
    return lx, bd0_ratio(k, b * x, (mx.log(k) - mx.log(b)) - lx, log1p_fast)


@fused
def _gamma_lp_arrays(x, a, b, c, lx, lr):
    """Array parameters: both forms per lane (a < 11: the direct density; else Loader's, c - bd0(k, b x))."""
    x = as_float(x)
    k, bx = _loader_k(a), b * x
    pos = x > 0
    direct = ((a - 1.0) * lx - bx) + c
    loader = c - bd0_given_ratio(k, bx, lr)
    at0 = mx.where(a < 1.0, mx.inf, mx.where(a == 1.0, c, -mx.inf))  # at a = 1, c = log b (no log here)
    return mx.where(pos & (a >= _BIG), loader, mx.where(pos, direct, mx.where(x == 0, at0, -mx.inf)))


def _gamma_lp(x, a, b):
    return _gamma_lp_arrays(x, a, b, _gamma_c_fused(a, b), *_gamma_logs(x, a, b))


@fused
def _gamma_value_draw(logg, rate):
    return mx.exp(logg - mx.log(rate))


def _host_k(a: float) -> float:
    return max(a - 1.0, _BIG - 1.0)


class Gamma(Distribution):
    """Gamma(shape, rate): density rate^shape x^(shape-1) e^(-rate x) / Gamma(shape)."""

    name = "gamma"
    support = support.positive

    def __init__(self, shape, rate):
        super().__init__()
        self.shape = self._param("shape", shape, *POS)
        self.rate = self._param("rate", rate, *POS)
        self._check_shapes(shape=self.shape, rate=self.rate)
        self._host = _host_consts(self, _gamma_host, self.shape, self.rate)

    def _sample(self, key, shape):
        full = shape + batch_shape(self.shape, self.rate)
        return _gamma_value_draw(gamma_full(key, self.shape, shape, full), self.rate)

    def _log_prob(self, x):
        if self._host is not None:
            return _gamma_lp_host["direct" if self.shape < _BIG else "loader"](x, self.shape, self.rate, *self._host)
        return _gamma_lp(x, self.shape, self.rate)


def _inv_gamma_value(x, a, s, k, c, branch="both"):
    pos = x > 0
    y = 1.0 / x
    sy = s * y
    lx = mx.log(x)
    if branch == "direct":
        return mx.where(pos, (c - sy) - (a + 1.0) * lx, -mx.inf)  # gamma(1/x; a, s) - 2 log x
    loader = (c - 2.0 * lx) - bd0_fast(k, sy)
    if branch == "loader":
        return mx.where(pos, loader, -mx.inf)
    direct = (c - sy) - (a + 1.0) * lx
    return mx.where(pos & (a >= _BIG), loader, mx.where(pos, direct, -mx.inf))


_inv_gamma_lp_host = {br: fused(lambda x, a, s, k, c, br=br: _inv_gamma_value(as_float(x), a, s, k, c, br))
                      for br in ("direct", "loader")}


@fused
def _inv_gamma_lp_arrays(x, a, s, c):
    return _inv_gamma_value(as_float(x), a, s, a - 1.0, c)


def _inv_gamma_lp(x, a, s):
    return _inv_gamma_lp_arrays(x, a, s, _gamma_c_fused(a, s))


@fused
def _inv_gamma_value_draw(logg, scale):
    return mx.exp(mx.log(scale) - logg)


class InvGamma(Distribution):
    """InvGamma(shape, scale): 1/X for X ~ Gamma(shape, rate=scale)."""

    name = "inv_gamma"
    support = support.positive

    def __init__(self, shape, scale):
        super().__init__()
        self.shape = self._param("shape", shape, *POS)
        self.scale = self._param("scale", scale, *POS)
        self._check_shapes(shape=self.shape, scale=self.scale)
        self._host = _host_consts(self, _inv_gamma_host, self.shape, self.scale)

    def _sample(self, key, shape):
        full = shape + batch_shape(self.shape, self.scale)
        return _inv_gamma_value_draw(gamma_full(key, self.shape, shape, full), self.scale)

    def _log_prob(self, x):
        if self._host is not None:
            return _inv_gamma_lp_host["direct" if self.shape < _BIG else "loader"](
                x, self.shape, self.scale, *self._host)
        return _inv_gamma_lp(x, self.shape, self.scale)


def _beta_c_host(a: float, b: float) -> float:
    if a < _BIG or b < _BIG:
        return -host.lbeta(a, b)
    k, nk = a - 1.0, b - 1.0
    n = k + nk
    st = host.stirlerr
    return (math.log(n + 1.0) + st(n) - st(k) - st(nk)) - 0.5 * (host.LOG_2PI + math.log(k) + math.log(nk) - math.log(n))


def _beta_value(x, a, b, k, nk, n, c, log_kn, log_nkn, branch="both"):
    """k = a - 1, nk = b - 1, n = k + nk where a, b >= 11 (any values >= 10 elsewhere);
    log_kn = log(k / n), log_nkn = log(nk / n). log x and log(1 - x) are computed once for both
    forms (inside bd0, log(k / (n x)) and log(nk / (n (1 - x))))."""
    lx, l1x = mx.log(x), log1p_fast(-x)  # (x = 1 gives NaN here; the edge value is selected there)
    direct = ((a - 1.0) * lx + (b - 1.0) * l1x) + c
    inner = (x > 0) & (x < 1)
    at0 = mx.where(a < 1.0, mx.inf, mx.where(a == 1.0, mx.log(b), -mx.inf))
    at1 = mx.where(b < 1.0, mx.inf, mx.where(b == 1.0, mx.log(a), -mx.inf))
    edge = mx.where(x == 0, at0, mx.where(x == 1, at1, -mx.inf))
    if branch == "direct":
        return mx.where(inner, direct, edge)
    # (a + b - 1) binomial(a - 1; a + b - 2, x), Loader's form (bd0's linear terms absorb
    # the rounding of n x and n (1 - x), so they stay)
    loader = (c - bd0_logs(k, n * x, log_kn - lx)) - bd0_logs(nk, n * (1.0 - x), log_nkn - l1x)
    if branch == "loader":  # a, b >= 11: zero density at both ends
        return mx.where(inner, loader, -mx.inf)
    return mx.where(inner & (a >= _BIG) & (b >= _BIG), loader, mx.where(inner, direct, edge))


_beta_lp_host = {br: fused(lambda x, a, b, k, nk, n, c, lkn, lnkn, br=br:
                           _beta_value(as_float(x), a, b, k, nk, n, c, lkn, lnkn, br))
                 for br in ("direct", "loader")}


_lbeta_small = fused(lbeta_small)
_lbeta_mixed = fused(lbeta_mixed)


@fused
def _beta_c_arrays(a, b, l_small, l_mixed):
    """c from the parameters alone; k = a - 1 and nk = b - 1 clamped to >= 10 like `_host_k`
    (Loader's form is used only where a, b >= 11: the branch not taken must stay finite, else its
    derivative makes gradients NaN at a or b = 1)."""
    k = mx.maximum(a - 1.0, _BIG - 1.0)
    nk = mx.maximum(b - 1.0, _BIG - 1.0)
    n = k + nk
    loader = (mx.log(n + 1.0) + (stirlerr_big(n) - (stirlerr_big(k) + stirlerr_big(nk)))) - 0.5 * (
        LOG_2PI + (mx.log(k) + mx.log(nk) - mx.log(n)))
    lb = mx.where(mx.maximum(a, b) < 10.0, l_small, l_mixed)
    return mx.where((a < _BIG) | (b < _BIG), -lb, loader)


@fused
def _beta_lp_arrays(x, a, b, c):
    k = mx.maximum(a - 1.0, _BIG - 1.0)
    nk = mx.maximum(b - 1.0, _BIG - 1.0)
    n = k + nk
    return _beta_value(as_float(x), a, b, k, nk, n, c, mx.log(k / n), mx.log(nk / n))


def _beta_lp(x, a, b):
    return _beta_lp_arrays(x, a, b, _beta_c_arrays(a, b, _lbeta_small(a, b), _lbeta_mixed(a, b)))


def _beta_host(a: float, b: float):
    k, nk = _host_k(a), _host_k(b)
    return k, nk, k + nk, _beta_c_host(a, b), math.log(k / (k + nk)), math.log(nk / (k + nk))


def _gamma_host(a: float, b: float):
    return _host_k(a), _gamma_c_host(a, b), _gamma_at0_host(a, b)


def _inv_gamma_host(a: float, b: float):
    return _host_k(a), _gamma_c_host(a, b)


def _host_consts(d, fn, *params):
    """Parameter-only terms on the host (float64) when every parameter is a Python number."""
    if d._invalid is not None or not all(isinstance(p, float) for p in params):
        return None
    return _host_values(fn, params)


@functools.lru_cache(maxsize=4096)  # a model builds its distributions afresh every execution
def _host_values(fn, params: tuple) -> tuple:
    return tuple(float(v) for v in fn(*params))


@fused
def _sigmoid_diff(la, lb):
    return mx.sigmoid(la - lb)


class Beta(Distribution):
    """Beta(a, b) on [0, 1]."""

    name = "beta"
    support = support.unit_interval

    def __init__(self, a, b):
        super().__init__()
        self.a = self._param("a", a, *POS)
        self.b = self._param("b", b, *POS)
        self._check_shapes(a=self.a, b=self.b)
        self._host = _host_consts(self, _beta_host, self.a, self.b)

    def _sample(self, key, shape):
        full = shape + batch_shape(self.a, self.b)
        if full == shape and (shape or shared_lanes() is None):  # scalar parameters: both gammas in one pass
            if not shape:  # one draw (a scalar site): one compiled call
                return beta_draw(key, self.a, self.b)
            return _sigmoid_diff(*log_gamma_pair(key, self.a, self.b, shape))
        return _sigmoid_diff(gamma_full(key, self.a, shape, full), gamma_full(other_key(key), self.b, shape, full))

    def _log_prob(self, x):
        if self._host is not None:
            branch = "direct" if (self.a < _BIG or self.b < _BIG) else "loader"
            return _beta_lp_host[branch](x, self.a, self.b, *self._host)
        return _beta_lp(x, self.a, self.b)


gamma = Gamma
inv_gamma = InvGamma
beta = Beta
