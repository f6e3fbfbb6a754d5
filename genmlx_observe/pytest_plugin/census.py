"""The leak gate's census of one loop: exact, and not proportional to the heap.

A census counts, at the end of a driver step:

* **live arrays** outside the loop's result store and state: every live
  `mx.array` minus those reachable from the store, and from the stores of
  the other loops active at that moment in any thread (`kept_array_ids`; each
  kept sample is walked once, the store only grows) and from the algorithm's
  current state (`loop_state`);
* **pending graph nodes** over every live array outside the store (kept
  samples are materialized by the driver), with `genmlx.memory.count_nodes`.
  Old arrays are included, so an in-place ``s += x`` on an old array is seen
  (`genmlx.memory.young_pending_nodes` misses it).

Every census first collects the young GC generations (`gc.collect(1)`:
cyclic garbage is not growth). The first census of a loop then scans the
whole heap and remembers every array outside the store through a weak
reference. Later censuses only scan the young generations (objects that
survived since the last census) plus those weak references. That is exact as
long as nothing but the censuses moves objects to the oldest generation:
while a loop is measured, automatic collections of generations 1 and 2 are
postponed (`gc.set_threshold`; generation 0 still collects as usual), and any
other collection (an explicit `gc.collect()` by the code under test) makes
the next census a full scan again. Python >= 3.14 (incremental collector)
always scans the whole heap.

No census runs a full collection, whose cost grows with the heap (about
0.25 us per object, ten times a scan). Garbage in the oldest generation is
therefore counted: old garbage from before the loop stays constant while
collections are postponed, and arrays that die inside reference cycles after
reaching the oldest generation stay counted until a full collection.
`Census.exact` (used to confirm a suspected leak) runs one, and says how many
arrays of the first census it freed, so the first point can be corrected.
"""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from typing import Any, Callable

try:
    from mlx.core import array as _ARRAY
except ImportError:  # pragma: no cover - mlx is a dependency
    _ARRAY = None

__all__ = ["Census", "kept_array_ids", "loop_state", "postpone_old_collections", "restore_collections"]

_GENERATIONS = sys.version_info < (3, 14)  # young/old generations as the fast path assumes
_ATOMS = frozenset((int, float, bool, str, bytes, complex, type(None)))
_MISSING = object()
_PRUNE: tuple | None = None
_DESCEND: dict[type, bool] = {}  # per type: walk into its objects? (decided once per type)

_ours = 0  # the thread whose census runs its own collection now (0: none)
_foreign = 0  # collections of generation >= 1 that no census ran
_census_collects: dict[int, int] = {}  # per thread: collections its censuses ran


def _stamp() -> tuple[int, int]:
    """Collections that may have moved this thread's young arrays to the old generation unseen:
    foreign ones, and other threads' censuses' (a loop in another thread runs its own)."""
    me = threading.get_ident()
    return _foreign, sum(n for t, n in list(_census_collects.items()) if t != me)
_postponed = 0  # loops being measured (nesting)
_saved_threshold: tuple | None = None


def _on_gc(phase: str, info: dict) -> None:
    global _foreign
    if phase == "start" and _ours != threading.get_ident() and info.get("generation", 2) >= 1:
        _foreign += 1


gc.callbacks.append(_on_gc)


def _collect(generation: int | None = None) -> None:
    global _ours
    me = threading.get_ident()
    _ours = me
    try:
        gc.collect() if generation is None else gc.collect(generation)
    finally:
        _ours = 0
        _census_collects[me] = _census_collects.get(me, 0) + 1


def postpone_old_collections() -> None:
    """While a loop is measured, only generation 0 is collected automatically."""
    global _postponed, _saved_threshold
    if _postponed == 0:
        _saved_threshold = gc.get_threshold()
        gc.set_threshold(_saved_threshold[0], 1 << 30, 1 << 30)
    _postponed += 1


