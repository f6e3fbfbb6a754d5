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


def log_ndtr(x: float) -> float:
    """log Phi(x) in float64, accurate in the far lower tail (asymptotic series below -20)."""
    if x > -20.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    x2 = x * x
    series = 1.0 - 1.0 / x2 + 3.0 / x2 ** 2 - 15.0 / x2 ** 3 + 105.0 / x2 ** 4 - 945.0 / x2 ** 5
    return -0.5 * x2 - math.log(-x) - HALF_LOG_2PI + math.log(series)


def log1mexp(a: float) -> float:
    """log(1 - exp(-|a|))."""
    a = abs(a)
    return math.log(-math.expm1(-a)) if a < math.log(2.0) else math.log1p(-math.exp(-a))


def log_ndtr_diff(a: float, b: float) -> float:
    """log(Phi(b) - Phi(a)) for a < b (either may be infinite)."""
    if a > 0:
        a, b = -b, -a
    if b <= 0:
        lb, la = log_ndtr(b), log_ndtr(a) if math.isfinite(a) else -math.inf
        return lb + (log1mexp(la - lb) if math.isfinite(la) else 0.0)
    pa = math.exp(log_ndtr(a)) if math.isfinite(a) else 0.0
    pb = math.exp(log_ndtr(-b)) if math.isfinite(b) else 0.0
    return math.log1p(-(pa + pb))


def log_i0(x: float) -> float:
    """log I0(x) in float64 (power series below 15, asymptotic expansion above)."""
    x = abs(x)
    if x < 15.0:
        term, total, q = 1.0, 1.0, 0.25 * x * x
        for k in range(1, 200):
            term *= q / (k * k)
            total += term
            if term < 1e-17 * total:
                break
        return math.log(total)
    term, total = 1.0, 1.0
    for k in range(1, 40):
        nxt = term * (2 * k - 1) ** 2 / (k * 8.0 * x)
        if nxt > term:
            break
        term = nxt
        total += term
        if term < 1e-17:
            break
    return x - 0.5 * math.log(2.0 * math.pi * x) + math.log(total)
