"""The generative function interface (GFI): one abstract class, Gen's operations.

Public methods normalize their inputs (args tuple, dict constraints, `key=`)
and call the underscored internals, which nested calls and combinators use
directly. Weight formulas (Gen's, with each site's prior as the internal
proposal):

* generate:   weight = log p(constrained choices | the rest)  (sum over constrained sites)
* update:     weight = log p(new) - log p(old) - log q(freshly sampled choices)
* regenerate: weight = change in log density of the unselected, retained sites
* project:    weight = log density of the selected choices
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

import mlx.core as mx

from . import boundary as _b
from . import vectorize as _vec
from .choicemap import EMPTY, ChoiceMap
from .rng import KeyStream, resolve
from .selection import Selection
from .trace import Trace

__all__ = ["GenerativeFunction", "Score", "Weight", "as_choicemap", "check_args", "same_callee"]

Score = mx.array
Weight = mx.array


def as_choicemap(c) -> ChoiceMap:
    if c is None:
        return EMPTY
    if isinstance(c, ChoiceMap):
        return c
    if isinstance(c, Mapping):
        return ChoiceMap(c)
    raise TypeError(f"constraints/observations must be a ChoiceMap or a dict, got {type(c).__name__}")


def check_args(gf, args) -> tuple:
    if not isinstance(args, tuple):
        raise TypeError(f"{gf.name}: args must be a tuple, got {type(args).__name__} (write (x,) for one argument)")
    return args


class GenerativeFunction(ABC):
    """Base class of distributions, `@gen` functions and combinators."""

    name: str = "generative_function"

    # -- internals, implemented by subclasses ----------------------------------
    @abstractmethod
    def _simulate(self, args: tuple, keys: KeyStream) -> Trace: ...

    @abstractmethod
    def _generate(self, args: tuple, constraints: ChoiceMap, keys: KeyStream) -> tuple[Trace, Weight]: ...

    @abstractmethod
    def _update(self, trace: Trace, constraints: ChoiceMap, args: tuple, keys: KeyStream) -> tuple[Trace, Weight, ChoiceMap]: ...

    @abstractmethod
    def _regenerate(self, trace: Trace, selection: Selection, args: tuple, keys: KeyStream) -> tuple[Trace, Weight]: ...

    @abstractmethod
    def _assess(self, args: tuple, choices: ChoiceMap) -> tuple[Score, Any]: ...

    @abstractmethod
    def _project(self, trace: Trace, selection: Selection) -> Weight: ...

    def _check_args(self, args: tuple) -> tuple:
        return check_args(self, args)

    # -- public GFI -----------------------------------------------------------
    # A user's call evaluates the parameter checks of what it returns as a bare array (a weight, a
    # score) before returning; a trace carries its checks to its getters and to materialization
    # (genmlx.boundary).
    def simulate(self, args: tuple = (), *, key=None) -> Trace:
        """Sample a full trace: score = log p(choices)."""
        return self._simulate(self._check_args(args), KeyStream(resolve(key)))

    def generate(self, args: tuple = (), constraints=None, *, key=None) -> tuple[Trace, Weight]:
        """Trace agreeing with `constraints`; weight = log p(constrained choices | rest)."""
        mode = _b.user_call()
        cm = self._constraints(constraints)
        given = _b.given_values(f"{self.name}.generate", cm) if mode else ()
        tr, w = self._generate(self._check_args(args), cm, KeyStream(resolve(key)))
        if mode:
            _b.enforce(mode, (*given, *tr.checks), (tr,))
        return tr, w

    def update(self, trace: Trace, constraints=None, *, args: tuple | None = None, key=None):
        """New trace with `constraints` (and new `args`); returns (trace, weight, discard).

        weight = log p(new) - log p(old) - log q(fresh choices); the discard holds
        the replaced and removed choices' old values.
        """
        mode = _b.user_call()
        self._check_trace(trace)
        a = trace.args if args is None else self._check_args(args)
        cm = self._constraints(constraints)
        given = _b.given_values(f"{self.name}.update", cm) if mode else ()
        out = self._update(trace, cm, a, KeyStream(resolve(key)))
        if mode:
            _b.enforce(mode, (*given, *out[0].checks), (out[0],))
        return out

    def regenerate(self, trace: Trace, selection: Selection, *, args: tuple | None = None, key=None):
        """Resample the selected choices from their priors; weight = change in log density of the rest."""
        self._check_trace(trace)
        if not isinstance(selection, Selection):
            raise TypeError(f"{self.name}.regenerate: selection must be a Selection (gm.select(...)), got {type(selection).__name__}")
        mode = _b.user_call()
        a = trace.args if args is None else self._check_args(args)
        out = self._regenerate(trace, selection, a, KeyStream(resolve(key)))
        if mode:
            _b.enforce(mode, out[0].checks, (out[0],))
        return out

    def assess(self, args: tuple, choices) -> tuple[Score, Any]:
        """Joint log density of fully specified `choices`; error naming an unconstrained site."""
        mode = _b.user_call()
        if not mode:
            return self._assess(self._check_args(args), self._constraints(choices))
        cm = self._constraints(choices)
        given = _b.given_values(f"{self.name}.assess", cm)
        with _b.collecting() as checks:  # assess makes no trace: its executions hand their checks here
            out = self._assess(self._check_args(args), cm)
        _b.enforce(mode, given + checks)
        return out

    def project(self, trace: Trace, selection: Selection) -> Weight:
        """Log density of the selected choices of `trace`."""
        mode = _b.user_call()
        self._check_trace(trace)
        w = self._project(trace, selection)
        if mode:
            _b.enforce(mode, _b.unchecked(trace), (trace,))
        return w

    def propose(self, args: tuple = (), *, key=None):
        """Sample choices; returns (choices, weight = their log density, retval)."""
        mode = _b.user_call()
        tr = self.simulate(args, key=key)
        if mode:
            _b.enforce(mode, tr.checks, (tr,))
        return tr.get_choices(), tr.score, tr.retval

    def get_trace(self, args: tuple, choices) -> Trace:
        """The trace with exactly these choices (generate with everything constrained)."""
        tr, _ = self.generate(args, choices)
        return tr

    # -- vectorized -----------------------------------------------------------
    def vsimulate(self, args: tuple = (), n: int = 1, *, key=None, layout: str = "per_lane") -> Trace:
        """N traces in one pass; leaves are [N]-shaped. per_lane: equals N scalar runs with split keys.

        `layout="shared"`: one key for all lanes (faster; see `genmlx.vectorize`)."""
        return _vec.vsimulate(self, self._check_args(args), n, key, layout)

    def vgenerate(self, args: tuple = (), constraints=None, n: int = 1, *, key=None, layout: str = "per_lane"):
        """N constrained traces in one pass; returns (trace, weights [N]). `layout` as in `vsimulate`."""
        mode = _b.user_call()
        out = _vec.vgenerate(self, self._check_args(args), self._constraints(constraints), n, key, layout)
        if mode:
            _b.enforce(mode, out[0].checks, (out[0],))
        return out

    def vupdate(self, trace: Trace, constraints=None, *, args: tuple | None = None, key=None,
                layout: str = "per_lane"):
        """Batched update of a vectorized trace; weights and discard leaves are [N]."""
        mode = _b.user_call()
        out = _vec.vupdate(self, trace, self._constraints(constraints), args, key, layout)
        if mode:
            _b.enforce(mode, out[0].checks, (out[0],))
        return out

    def vregenerate(self, trace: Trace, selection: Selection, *, args: tuple | None = None, key=None,
                    layout: str = "per_lane"):
        """Batched regenerate of a vectorized trace; weights are [N]."""
        mode = _b.user_call()
        out = _vec.vregenerate(self, trace, selection, args, key, layout)
        if mode:
            _b.enforce(mode, out[0].checks, (out[0],))
        return out

    # -- helpers ----------------------------------------------------------------
    def _constraints(self, c) -> ChoiceMap:
        return as_choicemap(c)

    def _check_trace(self, trace) -> None:
        if not isinstance(trace, Trace):
            raise TypeError(f"{self.name}: expected a Trace, got {type(trace).__name__}")
        if trace.gen_fn is not self:
            raise ValueError(f"{self.name}: this trace was made by {getattr(trace.gen_fn, 'name', trace.gen_fn)!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def same_callee(a, b) -> bool:
    """The callee at an address is unchanged: the same object, or an equal combinator built anew
    (`gm.trace("v", gm.switch(f, g), k)` makes a new, equal Switch on every run)."""
    return a is b or (type(a) is type(b) and a == b)
