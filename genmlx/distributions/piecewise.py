"""piecewise_uniform(bounds, probs): a histogram density on the real line (Gen.jl's `piecewise_uniform`).

There are K bins: `bounds` holds K + 1 strictly increasing finite edges and
`probs` the K bin probabilities (non-negative, summing to 1). As in Gen.jl, the
density at x is `probs[i] / (bounds[i+1] - bounds[i])` where
`bounds[i] < x <= bounds[i+1]`, and 0 (log density -inf) where
`x <= bounds[0]` or `x >= bounds[K]`.

Python lists / NumPy parameters are validated at construction and the K log
densities are computed once on the host in float64 (constants, no graph
node); `mx.array` parameters are checked lazily (`DeferredCheck`s).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .. import rng
from . import support
from .base import Distribution

__all__ = ["PiecewiseUniform", "piecewise_uniform"]

_SUM_TOL = 1e-5  # |sum(probs) - 1| allowed, per bin (float32 probabilities that sum to 1)
_HALF_ULP = 2.0 ** -25  # shifts a [0, 1) float32 draw into (0, 1): a sample never sits on an edge


def _host(dist, name, value):
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        dist._fail(ValueError(f"piecewise_uniform: parameter {name} must be a vector of numbers, got {value!r}"))
        return None
    return arr


def _bounds_ok(b):
    d = b[1:] - b[:-1]
    return mx.all(d > 0) & mx.all(mx.isfinite(b))


def _probs_ok(p):
    return mx.all(p >= 0) & mx.all(mx.isfinite(p)) & (mx.abs(mx.sum(p) - 1.0) <= _SUM_TOL * p.shape[-1])


class PiecewiseUniform(Distribution):
    """Piecewise-uniform density with edges `bounds` (K + 1) and bin probabilities `probs` (K)."""

    name = "piecewise_uniform"
    support = support.real

    def __init__(self, bounds, probs):
        super().__init__()
        b = bounds if isinstance(bounds, mx.array) else _host(self, "bounds", bounds)
        p = probs if isinstance(probs, mx.array) else _host(self, "probs", probs)
        self._table = self._edges = None
        if b is None or p is None:
            self.bounds, self.probs = mx.array([0.0, 1.0]), mx.array([1.0])
            return
        if b.ndim != 1 or b.shape[0] < 2:
            self._fail(ValueError(f"piecewise_uniform: parameter bounds must be a vector of at least 2 edges, "
                                  f"got shape {tuple(b.shape)}"))
        elif p.ndim != 1 or p.shape[0] != b.shape[0] - 1:
            self._fail(ValueError(f"piecewise_uniform: parameter probs must have one entry per bin "
                                  f"(len(bounds) - 1 = {b.shape[0] - 1}), got shape {tuple(p.shape)}"))
        host = isinstance(b, np.ndarray) and isinstance(p, np.ndarray)
        if self._invalid is None:
            if isinstance(b, np.ndarray) and not (np.all(np.isfinite(b)) and np.all(np.diff(b) > 0)):
                self._fail(ValueError(f"piecewise_uniform: parameter bounds must be finite and strictly increasing, "
                                      f"got {bounds!r}"))
            elif isinstance(p, np.ndarray) and not (np.all(np.isfinite(p)) and np.all(p >= 0)
                                                    and abs(float(np.sum(p)) - 1.0) <= _SUM_TOL * p.shape[0]):
                self._fail(ValueError(f"piecewise_uniform: parameter probs must be finite, >= 0 and sum to 1, "
                                      f"got {probs!r}"))
        if self._invalid is not None:
            self.bounds, self.probs = mx.array([0.0, 1.0]), mx.array([1.0])
            return
        self.bounds = b if isinstance(b, mx.array) else mx.array(b.astype(np.float32))
        self.probs = p if isinstance(p, mx.array) else mx.array(p.astype(np.float32))
        if not mx.issubdtype(self.bounds.dtype, mx.floating):
            self.bounds = self.bounds.astype(mx.float32)
        if not mx.issubdtype(self.probs.dtype, mx.floating):
            self.probs = self.probs.astype(mx.float32)
        if host:
            with np.errstate(divide="ignore"):
                table = np.log(p) - np.log(np.diff(b))
            self._table = mx.array(table.astype(np.float32))
            lo = np.nextafter(np.float32(b[0]), np.float32(np.inf))
            hi = np.nextafter(np.float32(b[-1]), np.float32(-np.inf))
            self._edges = (float(lo), float(hi))
            self.support = support.interval(float(b[0]), float(b[-1]))
        else:
            if isinstance(bounds, mx.array):
                self._lazy_checks.append(("bounds", "finite and strictly increasing", self.bounds, _bounds_ok))
            if isinstance(probs, mx.array):
                self._lazy_checks.append(("probs", "finite, >= 0 and sum to 1", self.probs, _probs_ok))

    def _log_table(self):
        if self._table is not None:
            return self._table
        return mx.log(self.probs) - mx.log(self.bounds[1:] - self.bounds[:-1])

    def _sample(self, key, shape):
        k1, k2 = mx.random.split(key)
        logp = mx.log(self.probs)
        i = rng.categorical(logp, k1, shape).astype(mx.int32)
        u = rng.uniform(k2, shape) + _HALF_ULP
        lo, hi = mx.take(self.bounds[:-1], i), mx.take(self.bounds[1:], i)
        x = lo + u * (hi - lo)
        if self._edges is not None:  # float32 rounding must not put a draw on an outer edge
            x = mx.clip(x, *self._edges)
        return x

    def _log_prob(self, x):
        x = x if isinstance(x, mx.array) else mx.array(x)
        x = x.astype(mx.float32) if not mx.issubdtype(x.dtype, mx.floating) else x
        b = self.bounds
        i = mx.sum(x[..., None] > b[1:-1], axis=-1).astype(mx.int32)  # bounds[i] < x <= bounds[i + 1]
        lp = mx.take(self._log_table(), i)
        inside = (x > b[0]) & (x < b[-1])
        return mx.where(inside, lp, -mx.inf)


piecewise_uniform = PiecewiseUniform
