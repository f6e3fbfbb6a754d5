"""The same special functions in float64 on the host, for Python-number parameters.

A distribution built from Python numbers (`dist.beta(2.0, 3.0)`) computes its
parameter-only terms (log B(a, b), stirlerr(n), ...) here once, at
construction, and passes them to its fused log-density kernel as constants:
more accurate than float32, and no graph nodes at all.
"""

from __future__ import annotations

import math

__all__ = ["lgamma", "stirlerr", "bd0", "lbeta", "HALF_LOG_2PI", "LOG_2PI"]

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_2PI = math.log(2.0 * math.pi)


def lgamma(x: float) -> float:
    return math.lgamma(x)


def stirlerr(n: float) -> float:
    """lgamma(n+1) - (n+1/2) log n + n - log sqrt(2 pi) (n > 0)."""
    if n <= 15.0:
        return math.lgamma(n + 1.0) - (n + 0.5) * math.log(n) + n - HALF_LOG_2PI
    nn = n * n
    return (1.0 / 12 - (1.0 / 360 - (1.0 / 1260 - (1.0 / 1680) / nn) / nn) / nn) / n


def bd0(x: float, m: float) -> float:
    """x log(x/m) + m - x, accurate when x is close to m."""
    if x == 0.0:
        return m
    if m == 0.0:
        return math.inf
    v = (x - m) / m
    if abs(v) < 0.5:
        return x * math.log1p(v) - (x - m)
    return x * (math.log(x) - math.log(m)) + m - x


def lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