def restore_collections() -> None:
    """Undo one `postpone_old_collections` (the thresholds come back after the last)."""
    global _postponed
    if _postponed > 0:
        _postponed -= 1
        if _postponed == 0 and _saved_threshold is not None:
            gc.set_threshold(*_saved_threshold)


def _prune_types() -> tuple:
    global _PRUNE
    if _PRUNE is None:
        import types

        from genmlx.distributions.base import Distribution
        from genmlx.gfi import GenerativeFunction

        code = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                types.CodeType, types.FrameType, types.GeneratorType, types.CellType)
        _PRUNE = (code, GenerativeFunction, Distribution)
    return _PRUNE


def _descends(t: type) -> bool:
    code, gen_fn, dist = _prune_types()
    ok = not issubclass(t, code) and (not issubclass(t, gen_fn) or issubclass(t, dist))
    _DESCEND[t] = ok
    return ok


def kept_array_ids(roots: Any, ids: set[int], visited: set[int] | None = None) -> None:
    """Add to `ids` the id of every `mx.array` reachable from `roots` (what a result store keeps).

    Reachability is Python's own (`gc.get_referents`), not only the walk
    protocol (`_genmlx_arrays()`): a trace keeps, for instance, the parameter
    arrays of its sites' distribution objects. It stops at shared program
    objects, which the store does not own: modules, classes, functions and
    code, and generative functions other than distributions (a model's memo
    cache is not a result; a distribution object made at a site holds that
    site's parameters).
    """
    visited = set() if visited is None else visited
    # The roots themselves are not remembered: a temporary list (a slice of
    # the store) dies, and a later object may reuse its id.
    stack = list(roots) if type(roots) in (list, tuple) else [roots]
    get, descend, atoms, array = gc.get_referents, _DESCEND, _ATOMS, _ARRAY
    pop, push, seen, add = stack.pop, stack.extend, visited, visited.add
    while stack:
        o = pop()
        t = type(o)
        if t is array:
            ids.add(id(o))
            continue
        if t in atoms:
            continue
        d = descend.get(t)
        if d is None:
            d = _descends(t)
        if not d:
            continue
        i = id(o)
        if i in seen:
            continue
        add(i)
        push(get(o))


def loop_state(ev: Any) -> Any:
    """The algorithm's state after the step (or run) that `ev` reports; None if not found.

    From the event when it carries one (a `state` field), else from the
    driver's frame, which is on the stack while observers of its events run.
    """
    state = getattr(ev, "state", _MISSING)
    if state is not _MISSING:
        ahead = getattr(ev, "ahead", None)  # a pipelined run's next step, in flight: held by the loop too
        return state if ahead is None else (state, ahead)
    f = sys._getframe(1)
    for _ in range(8):
        if f is None:
            return None
        if f.f_code.co_name == "run" and f.f_globals.get("__name__") == "genmlx.inference.driver":
            return f.f_locals.get("state")
        f = f.f_back
    return None


