"""Special functions MLX 0.32 lacks (lgamma, ...). Placeholder Lanczos version; see the distributions issue."""

from __future__ import annotations

import math

import mlx.core as mx

__all__ = ["lgamma"]

_G = 7
_C = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
      -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
      1.5056327351493116e-7]


def lgamma(x):
    """log|Gamma(x)| for x > 0 (Lanczos, g=7)."""
    x = mx.array(x) if not isinstance(x, mx.array) else x
    x = x - 1.0
    a = _C[0]
    t = x + _G + 0.5
    for i in range(1, _G + 2):
        a = a + _C[i] / (x + i)
    return 0.5 * math.log(2 * math.pi) + (x + 0.5) * mx.log(t) - t + mx.log(a)
