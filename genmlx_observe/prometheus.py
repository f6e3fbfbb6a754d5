"""Prometheus: a Collector built from the catalog, the /metrics endpoint, the Pushgateway.

`GenmlxCollector.collect()` builds fresh metric families at every scrape from
the readers (like prometheus_client's own `gc_collector`), so nothing is
stored twice and names, types, units and labels come from the catalog.
"""

from __future__ import annotations

import errno
import threading
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric as Family,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .catalog import CATALOG, Metric, prometheus_unit

__all__ = ["GenmlxCollector", "MetricsServer", "PortInUseError", "serve", "push", "family"]

Reader = Callable[[], list]


class PortInUseError(OSError):
    """The Prometheus port is taken (by another process or an earlier `observe()`)."""


def _empty(m: Metric, const: dict | None = None) -> Family:
    unit = prometheus_unit(m.unit)
    cls = {"counter": CounterMetricFamily, "histogram": HistogramMetricFamily}.get(m.kind, GaugeMetricFamily)
    return cls(m.prometheus_base, m.description, labels=m.attributes + tuple(const or ()), unit=unit)


def family(m: Metric, rows: list, const: dict | None = None) -> Family:
    """The metric family of catalog entry `m` holding `rows` = `[(attributes, value)]`; `const`: labels
    every series carries (a distributed job's `rank`)."""
    fam = _empty(m, const)
    extra = [str(v) for v in (const or {}).values()]
    for attrs, value in rows:
        labels = [str(attrs.get(a, "")) for a in m.attributes] + extra
        if m.kind == "histogram":
            cumulative, buckets = 0, []
            for bound, c in zip(value.bounds + (float("inf"),), value.counts):
                cumulative += c
                buckets.append((floatToGoString(bound), cumulative))
            fam.add_metric(labels, buckets, value.sum)
        else:
            fam.add_metric(labels, value)
    return fam


class GenmlxCollector(Collector):
    """Every catalog metric as a Prometheus family, read fresh at each scrape.

    Args:
        readers: catalog key -> function returning `[(attributes, value)]`.
        include_opt_in: also expose opt-in metrics (site accounting).
        const_labels: labels on every series: `{"rank": "<r>"}` in a distributed job
            (bounded: one value per rank, 0 .. world size - 1).
    """

    def __init__(self, readers: dict[str, Reader], include_opt_in: bool = False, const_labels: dict | None = None):
        self._metrics = [m for m in CATALOG if include_opt_in or not m.opt_in]
        self._readers = readers
        self._const = dict(const_labels or {})

    def describe(self) -> Iterator[Family]:
        # Names only, so that registering checks duplicates without reading anything.
        return (_empty(m, self._const) for m in self._metrics)

    def collect(self) -> Iterator[Family]:
        for m in self._metrics:
            yield family(m, self._readers[m.key](), self._const)


class MetricsServer:
    """A running /metrics endpoint."""

    def __init__(self, server, thread: threading.Thread, addr: str):
        self._server, self._thread = server, thread
        self.addr = addr
        self.port: int = server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve `registry` on ``http://addr:port/metrics`` from a daemon thread (port 0: any free port).

    Raises:
        PortInUseError: the port is taken; the message says how to choose another.
    """
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(
                errno.EADDRINUSE,
                f"genmlx_observe cannot serve Prometheus metrics on {addr}:{port}: the port is already in use "
                f"(another process, or another observe() in this one). Choose a free port with "
                f"observe(prometheus_port=...) or GENMLX_PROMETHEUS_PORT, or 0 for any free port",
            ) from e
        raise
    return MetricsServer(server, thread, addr)


def push(registry: CollectorRegistry, gateway: str, job: str, timeout_s: float = 5.0,
         grouping_key: dict | None = None) -> None:
    """Push `registry` to a Pushgateway (replacing the group `job` + `grouping_key`)."""
    push_to_gateway(gateway, job=job, registry=registry, grouping_key=grouping_key, timeout=timeout_s)
