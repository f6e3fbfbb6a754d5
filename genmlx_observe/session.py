"""`observe()`: the one entry point.

    import genmlx_observe as go

    with go.observe(prometheus_port=9464, otlp_endpoint="http://localhost:4318"):
        infer.mh(...)                       # traced and measured

    obs = go.observe(service_name="fit").start()   # or start / stop by hand
    ...
    obs.stop()

`observe()` builds what the configuration asks for: OTLP/HTTP providers
(only when an endpoint is configured), a private Prometheus registry with
its /metrics server (only with a port) and a Pushgateway push at stop (only
with a URL), then attaches a `GenmlxInstrumentor` to them. Providers and a
registry you pass are used as they are and never shut down here.
"""

from __future__ import annotations

import sys
from typing import Any

from prometheus_client import CollectorRegistry

from . import summary as _summary
from .config import Config, from_env
from .instrument import GenmlxInstrumentor
from .otlp import Pipeline
from .prometheus import MetricsServer, push, serve

__all__ = ["observe", "Observation"]


def observe(**kwargs: Any) -> "Observation":
    """Observe every genmlx inference run until `stop()` (or the end of the `with` block).

    Keyword arguments are the fields of `genmlx_observe.Config`; the ones not
    given come from the environment (`OTEL_*`, `GENMLX_OBSERVE_*`, ...).

    Raises:
        ConfigError: a bad option or environment variable (named).
        PortInUseError: (at start) the Prometheus port is taken.
    """
    return Observation(from_env(**kwargs))


class Observation:
    """A configured observation: `start()`, `stop()`, or use it as a context manager."""

    def __init__(self, config: Config):
        self.config = config
        self.instrumentor = GenmlxInstrumentor()
        self.pipeline: Pipeline | None = None
        self.registry = None
        self.server: MetricsServer | None = None
        self.pushed = False
        self.final: dict[str, list] | None = None  # the last snapshot, taken by stop()

    # -- life cycle ---------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.instrumentor.is_instrumented

    def start(self) -> "Observation":
        """Start observing (idempotent). Returns self."""
        if self.active:
            return self
        c = self.config
        self.pipeline = Pipeline(c, self.instrumentor.drops)
        self.registry = c.registry
        if self.registry is None and (c.prometheus_port is not None or c.pushgateway):
            self.registry = CollectorRegistry()
        try:
            self.instrumentor.instrument(
                tracer_provider=c.tracer_provider or self.pipeline.tracer_provider,
                meter_provider=c.meter_provider or self.pipeline.meter_provider,
                registry=self.registry,
                sample_every=c.sample_every,
                step_spans=c.step_spans,
                census_overhead=c.census_overhead,
                site_metrics=c.site_metrics,
                site_top_k=c.site_top_k,
                const_labels={"rank": str(c.rank)} if c.distributed else None,
            )
            if c.prometheus_port is not None:
                self.server = serve(self.registry, c.exporter_port, c.prometheus_addr)  # base port + rank in a job
            self.instrumentor.checkpoints.on_interrupt = self.flush  # a signal ended a run: deliver now
            self.census()  # a first value for the pending-nodes gauge, taken on the caller's (MLX) thread
        except BaseException:
            self.instrumentor.uninstrument()
            self.pipeline.shutdown()
            raise
        return self

    def stop(self) -> None:
        """Push, flush, stop serving and detach (idempotent; bounded by `shutdown_timeout_s`)."""
        if not self.active:
            return
        if self.config.pushgateway:
            self.push()
        if self.pipeline is not None:
            self.pipeline.shutdown()  # the last OTLP export still reads the observers
        if self.server is not None:
            self.server.close()
        self.final = self.snapshot()
        self.instrumentor.uninstrument()
        if self.config.summary:
            print(self.summary(), file=sys.stdout)

    def __enter__(self) -> "Observation":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    # -- reading ------------------------------------------------------------------------
    @property
    def observer(self):
        return self.instrumentor.observer

    @property
    def drops(self):
        return self.instrumentor.drops

    def census(self) -> tuple[int, int]:
        """Take an exact census now, on this thread: `(live arrays, pending graph nodes)`.

        The `memory.pending_nodes` gauge reports the latest census; this
        refreshes it (e.g. right before a final scrape).
        """
        return self.instrumentor.observer.census()

    def snapshot(self) -> dict[str, list]:
        """Every exported metric now (after `stop()`: at stop): catalog key -> `[(attributes, value)]`."""
        if not self.active and self.final is not None:
            return self.final
        return {k: read() for k, read in self.instrumentor.readers.items()}

    def destinations(self) -> list[str]:
        """Where telemetry goes, one line each."""
        out = []
        if self.server is not None:
            out.append(f"Prometheus endpoint: {self.server.url}")
        if self.config.pushgateway:
            rank = f", rank={self.config.rank}" if self.config.distributed else ""
            out.append(f"Pushgateway: {self.config.pushgateway} (job={self.config.pushgateway_job}{rank})")
        if self.pipeline is not None:
            for signal, url in self.pipeline.endpoints.items():
                out.append(f"OTLP/HTTP {signal}: {url}")
        if self.config.tracer_provider is not None:
            out.append("spans: the tracer provider you passed")
        if self.config.meter_provider is not None:
            out.append("metrics: the meter provider you passed")
        if self.config.registry is not None:
            out.append("metrics: the prometheus_client registry you passed")
        return out

    def summary(self) -> str:
        """A console table of the metrics and where they were sent."""
        return _summary.render(self.snapshot(), self.destinations(), dict(self.drops.counts))

    def flush(self) -> None:
        """Export what is pending now (spans, metrics: each provider's `force_flush`) and push.

        Called when a signal interrupts a run (the process may be about to end);
        bounded by `shutdown_timeout_s` per provider.
        """
        c = self.config
        ms = int(c.shutdown_timeout_s * 1000)
        for p in (c.tracer_provider or (self.pipeline and self.pipeline.tracer_provider),
                  c.meter_provider or (self.pipeline and self.pipeline.meter_provider)):
            f = getattr(p, "force_flush", None)
            if f is not None:
                try:
                    f(ms)
                except Exception as e:
                    self.drops.add("flush", 1, f"flush failed: {type(e).__name__}: {e}")
        if c.pushgateway:
            self.push()

    def push(self) -> bool:
        """Push the metrics to the Pushgateway now; a failure is a counted, warned drop."""
        c = self.config
        if not c.pushgateway or self.registry is None:
            return False
        try:
            push(self.registry, c.pushgateway, c.pushgateway_job, timeout_s=c.shutdown_timeout_s,
                 grouping_key=c.grouping_key or None)  # one group per rank in a job
        except Exception as e:
            self.drops.add("push", 1, f"push to {c.pushgateway} failed: {type(e).__name__}: {e}")
            return False
        self.pushed = True
        return True
