"""`mix(components, logits)`: a mixture of generative functions.

Args: any; every component is called with the mixture's args. The component
index is drawn from a categorical distribution with the given `logits`
(unnormalized log weights: a list/array of length K, or a function of the
mixture's args returning one).

Addresses:
* `"component"`: the index of the chosen component (0-based int);
* the chosen component's choices, not nested (beside `"component"`, so a
  component must not use the address `"component"` itself);
* a distribution component's value is at `"value"`.

Score: log p(component) + the component's score. Vectorized execution runs
every component and keeps each lane's own (see `gm.switch`): the components
must then have the same structure.
"""

from __future__ import annotations

import math

import mlx.core as mx

from .. import rng
from ..address import AddressError
from ..choicemap import EMPTY, ChoiceMap
from ..distributions.base import Distribution
from ..dynamic import DynamicGenFn
from ..evaluation import item
from ..gfi import GenerativeFunction, check_args
from ..handler import trace as _trace
from ..selection import Selection
from ..trace import Trace
from . import _util as u
from .switch import Switch

__all__ = ["Mix", "mix"]

_C = ("component",)


class _Categorical(Distribution):
    """Index in range(K) with probabilities softmax(logits) (int32 values)."""

    name = "categorical"

    def __init__(self, logits):
        super().__init__()
        if isinstance(logits, mx.array):
            lg = logits if mx.issubdtype(logits.dtype, mx.floating) else logits.astype(mx.float32)
            self._lazy_checks.append(("logits", _LOGITS_MUST, lg, _logits_ok))
        else:
            try:
                lg = mx.array(logits, dtype=mx.float32)
            except (TypeError, ValueError):
                raise ValueError(f"mix: logits must be a vector of numbers, got {logits!r}") from None
            if lg.ndim == 1 and lg.shape[0] >= 1 and not item(_logits_ok(lg)):
                raise ValueError(f"mix: logits must be {_LOGITS_MUST}, got {logits!r}")
        if lg.ndim != 1 or lg.shape[0] < 1:
            raise ValueError(f"mix: logits must be a non-empty vector, got shape {tuple(lg.shape)}")
        self.logits = lg

    def _sample(self, key, shape):
        return rng.categorical(self.logits, key, shape or None).astype(mx.int32)

    def _log_prob(self, k):
        K = self.logits.shape[0]
        lsm = self.logits - mx.logsumexp(self.logits)
        k = mx.array(k) if not isinstance(k, mx.array) else k
        ok = (k >= 0) & (k < K) & (k == mx.floor(k) if mx.issubdtype(k.dtype, mx.floating) else True)
        return mx.where(ok, mx.take(lsm, mx.clip(k, 0, K - 1).astype(mx.int32)), -math.inf)


_LOGITS_MUST = "finite or -inf, with at least one finite entry"


def _logits_ok(v):
    return mx.all(v < mx.inf) & mx.any(v > -mx.inf)  # NaN fails both


def _value_at(d) -> DynamicGenFn:
    def value(*args):
        return _trace("value", d)

    g = DynamicGenFn(value)
    g.name = u.name_of(d)
    return g


class Mix(u.Structural, GenerativeFunction):
    """The mixture combinator (see the module docstring for addresses)."""

    def _key(self) -> tuple:
        return (tuple(self.components), self._logits_key)

    def __init__(self, components, logits):
        comps = list(components)
        if not comps:
            raise TypeError("mix needs at least one component")
        self.components = comps
        self._switch = Switch(*[_value_at(c) if u.is_dist(c) else c for c in comps])
        self.logits = logits if callable(logits) else _Categorical(logits).logits
        self._logits_key = tuple(float(v) for v in logits) if isinstance(logits, (list, tuple)) else logits
        if not callable(logits) and self.logits.shape[0] != len(comps):
            raise ValueError(f"mix: {len(comps)} components but {self.logits.shape[0]} logits")
        self.name = f"mix({', '.join(u.name_of(c) for c in comps)})"

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        for j, b in enumerate(self._switch.branches):
            u.check_arity(b, len(args), self, f"component {j}")
        return args

    def _cat(self, args) -> _Categorical:
        return _Categorical(self.logits(*args) if callable(self.logits) else self.logits)

    def _split(self, c: ChoiceMap):
        """(value map of the index constraint, the other constraints)."""
        if not c:
            return EMPTY, EMPTY
        kv = c._leaves.get(_C)
        if any(p[:1] == _C and len(p) > 1 for p in c.paths()):
            raise AddressError(f"{self.name}: 'component' is a single choice (the component index), not a submap")
        rest = ChoiceMap._from_leaves({p: v for p, v in c._leaves.items() if p != _C}) if kv is not None else c
        return (ChoiceMap._from_leaves({(): kv}) if kv is not None else EMPTY), rest

    def _make(self, args, kt: Trace, st: Trace) -> Trace:
        if st.sites is not None and _C in st.sites:
            raise AddressError(f"{self.name}: a component traces the address 'component', which holds the mixture's index")
        sites = {_C: kt, (): st}  # key (): the component's choices sit at this level, not nested
        return Trace(self, args, st.retval, kt.score + st.score, sites, kt.checks + st.checks)

    # -- GFI -----------------------------------------------------------------------------
    def _simulate(self, args, keys):
        kt = self._cat(args)._simulate((), keys)
        st = self._switch._simulate((kt.retval, *args), keys.child())
        return self._make(args, kt, st)

    def _generate(self, args, constraints, keys):
        kc, rest = self._split(constraints)
        kt, wk = self._cat(args)._generate((), kc, keys)
        st, ws = self._switch._generate((kt.retval, *args), rest, keys.child())
        w = u.add(wk if kc else None, ws if rest else None)
        return self._make(args, kt, st), u.total(w)

    def _update(self, trace, constraints, args, keys):
        kc, rest = self._split(constraints)
        kt, wk, dk = self._cat(args)._update(trace.sites[_C], kc, (), keys)
        st, ws, ds = self._switch._update(trace.sites[()], rest, (kt.retval, *args), keys.child())
        d = dict(ds._leaves)
        if dk:
            d[_C] = dk.value()
        return self._make(args, kt, st), wk + ws, ChoiceMap._from_leaves(d)

    def _regenerate(self, trace, selection: Selection, args, keys):
        kt, wk = self._cat(args)._regenerate(trace.sites[_C], selection.get_subselection("component"), (), keys)
        st, ws = self._switch._regenerate(trace.sites[()], selection, (kt.retval, *args), keys.child())
        return self._make(args, kt, st), wk + ws

    def _assess(self, args, choices):
        kc, rest = self._split(choices)
        if not kc:
            raise AddressError(f"assess: address 'component' of {self.name} is not constrained (assess needs every choice)")
        sk, k = self._cat(args)._assess((), kc)
        ss, r = self._switch._assess((k, *args), rest)
        return sk + ss, r

    def _project(self, trace, selection):
        w = self._switch._project(trace.sites[()], selection)
        if selection.contains_path(_C):
            w = trace.sites[_C].score + w
        return w


def mix(components, logits) -> Mix:
    """Mixture: index at `"component"`, the chosen component's choices beside it."""
    return Mix(components, logits)
