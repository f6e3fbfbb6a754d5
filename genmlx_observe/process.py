"""Process gauges (psutil), read at collection time, never per iteration.

One psutil read costs about 10-20 us; a collection every few seconds makes
that free, a read per iteration would not be.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import psutil

__all__ = ["ProcessGauges"]


class ProcessGauges:
    """Readers for `process.memory.rss`, `process.cpu.time`, `process.cpu.utilization`."""

    def __init__(self, pid: int | None = None):
        self._proc = psutil.Process(pid)
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None  # (wall, cpu) at the previous utilization read

    def rss(self) -> int:
        return self._proc.memory_info().rss

    def cpu_time(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def utilization(self) -> float:
        """CPU seconds per wall second since the previous read (since process start the first time)."""
        now, cpu = time.time(), self.cpu_time()
        with self._lock:
            last = self._last
            self._last = (now, cpu)
        if last is None:
            last = (self._proc.create_time(), 0.0)
        wall = now - last[0]
        return max(0.0, (cpu - last[1]) / wall) if wall > 0 else 0.0

    def readers(self) -> dict[str, Callable[[], list]]:
        return {
            "process.memory.rss": lambda: [({}, self.rss())],
            "process.cpu.time": lambda: [({}, self.cpu_time())],
            "process.cpu.utilization": lambda: [({}, self.utilization())],
        }
