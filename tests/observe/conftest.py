"""Fixtures for genmlx_observe: in-memory OpenTelemetry SDK pieces, a private registry, MLX steps."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from genmlx import events
from genmlx_observe import Observer, SiteObserver

from .helpers import otlp_receiver, pushgateway_recorder


def _ours() -> list:
    return [o for o in events.observers() if isinstance(o, (Observer, SiteObserver))]


@pytest.fixture(autouse=True)
def _observers_restored():
    """Every test leaves no genmlx_observe observer subscribed (others, e.g. the leak gate's, are not ours)."""
    assert _ours() == []
    yield
    assert _ours() == [], "a test left an observer subscribed"


@pytest.fixture
def spans():
    """(TracerProvider, InMemorySpanExporter), synchronous export."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp, exporter
    tp.shutdown()


@pytest.fixture
def meter():
    """(MeterProvider, InMemoryMetricReader)."""
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield mp, reader
    mp.shutdown()


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def receiver():
    """A local OTLP/HTTP receiver (`.url`, `.received` = [(path, content type, decoded request)])."""
    with otlp_receiver() as srv:
        yield srv


@pytest.fixture
def pushgateway():
    """A stand-in Pushgateway (`.url`, `.requests` = [(method, path, body)])."""
    with pushgateway_recorder() as srv:
        yield srv
