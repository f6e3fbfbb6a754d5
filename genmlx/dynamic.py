"""`@gen` dynamic generative functions: Python functions that call `gm.trace`."""

from __future__ import annotations

import functools
import inspect

import mlx.core as mx

from . import boundary as _boundary
from .sums import signed_sum
from .choicemap import ChoiceMap
from .gfi import GenerativeFunction, check_args
from .handler import (
    AssessHandler,
    GenerateHandler,
    RegenerateHandler,
    SimulateHandler,
    UpdateHandler,
    check_consumed,
)
from .selection import Selection
from .trace import Trace

__all__ = ["DynamicGenFn", "gen"]


def _zero() -> mx.array:
    return mx.array(0.0)


class DynamicGenFn(GenerativeFunction):
    """A generative function defined by a Python body that calls `gm.trace`.

    Addresses: whatever the body passes to `gm.trace` (strings, ints, tuple
    paths, computed in loops); a nested call's choices sit under its address.
    """

    def __init__(self, fn):
        self.fn = fn
        self.name = getattr(fn, "__name__", "gen_fn")
        functools.update_wrapper(self, fn)
        sig = inspect.signature(fn)
        ps = list(sig.parameters.values())
        if any(p.kind is p.VAR_POSITIONAL for p in ps):
            self._arity = (sum(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in ps), None)
        else:
            pos = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            self._arity = (sum(p.default is p.empty for p in pos), len(pos))
        self._argnames = [p.name for p in ps]

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        lo, hi = self._arity
        n = len(args)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            raise TypeError(
                f"{self.name} expects {want} argument(s) ({', '.join(self._argnames)}), got {n}: args={_short(args)}"
            )
        return args

    def __call__(self, *args):
        """Run the model untraced (choices drawn from genmlx's stream); returns its retval."""
        return self.simulate(args).retval

    def _run(self, h, args):
        h.args = args  # site accounting keys an execution by its arguments (genmlx.site_counts)
        with h:
            return self.fn(*args)

    def _make(self, args, retval, h) -> Trace:
        return Trace(self, args, retval, signed_sum(h.scores) if h.scores else _zero(), h.sites, h.finish_checks())

    def _simulate(self, args, keys):
        h = SimulateHandler(self, keys)
        r = self._run(h, args)
        return self._make(args, r, h)

    def _generate(self, args, constraints: ChoiceMap, keys):
        h = GenerateHandler(self, keys, constraints)
        r = self._run(h, args)
        check_consumed(h, constraints)
        return self._make(args, r, h), signed_sum(h.weights) if h.weights else _zero()

    def _update(self, trace: Trace, constraints: ChoiceMap, args, keys):
        h = UpdateHandler(self, keys, trace, constraints)
        r = self._run(h, args)
        h.finish_removed()
        check_consumed(h, constraints)
        return self._make(args, r, h), h.result_weight(), ChoiceMap._from_leaves(h.discard)

    def _regenerate(self, trace: Trace, selection: Selection, args, keys):
        h = RegenerateHandler(self, keys, trace, selection)
        r = self._run(h, args)
        return self._make(args, r, h), h.result_weight()

    def _assess(self, args, choices: ChoiceMap):
        h = AssessHandler(self, choices)
        r = self._run(h, args)
        check_consumed(h, choices)
        if _boundary._sinks:  # a user's assess: it has no trace to carry the checks (genmlx.boundary)
            _boundary.collect(h.finish_checks())
        return (signed_sum(h.scores) if h.scores else _zero()), r

    def _project(self, trace: Trace, selection: Selection):
        w = None
        for p, st in trace.sites.items():
            if st.sites is None:
                if selection.contains_path(p):
                    w = st.score if w is None else w + st.score
            else:
                sub = selection.get_subselection(p)
                if sub.is_empty():
                    continue
                x = st.gen_fn._project(st, sub)
                w = x if w is None else w + x
        return w if w is not None else _zero()


def _short(args) -> str:
    s = repr(args)
    return s if len(s) < 80 else s[:77] + "..."


def gen(fn) -> DynamicGenFn:
    """Decorator: turn a Python function calling `gm.trace` into a generative function."""
    return DynamicGenFn(fn)
