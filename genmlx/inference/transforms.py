"""Bijections to the real line, and model log densities in unconstrained space.

Gradient-based samplers (MALA, HMC, NUTS) move in R^D. Each sampled address
gets a bijection chosen by its distribution's `support.kind`:

============================  ====================================================
support kind                  x = forward(z)  (log|Jacobian| added to the density)
============================  ====================================================
real, real_vector             identity
positive, nonnegative         x = low + exp(z)              (Stan's choice; `Softplus` available)
interval(low, high)           x = low + (high - low) * sigmoid(z)
                              (one infinite end: low + exp(z) or high - exp(z))
simplex (K parts)             Stan's stick-breaking from R^(K-1)
circular(low, high)           x = wrap(z) into [low, high); Jacobian 1
positive_definite (n x n)     X = L L^T, L lower triangular with exp'd diagonal,
                              from R^(n(n+1)/2)
============================  ====================================================

Circular values: z lives on the whole line and the density of z is the
periodic function log p(wrap(z)). The sampler's kernel commutes with shifts
by the period, so the wrapped chain is a Markov chain on the circle that
leaves p invariant (no atan2 auxiliary variable needed). Values of z drift
across periods; only wrap(z) is reported.

`unconstrained_logdensity(model, args, observations, addresses)` builds a pure
MLX function `logp(z)` of the flattened unconstrained vector: it maps each
address's slice through its bijection, calls `model.assess` with the
observations and those values, and adds the log-Jacobians. It works under
`mx.grad`, `mx.value_and_grad`, `mx.vmap` and `mx.compile` (the model's
Python runs once, at trace time). Supports are read from one execution of the
model, so they must not depend on other random choices.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import mlx.core as mx
import numpy as np

from .. import flat_density
from ..address import from_path, to_path
from ..choicemap import ChoiceMap, as_value
from ..evaluation import evaluate
from ..gfi import as_choicemap
from ..rng import resolve

__all__ = ["Identity", "Exp", "Softplus", "LowerBound", "UpperBound", "ScaledSigmoid", "StickBreaking",
           "Circular", "CholeskyPD", "transform_for", "register", "Site", "Layout", "layout",
           "unconstrained_logdensity", "to_constrained"]


def _softplus(z):
    return mx.logaddexp(z, 0.0)


class Identity:
    """real: x = z."""

    name = "identity"

    def forward(self, z):
        return z

    def forward_log_det(self, z):
        return z, None

    def inverse(self, x):
        return x

    def size(self, shape):
        return math.prod(shape)

    def zshape(self, shape):
        return shape


class LowerBound(Identity):
    """positive (low=0) and [low, inf): x = low + exp(z), log J = z."""

    name = "exp"

    def __init__(self, low=0.0):
        self.low = low

    def forward(self, z):
        return self.low + mx.exp(z)

    def forward_log_det(self, z):
        return self.forward(z), mx.sum(z)

    def inverse(self, x):
        return mx.log(x - self.low)


Exp = LowerBound


class UpperBound(Identity):
    """(-inf, high]: x = high - exp(z), log J = z."""

    name = "upper_exp"

    def __init__(self, high):
        self.high = high

    def forward(self, z):
        return self.high - mx.exp(z)

    def forward_log_det(self, z):
        return self.forward(z), mx.sum(z)

    def inverse(self, x):
        return mx.log(self.high - x)


class Softplus(Identity):
    """positive, softer in the tails: x = softplus(z), log J = -softplus(-z)."""

    name = "softplus"

    def forward(self, z):
        return _softplus(z)

    def forward_log_det(self, z):
        return _softplus(z), -mx.sum(_softplus(-z))

    def inverse(self, x):
        return x + mx.log(-mx.expm1(-x))


class ScaledSigmoid(Identity):
    """interval(low, high): x = low + (high - low) sigmoid(z)."""

    name = "sigmoid"

    def __init__(self, low, high):
        self.low, self.high = low, high

    def forward(self, z):
        return self.low + (self.high - self.low) * mx.sigmoid(z)

    def forward_log_det(self, z):
        w = self.high - self.low
        log_w = math.log(w) if isinstance(w, float) else mx.log(w)
        # log sigmoid(z) + log sigmoid(-z) = -(softplus(-z) + softplus(z)) = -(|z| + 2 softplus(-|z|))
        a = mx.abs(z)
        ldj = mx.sum(log_w - a - 2.0 * _softplus(-a))
        return self.forward(z), ldj

    def inverse(self, x):
        u = (x - self.low) / (self.high - self.low)
        return mx.log(u) - mx.log1p(-u)


class StickBreaking(Identity):
    """simplex over the last axis (K parts) from R^(K-1), Stan's stick-breaking.

    v_k = sigmoid(z_k - log(K - k)), x_k = v_k prod_{j<k} (1 - v_j), x_K = the rest;
    z = 0 maps to the uniform simplex point.
    """

    name = "stick_breaking"

    def __init__(self, k: int):
        if k < 2:
            raise ValueError(f"stick-breaking needs a simplex of >= 2 parts, got {k}")
        self.k = k
        self.offset = mx.array([math.log(k - 1 - i) for i in range(k - 1)])

    def _parts(self, z):
        y = z - self.offset
        log_v = -_softplus(-y)  # log sigmoid(y)
        log_1mv = -_softplus(y)  # log (1 - sigmoid(y))
        log_rest = mx.cumsum(log_1mv, axis=-1, inclusive=False)
        log_last = mx.sum(log_1mv, axis=-1, keepdims=True)
        log_x = mx.concatenate([log_v + log_rest, log_last], axis=-1)
        return log_x, log_v, log_1mv, log_rest

    def forward(self, z):
        return mx.exp(self._parts(z)[0])

    def forward_log_det(self, z):
        log_x, log_v, log_1mv, log_rest = self._parts(z)
        return mx.exp(log_x), mx.sum(log_v + log_1mv + log_rest)

    def inverse(self, x):
        head = x[..., :-1]
        rest = 1.0 - (mx.cumsum(head, axis=-1) - head)
        v = head / rest
        return mx.log(v) - mx.log1p(-v) + self.offset

    def size(self, shape):
        return math.prod(shape[:-1]) * (self.k - 1)

    def zshape(self, shape):
        return tuple(shape[:-1]) + (self.k - 1,)


class Circular(Identity):
    """circular(low, high): x = low + ((z - low) mod (high - low)); log J = 0 (see module docstring)."""

    name = "wrap"

    def __init__(self, low=-math.pi, high=math.pi):
        self.low, self.period = low, high - low

    def forward(self, z):
        u = z - self.low
        return self.low + u - self.period * mx.floor(u / self.period)

    def forward_log_det(self, z):
        return self.forward(z), None


class CholeskyPD(Identity):
    """positive_definite n x n: X = L L^T, L lower triangular, L_ii = exp(z_ii).

    log J = n log 2 + sum_i (n - i + 1) log L_ii (1-based i) for L -> L L^T,
    plus sum_i log L_ii for the exp of the diagonal.
    """

    name = "cholesky"

    def __init__(self, n: int):
        self.n = n
        rows, cols = np.tril_indices(n)
        m = len(rows)
        idx = np.full((n, n), m, dtype=np.int32)  # index m points at an appended 0
        idx[rows, cols] = np.arange(m)
        self.idx = mx.array(idx.reshape(-1))
        self.diag = mx.array(np.array([i * (i + 1) // 2 + i for i in range(n)], dtype=np.int32))
        self.rows, self.cols = rows, cols
        self.coef = mx.array([float(n - i + 1) for i in range(n)])  # 0-based i: n - i + 1
        self.eye = mx.array(np.eye(n, dtype=bool))

    def _chol(self, z):
        d = mx.take(z, self.diag, axis=-1)
        zd = mx.concatenate([z, mx.zeros(z.shape[:-1] + (1,), dtype=z.dtype)], axis=-1)
        lower = mx.take(zd, self.idx, axis=-1).reshape(z.shape[:-1] + (self.n, self.n))
        return mx.where(self.eye, mx.exp(lower), lower), d

    def forward(self, z):
        lo, _ = self._chol(z)
        return lo @ mx.swapaxes(lo, -1, -2)

    def forward_log_det(self, z):
        lo, d = self._chol(z)
        return lo @ mx.swapaxes(lo, -1, -2), self.n * math.log(2.0) + mx.sum(self.coef * d)

    def inverse(self, x):
        lo = mx.linalg.cholesky(x, stream=mx.cpu)
        lo = np.array(lo)
        lo[np.arange(self.n), np.arange(self.n)] = np.log(np.diag(lo))
        return mx.array(lo[self.rows, self.cols])

    def size(self, shape):
        return self.n * (self.n + 1) // 2

    def zshape(self, shape):
        return (self.size(shape),)


_FACTORIES: dict[str, Callable] = {}


def register(kind: str, factory: Callable) -> None:
    """Use `factory(support, value_shape) -> bijection` for supports of this `kind`."""
    _FACTORIES[kind] = factory


def _interval(s, shape):
    lo, hi = s.low, s.high
    lo_inf = isinstance(lo, float) and math.isinf(lo)
    hi_inf = isinstance(hi, float) and math.isinf(hi)
    if lo_inf and hi_inf:
        return Identity()
    if hi_inf:
        return LowerBound(lo)
    if lo_inf:
        return UpperBound(hi)
    return ScaledSigmoid(lo, hi)


register("real", lambda s, shape: Identity())
register("real_vector", lambda s, shape: Identity())
register("positive", lambda s, shape: LowerBound(s.low or 0.0))
register("nonnegative", lambda s, shape: LowerBound(s.low or 0.0))
register("interval", _interval)
register("simplex", lambda s, shape: StickBreaking(shape[-1]))
register("circular", lambda s, shape: Circular(s.low if s.low is not None else -math.pi,
                                               s.high if s.high is not None else math.pi))
register("positive_definite", lambda s, shape: CholeskyPD(shape[-1]))


def transform_for(support, shape: tuple = ()):
    """The bijection R^m -> support for a value of `shape`; ValueError for discrete or unknown kinds."""
    if support.discrete:
        raise ValueError(f"support {support!r} is discrete: no bijection to the real line")
    f = _FACTORIES.get(support.kind)
    if f is None:
        raise ValueError(f"no bijection for support kind {support.kind!r}; "
                         "register one with genmlx.inference.transforms.register(kind, factory)")
    return f(support, tuple(shape))


class Site(NamedTuple):
    """One sampled address: where its slice sits in the flat vector and how it maps."""

    address: object
    path: tuple
    shape: tuple  # the constrained value's shape
    zshape: tuple  # the unconstrained slice's shape
    offset: int
    size: int
    bijection: object


class Layout(NamedTuple):
    """The flat unconstrained vector of a set of addresses, and the observations it completes."""

    sites: tuple
    dim: int
    observations: ChoiceMap
    z0: mx.array  # the initial point (from one execution of the model, or `init`)

    def split(self, z):
        """Per-site unconstrained slices of `z` ([..., dim]), reshaped to each site's zshape."""
        if len(self.sites) == 1:
            parts = [z]
        else:
            parts = mx.split(z, [s.offset for s in self.sites[1:]], axis=-1)
        return [p.reshape(p.shape[:-1] + s.zshape) for p, s in zip(parts, self.sites)]

    def to_constrained(self, z) -> dict:
        """{address: value} for an unconstrained `z` of shape [dim] or [N, dim] (then values are [N, ...])."""
        return {s.address: s.bijection.forward(p) for s, p in zip(self.sites, self.split(z))}

    def to_unconstrained(self, values) -> mx.array:
        """The flat `z` of {address: constrained value} (every sampled address)."""
        parts = []
        for s in self.sites:
            if s.address not in values:
                raise ValueError(f"init: no value for address {s.address!r}")
            x = as_value(values[s.address], s.path).astype(mx.float32)
            if tuple(x.shape) != s.shape:
                raise ValueError(f"init: address {s.address!r} needs shape {s.shape}, got {tuple(x.shape)}")
            parts.append(s.bijection.inverse(x).reshape(-1))
        return mx.concatenate(parts) if len(parts) > 1 else parts[0]

    def constraints(self, values: dict) -> ChoiceMap:
        leaves = dict(self.observations._leaves)
        for s in self.sites:
            leaves[s.path] = values[s.address]
        return ChoiceMap._from_leaves(leaves)


