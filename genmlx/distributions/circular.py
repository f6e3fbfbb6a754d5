"""Distributions on the circle: von_mises, wrapped_cauchy, wrapped_normal.

Densities are periodic: any real value is an angle (as in SciPy), and samples
are wrapped to [-pi, pi). `support.circular` lets gradient samplers move on
the whole line and report wrapped values.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..special import host
from ..special.bessel import i0e_raw
from ..special.fuse import as_float, fused
from . import support
from ._common import FINITE, HALF_LOG_2PI, LOG_2PI, uniform01
from .base import Distribution, batch_shape
from .location_scale import LocationScale
from .gamma_sampler import FAIL_PROB

__all__ = ["VonMises", "WrappedCauchy", "WrappedNormal", "von_mises", "wrapped_cauchy", "wrapped_normal",
           "VON_MISES_ROUNDS", "wrap_angle"]

_TWO_PI = 2.0 * math.pi
# Best-Fisher accepts a proposal with probability >= 0.656 for every kappa (their paper,
# checked in the tests): 15 rounds leave a lane unaccepted with probability <= 0.344^15 = 1.1e-7.
VON_MISES_REJECT = 0.344
VON_MISES_ROUNDS = int(math.ceil(math.log(FAIL_PROB) / math.log(VON_MISES_REJECT)))


def _wrap(x):
    return x - _TWO_PI * mx.floor((x + math.pi) * (1.0 / _TWO_PI))


wrap_angle = fused(_wrap)


# -- von Mises ---------------------------------------------------------------------------------


@fused
def _von_mises_log_norm(kappa):
    """log(2 pi I0(kappa)) - kappa = log(2 pi i0e(kappa))."""
    return LOG_2PI + mx.log(i0e_raw(kappa))


@fused
def _von_mises_lp(x, mu, kappa, log_norm):
    s = mx.sin(0.5 * (as_float(x) - mu))
    # kappa (cos t - 1) = -2 kappa sin^2(t/2): exact for small t at large kappa
    return (-2.0 * kappa) * (s * s) - log_norm


@fused
def _bf_params(kappa):
    """Best-Fisher envelope: rho = 2k / (r + sqrt(2r)), r = 1 + sqrt(1 + 4k^2); s = (1 + rho^2) / (2 rho).

    Written without cancellation at both ends: delta = s - 1 = (1 - rho)^2 / (2 rho).
    """
    k = mx.maximum(kappa, 1e-30)
    big_r = mx.sqrt(1.0 + 4.0 * k * k)
    r = 1.0 + big_r
    sq = mx.sqrt(2.0 * r)
    den = r + sq
    rho = 2.0 * k / den
    one_m_rho = ((1.0 + 1.0 / (big_r + 2.0 * k)) + sq) / den
    delta = one_m_rho * one_m_rho / (2.0 * rho)
    return delta


def _bf_theta(u, delta):  # noqa: D401
    """The proposal's angle acos(W) in [0, pi] and 1 - W, W = (1 + s z) / (s + z), z = cos(pi u)."""
    half = 0.5 * math.pi * u
    sh = mx.sin(half)
    ch = mx.cos(half)
    one_m_z = 2.0 * sh * sh  # 1 - cos(pi u)
    one_p_z = 2.0 * ch * ch  # 1 + cos(pi u)
    one_m_w = delta * one_m_z / (delta + one_p_z)  # 1 - W = (s - 1)(1 - z) / (s + z)
    w = 1.0 - one_m_w
    theta = mx.where(w > 0, 2.0 * mx.arcsin(mx.sqrt(0.5 * one_m_w)), mx.arccos(mx.clip(w, -1.0, 1.0)))
    return theta, one_m_w


@fused
def _bf_round(u, v, kappa, delta):
    """One proposal from u (its top bit the sign: an exact split of one uniform), v for the test.

    Returns the signed angle encoded as theta in [0, pi] (negative side) or 4 + theta
    (positive side) where accepted, -1 where rejected (see _vm_decode)."""
    pos = u >= 0.5
    uz = mx.where(pos, 2.0 * u - 1.0, 2.0 * u)
    theta, one_m_w = _bf_theta(uz, delta)
    y = kappa * (delta + one_m_w)
    acc = ((y * (2.0 - y) - v) > 0) | ((mx.log(y / v) + 1.0) - y >= 0)
    return mx.where(acc, mx.where(pos, 4.0 + theta, theta), -1.0)


@fused
def _bf_fallback(u, kappa, delta):
    pos = u >= 0.5
    theta = _bf_theta(mx.where(pos, 2.0 * u - 1.0, 2.0 * u), delta)[0]
    return mx.where(pos, 4.0 + theta, theta)


@fused
def _vm_decode(code, mu, kappa, uu):
    t = mx.where(code >= 4.0, code - 4.0, -code)
    t = mx.where(kappa < 1e-8, math.pi * (2.0 * uu - 1.0), t)
    return _wrap(mu + t)


