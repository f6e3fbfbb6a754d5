"""normal, bernoulli, uniform, beta (first versions; the distributions issue rewrites them fused)."""

from __future__ import annotations

import math

import mlx.core as mx

from ..special import lgamma
from . import support
from .base import Distribution

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_NEG_INF = float("-inf")


class Normal(Distribution):
    name = "normal"
    support = support.real

    def __init__(self, mu, sigma):
        super().__init__()
        self.mu = self._param("mu", mu)
        self.sigma = self._param("sigma", sigma, lambda s: s > 0, "> 0")

    def _sample(self, key, shape):
        shp = shape + tuple(mx.broadcast_shapes(_shape(self.mu), _shape(self.sigma)))
        return self.mu + self.sigma * mx.random.normal(shp, key=key)

    def _log_prob(self, x):
        z = (x - self.mu) / self.sigma
        return -0.5 * z * z - (math.log(self.sigma) if isinstance(self.sigma, float) else mx.log(self.sigma)) - _LOG_SQRT_2PI


class Bernoulli(Distribution):
    name = "bernoulli"
    support = support.boolean

    def __init__(self, p):
        super().__init__()
        self.p = self._param("p", p, lambda p: (p >= 0) & (p <= 1) if isinstance(p, mx.array) else 0 <= p <= 1, "in [0, 1]")

    def _sample(self, key, shape):
        return (mx.random.uniform(shape=shape + _shape(self.p), key=key) < self.p).astype(mx.int32)

    def _log_prob(self, x):
        p = self.p
        lp = mx.where(x == 1, mx.log(mx.array(p)), mx.log1p(-mx.array(p)))
        return mx.where((x == 0) | (x == 1), lp, _NEG_INF)


class Uniform(Distribution):
    name = "uniform"
    support = support.real

    def __init__(self, low, high):
        super().__init__()
        self.low = self._param("low", low)
        self.high = self._param("high", high)
        if isinstance(self.low, float) and isinstance(self.high, float) and not self.low < self.high:
            self._fail(ValueError(f"uniform: parameter high must be > low, got low={low}, high={high}"))
        self.support = support.interval(self.low, self.high) if isinstance(self.low, float) and isinstance(self.high, float) else support.real

    def _sample(self, key, shape):
        shp = shape + tuple(mx.broadcast_shapes(_shape(self.low), _shape(self.high)))
        return mx.random.uniform(self.low, self.high, shp, key=key)

    def _log_prob(self, x):
        inside = (x >= self.low) & (x <= self.high)
        return mx.where(inside, -mx.log(mx.array(self.high - self.low)), _NEG_INF)


class Beta(Distribution):
    name = "beta"
    support = support.unit_interval

    def __init__(self, a, b):
        super().__init__()
        self.a = self._param("alpha", a, lambda v: v > 0, "> 0")
        self.b = self._param("beta", b, lambda v: v > 0, "> 0")

    def _sample(self, key, shape):
        k1, k2 = mx.random.split(key)
        shp = shape + tuple(mx.broadcast_shapes(_shape(self.a), _shape(self.b)))
        x = mx.random.gamma(self.a, shp, key=k1) if hasattr(mx.random, "gamma") else _gamma(self.a, shp, k1)
        y = mx.random.gamma(self.b, shp, key=k2) if hasattr(mx.random, "gamma") else _gamma(self.b, shp, k2)
        return x / (x + y)

    def _log_prob(self, x):
        a, b = self.a, self.b
        lb = lgamma(mx.array(a)) + lgamma(mx.array(b)) - lgamma(mx.array(a + b))
        inside = (x >= 0) & (x <= 1)
        lp = (a - 1) * mx.log(x) + (b - 1) * mx.log1p(-x) - lb
        return mx.where(inside, lp, _NEG_INF)


def _gamma(alpha, shape, key, rounds: int = 8):
    """Marsaglia-Tsang with a fixed number of rounds (placeholder)."""
    alpha = mx.array(alpha)
    boost = alpha < 1
    a = mx.where(boost, alpha + 1, alpha)
    d = a - 1.0 / 3
    c = 1.0 / mx.sqrt(9 * d)
    keys = mx.random.split(key, 2 * rounds + 1)
    out = mx.zeros(shape)
    done = mx.zeros(shape, dtype=mx.bool_)
    for r in range(rounds):
        z = mx.random.normal(shape, key=keys[2 * r])
        u = mx.random.uniform(shape=shape, key=keys[2 * r + 1])
        v = (1 + c * z) ** 3
        ok = (v > 0) & (mx.log(u) < 0.5 * z * z + d - d * v + d * mx.log(mx.maximum(v, 1e-30)))
        out = mx.where(~done & ok, d * v, out)
        done = done | ok
    u = mx.random.uniform(shape=shape, key=keys[-1])
    return mx.where(boost, out * u ** (1 / alpha), out)


def _shape(p) -> tuple:
    return tuple(p.shape) if isinstance(p, mx.array) else ()


normal = Normal
bernoulli = Bernoulli
uniform = Uniform
beta = Beta
