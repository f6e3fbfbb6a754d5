"""Distributions built from distributions: delta, mixture, product, iid.

* `delta(v)`: the point mass at v (log-density 0 at v, -inf elsewhere).
* `mixture(components, logits)`: log sum_k softmax(logits)_k p_k(x); the
  components share an event shape.
* `product(d1, d2, ...)`: independent components concatenated into one
  vector (scalar components take one entry, vector components their length).
* `iid(base, n)`: n independent draws of `base` on a new axis just before the
  event axes: value shape (..., n) + base event shape.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .. import rng
from ..choicemap import as_value
from ..special.fuse import as_float, fused
from . import support
from .base import Distribution

__all__ = ["Delta", "Mixture", "Product", "IID", "delta", "mixture", "product", "iid"]


def _event_shape(d: Distribution) -> tuple:
    es = getattr(d, "event_shape", None)
    if es is not None:
        return tuple(es)
    if d.event_ndim == 0:
        return ()
    raise ValueError(f"{d.name}: event shape unknown (define an `event_shape` property)")


def _renamed(d: Distribution, where: str) -> list:
    """A component's lazy checks, with the parameter name qualified by where it sits."""
    return [(f"{where} ({d.name}) {name}", must, v, ok) for name, must, v, ok in d._lazy_checks]


# -- delta -------------------------------------------------------------------------------------


class Delta(Distribution):
    """The point mass at `v` (`event_ndim` trailing axes of v form one value; default all of them)."""

    name = "delta"

    def __init__(self, v, event_ndim: int | None = None):
        super().__init__()
        if not isinstance(v, mx.array):
            try:
                v = as_value(v)
            except TypeError as e:
                self._fail(ValueError(f"delta: parameter v must be a number or array ({e})"))
                v = mx.array(0.0)
        self.v = v
        self.event_ndim = v.ndim if event_ndim is None else int(event_ndim)
        if not 0 <= self.event_ndim <= v.ndim:
            self._fail(ValueError(f"delta: event_ndim must be in [0, {v.ndim}], got {event_ndim!r}"))
        if v.ndim == 0 and mx.issubdtype(v.dtype, mx.integer):
            self.support = support.integer_interval(None, None)
        else:
            self.support = support.Support("real", discrete=True)

    @property
    def event_shape(self) -> tuple:
        return tuple(self.v.shape[self.v.ndim - self.event_ndim:])

    def _sample(self, key, shape):
        return mx.broadcast_to(self.v, tuple(shape) + tuple(self.v.shape))

    def _log_prob(self, x):
        eq = x == self.v
        if self.event_ndim:
            eq = mx.all(eq, axis=tuple(range(-self.event_ndim, 0)))
        return mx.where(eq, 0.0, -mx.inf)


# -- mixture -----------------------------------------------------------------------------------


@fused
def _mix_lse(lps, logits):
    w = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return mx.logsumexp(as_float(lps) + w, axis=-1)


class Mixture(Distribution):
    """Finite mixture: component k with probability softmax(logits)_k."""

    name = "mixture"

    def __init__(self, components, logits):
        super().__init__()
        comps = list(components) if isinstance(components, (list, tuple)) else None
        if not comps or not all(isinstance(c, Distribution) for c in comps):
            self._fail(ValueError(f"mixture: parameter components must be a non-empty list of distributions, got {components!r}"))
            comps = []
        if not isinstance(logits, mx.array):
            try:
                logits = mx.array(np.asarray(logits, dtype=np.float32))
            except (TypeError, ValueError):
                self._fail(ValueError(f"mixture: parameter logits must be an array of numbers, got {logits!r}"))
                logits = mx.zeros((max(len(comps), 1),))
        self.components = comps
        self.logits = logits
        if comps:
            if logits.ndim == 0 or logits.shape[-1] != len(comps):
                self._fail(ValueError(f"mixture: parameter logits must have {len(comps)} entries on its last axis "
                                      f"(one per component), got shape {tuple(logits.shape)}"))
            nd = {c.event_ndim for c in comps}
            if len(nd) > 1:
                self._fail(ValueError(f"mixture: components must share event_ndim, got {sorted(nd)}"))
            for c in comps:
                if c._invalid is not None:
                    self._fail(c._invalid)
                    break
            self.event_ndim = comps[0].event_ndim
            sups = {c.support for c in comps}
            self.support = comps[0].support if len(sups) == 1 else support.Support(
                "real", discrete=all(c.support.discrete for c in comps))
            for i, c in enumerate(comps):
                self._lazy_checks.extend(_renamed(c, f"components[{i}]"))
        self._lazy_checks.append(("logits", "not NaN, with a finite entry",
                                  self.logits, lambda v: ~mx.any(mx.isnan(v)) & mx.any(v > -mx.inf, axis=-1)))

    @property
    def event_shape(self) -> tuple:
        return _event_shape(self.components[0])

    def _sample(self, key, shape):
        keys = mx.random.split(key, len(self.components) + 1)
        draws = [c._sample(keys[i + 1], shape) for i, c in enumerate(self.components)]
        stacked = mx.stack(mx.broadcast_arrays(*draws), axis=0) if len(draws) > 1 else draws[0][None]
        out_shape = stacked.shape[1:]
        batch = out_shape[: len(out_shape) - self.event_ndim]
        idx = rng.categorical(self.logits, keys[0], batch)
        idx = idx.reshape((1,) + batch + (1,) * self.event_ndim)
        idx = mx.broadcast_to(idx, (1,) + out_shape)
        return mx.take_along_axis(stacked, idx, axis=0)[0]

    def _log_prob(self, x):
        lps = [c._log_prob(x) for c in self.components]
        stacked = mx.stack(mx.broadcast_arrays(*lps), axis=-1) if len(lps) > 1 else lps[0][..., None]
        return _mix_lse(stacked, self.logits)