def _as_addresses(addresses) -> list:
    if isinstance(addresses, (str, int)):
        return [addresses]
    if not isinstance(addresses, (list, tuple)) or not addresses:
        raise ValueError(f"addresses must be a non-empty list of addresses, got {addresses!r}")
    return list(addresses)


def layout(model, args: tuple, observations, addresses, *, key=None, init=None) -> Layout:
    """Validate `addresses` against one execution of `model` and lay them out in a flat vector.

    Raises:
        ValueError naming the address: not a random choice of the model, observed,
            a call rather than a choice, listed twice, discrete, or a support with
            no bijection; or a latent choice that is neither listed nor observed.
    """
    obs = as_choicemap(observations)
    addrs = _as_addresses(addresses)
    tr, _ = model.generate(args, obs, key=resolve(key))
    latent = [p for p in tr.get_choices().paths() if p not in obs._leaves]
    sites, seen, offset = [], set(), 0
    for a in addrs:
        p = to_path(a)
        if p in seen:
            raise ValueError(f"address {a!r} is listed twice in addresses")
        seen.add(p)
        if p in obs._leaves:
            raise ValueError(f"address {a!r} is observed; it cannot also be sampled")
        st = tr._find(p)
        if st is None:
            shown = ", ".join(repr(from_path(q)) for q in latent[:8]) or "none"
            raise ValueError(f"address {a!r} is not a random choice of {model.name} "
                             f"(its unobserved choices: {shown})")
        if st.sites is not None:
            raise ValueError(f"address {a!r} names a generative-function call; list its random choices instead")
        d = st.gen_fn
        if d.support.discrete:
            raise ValueError(f"address {a!r} is discrete ({d.name}, support {d.support!r}): "
                             "gradient-based samplers need continuous addresses")
        shape = tuple(st.retval.shape)
        try:
            b = transform_for(d.support, shape)
        except ValueError as e:
            raise ValueError(f"address {a!r} ({d.name}): {e}") from None
        n = b.size(shape)
        sites.append(Site(from_path(p), p, shape, b.zshape(shape), offset, n, b))
        offset += n
    rest = [from_path(p) for p in latent if p not in seen]
    if rest:
        raise ValueError(f"choices {rest[:8]!r} of {model.name} are neither in addresses nor observed "
                         "(gradient-based samplers need every other choice observed)")
    lay = Layout(tuple(sites), offset, obs, None)
    values = {s.address: tr[s.path] for s in sites}
    if init is not None:
        if not isinstance(init, dict):
            raise ValueError(f"init must be a dict {{address: value}}, got {type(init).__name__}")
        unknown = [a for a in init if to_path(a) not in seen]
        if unknown:
            raise ValueError(f"init: address {unknown[0]!r} is not in addresses")
        values.update({from_path(to_path(a)): v for a, v in init.items()})
    z0 = lay.to_unconstrained(values)
    evaluate(z0)
    return lay._replace(z0=z0)


