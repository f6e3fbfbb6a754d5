"""Whole-process observation from the environment, for runs you cannot edit.

`GENMLX_OBSERVE=1` makes `import genmlx_observe` start one process-wide
`observe()` configured from the environment (`OTEL_*`, `GENMLX_PROMETHEUS_PORT`,
...) and stop it at exit. Something must import genmlx_observe: the launcher
does, for any script or module, without editing it:

    GENMLX_PROMETHEUS_PORT=9464 genmlx-observe run script.py [args...]
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 genmlx-observe run -m package.module

(`genmlx-observe run` observes whether or not `GENMLX_OBSERVE` is set.)
A configuration that cannot start (a taken port) warns and leaves the
program running unobserved: an environment switch must never break the run.
"""

from __future__ import annotations

import atexit
import os
import warnings
from typing import Mapping

__all__ = ["autostart", "enabled", "current"]

_current = None


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `GENMLX_OBSERVE` asks for whole-process observation."""
    env = os.environ if environ is None else environ
    return env.get("GENMLX_OBSERVE", "").strip().lower() in ("1", "true", "yes", "on")


def current():
    """The process-wide `Observation` started by `autostart`, or None."""
    return _current


def autostart(force: bool = False):
    """Start the process-wide observation if `GENMLX_OBSERVE` is set (or `force`); idempotent.

    Returns:
        The `Observation`, or None when not enabled or it could not start (warned).
    """
    global _current
    if _current is not None:
        return _current
    if not (force or enabled()):
        return None
    from .session import observe

    try:
        obs = observe().start()
    except Exception as e:
        warnings.warn(f"GENMLX_OBSERVE: genmlx_observe could not start ({type(e).__name__}: {e}); "
                      "the program runs unobserved", RuntimeWarning, stacklevel=2)
        return None
    _current = obs
    atexit.register(_stop)
    return obs


def _stop() -> None:
    global _current
    obs, _current = _current, None
    if obs is not None:
        obs.stop()
