"""Counting live `mx.array` Python objects ("wrappers").

MLX exposes no live-array count, but `mx.array` objects are tracked by
Python's cyclic garbage collector, so ``operator.countOf(map(type,
gc.get_objects()), mx.array)`` counts every one of them exactly (arrays
subclassing `mx.array` are not counted). Arrays moved to the permanent
generation by `gc.freeze()` are invisible to `gc.get_objects()` and so to
every count here.

Costs (MLX 0.32, CPU, Python 3.11, 2 cores; see benchmarks/test_bench_memory.py):

* `live_arrays()`: one pass over the GC heap, about 20 ns per tracked object
  (0.4 ms with 20,000 objects, 1.7 ms with 80,000). Exact.
* `Census.count()`: the incremental census for per-step use. It remembers how
  many arrays sat in the oldest generation (2) at its last full census and
  adds the arrays currently in generations 0 and 1 (`gc.get_objects(0)` and
  `(1)`: at most a few thousand objects; 1-6 us measured, up to about 30 us
  when the young generations are full). Objects only
  enter generation 2 through a collection of generation 1 or 2; a
  `gc.callbacks` hook notices those and the next `count()` takes a full census
  again. Arrays dying in generation 2 make the estimate an over-count, never
  an under-count: it is an exact upper bound, exact again after `full()`.
  On Python >= 3.14 (incremental collector, different generations) every
  count is a full census.
* `exclude=`: arrays reachable from the excluded object (e.g. the driver's list
  of kept samples) are subtracted, deduplicated by identity. The `Census`
  walks only the new items of an excluded list that grew since its last call;
  any other change (another object, a shorter list) walks it all again.
"""

from __future__ import annotations

import gc
import operator
import sys
import threading
from typing import Any

import mlx.core as mx

from .walk import walk

__all__ = ["live_arrays", "live_array_objects", "young_array_objects", "Census"]

_ARRAY = mx.array
_INCREMENTAL = sys.version_info < (3, 14)

# Bumped whenever a collection of generation >= 1 may have moved young objects
# into generation 2 (on "start" and "stop", so a census run from a finalizer
# in mid-collection is invalidated too).
_epoch = 0


def _on_gc(phase: str, info: dict) -> None:
    global _epoch
    if info.get("generation", 2) >= 1:
        _epoch += 1


gc.callbacks.append(_on_gc)


def _count(objs: list) -> int:
    return operator.countOf(map(type, objs), _ARRAY)


def live_arrays(exclude: Any = None) -> int:
    """Exact number of live `mx.array` objects, minus those reachable from `exclude`.

    Args:
        exclude: any object (a list of traces, a dict, a Trace, ...) whose
            arrays are not counted; walked like `materialize` walks
            (`_genmlx_arrays()` protocol, containers, dataclasses).
    """
    n = _count(gc.get_objects())
    if exclude is not None:
        n -= len(walk(exclude)[0])
    return n


def live_array_objects() -> list[mx.array]:
    """Every live `mx.array` object (a new list: holding it keeps them alive)."""
    return [o for o in gc.get_objects() if type(o) is _ARRAY]


def young_array_objects() -> list[mx.array]:
    """Live arrays in GC generations 0 and 1: those created or touched recently."""
    was = gc.isenabled()
    gc.disable()
    try:
        young = gc.get_objects(0) + gc.get_objects(1)
    finally:
        if was:
            gc.enable()
    return [o for o in young if type(o) is _ARRAY]


class _Exclusion:
    """Cached count of the arrays reachable from an excluded object."""

    __slots__ = ("target", "length", "seen")

    def __init__(self):
        self.target = None  # id() of the object last excluded
        self.length = -1
        self.seen: set[int] = set()  # ids only: the census must keep no array alive

    def count(self, exclude: Any, exact: bool) -> int:
        if exclude is None:
            self.target, self.length, self.seen = None, -1, set()
            return 0
        is_list = type(exclude) is list
        if not exact and is_list and id(exclude) == self.target and len(exclude) >= self.length:
            if len(exclude) > self.length:  # walk only what was appended
                self.seen.update(walk(exclude[self.length :])[0])
        else:
            self.seen = set(walk(exclude)[0])
        self.target = id(exclude)
        self.length = len(exclude) if is_list else -1
        return len(self.seen)


class Census:
    """Incremental live-array census: cheap per step, an exact upper bound.

    `count()` returns at least the true number of live arrays (minus excluded
    ones), usually exactly it; `full()` is always exact. `exact` says whether
    the last result came from a full census.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._epoch = None  # forces a full census first
        self._old = 0  # arrays in generation 2 at the last full census
        self._excl = _Exclusion()
        self.exact = False
        self.full_censuses = 0

    def excluded_ids(self) -> set[int]:
        """Ids of the arrays the last count excluded (do not modify)."""
        return self._excl.seen

    def count(self, exclude: Any = None) -> int:
        """Live arrays not reachable from `exclude`: exact or an over-count."""
        return self._measure(exclude, force=False, rewalk=False)

    def full(self, exclude: Any = None, rewalk: bool = False) -> int:
        """Exact count (a full census), which also refreshes the incremental state.

        Args:
            exclude: as for `count`.
            rewalk: walk all of `exclude` again, exact even if items of an
                excluded list were replaced in place. By default a list that
                only grew is walked from where the last call stopped (exact
                for append-only lists; a shorter list is walked again).
        """
        return self._measure(exclude, force=True, rewalk=rewalk)

    def _measure(self, exclude: Any, force: bool, rewalk: bool) -> int:
        with self._lock:
            was = gc.isenabled()
            gc.disable()  # no automatic collection may move objects between our reads
            try:
                for _ in range(3):
                    seen = _epoch
                    full = force or not _INCREMENTAL or self._epoch != seen
                    young = _count(gc.get_objects(0)) + _count(gc.get_objects(1))
                    if full:
                        old = _count(gc.get_objects(2)) if _INCREMENTAL else _count(gc.get_objects()) - young
                    if _epoch == seen:  # else another thread ran gc.collect(): read again
                        break
                    force = True
            finally:
                if was:
                    gc.enable()
            if full:
                self._old, self._epoch = old, seen
                self.full_censuses += 1
            self.exact = full
            return self._old + young - self._excl.count(exclude, exact=rewalk)
