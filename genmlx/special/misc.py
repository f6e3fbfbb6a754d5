"""log1mexp, xlogy, xlog1py, logsubexp (float32, fused)."""

from __future__ import annotations

import math

import mlx.core as mx

from .fuse import as_float, fused

__all__ = ["log1mexp", "xlogy", "xlog1py", "logsubexp", "log1mexp_raw", "xlogy_raw", "xlog1py_raw"]

_LN2 = math.log(2.0)


def log1mexp_raw(x):
    """log(1 - exp(-|x|)) (Maechler 2012: expm1 near 0, log1p beyond log 2)."""
    a = mx.abs(as_float(x))
    near = a < _LN2
    return mx.where(near, mx.log(-mx.expm1(-mx.where(near, a, 1.0))), mx.log1p(-mx.exp(-mx.maximum(a, _LN2))))


def xlogy_raw(x, y):
    """x * log(y), with 0 where x == 0 (also when y == 0)."""
    both = (x == 0) & (y == 0)
    return mx.where(both, 0.0, x * mx.log(mx.where(both, 1.0, y)))


def xlog1py_raw(x, y):
    """x * log1p(y), with 0 where x == 0 (also when y == -1)."""
    both = (x == 0) & (y == -1)
    return mx.where(both, 0.0, x * mx.log1p(mx.where(both, 0.0, y)))


@fused
def log1mexp(x):
    """log(1 - exp(-|x|)), accurate for small and large |x| (TFP's convention)."""
    return log1mexp_raw(x)


@fused
def xlogy(x, y):
    """x * log(y) with xlogy(0, y) = 0 (SciPy's convention)."""
    return xlogy_raw(as_float(x), as_float(y))


@fused
def xlog1py(x, y):
    """x * log1p(y) with xlog1py(0, y) = 0."""
    return xlog1py_raw(as_float(x), as_float(y))


@fused
def logsubexp(a, b):
    """log(exp(a) - exp(b)) for a >= b (-inf when a == b)."""
    a = as_float(a)
    b = as_float(b)
    return a + log1mexp_raw(b - a)
