"""Failure never spreads: what could not be delivered is counted and warned about once.

An unreachable collector, a full span queue, an exporter that raises or a
Pushgateway that is down must never stop or slow an inference run. The
exporter wrappers in `otlp` and the push in `prometheus` report here instead
of raising; the counts are exported as `genmlx.observe.dropped`.
"""

from __future__ import annotations

import threading
import warnings

__all__ = ["Drops"]


class Drops:
    """Counts of undelivered telemetry per signal (``spans``, ``metrics``, ``push``, ...)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self._warned: set[str] = set()

    def add(self, signal: str, n: int, reason: str) -> None:
        """Count `n` dropped items of `signal`; the first drop of each signal warns."""
        if n <= 0:
            return
        with self._lock:
            self.counts[signal] = self.counts.get(signal, 0) + n
            first = signal not in self._warned
            self._warned.add(signal)
        if first:
            warnings.warn(
                f"genmlx_observe dropped {n} {signal} ({reason}); inference is not affected. "
                f"Further drops are counted in genmlx.observe.dropped{{signal={signal!r}}} "
                "without another warning.",
                RuntimeWarning,
                stacklevel=2,
            )

    def total(self, signal: str) -> int:
        return self.counts.get(signal, 0)

    def read(self) -> list:
        with self._lock:
            return [({"signal": s}, n) for s, n in self.counts.items()]