class VonMises(Distribution):
    """von Mises(mu, kappa): density exp(kappa cos(x - mu)) / (2 pi I0(kappa))."""

    name = "von_mises"
    support = support.circular

    def __init__(self, mu, kappa):
        super().__init__()
        self.mu = self._param("mu", mu, *FINITE)
        self.kappa = self._param("kappa", kappa, lambda v: (v >= 0) & mx.isfinite(v) if isinstance(v, mx.array)
                                 else (v >= 0 and math.isfinite(v)), ">= 0 and finite")
        self._check_shapes(mu=self.mu, kappa=self.kappa)
        if isinstance(self.kappa, mx.array) and self.kappa.dtype in (mx.float16, mx.bfloat16):
            self.kappa = self.kappa.astype(mx.float32)  # the sampler's constants underflow in half precision (NaN at 0)
        host_ok = self._invalid is None and isinstance(self.kappa, float)
        self._log_norm = (LOG_2PI + host.log_i0(self.kappa) - self.kappa) if host_ok else None

    def _sample(self, key, shape):
        from .discrete_samplers import _rejection

        full = shape + batch_shape(self.mu, self.kappa)
        k1, k2 = mx.random.split(key)
        kappa = self.kappa
        delta = _bf_params(kappa)
        code = _rejection(k1, VON_MISES_ROUNDS, full, _bf_round, _bf_fallback, kappa, delta, reject=VON_MISES_REJECT)
        return _vm_decode(code, self.mu, kappa, uniform01(k2, full))

    def _log_prob(self, x):
        log_norm = self._log_norm if self._log_norm is not None else _von_mises_log_norm(self.kappa)
        return _von_mises_lp(x, self.mu, self.kappa, log_norm)


# -- wrapped Cauchy ----------------------------------------------------------------------------


@fused
def _wrapped_cauchy_lp(x, mu, rho):
    s = mx.sin(0.5 * (as_float(x) - mu))
    one_m = 1.0 - rho
    # 1 + rho^2 - 2 rho cos t = (1 - rho)^2 + 4 rho sin^2(t / 2)
    return (mx.log(one_m) + mx.log1p(rho)) - (LOG_2PI + mx.log(one_m * one_m + 4.0 * rho * (s * s)))


@fused
def _wrapped_cauchy_draw(u, mu, rho):
    c = (1.0 - rho) / (1.0 + rho)
    return _wrap(mu + 2.0 * mx.arctan(c * mx.tan(math.pi * (u - 0.5))))


class WrappedCauchy(Distribution):
    """Wrapped Cauchy(mu, rho), 0 <= rho < 1 (rho = exp(-scale) of the unwrapped Cauchy)."""

    name = "wrapped_cauchy"
    support = support.circular

    def __init__(self, mu, rho):
        super().__init__()
        self.mu = self._param("mu", mu, *FINITE)
        self.rho = self._param("rho", rho, lambda v: (v >= 0) & (v < 1) if isinstance(v, mx.array) else 0 <= v < 1,
                               "in [0, 1)")
        self._check_shapes(mu=self.mu, rho=self.rho)

    def _sample(self, key, shape):
        return _wrapped_cauchy_draw(uniform01(key, shape + batch_shape(self.mu, self.rho)), self.mu, self.rho)

    def _log_prob(self, x):
        return _wrapped_cauchy_lp(x, self.mu, self.rho)


# -- wrapped normal ----------------------------------------------------------------------------


def _wn_direct(t, sigma):
    """sigma < 1.5: the images k = -3..3 of N(t; 0, sigma), relative to the k = 0 term."""
    inv = 0.5 / (sigma * sigma)
    acc = None
    for k in (1, 2, 3):
        c = _TWO_PI * k
        term = mx.exp(-(c * (c + 2.0 * t)) * inv) + mx.exp(-(c * (c - 2.0 * t)) * inv)
        acc = term if acc is None else acc + term
    return (-(t * t) * inv + mx.log1p(acc)) - (mx.log(sigma) + HALF_LOG_2PI)


def _wn_fourier(t, sigma):
    """sigma >= 1.5: (1 + 2 sum_n q^(n^2) cos(n t)) / (2 pi), q = exp(-sigma^2 / 2), n <= 4."""
    h = -0.5 * sigma * sigma
    four = 2.0 * ((mx.exp(h) * mx.cos(t) + mx.exp(4.0 * h) * mx.cos(2.0 * t))
                  + (mx.exp(9.0 * h) * mx.cos(3.0 * t) + mx.exp(16.0 * h) * mx.cos(4.0 * t)))
    return mx.log1p(four) - LOG_2PI


@fused
def _wrapped_normal_direct(x, mu, sigma):
    return _wn_direct(_wrap(as_float(x) - mu), sigma)


@fused
def _wrapped_normal_fourier(x, mu, sigma):
    return _wn_fourier(_wrap(as_float(x) - mu), sigma)


@fused
def _wrapped_normal_pick(sigma, direct, fourier):
    return mx.where(sigma < 1.5, direct, fourier)


def _wrapped_normal_lp(x, mu, sigma):
    if isinstance(sigma, float):  # the branch is known on the host
        return (_wrapped_normal_direct if sigma < 1.5 else _wrapped_normal_fourier)(x, mu, sigma)
    return _wrapped_normal_pick(sigma, _wrapped_normal_direct(x, mu, sigma), _wrapped_normal_fourier(x, mu, sigma))


@fused
def _wrapped_normal_draw(z, mu, sigma):
    return _wrap(mu + sigma * z)


class WrappedNormal(LocationScale):
    """Wrapped normal(mu, sigma): a Normal(mu, sigma) angle wrapped to [-pi, pi)."""

    name = "wrapped_normal"
    support = support.circular
    params = ("mu", "sigma")
    draw = staticmethod(_wrapped_normal_draw)
    lp = staticmethod(_wrapped_normal_lp)

    def __init__(self, mu, sigma):
        super().__init__(mu, sigma)


von_mises = VonMises
wrapped_cauchy = WrappedCauchy
wrapped_normal = WrappedNormal
