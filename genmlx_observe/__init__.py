"""genmlx_observe: every genmlx inference run, to OpenTelemetry and Prometheus.

Start with `observe()` (docs/observability.md). `GENMLX_OBSERVE=1` observes a
whole process from the environment (`genmlx-observe run script.py`).
The core (`genmlx`) never imports this package.

Names resolve lazily: the pytest plugin (a submodule) is loaded by every
pytest run, and must not pay for importing OpenTelemetry and Prometheus.
"""

from __future__ import annotations

import importlib

from .autostart import autostart

__version__ = "0.1.0"

_WHERE = {
    "observe": "session", "Observation": "session",
    "Config": "config", "ConfigError": "config",
    "CATALOG": "catalog", "Metric": "catalog", "metric": "catalog",
    "GenmlxInstrumentor": "instrument",
    "Observer": "observer",
    "SiteObserver": "sites",
    "GenmlxCollector": "prometheus", "PortInUseError": "prometheus",
}

__all__ = ["__version__", "autostart", *_WHERE]


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'genmlx_observe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


autostart()
