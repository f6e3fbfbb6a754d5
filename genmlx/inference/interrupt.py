"""Ending a run cleanly on SIGINT or SIGTERM.

While a driver run is in progress on the main thread, SIGINT (Ctrl-C) and
SIGTERM only raise a flag. Every run in the process looks at it after each
step: the step has finished, so the state is consistent; the driver writes a
final checkpoint when checkpointing, ends the run (observers see it end with
the error) and raises `RunInterrupted` carrying the partial result. A second
signal while the first is being handled raises `KeyboardInterrupt` at once
(a step that never returns can still be stopped). The previous handlers are
restored when the outermost run ends.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

try:  # the C module under `signal`: its calls skip the enum conversions (20 us a run -> 2 us)
    import _signal as _raw
except ImportError:  # pragma: no cover - an interpreter without it
    _raw = signal

__all__ = ["RunInterrupted", "guard", "pending"]

_SIGNALS = (int(signal.SIGINT), int(signal.SIGTERM))


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after a completed step.

    Attributes:
        signal: "SIGINT" or "SIGTERM".
        algorithm: the run's algorithm.
        step: driver steps completed.
        result: the partial `driver.RunResult` (state, kept samples, statistics).
        checkpoint: the database holding the final checkpoint, or None.
    """

    def __init__(self, signal_name: str, algorithm: str, step: int, result: Any, checkpoint: str | None):
        where = f"; checkpoint saved in {checkpoint} (resume it with genmlx.checkpoint.resume)" if checkpoint else ""
        super().__init__(f"{algorithm} run interrupted by {signal_name} after {step} steps{where}")
        self.signal, self.algorithm, self.step = signal_name, algorithm, step
        self.result, self.checkpoint = result, checkpoint


class _State:
    signal: str | None = None
    depth = 0
    previous: dict = {}


_state = _State()


def pending() -> str | None:
    """The name of the signal received during the current runs, or None."""
    return _state.signal


def _handler(signum, frame) -> None:
    if _state.signal is not None:
        raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping now")
    _state.signal = signal.Signals(signum).name


class guard:
    """Install the flagging handlers for the outermost run on the main thread (no-op elsewhere)."""

    __slots__ = ("installed",)

    def __enter__(self):
        self.installed = False
        if threading.current_thread() is not threading.main_thread():
            return self
        if _state.depth == 0:
            try:
                prev = {s: _raw.getsignal(s) for s in _SIGNALS}
                for s in _SIGNALS:
                    _raw.signal(s, _handler)
            except (ValueError, OSError):  # an interpreter that refuses handlers: plain behaviour
                return self
            _state.previous = prev
            _state.signal = None
        _state.depth += 1
        self.installed = True
        return self

    def __exit__(self, *exc) -> bool:
        if self.installed:
            _state.depth -= 1
            if _state.depth == 0:
                for s, h in _state.previous.items():
                    _raw.signal(s, h if h is not None else signal.SIG_DFL)
                _state.previous = {}
                _state.signal = None
        return False
