"""Vectorized Marsaglia-Tsang gamma sampling: fixed rounds, fused, in log space.

Marsaglia & Tsang (2000) draw Gamma(a), a >= 1, by proposing d (1 + c z)^3
with z ~ N(0, 1), d = a - 1/3, c = 1/sqrt(9 d), and accepting when
log u < z^2/2 + d - d v + d log v (u ~ U(0, 1), v = (1 + c z)^3 > 0). Shapes
below 2 are boosted: Gamma(a) = Gamma(a + 1) U^(1/a), applied once for
1 <= a < 2 and twice for a < 1, so every proposal runs at a shape >= 2, where
one round rejects with probability at most 0.0184 (the rejection rate falls
like 0.037 / a; computed by quadrature, and checked in the tests).

Rounds are fixed (`rounds_for`): enough that a lane rejects in every round
with probability <= `FAIL_PROB` (2e-7), four rounds at most. A lane that
rejects in every round takes the last proposal (an approximate Gamma draw),
so the sampler's total-variation bias is at most that failure probability;
`log_gamma_draw(..., with_ok=True)` reports the lanes, and `exact=True` on a
distribution's `sample` redraws them (one counted sync per extra round).

Speed: one `RandomBits` call supplies every uniform (2 per round, plus one for
a double boost: the accepted round's uniform is recycled as the first boost
uniform, since u / min(1, e^L) is U(0, 1) given acceptance and independent of
the accepted value); normals come from Giles' erfinv polynomial inside the
fused kernel instead of MLX's slower `erfinv`; results stay in log space, so
Beta and Dirichlet draws with shapes like 1e-3 neither underflow nor divide
0 by 0.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..special.normal import std_normal_from_uniform
from .base import shape_of

__all__ = ["FAIL_PROB", "rounds_for", "reject_prob_bound", "log_gamma_draw", "gamma_full", "open_uniform"]

FAIL_PROB = 2e-7
MAX_ROUNDS = 4
_THIRD = 1.0 / 3.0


def reject_prob_bound(a: float) -> float:
    """Upper bound of one Marsaglia-Tsang round's rejection probability at shape a >= 2."""
    return 0.037 / a


def rounds_for(a: float | None) -> int:
    """Rounds giving per-lane failure <= FAIL_PROB at (boosted) shape a; None: the worst case."""
    if a is None:
        return MAX_ROUNDS
    q = reject_prob_bound(max(a, 2.0))
    k = 1
    while q ** k > FAIL_PROB:
        k += 1
    return max(2, min(k, MAX_ROUNDS))


def open_uniform(u):
    """Map [0, 1) uniforms to (0, 1) (so log u and 1 - u are finite)."""
    return u * (1.0 - 2.0 ** -24) + 2.0 ** -25


@mx.compile
def _uniforms(key, shape):
    return open_uniform(mx.random.uniform(shape=shape, key=key))  # bits + one fused conversion


_normals = mx.compile(std_normal_from_uniform)


@mx.compile
def _prep(a, boost):
    lvl = mx.where(a < 1.0, 2.0, mx.where(a < 2.0, 1.0, 0.0)) if boost < 0 else boost
    d = (a + lvl) - _THIRD
    return d, mx.rsqrt(9.0 * d)


@mx.compile
def _accept(z, u, d, c):
    """Per round: log u < z^2/2 + d - d v + d log v with v = (1 + c z)^3 > 0; returns L - log u."""
    v = 1.0 + c * z
    pos = v > 0
    lv = 3.0 * mx.log(mx.where(pos, v, 1.0))
    margin = ((0.5 * z * z + d) - (d * (v * v * v) - d * lv)) - mx.log(u)
    return mx.where(pos, margin, -mx.inf)


@mx.compile
def _finish(z, margin, ub, a, d, c, boost):
    """log(d v) of the chosen round, times the boost factors U^(1/a) (in log space)."""
    v = 1.0 + c * z
    logg = mx.log(d) + 3.0 * mx.log(mx.where(v > 0, v, 1.0))
    if boost == 0:
        return logg
    # the accepted round's uniform, rescaled: log u - L = -margin, U(0, 1) given acceptance
    lu1 = mx.minimum(-margin, 0.0)
    lu2 = mx.log(ub)
    if boost == 1:
        return logg + lu1 / a
    if boost == 2:
        return logg + (lu1 / (a + 1.0) + lu2 / a)
    lvl = mx.where(a < 1.0, 2.0, mx.where(a < 2.0, 1.0, 0.0))
    one = lu1 / mx.where(lvl == 2.0, a + 1.0, a)
    return logg + (mx.where(lvl > 0, one, 0.0) + mx.where(lvl == 2.0, lu2 / a, 0.0))


def _draw(key, a, shape, rounds, boost):
    k = rounds
    n_u = 2 * k + (1 if boost in (-1, 2) else 0)
    u = _uniforms(key, (n_u,) + tuple(shape))
    d, c = _prep(a, boost)
    z = _normals(u[:k])
    margin = _accept(z, u[k:2 * k], d, c)  # > 0: the round accepts
    acc = margin > 0
    if k > 1:
        first = mx.argmax(acc, axis=0, keepdims=True)
        ok = mx.any(acc, axis=0)
        # a lane rejected in every round takes the last proposal (see FAIL_PROB)
        pick = mx.where(ok[None], first, k - 1)
        z1 = mx.take_along_axis(z, pick, axis=0)[0]
        m1 = mx.take_along_axis(margin, pick, axis=0)[0]
    else:
        ok, z1, m1 = acc[0], z[0], margin[0]
    ub = u[n_u - 1] if n_u > 2 * k else u[0]
    return _finish(z1, m1, ub, a, d, c, boost), ok


def log_gamma_draw(key, a, shape: tuple = (), *, rounds: int | None = None, with_ok: bool = False):
    """log of Gamma(a, rate 1) draws of shape `shape + a.shape` (a > 0; float or array).

    Python-number shapes choose the boost and the rounds on the host; arrays
    take the general kernel (boost decided per lane, `MAX_ROUNDS` rounds).
    With `with_ok`, also returns a bool array: False marks a fallback lane.
    """
    if isinstance(a, mx.array):
        boost = -1
        k = rounds or MAX_ROUNDS
        arr = a if mx.issubdtype(a.dtype, mx.floating) else a.astype(mx.float32)
    else:
        a = float(a)
        boost = 2 if a < 1.0 else (1 if a < 2.0 else 0)
        k = rounds or rounds_for(a + boost)
        arr = mx.array(a, dtype=mx.float32)
    full = tuple(shape) + shape_of(a)
    logg, ok = _draw(key, arr, full, k, boost)
    return (logg, ok) if with_ok else logg


def gamma_full(key, a, shape: tuple, full: tuple) -> mx.array:
    """log Gamma(a) draws of exactly `full` = shape + batch shape (a broadcast to the batch)."""
    if isinstance(a, mx.array):
        batch = full[len(shape):]
        if tuple(a.shape) != batch:
            a = mx.broadcast_to(a, batch)
        return log_gamma_draw(key, a, shape)
    return log_gamma_draw(key, a, full)


def rejection_rate(a: float, n: int = 1_000_000, key=None) -> float:
    """Empirical one-round rejection rate at shape a (for tests and docs)."""
    key = mx.random.key(0) if key is None else key
    _, ok = log_gamma_draw(key, float(a), (n,), rounds=1, with_ok=True)
    return 1.0 - mx.mean(ok.astype(mx.float32)).item()
