"""Memory gauges, read from `genmlx.memory` when a collector asks.

Collection runs on an exporter's thread (the Prometheus HTTP server, the
OTLP periodic reader) while inference may be evaluating on the main thread,
so each gauge reads only what is safe from any thread:

* bytes (active, cache, peak): MLX allocator counters;
* live arrays: a count over Python's GC heap (pure Python, under the GIL);
* budget limit and use: `genmlx.memory.budget_status()` (measures nothing);
* pending graph nodes: **not** walked here (walking a graph while another
  thread evaluates it is unsafe): the latest census the observer took on the
  MLX thread (at sampled steps, from the driver's budget checks, or by
  `Observation.census()`).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["MemoryGauges"]


class MemoryGauges:
    """Readers for the `memory.*` catalog metrics that have no attributes."""

    def __init__(self, latest_pending: Callable[[], int | None]):
        self._pending = latest_pending
        self._resource_limit: tuple | None = None

    def readers(self) -> dict[str, Callable[[], list]]:
        from genmlx import memory

        def one(fn):
            def read():
                v = fn()
                return [] if v is None else [({}, v)]

            return read

        return {
            "memory.active": one(memory.active_bytes),
            "memory.cache": one(memory.cache_bytes),
            "memory.peak": one(memory.peak_bytes),
            "memory.live_arrays": one(memory.live_arrays),
            "memory.pending_nodes": one(self._pending),
            "memory.budget.limit": one(lambda: memory.budget_status()["limit"]),
            "memory.budget.used": one(lambda: memory.budget_status()["used"]),
            "memory.resource.limit": one(self.resource_limit),
        }

    def resource_limit(self) -> int | None:
        """Metal's buffer cap (None elsewhere); the device does not change, so read it once."""
        if self._resource_limit is None:
            from genmlx import memory

            self._resource_limit = (memory.device_info()["resource_limit"],)
        return self._resource_limit[0]