class Census:
    """Exact counts for one loop, cheap after the first (see the module docstring)."""

    def __init__(self, store: Any, others: Callable[[], list] | None = None):
        self.store = store
        self.others = others  # the Census of every loop active now (any thread), to exclude their stores
        self._lock = threading.Lock()  # another thread's census may walk this store too
        self.store_ids: set[int] = set()
        self._visited: set[int] = set()  # store objects already walked (kept alive by the store)
        self._walked = 0
        self._old: dict[int, weakref.ref] = {}  # arrays outside the store at the last census
        self._first: list[weakref.ref] = []  # arrays outside the store at the first census
        self._foreign = -1  # forces a full scan first
        self.full_censuses = 0

    def close(self) -> None:
        """Drop every reference to the loop's results."""
        with self._lock:
            self.store = None
            self.store_ids, self._visited, self._old, self._first = set(), set(), {}, []

    def _excluded(self) -> set[int]:
        """Ids of the arrays kept by this loop's store and every other active loop's (any thread).

        Two loops running at once in two threads must not count each other's
        kept samples as growth. Each store is walked only where it grew.
        """
        others = [c for c in self.others() if c is not self] if self.others is not None else []
        with self._lock:
            self._walk_store()
            if not others:
                return self.store_ids
            ids = set(self.store_ids)
        for c in others:
            with c._lock:
                c._walk_store()
                ids |= c.store_ids
        return ids

    def _walk_store(self) -> None:
        store = self.store
        if isinstance(store, list):
            if len(store) < self._walked:  # not append-only after all: walk it again
                self.store_ids, self._visited, self._walked = set(), set(), 0
            if len(store) > self._walked:
                kept_array_ids(store[self._walked:], self.store_ids, self._visited)
                self._walked = len(store)
        elif store is not None:
            self.store_ids, self._visited = set(), set()
            kept_array_ids(store, self.store_ids, self._visited)

    def take(self, state: Any, exact: bool = False) -> tuple[int, int, int]:
        """`(live, pending, state_arrays)`; `exact` runs a full collection first."""
        from genmlx.memory import count_nodes

        stamp = _stamp()
        ids = self._excluded()
        first = self._foreign == -1
        if exact or first or self._foreign != stamp or not _GENERATIONS:
            _collect(None if exact else 1)
            arrays = [a for a in gc.get_objects() if type(a) is _ARRAY and id(a) not in ids]
            self.full_censuses += 1
        else:
            arrays = self._incremental(ids)
        self._foreign = stamp
        self._old = {id(a): weakref.ref(a) for a in arrays}
        if first:
            self._first = list(self._old.values())
        held: set[int] = set()
        if state is not None:
            kept_array_ids(state, held)
        held = {i for i in held if i not in ids}  # a kept sample that is also the state counts once
        pending = count_nodes(*arrays) if arrays else 0
        live = len(arrays) - sum(1 for a in arrays if id(a) in held)
        del arrays
        return live, pending, len(held)

    def exact(self, state: Any) -> tuple[int, int, int]:
        """An exact census (full collection) now: `(live, pending, freed)`.

        `freed` counts arrays of the first census that this collection freed:
        garbage that the first point counted (or that became garbage since).
        """
        before = sum(1 for r in self._first if r() is not None)
        live, pending, _ = self.take(state, exact=True)
        return live, pending, before - sum(1 for r in self._first if r() is not None)

    def survivors(self, state: Any) -> tuple[list, list]:
        """`(new, outside)`: arrays outside the store and state, `new` those not alive at the first census.

        Identity, not id: an array of the first census counts as old only
        while its weak reference still points to it. For the leak diagnosis.
        """
        first = {id(a) for r in self._first if (a := r()) is not None}
        skip = set(self._excluded())
        if state is not None:
            kept_array_ids(state, skip)
        outside = [a for a in gc.get_objects() if type(a) is _ARRAY and id(a) not in skip]
        return [a for a in outside if id(a) not in first], outside

    def outside(self) -> list:
        """Every live array outside the store (one heap scan; for the leak diagnosis)."""
        ids = self._excluded()
        return [a for a in gc.get_objects() if type(a) is _ARRAY and id(a) not in ids]

    def _incremental(self, ids: set[int]) -> list:
        was = gc.isenabled()
        gc.disable()  # no collection may move objects between the two reads
        try:
            young = [a for g in (0, 1) for a in gc.get_objects(g) if type(a) is _ARRAY and id(a) not in ids]
        finally:
            if was:
                gc.enable()
        refs = [weakref.ref(a) for a in young]
        del young
        _collect(1)  # young cyclic garbage goes; the survivors join the old generation
        alive = {i: r for i, r in self._old.items() if i not in ids}
        alive.update((id(a), r) for r in refs if (a := r()) is not None and id(a) not in ids)
        return [a for r in alive.values() if (a := r()) is not None]
