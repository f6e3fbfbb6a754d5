"""The distribution interface every distribution (built-in or user-defined) implements.

A distribution object is a generative function with its parameters bound:
`gm.trace("x", dist.normal(0.0, 1.0))`. Subclasses implement two methods,

* `_sample(key, shape) -> value`   (one vectorized pass for any batch shape)
* `_log_prob(value) -> log density` (broadcasting; -inf outside the support)

and validate parameters in `__init__` through `self._param(...)`:
Python-number parameters are checked at construction (outside a model the
`ValueError` is raised at once; inside one it is raised by `gm.trace` so that
it names the address); array parameters are checked lazily, with the
`DeferredCheck`s the driver evaluates in its one `mx.eval` per step.

Defining your own distribution::

    class Shifted(Distribution):
        name = "shifted_exponential"
        support = support.positive

        def __init__(self, rate, shift):
            super().__init__()
            self.rate = self._param("rate", rate, lambda r: r > 0, "> 0")
            self.shift = shift

        def _sample(self, key, shape):
            return self.shift + mx.random.exponential(...)

        def _log_prob(self, x): ...
"""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx

from .. import boundary as _b
from .. import handler as _handler
from ..address import AddressError, from_path
from ..checks import DeferredCheck
from ..choicemap import EMPTY, ChoiceMap, as_value
from ..evaluation import evaluate
from ..gfi import GenerativeFunction
from ..rng import lane_key, resolve
from ..selection import Selection
from ..trace import Trace
from . import support as _support

__all__ = ["Distribution", "to_param", "shape_of", "batch_shape"]


