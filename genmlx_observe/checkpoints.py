"""Checkpoint metrics, and telemetry flushed when a run is interrupted.

Subscribed next to the `Observer`: it counts the driver's `Checkpointed`
events per run label set (writes by outcome, bytes, seconds) and, when a run
ends interrupted (a signal: `genmlx.checkpoint.RunInterrupted`), calls
`on_interrupt` so the session flushes its OTLP exporters and pushes to the
Pushgateway before the process goes away.
"""

from __future__ import annotations

import threading
from typing import Callable

from .catalog import RUN_ATTRIBUTES

__all__ = ["CheckpointObserver", "KEYS"]

KEYS = ("checkpoint.writes", "checkpoint.written", "checkpoint.duration")


class CheckpointObserver:
    def __init__(self, on_interrupt: Callable[[], None] | None = None):
        self.on_interrupt = on_interrupt
        self._lock = threading.Lock()
        self._series: dict[tuple, list] = {}  # labels -> [ok, failed, bytes, seconds]

    def on_checkpoint(self, e) -> None:
        labels = (e.algorithm, e.model, str(e.chain))
        with self._lock:
            s = self._series.get(labels)
            if s is None:
                s = self._series[labels] = [0, 0, 0, 0.0]
            s[0 if e.error is None else 1] += 1
            s[2] += e.bytes
            s[3] += e.duration_s

    def on_run_end(self, e) -> None:
        from genmlx.inference.interrupt import RunInterrupted

        if isinstance(e.error, RunInterrupted) and self.on_interrupt is not None:
            try:
                self.on_interrupt()
            except Exception:  # telemetry never changes how a run ends
                pass

    def read(self, key: str) -> list:
        with self._lock:
            rows = []
            for labels, (ok, failed, n, secs) in self._series.items():
                attrs = dict(zip(RUN_ATTRIBUTES, labels))
                if key == "checkpoint.writes":
                    rows += [({**attrs, "outcome": "ok"}, ok), ({**attrs, "outcome": "error"}, failed)]
                elif key == "checkpoint.written":
                    rows.append((attrs, n))
                else:
                    rows.append((attrs, secs))
            return rows

    def readers(self) -> dict:
        return {k: (lambda k=k: self.read(k)) for k in KEYS}
