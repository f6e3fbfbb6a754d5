"""How `check_budget` measures: rate-limited, extrapolated, confirmed before raising.

The loop driver calls `check_budget(where, exclude=kept_samples)` after each
step's materialization. With no budget that is a single test. With one, a
*measurement* takes the incremental census (`Census.count`: its cost
grows with the objects in GC generations 0 and 1, 5-150 us) and the pending
nodes of young arrays (`young_pending_nodes`: 0.05-0.5 ms), and a rarer
*sweep* counts pending nodes over every live array (which finds an old array
updated in place, as ``s += x`` does). Both are rate-limited to a share of
the run's wall time (`_DUTY` = 3%, `_SWEEP_DUTY` = 1.5%), with two exceptions:
when usage extrapolated from the last measurements passes half the limit
(`_TIGHT`), every check measures (and sweeps, if old graphs grow); the first
check under a new budget is a sweep. Checks between measurements return None
(about 0.6 us). A measurement costs from 10 us to a few ms (it grows with the
young objects and arrays on the heap); rate-limited, a budget added about 1%
to a 5-site MH loop (365 vs 369 us per step, best of 8 runs of 1,000 steps,
MLX 0.32 CPU, 2 cores). Unmeasured growth is bounded by what a loop can build between
two measurements (a few milliseconds to tens of milliseconds apart) — far
below the half-budget margin for any realistic budget.

Arrays reachable from `exclude` (results kept on purpose: the driver keeps
materialized samples) are left out of measurements and sweeps, so their cost
does not grow with the number of kept samples; the exact recount below
includes them.

When a measurement exceeds the limit: `mx.clear_cache()`, a garbage
collection (arrays held only by reference cycles are garbage, not a leak), an
exact recount, and `ResourceLimitExceeded` if still over.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from .api import clear_cache
from .census import Census, live_array_objects, young_array_objects
from .errors import ResourceLimitExceeded
from .graph import pending_node_ids

__all__ = ["check", "state", "census"]

_DUTY = 0.03  # measurements (census + young pending nodes): about this share of wall time
_SWEEP_DUTY = 0.015  # sweeps over every live array: about this share
_TIGHT = 0.5  # extrapolated usage above this fraction of the limit: measure at every check


class _State:
    """What the last check measured, and when the next costly measurements are due."""

    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        self.live: int | None = None  # last measured
        self.pending: int | None = None
        self.base: tuple | None = None  # (live, pending) at the budget's first measurement
        self.checks = 0
        self.measures = 0
        self.sweeps = 0
        # For each quantity: last value, the check that measured it, and its
        # growth per check since the measurement before (for extrapolation).
        # `young`: pending nodes of young arrays; `old`: pending nodes reachable
        # only from old arrays (found by sweeps).
        self.live_at = self.young_at = self.old_at = 0
        self.live_rate = self.young_rate = self.old_rate = 0.0
        self.young = self.old = 0
        self.next_measure = self.next_sweep = 0.0  # perf_counter() times when due


census = Census()
state = _State()


def check(limit: int, where: str, exclude: Any) -> tuple[int, int] | None:
    """One budget check (the caller holds `state.lock`); see `budget.check_budget`."""
    st = state
    st.checks += 1
    n = st.checks
    now = time.perf_counter()
    predicted = (
        (st.live or 0) + st.live_rate * (n - st.live_at)
        + st.young + st.young_rate * (n - st.young_at)
        + st.old + st.old_rate * (n - st.old_at)
    )
    near = predicted > _TIGHT * limit
    if st.live is None or now >= st.next_sweep or (near and st.old_rate > 0):
        _record_live(n, census.full(exclude))
        _sweep(n, census.excluded_ids())
        st.next_sweep = now + (time.perf_counter() - now) / _SWEEP_DUTY
        if st.base is None:
            st.base = (st.live, st.young + st.old)
    elif near or now >= st.next_measure:
        _record_live(n, census.count(exclude))
        skip = census.excluded_ids()
        young = [a for a in young_array_objects() if id(a) not in skip]
        _record_young(n, len(pending_node_ids(*young)) if young else 0)
        del young
        st.measures += 1
        st.next_measure = now + (time.perf_counter() - now) / _DUTY
    else:
        return None
    live, pending = st.live, st.young + st.old
    if live + pending > limit:
        clear_cache()
        gc.collect()
        _record_live(n, census.full(exclude, rewalk=True))
        _sweep(n)
        live, pending = st.live, st.young + st.old
        if live + pending > limit:
            st.pending = pending
            grew = (max(0, live - st.base[0]), max(0, pending - st.base[1])) if st.base else None
            raise ResourceLimitExceeded(live, pending, limit, where, grew)
    st.pending = pending
    return live, pending


def _rate(value: int, prev: int, at: int, n: int) -> float:
    """Growth per check since the previous measurement (0 without one)."""
    return max(0.0, (value - prev) / (n - at)) if at and n > at else 0.0


def _record_live(n: int, live: int) -> None:
    st = state
    st.live_rate = _rate(live, st.live or 0, st.live_at, n)
    st.live, st.live_at = live, n


def _record_young(n: int, young: int) -> None:
    st = state
    st.young_rate = _rate(young, st.young, st.young_at, n)
    st.young, st.young_at = young, n


def _sweep(n: int, skip: set[int] = frozenset()) -> None:
    """Measure pending nodes of every live array not in `skip`, split into young and old-only."""
    st = state
    young_ids, old_ids = _young_and_old_ids(skip)
    old = len(old_ids - young_ids)
    st.old_rate = _rate(old, st.old, st.old_at, n)
    st.old, st.old_at = old, n
    _record_young(n, len(young_ids))
    st.sweeps += 1


def _young_and_old_ids(skip: set[int]) -> tuple[set[int], set[int]]:
    """Pending node ids of young (GC generations 0, 1) and of all other live arrays."""
    young = [a for a in young_array_objects() if id(a) not in skip]
    young_set = set(map(id, young))
    old = [a for a in live_array_objects() if id(a) not in young_set and id(a) not in skip]
    return (pending_node_ids(*young) if young else set()), (pending_node_ids(*old) if old else set())