def to_param(v):
    """Python numbers stay Python floats (free constants); everything else becomes an mx.array."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, mx.array):
        return v
    return mx.array(v)


def shape_of(p) -> tuple:
    """Shape of a parameter: () for Python numbers."""
    return tuple(p.shape) if isinstance(p, mx.array) else ()


def batch_shape(*params, event_dims=()) -> tuple:
    """Broadcast shape of parameters; `event_dims[i]` trailing dims of params[i] are event dims."""
    shapes = []
    for i, p in enumerate(params):
        s = shape_of(p)
        k = event_dims[i] if i < len(event_dims) else 0
        shapes.append(s[: len(s) - k] if k else s)
    return tuple(mx.broadcast_shapes(*shapes)) if shapes else ()


class Distribution(GenerativeFunction):
    """Base class: parameters, validation and the GFI of a single random choice."""

    _is_distribution = True
    name = "distribution"
    support = _support.real
    event_ndim = 0  # dimensions of one value (mvn/dirichlet: 1, wishart: 2)
    # Parameters whose invalid values make the log density NaN or infinite at every value:
    # at a constrained site the generate weight guards their checks (checks.GuardedCheck).
    # Each declaration is tested (tests/distributions/test_validation.py).
    _score_guards: frozenset = frozenset()

    def __init__(self):
        self._invalid: Exception | None = None
        self._lazy_checks: list = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # genmlx's own samplers draw through genmlx.rng (lane-aware). A sampler written
        # elsewhere may call mx.random directly: in a shared-key vectorized pass it gets a
        # key of its lane's own, so its lanes still differ (see rng.lane_key).
        own = cls.__dict__.get("_sample")
        if own is not None and not cls.__module__.startswith("genmlx."):
            def _sample(self, key, shape, _own=own):
                return _own(self, lane_key(key), shape)

            _sample.__doc__, _sample.__name__ = own.__doc__, "_sample"
            cls._sample = _sample

    # -- parameters -------------------------------------------------------------
    def _param(self, name: str, value, ok: Callable[[Any], Any] | None = None, must: str = "", *, keep_int=False):
        """Convert and validate one parameter; `ok(x)` returns a bool (or bool array)."""
        t = type(value)
        if t is mx.array:  # the hot path inside models: a parameter computed from other choices
            if ok is not None:
                self._lazy_checks.append((name, must, value, ok))
            return value
        if getattr(t, "_genmlx_symbolic", False):  # genmlx.flat_density tracing the model: checked when scored
            if ok is not None:
                self._lazy_checks.append((name, must, value, ok))
            return value
        if t is float:
            if ok is not None and not (value == value and ok(value) and _f32_ok(value, ok)):
                self._fail(ValueError(f"{self.name}: parameter {name} must be {must}, got {value!r}"))
            return value
        if isinstance(value, bool) or (not isinstance(value, (int, float, mx.array)) and not hasattr(value, "__array__") and not isinstance(value, (list, tuple))):
            self._fail(ValueError(f"{self.name}: parameter {name} must be a number or array, got {type(value).__name__} {value!r}"))
            return value
        if isinstance(value, (int, float)):
            v = value if keep_int and isinstance(value, int) else float(value)
            if ok is not None and not (v == v and ok(v) and _f32_ok(float(v), ok)):
                self._fail(ValueError(f"{self.name}: parameter {name} must be {must}, got {value!r}"))
            return v
        v = value if isinstance(value, mx.array) else mx.array(value)
        if ok is not None:
            self._lazy_checks.append((name, must, v, ok))
        return v

    def _fail(self, err: Exception) -> None:
        if _handler._stack:
            if self._invalid is None:
                self._invalid = err  # raised by gm.trace, which knows the address
        else:
            raise err

    def _invalid_at(self, path) -> Exception:
        e = self._invalid
        return type(e)(f"{e} (at trace address {from_path(path)!r})")

    def _check_shapes(self, **params) -> None:
        """Raise (or defer) a ValueError naming the parameters whose shapes do not broadcast."""
        nd = 0
        for v in params.values():
            if type(v) is mx.array and v.ndim:
                nd += 1
        if nd < 2:  # numbers and scalars broadcast with anything
            return
        shapes = {k: (v.shape if isinstance(v, mx.array) else ()) for k, v in params.items()}
        try:
            mx.broadcast_shapes(*shapes.values())
        except (ValueError, RuntimeError):
            desc = ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items())
            self._fail(ValueError(f"{self.name}: parameter shapes do not broadcast: {desc}"))

    def deferred_checks(self, path=None, seen: set | None = None) -> list:
        """Lazy validity checks of array parameters (evaluated by the driver's materialization).

        `seen` (kept by the handler for one execution) skips a check already made
        on the same array for the same requirement: ten `bernoulli(p)` sites
        sharing one `p` cost one check, not ten.
        """
        where = f" (at trace address {from_path(path)!r})" if path else ""
        out = []
        for name, must, v, ok in self._lazy_checks:
            if seen is not None:
                key = (id(v), type(self), name, must)
                if key in seen:
                    continue
                seen.add(key)
            cond = mx.all(ok(v))
            out.append(DeferredCheck(cond, _err(f"{self.name}: parameter {name} must be {must}{where}")))
        return out

    def validate(self) -> "Distribution":
        """Check array parameters now (one eval); returns self."""
        if self._invalid is not None:
            raise self._invalid
        cs = self.deferred_checks()
        if cs:
            evaluate([c.ok for c in cs])
            from ..checks import raise_failed

            raise_failed(cs)
        return self

    # -- the two methods subclasses implement -------------------------------------
    def _sample(self, key: mx.array, shape: tuple) -> mx.array:
        raise NotImplementedError

    def _log_prob(self, value) -> mx.array:
        raise NotImplementedError

    def _score(self, value) -> mx.array:
        """The site score of `value`: its log density summed to a scalar.

        A choice is the whole value, so a distribution with array parameters
        (`dist.normal(mu_vector, 1.0)`) scores the vector as one choice, as Gen's
        broadcasted distributions do; `log_prob` stays elementwise.
        """
        try:
            lp = self._log_prob(value)
        except ValueError as e:
            raise self._value_error(value, e) from None
        return lp if lp.ndim == 0 else mx.sum(lp)

    def _value_error(self, value, e: ValueError) -> ValueError:
        """MLX's unnamed broadcasting error for a value whose shape does not fit the parameters, named
        (`value_error` set: inside a model the handler adds the address)."""
        if "broadcast" not in str(e):
            return e
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.__dict__.items()
                           if type(v) is mx.array and not k.startswith("_"))
        err = ValueError(f"{self.name}: a value of shape {tuple(getattr(value, 'shape', ()))} does not broadcast "
                         f"with the parameters ({shapes or 'scalars'})")
        err.value_error = True
        return err

    # -- public ---------------------------------------------------------------------
    def sample(self, key=None, shape: tuple = ()) -> mx.array:
        """Draw values of batch shape `shape` (+ the parameters' broadcast shape)."""
        if self._invalid is not None:
            raise self._invalid
        if self._lazy_checks and not self._held:
            self._boundary(_b.user_call())
        if isinstance(shape, int):
            shape = (shape,)
        return self._sample(resolve(key), tuple(shape))

    def log_prob(self, value) -> mx.array:
        """Log density (or mass) at `value`; -inf outside the support."""
        if self._invalid is not None:
            raise self._invalid
        if type(value) is not mx.array or (self._lazy_checks and not self._held):
            mode = _b.user_call()
            if mode:
                _b.given_value(f"{self.name}.log_prob", value)
                if self._lazy_checks and not self._held:
                    self._boundary(mode)
        try:
            v = as_value(value)
        except TypeError:
            raise TypeError(f"{self.name}.log_prob: the value must be a number or an array of numbers, "
                            f"got {type(value).__name__} {value!r}") from None
        try:
            return self._log_prob(v)
        except ValueError as e:
            raise self._value_error(value, e) from None

    def __call__(self, key=None):
        if self._lazy_checks and not self._held:
            self._boundary(_b.user_call())
        return self.sample(key=key)

    _held = False  # True once the array parameters' checks were evaluated and hold

    def _boundary(self, mode: int) -> None:
        """A user's `sample` / `log_prob` of array parameters: their checks first (genmlx.boundary),
        once per distribution object; inside a model body they join the model's checks."""
        if mode == _b.EVALUATE:
            if _b.evaluate(self.deferred_checks()):
                self._held = True
        elif mode == _b.ATTACH:
            _b.enforce(mode, self.deferred_checks())

    # -- GFI of a single choice (its choicemap is a value map at address ()) ---------
    def _constraints(self, c) -> ChoiceMap:
        if c is None or isinstance(c, ChoiceMap):
            return c if c is not None else EMPTY
        if isinstance(c, dict):
            return ChoiceMap(c)
        return ChoiceMap._from_leaves({(): as_value(c)})

    def _mk(self, v) -> Trace:
        return Trace(self, (), v, self._score(v), None, tuple(self.deferred_checks()) if self._lazy_checks else ())

    def _simulate(self, args, keys):
        return self._mk(self._sample(keys(), ()))

    def _generate(self, args, constraints, keys):
        v = constraints.value()
        if v is None:
            if constraints._leaves and not _handler.all_optional(constraints):
                raise AddressError(f"{self.name}: a distribution's only address is its value; got {constraints._show()}")
            return self._simulate(args, keys), mx.array(0.0)
        tr = self._mk(v)
        return tr, tr.score

    def _update(self, trace, constraints, args, keys):
        v = constraints.value()
        if v is None:
            tr = self._mk(trace.retval)
            return tr, tr.score - trace.score, EMPTY
        tr = self._mk(v)
        return tr, tr.score - trace.score, ChoiceMap._from_leaves({(): trace.retval})

    def _regenerate(self, trace, selection: Selection, args, keys):
        if selection.is_all():
            return self._simulate(args, keys), mx.array(0.0)
        tr = self._mk(trace.retval)
        return tr, tr.score - trace.score

    def _assess(self, args, choices):
        v = choices.value()
        if v is None:
            raise AddressError(f"assess: the value of {self.name} is not constrained")
        if self._lazy_checks and _b._sinks:  # a user's assess of a bare distribution (genmlx.boundary)
            _b.collect(self.deferred_checks())
        return self._score(v), v

    def _project(self, trace, selection):
        return trace.score if selection.is_all() else mx.array(0.0)

    def _check_trace(self, trace) -> None:
        if not isinstance(trace, Trace) or not getattr(trace.gen_fn, "_is_distribution", False):
            raise TypeError(f"{self.name}: expected a distribution trace, got {trace!r}")

    def __repr__(self) -> str:
        return f"<{self.name}>"

    # -- vectorized execution: a distribution nested in another one's attributes ------
    def _genmlx_tree(self):
        cls = type(self)

        def rebuild(attrs):
            d = cls.__new__(cls)
            d.__dict__.update(attrs)
            return d

        return dict(self.__dict__), rebuild


_F32_TINY, _F32_MAX = 1.1754944e-38, 3.4028235e38


def _f32_ok(v: float, ok) -> bool:
    """A Python number is used as float32: one that underflows to 0 or overflows to inf there must pass
    the check as float32 too (sigma = 1e-141 is > 0 in Python, 0 in float32: every log density NaN)."""
    a = abs(v)
    if a == 0.0 or _F32_TINY <= a <= _F32_MAX:
        return True
    import numpy as np

    with np.errstate(over="ignore", under="ignore"):
        return bool(ok(float(np.float32(v))))


def _err(msg: str):
    return lambda: ValueError(msg)
