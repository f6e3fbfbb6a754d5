"""OpenTelemetry metrics: one instrument per catalog entry, on a given meter provider.

Counters, up-down counters and gauges are *observable* instruments whose
callbacks read the observers' totals at collection time (nothing is recorded
per step). Histograms are synchronous instruments fed by the observers on
sampled steps (iteration duration) or per site visit (site accounting, opt-in).
"""

from __future__ import annotations

from typing import Callable

from opentelemetry.metrics import CallbackOptions, Observation

from .catalog import CATALOG, Metric

__all__ = ["OtelMetrics", "meter_provider_is_real"]

Reader = Callable[[], list]


def meter_provider_is_real(mp) -> bool:
    """False for the API's no-op and proxy providers (nobody configured an SDK)."""
    return mp is not None and not type(mp).__name__.lstrip("_").startswith(("Proxy", "NoOp", "Default"))


class OtelMetrics:
    """The catalog's instruments on one meter provider.

    Args:
        meter_provider: an OpenTelemetry `MeterProvider`.
        readers: catalog key -> function returning `[(attributes, value)]`.
        include_opt_in: also create opt-in metrics (site accounting).
    """

    def __init__(self, meter_provider, readers: dict[str, Reader], include_opt_in: bool = False):
        from . import __version__

        self.enabled = True
        self.histograms: dict = {}
        meter = meter_provider.get_meter("genmlx_observe", __version__)
        for m in CATALOG:
            if m.opt_in and not include_opt_in:
                continue
            if m.kind == "histogram":
                self.histograms[m.key] = meter.create_histogram(
                    m.otel_name, unit=m.unit, description=m.description,
                    explicit_bucket_boundaries_advisory=list(m.buckets),
                )
                continue
            create = {
                "counter": meter.create_observable_counter,
                "updowncounter": meter.create_observable_up_down_counter,
                "gauge": meter.create_observable_gauge,
            }[m.kind]
            create(m.otel_name, callbacks=[self._callback(m, readers[m.key])], unit=m.unit,
                   description=m.description)

    def _callback(self, m: Metric, read: Reader):
        def callback(options: CallbackOptions):
            if not self.enabled:
                return []
            return [Observation(value, attrs) for attrs, value in read()]

        callback.__name__ = f"genmlx_observe[{m.key}]"
        return callback

    def sink(self, key: str, value: float, attributes: dict) -> None:
        """Record one histogram observation (called by the observers)."""
        h = self.histograms.get(key)
        if h is not None and self.enabled:
            h.record(value, attributes)

    def close(self) -> None:
        """Stop reporting (OpenTelemetry has no way to remove instruments from a provider)."""
        self.enabled = False
