"""OTLP/HTTP (protobuf) export of spans and metrics, wrapped so failures never spread.

* Spans go through a `BatchSpanProcessor` (bounded queue, export on its own
  thread); a full queue drops spans, and `CountingSpanProcessor` counts them.
* `SafeSpanExporter` / `SafeMetricExporter` wrap the OTLP exporters: an
  exception or a failed export (collector unreachable) becomes a counted drop
  with one warning, never an error in the inference run.
* `Pipeline.shutdown` flushes within `shutdown_timeout_s`; past it, the
  exporters are shut down (aborting their retries) and what was not sent is
  counted as dropped.
"""

from __future__ import annotations

import threading
from typing import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from .config import Config
from .drops import Drops

__all__ = ["SafeSpanExporter", "SafeMetricExporter", "CountingSpanProcessor", "Pipeline", "resource", "data_points"]


def resource(config: Config) -> Resource:
    """`service.name` from the keyword, else `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, else ``genmlx``;
    in a distributed job, `genmlx.rank` and `genmlx.world_size` (given attributes win)."""
    attrs = {**config.rank_attributes, **config.resource_attributes}
    if config.service_name:
        attrs["service.name"] = config.service_name
    res = Resource.create(attrs)
    if str(res.attributes.get("service.name", "")).startswith("unknown_service"):
        res = res.merge(Resource({"service.name": "genmlx"}))
    return res


class SafeSpanExporter(SpanExporter):
    """Delegates to `inner`; failures and exceptions become counted drops."""

    def __init__(self, inner: SpanExporter, drops: Drops):
        self.inner = inner
        self.drops = drops
        self.received = 0  # spans handed over by the processor (sent or failed)

    def export(self, spans: Sequence) -> SpanExportResult:
        self.received += len(spans)
        try:
            result = self.inner.export(spans)
        except Exception as e:  # an exporter bug must not reach the run
            self.drops.add("spans", len(spans), f"span exporter raised {type(e).__name__}: {e}")
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.drops.add("spans", len(spans), "span export failed (is the collector reachable?)")
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:
            pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception:
            return False


class CountingSpanProcessor(BatchSpanProcessor):
    """A `BatchSpanProcessor` that counts spans lost to a full queue or left unsent at shutdown."""

    def __init__(self, exporter: SafeSpanExporter, drops: Drops, max_queue_size: int = 2048,
                 max_export_batch_size: int = 512, schedule_delay_millis: float | None = None):
        max_export_batch_size = min(max_export_batch_size, max_queue_size)
        super().__init__(exporter, max_queue_size=max_queue_size, max_export_batch_size=max_export_batch_size,
                         schedule_delay_millis=schedule_delay_millis)
        self.safe = exporter
        self.drops = drops
        self.ended = 0
        self.queue_dropped = 0
        # Spans popped for export but not yet handed to the exporter: at most one batch.
        self._slack = max_queue_size + max_export_batch_size

    def on_end(self, span) -> None:
        if not span.context.trace_flags.sampled:
            return
        self.ended += 1
        super().on_end(span)
        if self.ended - self.safe.received - self.queue_dropped > self._slack:
            self.queue_dropped += 1
            self.drops.add("spans", 1, "span queue full")

    def reconcile(self) -> None:
        """After shutdown: whatever never reached the exporter was dropped."""
        lost = self.ended - self.safe.received - self.queue_dropped
        if lost > 0:
            self.queue_dropped += lost
            self.drops.add("spans", lost, "spans still queued when observation stopped")


def data_points(metrics_data) -> int:
    """Number of data points in an SDK `MetricsData`."""
    n = 0
    for rm in getattr(metrics_data, "resource_metrics", ()):
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                n += len(m.data.data_points)
    return n


class SafeMetricExporter(MetricExporter):
    """Delegates to `inner`; failures and exceptions become counted drops (of data points)."""

    def __init__(self, inner: MetricExporter, drops: Drops):
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner
        self.drops = drops

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as e:
            self.drops.add("metrics", data_points(metrics_data), f"metric exporter raised {type(e).__name__}: {e}")
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.drops.add("metrics", data_points(metrics_data), "metric export failed (is the collector reachable?)")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis=timeout_millis)
        except Exception:
            return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        try:
            self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
        except TypeError:
            self.inner.shutdown()
        except Exception:
            pass


class Pipeline:
    """The OpenTelemetry providers genmlx_observe created itself (and so shuts down)."""

    def __init__(self, config: Config, drops: Drops):
        self.config = config
        self.drops = drops
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self._processor: CountingSpanProcessor | None = None
        self._exporters: list = []
        res = None
        if config.tracer_provider is None and config.otlp_traces_enabled:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            res = resource(config)
            safe = SafeSpanExporter(OTLPSpanExporter(endpoint=config.otlp_url("traces"),
                                                     timeout=config.otlp_timeout_s), drops)
            self._processor = CountingSpanProcessor(safe, drops, max_queue_size=config.max_queue_size)
            self.tracer_provider = TracerProvider(resource=res)
            self.tracer_provider.add_span_processor(self._processor)
            self._exporters.append(safe)
        if config.meter_provider is None and config.otlp_metrics_enabled:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            safe_m = SafeMetricExporter(OTLPMetricExporter(endpoint=config.otlp_url("metrics"),
                                                           timeout=config.otlp_timeout_s), drops)
            reader = PeriodicExportingMetricReader(safe_m)
            self.meter_provider = MeterProvider(resource=res or resource(config), metric_readers=[reader])
            self._exporters.append(safe_m)

    @property
    def endpoints(self) -> dict[str, str]:
        """Where each signal is sent (for the console summary)."""
        out = {}
        for e in self._exporters:
            signal = "traces" if isinstance(e, SafeSpanExporter) else "metrics"
            out[signal] = getattr(e.inner, "_endpoint", "?")
        return out

    def shutdown(self) -> None:
        """Flush and shut down, waiting at most `shutdown_timeout_s`."""
        providers = [p for p in (self.tracer_provider, self.meter_provider) if p is not None]
        if not providers:
            return

        def run():
            for p in providers:
                try:
                    p.shutdown()
                except Exception:
                    pass

        t = threading.Thread(target=run, name="genmlx-observe-shutdown", daemon=True)
        t.start()
        t.join(self.config.shutdown_timeout_s)
        if t.is_alive():  # a collector that does not answer: abort the exporters' retries
            for e in self._exporters:
                e.shutdown()
            t.join(1.0)
        if self._processor is not None:
            self._processor.reconcile()