class SiteValues:
    """The sites' constrained values at `z` ([..., dim]), from one split of `z` into segments.

    A segment is a site, or a run of real scalar sites lying side by side in `z`
    (`scalar_runs`). `run(ks)` reads such sites as one `[..., G]` slice: a flattened density
    scores a group of scalar sites (a funnel's coordinates, a model's per-point parameters) as
    one `[G]` input, and one segment of `z` (with its one gradient) costs what the
    one-vector-site model's does, where stacking G scalar slices cost G slices, G reshapes, a
    stack and their gradients (the 9-coordinate funnel's value and gradient: 150 -> 70 us here,
    the vector form's 65-75). A site of a run read alone is an index into its segment.
    """

    __slots__ = ("_n", "_values", "_log_det", "_runs", "_where")

    def __init__(self, z, sites, segments):
        self._n = len(sites)
        self._values: dict = {}
        self._log_det = None
        self._runs: list = []
        self._where: dict = {}  # site -> (its run, its position in the run)
        parts = mx.split(z, [sites[seg[0]].offset for seg in segments[1:]], axis=-1) if len(segments) > 1 else [z]
        for seg, part in zip(segments, parts):
            if len(seg) > 1 or _real_scalar(sites[seg[0]]):
                for j, k in enumerate(seg):
                    self._where[k] = (len(self._runs), j)
                self._runs.append(part)
                continue
            s = sites[seg[0]]
            x, ldj = s.bijection.forward_log_det(part.reshape(part.shape[:-1] + s.zshape))
            self._values[seg[0]] = x
            if ldj is not None:  # a transformed site's log-determinant is part of every density
                self._log_det = ldj if self._log_det is None else self._log_det + ldj

    def log_det(self):
        """The summed log|d forward / dz| of the transformed sites (None: all identities)."""
        return self._log_det

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k: int):
        x = self._values.get(k)
        if x is None:
            r, j = self._where[k]
            x = self._values[k] = self._runs[r][..., j]
        return x

    def run(self, ks):
        """The values of sites `ks` as one `[..., G]` slice, or None unless they lie side by side, in
        that order, in one run."""
        where = [self._where.get(k) for k in ks]
        if None in where or any(w != (where[0][0], where[0][1] + i) for i, w in enumerate(where)):
            return None
        part = self._runs[where[0][0]]
        j = where[0][1]
        return part if j == 0 and len(ks) == part.shape[-1] else part[..., j:j + len(ks)]


