"""genmlx_observe: every genmlx inference run, to OpenTelemetry and Prometheus.

Start with `observe()` (docs/observability.md). `GENMLX_OBSERVE=1` observes a
whole process from the environment (`python -m genmlx_observe.run script.py`).
The core (`genmlx`) never imports this package.
"""

__version__ = "0.1.0"

from .autostart import autostart
from .catalog import CATALOG, Metric, metric
from .config import Config, ConfigError
from .instrument import GenmlxInstrumentor
from .observer import Observer
from .prometheus import GenmlxCollector, PortInUseError
from .session import Observation, observe
from .sites import SiteObserver

__all__ = [
    "__version__",
    "observe",
    "Observation",
    "Config",
    "ConfigError",
    "CATALOG",
    "Metric",
    "metric",
    "GenmlxInstrumentor",
    "Observer",
    "SiteObserver",
    "GenmlxCollector",
    "PortInUseError",
    "autostart",
]

autostart()
