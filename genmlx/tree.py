"""Walking the arrays inside traces, choicemaps and Python containers.

`arrays_and_checks` feeds the driver's single `mx.eval`; `flatten`/`unflatten`
let `mx.vmap` carry whole traces (vectorized execution).
Objects join the walk through two small protocols: `_genmlx_arrays()` yields
their arrays, and `_genmlx_tree()` / `_genmlx_rebuild(leaves)` expose a
structure for flatten/unflatten.
"""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx

__all__ = ["arrays_and_checks", "flatten", "unflatten", "map_arrays"]


def arrays_and_checks(obj, traces: list | None = None) -> tuple[list, list]:
    """All arrays and deferred checks reachable from `obj` (each object visited once).

    A Trace marked ready (`mark_ready`: all its arrays already evaluated and its
    checks passed; traces are immutable) is skipped with everything under it.
    With `traces`, the walked Traces are appended to it (to mark them after
    the evaluation).
    """
    arrays: list = []
    checks: list = []
    seen: set = set()
    _walk(obj, arrays, checks, seen, traces)
    return arrays, checks


def mark_ready(traces: list) -> None:
    """Mark traces whose arrays are all evaluated and whose checks passed: later walks skip them."""
    for t in traces:
        _set(t, "_ready", True)


_set = object.__setattr__
_Trace = None


def _walk_trace(t, arrays, checks, seen, traces) -> None:
    # The common case of the driver's walk, written out: a Trace (see Trace._genmlx_arrays).
    if t._ready:
        return
    oid = id(t)
    if oid in seen:
        return
    seen.add(oid)
    if traces is not None:
        traces.append(t)
    x = t.score
    if type(x) is mx.array:
        arrays.append(x)
    elif x is not None:
        _walk(x, arrays, checks, seen, traces)
    x = t.retval
    if type(x) is mx.array:
        arrays.append(x)
    elif x is not None:
        _walk(x, arrays, checks, seen, traces)
    if t.args:
        _walk(t.args, arrays, checks, seen, traces)
    if t.aux is not None:
        _walk(t.aux, arrays, checks, seen, traces)
    sites = t.sites
    if sites is not None:
        T = _Trace
        for st in sites.values():
            if type(st) is T:
                _walk_trace(st, arrays, checks, seen, traces)
            else:
                _walk(st, arrays, checks, seen, traces)
    elif getattr(t.gen_fn, "_is_distribution", False):
        for k, v in getattr(t.gen_fn, "__dict__", {}).items():
            if type(v) is mx.array:
                arrays.append(v)
            elif isinstance(v, (list, tuple)) and v:  # (under vmap, _lazy_checks holds its own lazy arrays)
                _walk(v, arrays, checks, seen, traces)
    if t.checks:
        checks.extend(t.checks)


def _walk(o, arrays, checks, seen, traces=None) -> None:
    global _Trace
    t = type(o)
    if t is mx.array:
        arrays.append(o)
        return
    if o is None or t in (int, float, str, bool):
        return
    if _Trace is None:
        from .trace import Trace as _T

        _Trace = _T
    if t is _Trace:
        _walk_trace(o, arrays, checks, seen, traces)
        return
    if isinstance(o, (int, float, str, bool)):
        return
    if isinstance(o, mx.array):
        arrays.append(o)
        return
    oid = id(o)
    if oid in seen:
        return
    seen.add(oid)
    if isinstance(o, _Trace):  # a Trace subclass (a compiled chain's state): its own arrays, as below
        if o._ready:
            return
        if traces is not None:
            traces.append(o)
    if isinstance(o, (list, tuple)):
        for x in o:
            _walk(x, arrays, checks, seen, traces)
        return
    if isinstance(o, dict):
        for x in o.values():
            _walk(x, arrays, checks, seen, traces)
        return
    f = getattr(o, "_genmlx_arrays", None)
    if f is not None:
        for x in f():
            _walk(x, arrays, checks, seen, traces)
        cs = getattr(o, "checks", None)
        if cs:
            checks.extend(cs)
        return
    g = getattr(o, "_genmlx_checks", None)
    if g is not None:
        checks.extend(g())


def map_arrays(fn: Callable[[mx.array], Any], obj):
    """Rebuild `obj` with `fn` applied to every array leaf."""
    leaves, rebuild = flatten(obj)
    return rebuild([fn(x) for x in leaves])


def flatten(obj) -> tuple[list, Callable[[list], Any]]:
    """Array leaves of `obj` and a function rebuilding it from new leaves."""
    leaves: list = []
    spec = _spec(obj, leaves)
    return leaves, lambda new: _build(spec, iter(new))


def unflatten(rebuild, leaves):
    return rebuild(leaves)


def _spec(o, leaves):
    if isinstance(o, mx.array):
        leaves.append(o)
        return ("leaf",)
    if isinstance(o, tuple) and hasattr(o, "_fields"):
        return ("named", type(o), [_spec(x, leaves) for x in o])
    if isinstance(o, (list, tuple)):
        return ("seq", type(o), [_spec(x, leaves) for x in o])
    if isinstance(o, dict):
        return ("dict", type(o), [(k, _spec(v, leaves)) for k, v in o.items()])
    t = None if isinstance(o, type) else getattr(o, "_genmlx_tree", None)  # a class is static
    if t is not None:
        parts, rebuild = t()
        return ("obj", rebuild, _spec(parts, leaves))
    return ("static", o)


def _build(spec, it):
    kind = spec[0]
    if kind == "leaf":
        return next(it)
    if kind == "named":
        return spec[1](*[_build(s, it) for s in spec[2]])
    if kind == "seq":
        return spec[1](_build(s, it) for s in spec[2])
    if kind == "dict":
        return spec[1]((k, _build(s, it)) for k, s in spec[2])
    if kind == "obj":
        return spec[1](_build(spec[2], it))
    return spec[1]