def _real_scalar(s: Site) -> bool:
    return type(s.bijection) is Identity and s.shape == ()


def scalar_runs(sites) -> list[tuple[int, ...]]:
    """The sites in segments of `z`: maximal runs of real scalar sites side by side, and every
    other site alone."""
    segments: list[list[int]] = []
    for k, s in enumerate(sites):
        prev = sites[k - 1] if k else None
        if prev is not None and _real_scalar(s) and _real_scalar(prev) and s.offset == prev.offset + 1:
            segments[-1].append(k)
        else:
            segments.append([k])
    return [tuple(seg) for seg in segments]


def unconstrained_logdensity(model, args: tuple, observations, addresses, *, key=None, init=None):
    """Pure MLX `logp(z) -> scalar`: the model's log density at `addresses` = transform(z).

    logp(z) = log p(observations, x = forward(z)) + sum of log|d forward / dz|,
    computed with `model.assess`. `z` is the flat unconstrained vector of all
    addresses in order (`logp.layout.sites` gives each slice). A static-structure
`@gm.gen` model is scored through its flattened density (`genmlx.flat_density`:
sites of one form as one batch), others through `assess`. The function has
    attributes `layout`, `dim`, `to_constrained(z) -> {address: value}` and
    `to_unconstrained(values) -> z`; `layout.z0` is an initial point (a draw
    from the model given the observations, or `init`).
    """
    lay = layout(model, args, observations, addresses, key=key, init=init)
    sites, obs_leaves = lay.sites, lay.observations._leaves
    flat = flat_density.build(model, args, lay.constraints(lay.to_constrained(lay.z0)), [s.path for s in sites])

    segments = scalar_runs(sites)

    def logp(z):
        xs = SiteValues(z, sites, segments)
        ldj = xs.log_det()
        if flat is not None:
            score = flat.log_density(xs)
        else:
            leaves = dict(obs_leaves)
            leaves.update((s.path, xs[k]) for k, s in enumerate(sites))
            score, _ = model.assess(args, ChoiceMap._from_leaves(leaves))
        return score if ldj is None else score + ldj

    logp.layout = lay
    logp.flat = flat
    logp.dim = lay.dim
    logp.to_constrained = lay.to_constrained
    logp.to_unconstrained = lay.to_unconstrained
    return logp


def to_constrained(logp_or_layout, z) -> dict:
    """{address: value} in each address's own space, for a flat unconstrained `z` ([dim] or [N, dim])."""
    lay = getattr(logp_or_layout, "layout", logp_or_layout)
    return lay.to_constrained(z)
