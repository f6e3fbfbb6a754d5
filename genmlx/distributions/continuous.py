"""Univariate continuous distributions on the real line or a part of it.

normal, uniform, exponential, laplace, cauchy, lognormal, student_t (the
truncated normal is in truncated.py). Each log-density is one fused kernel (`genmlx.special.fuse`);
sampling is one vectorized pass by inversion or transformation (Student-t
draws one gamma variate by `gamma_sampler`).
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..special.fuse import as_float, fused
from ..special import host
from ..special.gamma import bd0_raw, stirlerr_raw
from . import support
from ._common import FINITE, HALF_LOG_2PI, POS, std_normal, uniform01
from .base import Distribution, batch_shape
from .location_scale import LocationScale
from .gamma_sampler import gamma_full

__all__ = ["Normal", "Uniform", "Exponential", "Laplace", "Cauchy", "LogNormal", "StudentT",
           "normal", "uniform", "exponential", "laplace", "cauchy", "lognormal", "student_t"]

_LOG_PI = math.log(math.pi)
_LN2 = math.log(2.0)
_SQRT1_2 = math.sqrt(0.5)


# -- normal -------------------------------------------------------------------------------


@fused
def _normal_lp(x, mu, sigma):
    z = (mu - as_float(x)) / sigma  # mu first: under mx.vmap a batched mu keeps its batch axis (no transpose); z*z same bits
    # -0.5 (z z), not (-0.5 z) z (the same bits: halving is exact): under mx.grad the latter's -0.5 z feeds
    # both passes, which MLX's compile then builds as one more fused kernel (NUTS on a regression: 11 -> 10)
    return -0.5 * (z * z) - (mx.log(sigma) + HALF_LOG_2PI)


@fused
def _affine(z, loc, scale):
    return loc + scale * z


class Normal(LocationScale):
    """Normal(mu, sigma), sigma the standard deviation."""

    name = "normal"
    support = support.real
    params = ("mu", "sigma")
    _score_guards = frozenset(params)
    draw = staticmethod(_affine)
    lp = staticmethod(_normal_lp)

    def __init__(self, mu, sigma):
        super().__init__(mu, sigma)


# -- uniform ------------------------------------------------------------------------------


@fused
def _uniform_lp(x, low, high):
    x = as_float(x)
    return mx.where((x >= low) & (x <= high), -mx.log(high - low), -mx.inf)


class Uniform(Distribution):
    """Uniform on [low, high]."""

    name = "uniform"

    def __init__(self, low, high):
        super().__init__()
        self.low = self._param("low", low, *FINITE)
        self.high = self._param("high", high, *FINITE)
        self._check_shapes(low=self.low, high=self.high)
        if isinstance(self.low, float) and isinstance(self.high, float):
            if not self.low < self.high:
                self._fail(ValueError(f"uniform: parameter high must be > low, got low={low!r}, high={high!r}"))
        else:
            self._lazy_checks.append(("high", "> low", mx.array(self.high) - self.low, lambda d: d > 0))
        self.support = support.interval(self.low, self.high)

    def _sample(self, key, shape):
        u = uniform01(key, shape + batch_shape(self.low, self.high))
        return _affine(u, self.low, self.high - self.low)

    def _log_prob(self, x):
        return _uniform_lp(x, self.low, self.high)


# -- exponential, laplace, cauchy -------------------------------------------------------------


@fused
def _exponential_lp(x, rate):
    x = as_float(x)
    return mx.where(x >= 0, mx.log(rate) - rate * x, -mx.inf)


@fused
def _exponential_draw(u, rate):
    return -mx.log(u) / rate


class Exponential(Distribution):
    """Exponential(rate): density rate * exp(-rate x) on x >= 0."""

    name = "exponential"
    support = support.nonnegative

    def __init__(self, rate):
        super().__init__()
        self.rate = self._param("rate", rate, *POS)

    def _sample(self, key, shape):
        return _exponential_draw(uniform01(key, shape + batch_shape(self.rate)), self.rate)

    def _log_prob(self, x):
        return _exponential_lp(x, self.rate)


@fused
def _laplace_lp(x, loc, scale):
    return -(mx.abs(as_float(x) - loc) / scale) - (mx.log(scale) + _LN2)


@fused
def _laplace_draw(u, loc, scale):
    h = u - 0.5
    return loc - scale * mx.where(h < 0, -1.0, 1.0) * mx.log1p(-2.0 * mx.abs(h))


class Laplace(LocationScale):
    """Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale)."""

    name = "laplace"
    support = support.real
    params = ("loc", "scale")
    _score_guards = frozenset(params)
    noise = staticmethod(uniform01)
    draw = staticmethod(_laplace_draw)
    lp = staticmethod(_laplace_lp)

    def __init__(self, loc, scale):
        super().__init__(loc, scale)


@fused
def _cauchy_lp(x, loc, scale):
    d = mx.abs(as_float(x) - loc)
    z = d / scale
    big = z > 1.0
    # log1p(z^2) without overflow: 2 (log|x - loc| - log scale) + log1p(1/z^2) for z > 1
    lbig = 2.0 * (mx.log(mx.where(big, d, 1.0)) - mx.log(scale)) + mx.log1p(1.0 / mx.where(big, z * z, 1.0))
    l1 = mx.where(big, lbig, mx.log1p(z * z))
    return -(l1 + (mx.log(scale) + _LOG_PI))


@fused
def _cauchy_draw(u, loc, scale):
    return loc + scale * mx.tan(math.pi * (u - 0.5))


class Cauchy(LocationScale):
    """Cauchy(loc, scale)."""

    name = "cauchy"
    support = support.real
    params = ("loc", "scale")
    _score_guards = frozenset(params)
    noise = staticmethod(uniform01)
    draw = staticmethod(_cauchy_draw)
    lp = staticmethod(_cauchy_lp)

    def __init__(self, loc, scale):
        super().__init__(loc, scale)


# -- lognormal ------------------------------------------------------------------------------


@fused
def _lognormal_lp(x, mu, sigma):
    x = as_float(x)
    pos = x > 0
    lx = mx.log(mx.where(pos, x, 1.0))
    z = (lx - mu) / sigma
    return mx.where(pos, (-0.5 * z) * z - (lx + mx.log(sigma) + HALF_LOG_2PI), -mx.inf)


@fused
def _exp_affine(z, loc, scale):
    return mx.exp(loc + scale * z)


class LogNormal(LocationScale):
    """LogNormal(mu, sigma): log x ~ Normal(mu, sigma)."""

    name = "lognormal"
    support = support.positive
    params = ("mu", "sigma")
    _score_guards = frozenset(params)
    draw = staticmethod(_exp_affine)
    lp = staticmethod(_lognormal_lp)

    def __init__(self, mu, sigma):
        super().__init__(mu, sigma)


# -- Student-t ------------------------------------------------------------------------------


def _student_c_host(df: float, scale: float) -> float:
    h = 0.5 * df
    st = host.stirlerr
    return ((st(h + 0.5) - st(h)) - host.bd0(h, h + 0.5)) - host.HALF_LOG_2PI - math.log(scale)


_st_half_df_plus = fused(lambda df: stirlerr_raw(0.5 * df + 0.5))
_st_half_df = fused(lambda df: stirlerr_raw(0.5 * df))


@fused
def _student_c(df, scale, st1, st0):
    # R's dt(): lgamma((n+1)/2) - lgamma(n/2) - log(n pi)/2 in Loader's terms (exact for df up to 1e10)
    h = 0.5 * df
    return ((st1 - st0) - bd0_raw(h, h + 0.5)) - (HALF_LOG_2PI + mx.log(scale))


@fused
def _student_t_finish(x, df, loc, scale, c):
    t = (as_float(x) - loc) / scale
    at = mx.abs(t)
    huge = at > 1e18  # t^2 / df would overflow: log1p(t^2/df) = 2 log|t| - log df
    l1 = mx.where(huge, 2.0 * mx.log(at) - mx.log(df), mx.log1p(t * t / df))
    return c - (0.5 * (df + 1.0)) * l1


@fused
def _student_draw(z, logg, df, loc, scale):
    # t = z / sqrt(chi2_df / df) with chi2_df = 2 G, G ~ Gamma(df / 2)
    return loc + scale * (z * mx.exp(0.5 * (mx.log(df) - (logg + _LN2))))


class StudentT(Distribution):
    """Student-t with `df` degrees of freedom, location `loc`, scale `scale`."""

    name = "student_t"
    support = support.real

    def __init__(self, df, loc=0.0, scale=1.0):
        super().__init__()
        self.df = self._param("df", df, *POS)
        self.loc = self._param("loc", loc, *FINITE)
        self.scale = self._param("scale", scale, *POS)
        self._check_shapes(df=self.df, loc=self.loc, scale=self.scale)
        host_ok = self._invalid is None and isinstance(self.df, float) and isinstance(self.scale, float)
        self._c = _student_c_host(self.df, self.scale) if host_ok else None

    def _sample(self, key, shape):
        k1, k2 = mx.random.split(key)
        full = shape + batch_shape(self.df, self.loc, self.scale)
        z = std_normal(k1, full)
        logg = gamma_full(k2, self.df * 0.5, shape, full)
        return _student_draw(z, logg, self.df, self.loc, self.scale)

    def _log_prob(self, x):
        c = self._c if self._c is not None else _student_c(self.df, self.scale, _st_half_df_plus(self.df),
                                                            _st_half_df(self.df))
        return _student_t_finish(x, self.df, self.loc, self.scale, c)


normal = Normal
uniform = Uniform
exponential = Exponential
laplace = Laplace
cauchy = Cauchy
lognormal = LogNormal
student_t = StudentT
