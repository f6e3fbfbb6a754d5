"""Finding the arrays (and deferred checks) inside arbitrary Python objects.

The memory layer walks objects in three places: `materialize` (evaluate all of
them in one `mx.eval`), the census's `exclude=` (arrays a caller keeps on
purpose) and `graph_cost` (a function's inputs and outputs). The walk knows:

* `mx.array` leaves;
* `genmlx.checks.DeferredCheck` (its lazy `ok` array, and the check itself);
* objects implementing `_genmlx_arrays()` (Trace, ChoiceMap, ...): whatever it
  yields is walked in turn, plus the object's `checks` attribute and its
  `_genmlx_checks()` method when present;
* dict values, list / tuple (NamedTuple included) / set / frozenset / deque
  items, and dataclass fields.

Anything else (numbers, strings, None, arbitrary objects) is a non-array leaf
and ignored. Arrays are deduplicated by identity, containers are visited once
(cycles are safe) and the walk is iterative (no recursion limit).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterator

import mlx.core as mx

from genmlx.checks import DeferredCheck

__all__ = ["walk", "arrays_in", "count_arrays_in"]

_ARRAY = mx.array
_SCALARS = (int, float, complex, str, bytes, bool, type(None))


def walk(obj: Any) -> tuple[dict[int, mx.array], list[DeferredCheck]]:
    """All distinct arrays and deferred checks reachable from `obj`.

    Returns:
        `(arrays, checks)`: `arrays` maps `id(array) -> array` (deduplicated by
        identity; a check's `ok` array is included), `checks` lists the
        `DeferredCheck`s in visit order.
    """
    arrays: dict[int, mx.array] = {}
    checks: list[DeferredCheck] = []
    for kind, x in _iter(obj):
        if kind:
            checks.append(x)
            if type(x.ok) is _ARRAY:
                arrays[id(x.ok)] = x.ok
        else:
            arrays[id(x)] = x
    return arrays, checks


def arrays_in(obj: Any) -> list[mx.array]:
    """The distinct arrays reachable from `obj` (deferred checks' `ok` included)."""
    return list(walk(obj)[0].values())


def count_arrays_in(obj: Any, seen: dict[int, mx.array] | None = None) -> int:
    """Number of distinct arrays reachable from `obj` not already in `seen`.

    `seen` (id -> array) is updated in place, so repeated calls over the new
    items of a growing list count each array once.
    """
    seen = {} if seen is None else seen
    before = len(seen)
    seen.update(walk(obj)[0])
    return len(seen) - before


def _iter(obj: Any) -> Iterator[tuple[bool, Any]]:
    """Yield `(False, array)` and `(True, DeferredCheck)` reachable from `obj`."""
    stack = [obj]
    visited: set[int] = set()
    while stack:
        o = stack.pop()
        t = type(o)
        if t is _ARRAY:
            yield False, o
            continue
        if isinstance(o, _SCALARS):
            continue
        if isinstance(o, _ARRAY):  # a subclass of mx.array
            yield False, o
            continue
        oid = id(o)
        if oid in visited:
            continue
        visited.add(oid)
        if t is DeferredCheck:
            yield True, o
            continue
        # Children are pushed in reverse so they pop in order: checks are
        # raised in visit order, the first failing one wins.
        produce = getattr(t, "_genmlx_arrays", None)
        more = getattr(t, "_genmlx_checks", None)
        if produce is not None or more is not None:
            children = list(produce(o)) if produce is not None else []
            if produce is not None:
                children.extend(getattr(o, "checks", None) or ())
            if more is not None:
                children.extend(more(o))
            stack.extend(reversed(children))
        elif isinstance(o, dict):
            stack.extend(reversed(o.values()))
        elif isinstance(o, (list, tuple, collections.deque)):
            stack.extend(reversed(o))
        elif isinstance(o, (set, frozenset)):
            stack.extend(o)
        elif dataclasses.is_dataclass(o) and not isinstance(o, type):
            stack.extend(reversed([getattr(o, f.name) for f in dataclasses.fields(o)]))
