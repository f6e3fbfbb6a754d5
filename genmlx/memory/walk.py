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

__all__ = ["walk", "arrays_in"]

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


# How to walk an object is decided once per type (failed attribute lookups on
# every object would dominate the walk's cost).
_SKIP, _LEAF, _CHECK, _PROTO_ARRAYS, _PROTO_CHECKS, _PROTO_BOTH, _MAP, _SEQ, _SET, _DATACLASS = range(10)
_kinds: dict[type, int] = {}


def _classify(t: type) -> int:
    if issubclass(t, _ARRAY):
        return _LEAF
    if t is DeferredCheck:
        return _CHECK
    if issubclass(t, _SCALARS) or issubclass(t, type):
        return _SKIP
    # Protocol methods are looked up on the type (immune to __getattr__ proxies).
    arrays = getattr(t, "_genmlx_arrays", None) is not None
    checks = getattr(t, "_genmlx_checks", None) is not None
    if arrays or checks:
        return _PROTO_BOTH if arrays and checks else (_PROTO_ARRAYS if arrays else _PROTO_CHECKS)
    if issubclass(t, dict):
        return _MAP
    if issubclass(t, (list, tuple, collections.deque)):
        return _SEQ
    if issubclass(t, (set, frozenset)):
        return _SET
    if dataclasses.is_dataclass(t):
        return _DATACLASS
    return _SKIP


def _iter(obj: Any) -> Iterator[tuple[bool, Any]]:
    """Yield `(False, array)` and `(True, DeferredCheck)` reachable from `obj`.

    Children are pushed in reverse so they pop in order: checks are raised in
    visit order, the first failing one wins.
    """
    stack = [obj]
    visited: set[int] = set()
    kinds = _kinds
    while stack:
        o = stack.pop()
        t = type(o)
        k = kinds.get(t)
        if k is None:
            k = kinds[t] = _classify(t)
        if k == _LEAF:
            yield False, o
            continue
        if k == _SKIP:
            continue
        oid = id(o)
        if oid in visited:
            continue
        visited.add(oid)
        if k == _SEQ:
            stack.extend(reversed(o))
        elif k == _MAP:
            stack.extend(reversed(o.values()))
        elif k == _CHECK:
            yield True, o
        elif k == _SET:
            stack.extend(o)
        elif k == _DATACLASS:
            stack.extend(reversed([getattr(o, f.name) for f in dataclasses.fields(o)]))
        else:
            children = []
            if k != _PROTO_CHECKS:
                children.extend(o._genmlx_arrays())
                children.extend(getattr(o, "checks", None) or ())
            if k != _PROTO_ARRAYS:
                children.extend(o._genmlx_checks())
            stack.extend(reversed(children))
