"""Normal CDF and its inverse in float32: ndtr, log_ndtr, ndtri (fused).

MLX has `erf` but no `erfc`: `1 + erf(x)` loses every digit below x = -4.
`log_ndtr` uses Numerical Recipes' Chebyshev fit of erfc (fractional error
< 1.2e-7 for all arguments) written directly in log space, so log Phi(x) is
accurate down to x = -1e18 and the normal tail never underflows to -inf early.
`ndtri` is Giles' single-precision erfinv ("Approximating the erfinv
function", 2010) evaluated from p and 1 - p separately (no 2p - 1 rounding in
the tails), and below p = 1e-5 Abramowitz & Stegun 26.2.23 refined by one Newton step on log Phi.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .fuse import as_float, fused

__all__ = ["ndtr", "log_ndtr", "ndtri", "ndtri_exp", "log_erfc_pos", "log_ndtr_raw", "ndtri_raw", "ndtri_exp_raw",
           "std_normal_from_uniform"]

_SQRT1_2 = math.sqrt(0.5)
_SQRT2 = math.sqrt(2.0)
_LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
         0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)
_CENTRAL = (1.50140941, 0.246640727, -0.00417768164, -0.00125372503, 0.00021858087,
            -4.39150654e-06, -3.5233877e-06, 3.43273939e-07, 2.81022636e-08)
_TAIL = (2.83297682, 1.00167406, 0.00943887047, -0.0076224613, 0.00573950773,
         -0.00367342844, 0.00134934322, 0.000100950558, -0.000200214257)


def _poly10(c, t):
    t2 = t * t
    t4 = t2 * t2
    lo = (c[0] + c[1] * t) + t2 * (c[2] + c[3] * t)
    mid = (c[4] + c[5] * t) + t2 * (c[6] + c[7] * t)
    return (lo + t4 * mid) + (t4 * t4) * (c[8] + c[9] * t)


def _poly9(c, w):
    w2 = w * w
    w4 = w2 * w2
    lo = (c[0] + c[1] * w) + w2 * (c[2] + c[3] * w)
    hi = (c[4] + c[5] * w) + w2 * (c[6] + c[7] * w)
    return (lo + w4 * hi) + (w4 * w4) * c[8]


def log_erfc_pos(z):
    """log(erfc(z)) for z >= 0 (fractional error of erfc < 1.2e-7)."""
    return _log_erfc_half(0.5 * z)


def _log_erfc_half(u):
    """log(erfc(2u)) for u >= 0 (Numerical Recipes' erfcc with t = 1 / (1 + u))."""
    t = 1.0 / (1.0 + u)
    return (mx.log(t) - 4.0 * (u * u)) + _poly10(_ERFC, t)


def log_ndtr_raw(x):
    """log Phi(x)."""
    x = as_float(x)
    neg = x < 0
    le = _log_erfc_half(x * mx.where(neg, -0.5 * _SQRT1_2, 0.5 * _SQRT1_2))  # not abs(): its derivative at 0 is 0
    return mx.where(neg, le - _LN2, mx.log1p(-0.5 * mx.exp(le)))


def std_normal_from_uniform(u):
    """Standard normal quantile of u in (0, 1) (Giles' erfinv; relative error ~4e-7)."""
    w = -mx.log(4.0 * u * (1.0 - u))
    central = w < 5.0
    pc = _poly9(_CENTRAL, mx.minimum(w, 5.0) - 2.5)
    pt = _poly9(_TAIL, mx.sqrt(mx.maximum(w, 5.0)) - 3.0)
    return (_SQRT2 * (2.0 * u - 1.0)) * mx.where(central, pc, pt)


def ndtri_raw(p):
    """Phi^{-1}(p): Giles' approximation, refined by one Newton step in log space below 1e-5."""
    p = as_float(p)
    lower = p < 0.5
    q = mx.where(lower, p, 1.0 - p)  # the smaller tail, exact for p >= 0.5
    x0 = std_normal_from_uniform(q)  # <= 0
    tiny = q < 1e-5
    # Abramowitz & Stegun 26.2.23 (error < 4.5e-4) as the start of the tail's Newton step
    t = mx.sqrt(-2.0 * mx.log(mx.where(tiny, q, 1e-5)))
    xs = -(t - (2.515517 + t * (0.802853 + 0.010328 * t)) / (1.0 + t * (1.432788 + t * (0.189269 + 0.001308 * t))))
    # Newton on f(x) = log Phi(x) - log q: f'(x) = phi(x) / Phi(x)
    lphi = log_ndtr_raw(xs)
    step = (lphi - mx.log(mx.where(tiny, q, 1e-5))) * mx.exp(lphi + 0.5 * xs * xs + _HALF_LOG_2PI)
    x = mx.where(tiny, xs - step, x0)
    x = mx.where(q == 0, -mx.inf, x)
    return mx.where(lower, x, -x)


def ndtri_exp_raw(lp):
    """Phi^{-1}(exp(lp)) for lp <= 0, accurate when exp(lp) underflows (lp down to -1e30)."""
    lp = as_float(lp)
    upper = lp > -_LN2  # p > 1/2: work with the upper tail q = 1 - p = -expm1(lp)
    q = mx.where(upper, -mx.expm1(mx.where(upper, lp, -1.0)), mx.exp(mx.where(upper, -1.0, lp)))
    lq = mx.where(upper, mx.log(q), lp)
    tiny = lq < -11.5  # q < 1e-5
    x0 = std_normal_from_uniform(mx.where(tiny, 1e-5, q))
    t = mx.sqrt(-2.0 * mx.where(tiny, lq, -11.5))
    xs = -(t - (2.515517 + t * (0.802853 + 0.010328 * t)) / (1.0 + t * (1.432788 + t * (0.189269 + 0.001308 * t))))
    lphi = log_ndtr_raw(xs)
    step = (lphi - lq) * mx.exp(lphi + 0.5 * xs * xs + _HALF_LOG_2PI)
    x = mx.where(tiny, xs - step, x0)
    x = mx.where(upper, -x, x)
    return mx.where(lp >= 0, mx.inf, x)


@fused
def _log_erfc_abs(x):
    """log erfc(|x| / sqrt 2), differentiable at 0 from the right (abs() would give 0 there)."""
    x = as_float(x)
    return _log_erfc_half(x * mx.where(x < 0, -0.5 * _SQRT1_2, 0.5 * _SQRT1_2))


@fused
def _ndtr_finish(x, le):
    e = mx.exp(le)
    return mx.where(as_float(x) < 0, 0.5 * e, 1.0 - 0.5 * e)


@fused
def _log_ndtr_finish(x, le):
    return mx.where(as_float(x) < 0, le - _LN2, mx.log1p(-0.5 * mx.exp(le)))


def ndtr(x):
    """Standard normal CDF Phi(x). Two fused kernels."""
    return _ndtr_finish(x, _log_erfc_abs(x))


def log_ndtr(x):
    """log Phi(x), accurate in both tails. Two fused kernels."""
    return _log_ndtr_finish(x, _log_erfc_abs(x))


@fused
def ndtri(p):
    """Inverse standard normal CDF (-inf at 0, +inf at 1)."""
    return ndtri_raw(p)


@fused
def ndtri_exp(lp):
    """Inverse normal CDF of exp(lp) (for log-probabilities far below float32's range)."""
    return ndtri_exp_raw(lp)
