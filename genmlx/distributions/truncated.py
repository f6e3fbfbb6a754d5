"""truncated_normal(mu, sigma, lo, hi): a normal restricted to [lo, hi] (either end may be infinite).

log Z = log(Phi(b) - Phi(a)) is computed in the lower tail (an interval above the mean
is mirrored), from log erfc, so intervals 40 standard deviations out keep full
precision; the density is written -(z - r)(z + r)/2 - (log Z + r^2/2), r the
standardized point of [a, b] nearest 0, so the two huge terms of a far-tail interval
never cancel in float32. Sampling is the inverse CDF in log space.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..special import host
from ..special.fuse import as_float, fused
from ..special.misc import log1mexp_raw
from ..special.normal import log_erfc_pos, log_ndtr_raw, ndtri_exp_raw
from . import support
from ._common import FINITE, HALF_LOG_2PI, POS, uniform01
from .base import Distribution, batch_shape

__all__ = ["TruncatedNormal", "truncated_normal"]

_LN2 = math.log(2.0)
_SQRT1_2 = math.sqrt(0.5)


# -- truncated normal -------------------------------------------------------------------------


def _log_ndtr_diff(a, b):
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails."""
    upper = a > 0  # both in the upper tail: use Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    lo = mx.where(upper, -b, a)
    hi = mx.where(upper, -a, b)
    l_lo = log_ndtr_raw(lo)
    l_hi = log_ndtr_raw(hi)
    tail = l_hi + log1mexp_raw(l_lo - l_hi)
    # a < 0 < b: 1 - Phi(a) - Phi(-b)
    mid = mx.log1p(-(mx.exp(log_ndtr_raw(a)) + mx.exp(log_ndtr_raw(-b))))
    return mx.where(upper | (b <= 0), tail, mid)


def _tn_ends(mu, sigma, lo, hi):
    """Standardized ends, mirrored into the lower half when [lo, hi] lies above the mean."""
    a = (lo - mu) / sigma
    b = (hi - mu) / sigma
    up = a > 0
    return mx.where(up, -b, a), mx.where(up, -a, b)


_tn_lo_end = fused(lambda mu, sigma, lo, hi: _tn_ends(mu, sigma, lo, hi)[0])
_tn_hi_end = fused(lambda mu, sigma, lo, hi: _tn_ends(mu, sigma, lo, hi)[1])


@fused
def _log_erfc_signed(x):
    return log_erfc_pos(mx.abs(x) * _SQRT1_2)


@fused
def _tn_log_phi_hi(bb, e_hi):
    """log Phi(bb) from e_hi = log erfc(|bb| / sqrt 2)."""
    return mx.where(bb <= 0, e_hi - _LN2, mx.log1p(-0.5 * mx.exp(e_hi)))


@fused
def _truncnorm_k(mu, sigma, lo, hi, bb, e_lo, e_hi, l_hi):
    """log Z + r^2 / 2, r = the standardized point of [a, b] nearest 0 (see _truncnorm_lp).

    The ends are mirrored into aa <= bb with aa <= 0 (see _tn_ends); e_* = log erfc(|end| / sqrt 2).
    Z = Phi(bb) - Phi(aa) in the lower tail (bb <= 0), else 1 - Phi(aa) - Phi(-bb).
    """
    d = (e_lo - _LN2) - l_hi  # log Phi(aa) - log Phi(bb) <= 0
    near = d > -_LN2
    tail = l_hi + mx.where(near, mx.log(-mx.expm1(mx.minimum(d, -1e-30))), mx.log1p(-mx.exp(mx.minimum(d, -_LN2))))
    mid = mx.log1p(-0.5 * (mx.exp(e_lo) + mx.exp(e_hi)))
    r = mx.minimum(mx.maximum((lo - mu) / sigma, 0.0), (hi - mu) / sigma)
    return mx.where(bb <= 0, tail, mid) + 0.5 * r * r


@fused
def _truncnorm_lp(x, mu, sigma, lo, hi, k):
    # -z^2/2 - log Z = -(z - r)(z + r)/2 - (log Z + r^2/2): no cancellation of two huge terms
    # when [lo, hi] lies far in a tail (log Z ~ -r^2/2 there)
    x = as_float(x)
    z = (x - mu) / sigma
    r = mx.minimum(mx.maximum((lo - mu) / sigma, 0.0), (hi - mu) / sigma)
    lp = (-0.5 * (z - r)) * (z + r) - ((mx.log(sigma) + HALF_LOG_2PI) + k)
    return mx.where((x >= lo) & (x <= hi), lp, -mx.inf)


def _truncnorm_k_host(mu, sigma, lo, hi) -> float:
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    r = min(max(0.0, a), b)
    return host.log_ndtr_diff(a, b) + 0.5 * r * r


@fused
def _truncnorm_draw(u, mu, sigma, lo, hi):
    a = (lo - mu) / sigma
    b = (hi - mu) / sigma
    flip = a > 0  # sample the mirrored problem in the lower tail, where log Phi is exact
    aa = mx.where(flip, -b, a)
    bb = mx.where(flip, -a, b)
    la = log_ndtr_raw(aa)
    lz = _log_ndtr_diff(aa, bb)
    # inverse CDF in log space: Phi(x) = Phi(aa) + u (Phi(bb) - Phi(aa))
    lp = mx.logaddexp(la, mx.log(u) + lz)
    x = ndtri_exp_raw(mx.minimum(lp, 0.0))
    x = mx.clip(x, aa, bb)
    x = mx.where(flip, -x, x)
    return mu + sigma * x


class TruncatedNormal(Distribution):
    """Normal(mu, sigma) restricted to [lo, hi] (either end may be infinite)."""

    name = "truncated_normal"

    def __init__(self, mu, sigma, lo, hi):
        super().__init__()
        self.mu = self._param("mu", mu, *FINITE)
        self.sigma = self._param("sigma", sigma, *POS)
        self.lo = self._param("lo", lo, lambda v: v == v, "a number")
        self.hi = self._param("hi", hi, lambda v: v == v, "a number")
        self._check_shapes(mu=self.mu, sigma=self.sigma, lo=self.lo, hi=self.hi)
        if isinstance(self.lo, float) and isinstance(self.hi, float):
            if not self.lo < self.hi:
                self._fail(ValueError(f"truncated_normal: parameter hi must be > lo, got lo={lo!r}, hi={hi!r}"))
        else:
            self._lazy_checks.append(("hi", "> lo", mx.array(self.hi) - self.lo, lambda d: d > 0))
        self.support = support.interval(self.lo, self.hi)
        ps = (self.mu, self.sigma, self.lo, self.hi)
        host_ok = self._invalid is None and all(isinstance(v, float) for v in ps)
        self._k = _truncnorm_k_host(*ps) if host_ok else None

    def _sample(self, key, shape):
        u = uniform01(key, shape + batch_shape(self.mu, self.sigma, self.lo, self.hi))
        return _truncnorm_draw(u, self.mu, self.sigma, self.lo, self.hi)

    def _log_prob(self, x):
        if self._k is not None:
            k = self._k
        else:
            ps = (self.mu, self.sigma, self.lo, self.hi)
            bb = _tn_hi_end(*ps)
            e_hi = _log_erfc_signed(bb)
            k = _truncnorm_k(*ps, bb, _log_erfc_signed(_tn_lo_end(*ps)), e_hi, _tn_log_phi_hi(bb, e_hi))
        return _truncnorm_lp(x, self.mu, self.sigma, self.lo, self.hi, k)


truncated_normal = TruncatedNormal
