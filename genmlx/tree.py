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


def arrays_and_checks(obj) -> tuple[list, list]:
    """All arrays and deferred checks reachable from `obj` (each object visited once)."""
    arrays: list = []
    checks: list = []
    seen: set = set()
    _walk(obj, arrays, checks, seen)
    return arrays, checks


def _walk(o, arrays, checks, seen) -> None:
    if o is None or isinstance(o, (int, float, str, bool)):
        return
    if isinstance(o, mx.array):
        arrays.append(o)
        return
    oid = id(o)
    if oid in seen:
        return
    seen.add(oid)
    if isinstance(o, (list, tuple)):
        for x in o:
            _walk(x, arrays, checks, seen)
        return
    if isinstance(o, dict):
        for x in o.values():
            _walk(x, arrays, checks, seen)
        return
    f = getattr(o, "_genmlx_arrays", None)
    if f is not None:
        for x in f():
            _walk(x, arrays, checks, seen)
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
