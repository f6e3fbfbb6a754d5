"""`report()`: one snapshot of everything the memory layer can measure."""

from __future__ import annotations

from typing import Any

from .api import active_bytes, cache_bytes, device_info, peak_bytes
from .budget import get_budget
from .census import live_array_objects
from .graph import count_nodes
from .walk import walk

__all__ = ["report"]


def report(exclude: Any = None) -> dict[str, Any]:
    """A snapshot of MLX memory, live arrays, pending graph nodes and the budget.

    Exact (a full census and a graph export over every live array): a few ms
    with tens of thousands of objects on the heap. Call it from the thread
    running MLX work, not from a collector thread while that work evaluates.

    Args:
        exclude: an object whose arrays are not counted in `live_arrays`.

    Returns:
        `active_bytes`, `cache_bytes`, `peak_bytes` (MLX's allocator),
        `live_arrays` (wrappers), `pending_nodes`, `budget_limit` (None without
        a budget), `budget_used` (live arrays + pending nodes, measured now),
        `resource_limit` (Metal's buffer cap, None off Metal), `backend`,
        `device`, `memory_size`.
    """
    arrays = live_array_objects()
    live = len(arrays)
    if exclude is not None:
        live -= len(walk(exclude)[0])
    pending = count_nodes(*arrays) if arrays else 0
    del arrays
    info = device_info()
    return {
        "active_bytes": active_bytes(),
        "cache_bytes": cache_bytes(),
        "peak_bytes": peak_bytes(),
        "live_arrays": live,
        "pending_nodes": pending,
        "budget_limit": get_budget(),
        "budget_used": live + pending,
        "resource_limit": info["resource_limit"],
        "backend": info["backend"],
        "device": info["device"],
        "memory_size": info["memory_size"],
    }
