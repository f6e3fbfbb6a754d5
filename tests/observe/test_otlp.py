"""OTLP/HTTP: a real exchange with a local receiver that decodes the protobuf payloads; failures never spread."""

from __future__ import annotations

import socket
import time
import warnings

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import genmlx_observe as go
from genmlx_observe.drops import Drops
from genmlx_observe.otlp import CountingSpanProcessor, SafeSpanExporter

from .helpers import otlp_attrs as _attrs
from .helpers import otlp_metrics as _metrics
from .helpers import otlp_point as _point
from .helpers import otlp_spans as _spans
from .helpers import run_mh


def test_spans_and_metrics_reach_a_real_otlp_receiver(receiver):
    with go.observe(otlp_endpoint=receiver.url, service_name="fit-job", resource_attributes={"team": "ppl"},
                    sample_every=5) as o:
        res = run_mh(20, burn=4)
    assert o.drops.counts == {}
    spans = list(_spans(receiver.received))
    names = sorted(s.name for _, _, s in spans)
    assert names == ["mh run"] + ["mh step"] * 4
    resource, scope, run = next(x for x in spans if x[2].name == "mh run")
    assert resource["service.name"] == "fit-job" and resource["team"] == "ppl"
    assert scope == "genmlx_observe"
    a = _attrs(run.attributes)
    assert a["genmlx.run.iterations"] == 20 and a["genmlx.algorithm"] == "mh"
    assert a["genmlx.run.acceptance_rate"] == pytest.approx(sum(res.stats["accepted"]) / 20)
    steps = [s for _, _, s in spans if s.name == "mh step"]
    assert all(s.parent_span_id == run.span_id and s.trace_id == run.trace_id for s in steps)
    assert sorted(_attrs(s.attributes)["genmlx.step.index"] for s in steps) == [0, 5, 10, 15]

    metrics = _metrics(receiver.received)
    resource, it = metrics["genmlx.inference.iterations"]
    assert resource["service.name"] == "fit-job"
    assert it.unit == "{iteration}" and it.sum.is_monotonic
    labels = {"algorithm": "mh", "model": "gauss", "chain": "0"}
    assert _point(it, phase="sampling", **labels).as_int == 16
    assert _point(it, phase="warmup", **labels).as_int == 4
    acc = metrics["genmlx.inference.accepted"][1]
    assert _point(acc, **labels).as_int == sum(res.stats["accepted"])
    h = metrics["genmlx.inference.iteration.duration"][1]
    assert h.unit == "s" and _point(h, **labels).count == 4
    assert metrics["genmlx.memory.active"][1].unit == "By"
    assert metrics["genmlx.process.memory.rss"][1].gauge.data_points[0].as_int > 0


def test_standard_otel_environment_variables_configure_the_export(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,team=ppl")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    with go.observe(step_spans=False):
        run_mh(3)
    paths = {p for p, _, _ in receiver.received}
    assert paths == {"/v1/traces"}  # OTEL_METRICS_EXPORTER=none
    (resource, _, span), = list(_spans(receiver.received))
    assert span.name == "mh run"
    assert resource["service.name"] == "from-env"
    assert resource["deployment.environment"] == "ci" and resource["team"] == "ppl"


def test_no_endpoint_no_export(receiver):
    o = go.observe().start()
    try:
        assert o.pipeline.tracer_provider is None and o.pipeline.meter_provider is None
    finally:
        o.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_collector_never_stops_the_run():
    url = f"http://127.0.0.1:{_free_port()}"  # nobody listens there
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        o = go.observe(otlp_endpoint=url, otlp_timeout_s=0.5, shutdown_timeout_s=2.0, sample_every=2).start()
        res = run_mh(30)
        t0 = time.perf_counter()
        o.stop()
        stop_s = time.perf_counter() - t0
    assert res.iterations == 30
    assert stop_s < 6.0  # bounded by shutdown_timeout_s (+ the abort), not by retries
    assert o.drops.total("spans") == 16  # 15 step spans + 1 run span, none delivered
    assert o.drops.total("metrics") > 0
    msgs = [str(x.message) for x in w if "genmlx_observe dropped" in str(x.message)]
    assert sorted(m.split()[3] for m in msgs) == ["metrics", "spans"]  # once per signal


class _Raising(SpanExporter):
    def export(self, spans):
        raise ConnectionResetError("collector hung up")

    def shutdown(self):
        pass


def test_exporter_exception_is_a_counted_drop():
    drops = Drops()
    proc = CountingSpanProcessor(SafeSpanExporter(_Raising(), drops), drops, max_queue_size=64)
    tp = TracerProvider()
    tp.add_span_processor(proc)
    with pytest.warns(RuntimeWarning, match="span exporter raised ConnectionResetError"):
        with go.observe(tracer_provider=tp, sample_every=1):
            res = run_mh(10)
        tp.shutdown()
    assert res.iterations == 10
    assert drops.total("spans") == 11


class _Slow(SpanExporter):
    def __init__(self):
        self.exported = 0

    def export(self, spans):
        time.sleep(0.3)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def test_full_queue_drops_are_counted_and_do_not_block():
    drops, slow = Drops(), _Slow()
    proc = CountingSpanProcessor(SafeSpanExporter(slow, drops), drops, max_queue_size=8, max_export_batch_size=4,
                                 schedule_delay_millis=50)
    tp = TracerProvider()
    tp.add_span_processor(proc)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with go.observe(tracer_provider=tp, sample_every=1):
            t0 = time.perf_counter()
            run_mh(300)
            run_s = time.perf_counter() - t0
        proc.shutdown()
        proc.reconcile()
    # a blocking exporter would have taken 301 / 4 batches x 0.3 s = 22 s
    assert run_s < 5.0
    assert proc.ended == 301
    assert slow.exported + drops.total("spans") == 301
    assert drops.total("spans") > 250
    assert len([x for x in w if "genmlx_observe dropped" in str(x.message)]) == 1
