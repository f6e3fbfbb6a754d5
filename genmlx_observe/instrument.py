"""The Instrumentor: attach genmlx_observe to given OpenTelemetry providers and a registry.

    inst = GenmlxInstrumentor()
    inst.instrument(tracer_provider=tp, meter_provider=mp, registry=reg)
    ...                      # every driver run is traced and measured
    inst.uninstrument()      # back to exactly what was there before

`instrument` subscribes the observer(s) to `genmlx.events`, creates the
catalog's instruments on the meter provider and registers the Prometheus
collector in the registry. Calling it twice does nothing the second time;
`uninstrument` unsubscribes and unregisters only what it added (other
observers and collectors stay) and is harmless when nothing is instrumented.
It never creates, replaces or shuts down providers: `observe()` does that.
"""

from __future__ import annotations

from typing import Any

from genmlx import events
from opentelemetry import trace

from .catalog import CATALOG
from .checkpoints import CheckpointObserver
from .drops import Drops
from .memory import MemoryGauges
from .metrics import OtelMetrics, meter_provider_is_real
from .observer import Observer
from .process import ProcessGauges
from .prometheus import GenmlxCollector
from .sites import SiteObserver

__all__ = ["GenmlxInstrumentor", "tracer_provider_is_real"]


def tracer_provider_is_real(tp) -> bool:
    """False for the API's no-op and proxy providers (nobody configured an SDK)."""
    return tp is not None and not isinstance(tp, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


class GenmlxInstrumentor:
    """Attach an `Observer` (and, opt-in, a `SiteObserver`) to providers and a registry."""

    def __init__(self):
        self.observer: Observer | None = None
        self.checkpoints: CheckpointObserver | None = None
        self.sites: SiteObserver | None = None
        self.otel: OtelMetrics | None = None
        self.collector: GenmlxCollector | None = None
        self.drops = Drops()
        self.readers: dict = {}  # catalog key -> reader, while instrumented
        self._registry = None

    @property
    def is_instrumented(self) -> bool:
        return self.observer is not None

    def instrument(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        registry: Any = None,
        sample_every: int = 100,
        step_spans: bool = True,
        census_overhead: float = 0.01,
        site_metrics: bool = False,
        site_top_k: int = 20,
        drops: Drops | None = None,
        const_labels: dict | None = None,
    ) -> Observer:
        """Start observing. Providers default to the global ones, used only if an SDK set them.

        Args:
            tracer_provider: where run and step spans go (None: the global
                provider; no spans if none was configured).
            meter_provider: where the catalog's instruments live (None: the
                global provider; no OpenTelemetry metrics if none was configured).
            registry: a prometheus_client `CollectorRegistry` to register the
                collector in (None: no Prometheus dialect).
            sample_every, step_spans, census_overhead, site_metrics,
            site_top_k: see `genmlx_observe.Config`.
            drops: where undelivered telemetry is counted (shared with the
                exporters `observe()` builds).
            const_labels: Prometheus labels on every series (a distributed job's `rank`).

        Returns:
            The subscribed observer.
        """
        if self.observer is not None:
            return self.observer
        if drops is not None:
            self.drops = drops
        if tracer_provider is None:
            tracer_provider = trace.get_tracer_provider()
        if meter_provider is None:
            from opentelemetry import metrics

            meter_provider = metrics.get_meter_provider()
        tracer = None
        if tracer_provider_is_real(tracer_provider):
            from . import __version__

            tracer = tracer_provider.get_tracer("genmlx_observe", __version__)
        observer = Observer(sample_every, tracer, step_spans, census_overhead)
        sites = SiteObserver(site_top_k, observer.current_run) if site_metrics else None
        observer.sites = sites
        self.checkpoints = CheckpointObserver()
        readers = self._readers(observer, sites)
        if meter_provider_is_real(meter_provider):
            self.otel = OtelMetrics(meter_provider, readers, include_opt_in=site_metrics)
            observer.sinks.append(self.otel.sink)
            if sites is not None:
                sites.sinks.append(self.otel.sink)
        if registry is not None:
            self.collector = GenmlxCollector(readers, include_opt_in=site_metrics, const_labels=const_labels)
            registry.register(self.collector)
            self._registry = registry
        self.observer, self.sites, self.readers = observer, sites, readers
        events.subscribe(observer)
        events.subscribe(self.checkpoints)
        if sites is not None:
            events.subscribe(sites)  # this is what turns the handler's site accounting on
        return observer

    def _readers(self, observer: Observer, sites: SiteObserver | None) -> dict:
        """Catalog key -> reader, for every catalog metric (checked: none is missing)."""
        readers = {k: (lambda k=k: observer.read(k)) for k in observer.keys()}
        readers.update(MemoryGauges(lambda: observer.pending).readers())
        readers.update(ProcessGauges().readers())
        readers["observe.dropped"] = self.drops.read
        readers.update(self.checkpoints.readers())
        readers["site.buffers"] = sites.read if sites is not None else list
        missing = [m.key for m in CATALOG if m.key not in readers]
        if missing:  # a catalog entry nobody reads is a bug here, not at the user's
            raise AssertionError(f"catalog metrics without a reader: {missing}")
        return readers

    def uninstrument(self) -> None:
        """Undo `instrument` exactly: unsubscribe, unregister, silence the instruments."""
        if self.observer is None:
            return
        if self.sites is not None:
            events.unsubscribe(self.sites)
        events.unsubscribe(self.observer)
        if self.checkpoints is not None:
            events.unsubscribe(self.checkpoints)
        if self.collector is not None and self._registry is not None:
            try:
                self._registry.unregister(self.collector)
            except KeyError:  # someone unregistered it already
                pass
        if self.otel is not None:
            self.otel.close()
        self.observer = self.sites = self.otel = self.collector = self._registry = self.checkpoints = None
        self.readers = {}
