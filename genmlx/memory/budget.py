"""The resource budget: a limit on live arrays + pending graph nodes.

Apple's Metal driver kills a process holding 499,000 buffer objects. MLX does
not expose its buffer count, and other backends have no such limit, so genmlx
enforces a budget, on every backend, over a **proxy** of that count:

    used = live `mx.array` objects (wrappers) + pending graph nodes

Metal's own count differs: it also includes cached buffers, buffers alive
only inside an `mx.eval` (intermediates), evaluated constants held by a lazy
graph (a Python scalar in `s + 1.0`), and one buffer can back several
wrappers (views). The proxy still catches every loop that dies on Metal,
because what grows without bound in a loop is exactly what it counts:
wrappers kept in growing containers, and lazy graphs that are never
evaluated (each pending node becomes a buffer, and holds its inputs' buffers).
Cached buffers are bounded by the cache limit (see `genmlx.memory.cache`; the
Metal allocator also frees them before failing), intermediates of one eval are
bounded by the graph being evaluated. A budget set below 499,000 leaves room
for those; a run that stays under the budget on Linux CI stays under Metal's
limit on a Mac by about that margin.

Setting it: `budget(limit=...)` (a context manager; the innermost applies and
the previous setting is restored on exit, also on exceptions), `set_budget` /
`get_budget`, or the environment variable `GENMLX_BUDGET` (an int; empty,
``0`` or ``off`` means no budget). The setting is process-wide, not per thread.

Checking it: the loop driver calls `check_budget(where, exclude=kept_samples)`
after each step's materialization. With no budget that is a single test. With
one, it takes the incremental census (`Census.count`: tens of us) and the
pending nodes of young arrays (`young_pending_nodes`: about 0.1 ms, mostly a
thread hand-off), and twice more rarely a full sweep of every live array
(which finds an old array updated in place, as ``s += x`` does). Both are
rate-limited to a small share of the run's time (`_DUTY`, `_SWEEP_DUTY`); the
young measurement runs at every step once usage passes half the budget, and
the first check under a new budget is a full sweep. When the estimate
exceeds the limit: `mx.clear_cache()`, a garbage collection (arrays held only
by reference cycles are garbage, not a leak), an exact recount, and
`ResourceLimitExceeded` if still over.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from .api import clear_cache
from .census import Census, live_array_objects, young_array_objects
from .errors import ResourceLimitExceeded
from .graph import pending_node_ids

__all__ = [
    "METAL_RESOURCE_LIMIT",
    "budget",
    "set_budget",
    "get_budget",
    "check_budget",
    "budget_status",
]

METAL_RESOURCE_LIMIT = 499_000
_DUTY = 0.10  # young pending nodes: at most about this share of wall time
_SWEEP_DUTY = 0.02  # full sweeps of all live arrays: about this share
_TIGHT = 0.5  # above this fraction of the limit, measure everything at every step


def _validate(limit: Any, name: str = "budget") -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not hasattr(limit, "__index__"):
        raise TypeError(f"{name}: limit must be an int >= 1 or None, got {type(limit).__name__} {limit!r}")
    v = limit.__index__()
    if v < 1:
        raise ValueError(f"{name}: limit must be >= 1 (None for no budget), got {v}")
    return v


def _env_budget() -> int | None:
    raw = os.environ.get("GENMLX_BUDGET", "").strip()
    if raw.lower() in ("", "0", "off", "none"):
        return None
    try:
        return _validate(int(raw), "GENMLX_BUDGET")
    except (TypeError, ValueError):
        raise ValueError(
            f"GENMLX_BUDGET must be an int >= 1 (or empty/0/off for no budget), got {raw!r}"
        ) from None


class _State:
    """What the last check measured, and when the next costly measurements are due."""

    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        self.live: int | None = None
        self.pending: int | None = None
        self.checks = 0
        self.sweeps = 0
        # Pending nodes of young arrays, and those reachable only from old
        # arrays (found by sweeps): last value, the check that measured it,
        # and its growth per check since the measurement before.
        self.young = self.old = 0
        self.young_at = self.old_at = 0
        self.young_rate = self.old_rate = 0.0
        self.next_young = self.next_sweep = 0.0  # perf_counter() times when due


_limit: int | None = _env_budget()
_census = Census()
_state = _State()


def set_budget(limit: int | None) -> int | None:
    """Set the process-wide budget (None: no budget). Returns the previous one."""
    global _limit
    v = _validate(limit, "set_budget")
    with _state.lock:
        prev, _limit = _limit, v
        _state.reset()
    return prev


def get_budget() -> int | None:
    """The budget in force (the innermost `budget()` block's, else the process-wide one)."""
    return _limit


@contextmanager
def budget(limit: int | None = METAL_RESOURCE_LIMIT) -> Iterator[int | None]:
    """Enforce `limit` on live arrays + pending graph nodes inside the block.

    Nested blocks: the innermost applies. The previous setting is restored on
    exit, also when the block raises. Yields the limit.
    """
    prev = set_budget(limit)
    try:
        yield _limit
    finally:
        set_budget(prev)


def check_budget(where: str = "", exclude: Any = None) -> tuple[int, int] | None:
    """Check the active budget; the loop driver calls this at every step.

    Args:
        where: what is running, for the error message (e.g. ``"mh step 12"``).
        exclude: an object whose arrays are not counted as live (the results a
            caller keeps on purpose, e.g. the driver's list of samples). Note
            that on Metal those buffers still count: exclude only what you
            know is bounded.

    Returns:
        None when no budget is active, else `(live, pending)` as measured:
        estimates that never under-count by more than the rate-limited pending
        measurement allows (see the module docstring), exact after a sweep or
        a confirmed overrun risk.

    Raises:
        ResourceLimitExceeded: an exact recount (after clearing MLX's cache and
            collecting garbage) is still over the limit.
    """
    limit = _limit
    if limit is None:
        return None
    with _state.lock:
        return _check(limit, where, exclude)


def _check(limit: int, where: str, exclude: Any) -> tuple[int, int]:
    st = _state
    st.checks += 1
    n = st.checks
    live = _census.count(exclude)
    now = time.perf_counter()
    # Extrapolate growth since the last measurements: a loop leaking a few
    # nodes per step is measured at every step well before it nears the limit.
    predicted = live + st.young + st.young_rate * (n - st.young_at) + st.old + st.old_rate * (n - st.old_at)
    near = predicted > _TIGHT * limit
    if st.pending is None or now >= st.next_sweep or (near and st.old_rate > 0):
        _sweep(n)
        live = _census.full(exclude)
        st.next_sweep = now + (time.perf_counter() - now) / _SWEEP_DUTY
    elif near or now >= st.next_young:
        young = young_array_objects()
        _record_young(n, len(pending_node_ids(*young)) if young else 0)
        del young
        st.next_young = now + (time.perf_counter() - now) / _DUTY
    pending = st.young + st.old
    if live + pending > limit:
        clear_cache()
        gc.collect()
        live = _census.full(exclude)
        _sweep(n)
        pending = st.young + st.old
        st.live, st.pending = live, pending
        if live + pending > limit:
            raise ResourceLimitExceeded(live, pending, limit, where)
    st.live, st.pending = live, pending
    return live, pending


def _record_young(n: int, young: int) -> None:
    st = _state
    if st.young_at and n > st.young_at:  # a rate needs two measurements
        st.young_rate = max(0.0, (young - st.young) / (n - st.young_at))
    st.young, st.young_at = young, n


def _sweep(n: int) -> None:
    """Measure pending nodes of every live array, split into young and old-only."""
    st = _state
    young_ids, old_ids = _young_and_old_ids()
    old = len(old_ids - young_ids)
    if st.old_at and n > st.old_at:
        st.old_rate = max(0.0, (old - st.old) / (n - st.old_at))
    st.old, st.old_at = old, n
    _record_young(n, len(young_ids))
    st.sweeps += 1


def _young_and_old_ids() -> tuple[set[int], set[int]]:
    """Pending node ids of young (GC generations 0, 1) and of all other live arrays."""
    young = young_array_objects()
    young_set = set(map(id, young))
    old = [a for a in live_array_objects() if id(a) not in young_set]
    return (pending_node_ids(*young) if young else set()), (pending_node_ids(*old) if old else set())


def budget_status() -> dict[str, Any]:
    """The budget and its use as last measured by `check_budget`.

    Returns:
        `limit` (None: no budget), `used` = `live` + `pending` (None until a
        check ran under the current budget), `checks` and `sweeps` (how many
        checks and full sweeps ran). Reading it measures nothing, so it is
        safe from any thread (e.g. a metrics collector).
    """
    st = _state
    used = None if st.live is None or st.pending is None else st.live + st.pending
    return {
        "limit": _limit,
        "used": used,
        "live": st.live,
        "pending": st.pending,
        "checks": st.checks,
        "sweeps": st.sweeps,
    }