# -- product -----------------------------------------------------------------------------------


class Product(Distribution):
    """Independent components, their values concatenated into one vector (event_ndim 1)."""

    name = "product"
    event_ndim = 1

    def __init__(self, *dists):
        super().__init__()
        if len(dists) == 1 and isinstance(dists[0], (list, tuple)):
            dists = tuple(dists[0])
        if not dists or not all(isinstance(d, Distribution) for d in dists):
            self._fail(ValueError(f"product: expects one or more distributions, got {dists!r}"))
            dists = ()
        self.parts = list(dists)
        self.sizes = []
        for d in self.parts:
            if d._invalid is not None:
                self._fail(d._invalid)
                break
            if d.event_ndim > 1:
                self._fail(ValueError(f"product: component {d.name} has event_ndim {d.event_ndim} (at most 1 supported)"))
                break
            self.sizes.append(1 if d.event_ndim == 0 else int(_event_shape(d)[-1]))
            self._lazy_checks.extend(_renamed(d, f"parts[{len(self.sizes) - 1}]"))
        kinds = {d.support.kind for d in self.parts}
        disc = any(d.support.discrete for d in self.parts)
        if kinds <= {"real", "real_vector"} and not disc:
            self.support = support.real_vector
        else:
            # component-wise supports: low = the parts' supports, high = their sizes
            self.support = support.Support("product", discrete=disc, low=tuple(d.support for d in self.parts),
                                           high=tuple(self.sizes))

    @property
    def event_shape(self) -> tuple:
        return (sum(self.sizes),)

    def _sample(self, key, shape):
        keys = mx.random.split(key, max(len(self.parts), 1))
        xs = []
        for i, d in enumerate(self.parts):
            v = d._sample(keys[i], shape)
            v = v if mx.issubdtype(v.dtype, mx.floating) else v.astype(mx.float32)
            xs.append(v[..., None] if d.event_ndim == 0 else v)
        return mx.concatenate(_bcast_cat(xs), axis=-1)

    def _log_prob(self, x):
        x = x if isinstance(x, mx.array) else mx.array(x)
        if x.shape[-1:] != (sum(self.sizes),):
            raise ValueError(f"product: value must have {sum(self.sizes)} entries on its last axis, got shape {tuple(x.shape)}")
        total = None
        off = 0
        for d, n in zip(self.parts, self.sizes):
            part = x[..., off] if d.event_ndim == 0 else x[..., off:off + n]
            lp = d._log_prob(part)
            total = lp if total is None else total + lp
            off += n
        return total


def _bcast_cat(xs):
    batch = mx.broadcast_shapes(*[tuple(x.shape[:-1]) for x in xs])
    return [mx.broadcast_to(x, tuple(batch) + (x.shape[-1],)) for x in xs]


# -- iid ---------------------------------------------------------------------------------------


class IID(Distribution):
    """n independent draws of `base`, on a new axis before the event axes."""

    name = "iid"

    def __init__(self, base, n):
        super().__init__()
        if not isinstance(base, Distribution):
            self._fail(ValueError(f"iid: parameter base must be a distribution, got {base!r}"))
            base = None
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            self._fail(ValueError(f"iid: parameter n must be a positive int, got {n!r}"))
            n = 1
        self.base = base
        self.n = int(n)
        if base is not None:
            if base._invalid is not None:
                self._fail(base._invalid)
            self.event_ndim = base.event_ndim + 1
            self.support = base.support
            self._lazy_checks.extend(_renamed(base, "base"))

    @property
    def event_shape(self) -> tuple:
        return (self.n,) + _event_shape(self.base)

    def _sample(self, key, shape):
        x = self.base._sample(key, (self.n,) + tuple(shape))
        return mx.moveaxis(x, 0, x.ndim - self.base.event_ndim - 1)

    def _log_prob(self, x):
        x = x if isinstance(x, mx.array) else mx.array(x)
        ax = x.ndim - self.base.event_ndim - 1
        if ax < 0 or x.shape[ax] != self.n:
            raise ValueError(f"iid: value must have {self.n} entries on axis {ax - x.ndim}, got shape {tuple(x.shape)}")
        return mx.sum(self.base._log_prob(mx.moveaxis(x, ax, 0)), axis=0)


delta = Delta
mixture = Mixture
product = Product
iid = IID
