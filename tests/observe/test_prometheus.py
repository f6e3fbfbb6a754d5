"""Prometheus: the exposition parsed back, the /metrics endpoint, the Pushgateway."""

from __future__ import annotations

import re
import socket
import urllib.request
import warnings

import pytest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

import genmlx_observe as go
from genmlx_observe.catalog import prometheus_unit

from .helpers import otel_value, prometheus_families, prometheus_value, run_mh

NAME = re.compile(r"^genmlx_[a-z0-9_]+$")


def test_exposition_names_types_and_bounded_labels(registry):
    with go.observe(registry=registry, sample_every=5):
        run_mh(12, burn=2)
        fams = prometheus_families(registry)
    by_base = {m.prometheus_base: m for m in go.CATALOG}
    exposed = set()
    for name, fam in fams.items():
        m = by_base[name]  # the text parser strips _total from counter names
        exposed.add(m.key)
        assert NAME.match(m.prometheus_name)
        assert fam.type == m.prometheus_type
        assert fam.documentation == m.description
        for s in fam.samples:
            assert s.name in m.prometheus_series, s.name
            assert set(s.labels) - {"le"} <= set(m.attributes), (s.name, s.labels)
        if m.kind == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples)
        suffix = prometheus_unit(m.unit)
        if suffix:
            assert name.endswith("_" + suffix)
    assert {"inference.iterations", "inference.iteration.duration", "memory.active", "memory.live_arrays",
            "process.memory.rss", "process.cpu.time", "inference.acceptance.ratio"} <= exposed
    assert "site.buffers" not in exposed  # opt-in


def test_openmetrics_exposition_declares_units(registry):
    with go.observe(registry=registry):
        run_mh(3)
        text = generate_openmetrics(registry).decode()
    units = {f.name: f.unit for f in parse_openmetrics(text)}
    assert units["genmlx_memory_active_bytes"] == "bytes"
    assert units["genmlx_inference_duration_seconds"] == "seconds"
    assert units["genmlx_inference_iteration_duration_seconds"] == "seconds"
    assert units["genmlx_process_cpu_time_seconds"] == "seconds"
    assert units["genmlx_inference_acceptance_ratio"] == "ratio"
    assert units["genmlx_inference_iterations"] == ""


def test_both_dialects_report_the_same_values(registry, meter):
    mp, reader = meter
    with go.observe(registry=registry, meter_provider=mp, sample_every=4):
        res = run_mh(25, burn=5)
        labels = {"algorithm": "mh", "model": "gauss", "chain": "0"}
        for key, sample in [("inference.steps", "genmlx_inference_steps_total"),
                            ("inference.accepted", "genmlx_inference_accepted_total"),
                            ("inference.proposals", "genmlx_inference_proposals_total"),
                            ("inference.acceptance.ratio", "genmlx_inference_acceptance_ratio")]:
            assert prometheus_value(registry, sample, **labels) == otel_value(reader, "genmlx." + key, **labels)
        assert prometheus_value(registry, "genmlx_inference_iterations_total", phase="warmup", **labels) == 5
        assert prometheus_value(registry, "genmlx_inference_accepted_total", **labels) == sum(res.stats["accepted"])
        h = otel_value(reader, "genmlx.inference.iteration.duration", **labels)
        assert prometheus_value(registry, "genmlx_inference_iteration_duration_seconds_count", **labels) == h.count == 7
        assert prometheus_value(registry, "genmlx_inference_iteration_duration_seconds_bucket", le="+Inf",
                                **labels) == 7
        assert prometheus_value(registry, "genmlx_inference_iteration_duration_seconds_sum",
                                **labels) == pytest.approx(h.sum)


def test_endpoint_serves_on_localhost():
    with go.observe(prometheus_port=0) as o:
        run_mh(5)
        assert o.server.addr == "127.0.0.1"
        assert o.server._server.socket.getsockname()[0] == "127.0.0.1"
        body = urllib.request.urlopen(o.server.url, timeout=5).read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    (s,) = [s for s in fams["genmlx_inference_steps"].samples]
    assert s.value == 5 and s.labels == {"algorithm": "mh", "model": "gauss", "chain": "0"}
    with pytest.raises(OSError):  # stopped: the port is free again and nothing answers
        urllib.request.urlopen(o.server.url, timeout=1)


def test_taken_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        o = go.observe(prometheus_port=port)
        with pytest.raises(go.PortInUseError, match=rf"127\.0\.0\.1:{port}: the port is already in use.*"
                                                     r"prometheus_port=.*GENMLX_PROMETHEUS_PORT"):
            o.start()
        assert not o.active  # nothing left subscribed (the autouse fixture checks too)


def test_pushgateway_gets_the_metrics_at_stop(pushgateway):
    with go.observe(pushgateway=pushgateway.url, pushgateway_job="batch-fit") as o:
        run_mh(9)
    assert o.pushed
    ((method, path, body),) = pushgateway.requests
    assert method == "PUT" and path == "/metrics/job/batch-fit"
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    assert fams["genmlx_inference_steps"].samples[0].value == 9


def test_unreachable_pushgateway_is_a_counted_drop_warned_once():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        o = go.observe(pushgateway=f"http://127.0.0.1:{port}", shutdown_timeout_s=2).start()
        run_mh(3)
        assert o.push() is False
        o.stop()  # pushes again: still no exception
    assert o.drops.total("push") == 2
    assert len([x for x in w if "dropped" in str(x.message)]) == 1
    assert o.snapshot()["observe.dropped"] == [({"signal": "push"}, 2)]
