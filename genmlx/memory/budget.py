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
after each step's materialization. With no budget that is a single test; with
one, see `genmlx.memory.checker` for how measurements are rate-limited (a few
percent of wall time), extrapolated, and confirmed by an exact recount before
`ResourceLimitExceeded` is raised.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from . import checker

__all__ = [
    "METAL_RESOURCE_LIMIT",
    "budget",
    "set_budget",
    "get_budget",
    "check_budget",
    "budget_status",
]

METAL_RESOURCE_LIMIT = 499_000


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


_limit: int | None = _env_budget()


def set_budget(limit: int | None) -> int | None:
    """Set the process-wide budget (None: no budget). Returns the previous one."""
    global _limit
    v = _validate(limit, "set_budget")
    with checker.state.lock:
        prev, _limit = _limit, v
        checker.state.reset()
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
            caller keeps on purpose, e.g. the driver's list of samples; a list
            that only grows is walked incrementally). On Metal those buffers
            still count: exclude only what you know is bounded.

    Returns:
        None when no budget is active, or when this check measured nothing
        (measurements are rate-limited; see `genmlx.memory.checker`). Otherwise
        `(live, pending)` as measured now: `live` is exact or a slight
        over-count (see `Census`), `pending` counts young arrays' graphs plus
        what the last sweep found behind old arrays; both exact after a sweep
        or a confirmed overrun.

    Raises:
        ResourceLimitExceeded: an exact recount (after clearing MLX's cache and
            collecting garbage) is still over the limit.
    """
    limit = _limit
    if limit is None:
        return None
    with checker.state.lock:
        return checker.check(limit, where, exclude)


def budget_status() -> dict[str, Any]:
    """The budget and its use as last measured by `check_budget`.

    Returns:
        `limit` (None: no budget), `used` = `live` + `pending` (None until a
        check measured under the current budget), `checks`, `measures` and
        `sweeps` (how many checks ran, and how many of them measured or
        swept). Reading it measures nothing, so it is safe from any thread
        (e.g. a metrics collector).
    """
    st = checker.state
    used = None if st.live is None or st.pending is None else st.live + st.pending
    return {
        "limit": _limit,
        "used": used,
        "live": st.live,
        "pending": st.pending,
        "checks": st.checks,
        "measures": st.measures,
        "sweeps": st.sweeps,
    }
