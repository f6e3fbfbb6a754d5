"""Test helpers: a plain-MLX MH step run by the driver; reading metrics back from both dialects."""

from __future__ import annotations

import gzip
import http.server
import threading
from contextlib import contextmanager

import mlx.core as mx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from genmlx.inference import driver
from genmlx.inference.driver import Step


def metric_points(reader, name: str) -> list:
    """Data points of metric `name` in one collection of an `InMemoryMetricReader`."""
    data = reader.get_metrics_data()
    out = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    out.extend(m.data.data_points)
    return out


def otel_value(reader, name: str, **attrs) -> float | None:
    """The value (or histogram point) of `name` whose attributes include `attrs`."""
    for p in metric_points(reader, name):
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            return p if hasattr(p, "bucket_counts") else p.value
    return None


def prometheus_families(registry) -> dict:
    """name -> family, parsed back from the text exposition."""
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def prometheus_value(registry, sample_name: str, **labels) -> float | None:
    for fam in prometheus_families(registry).values():
        for s in fam.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def gauss_mh(scale: float = 2.0):
    """Random-walk MH on N(0, 1) in plain MLX: one driver step per iteration, no host sync."""

    def step(key, state):
        x, lp = state
        k1, k2 = mx.random.split(key)
        xp = x + scale * mx.random.normal(key=k1)
        lpp = -0.5 * xp * xp
        la = lpp - lp
        acc = mx.log(mx.random.uniform(key=k2)) < la
        x2 = mx.where(acc, xp, x)
        return Step((x2, mx.where(acc, lpp, lp)), x2, {"accepted": acc, "accept_prob": mx.minimum(mx.exp(la), 1.0)})

    return step


def run_mh(n: int, burn: int = 0, seed: int = 0, model: str = "gauss", **kwargs):
    return driver.run(gauss_mh(), (mx.array(0.0), mx.array(0.0)), n, algorithm="mh", model=model,
                      key=mx.random.key(seed), burn=burn, summarize=_summarize, **kwargs)


def _summarize(r) -> dict:
    acc = r.stats.get("accepted", [])
    return {"acceptance_rate": sum(map(float, acc)) / len(acc) if acc else 0.0, "log_ml": -1.25, "r_hat": 1.01}


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A local OTLP/HTTP receiver: decodes each request's protobuf payload (opentelemetry-proto)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            req, resp = ExportTraceServiceRequest(), ExportTraceServiceResponse()
        elif self.path == "/v1/metrics":
            req, resp = ExportMetricsServiceRequest(), ExportMetricsServiceResponse()
        else:
            self.send_response(404)
            self.end_headers()
            return
        req.ParseFromString(body)
        self.server.received.append((self.path, self.headers.get("Content-Type"), req))
        out = resp.SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def otlp_attrs(kvs) -> dict:
    """Protobuf KeyValues as a dict."""
    out = {}
    for kv in kvs:
        v = kv.value
        field = v.WhichOneof("value")
        out[kv.key] = getattr(v, field) if field != "array_value" else [
            getattr(x, x.WhichOneof("value")) for x in v.array_value.values]
    return out


def otlp_spans(received):
    for path, ctype, req in received:
        if path == "/v1/traces":
            assert ctype == "application/x-protobuf"
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        yield otlp_attrs(rs.resource.attributes), ss.scope.name, s


def otlp_metrics(received) -> dict:
    """metric name -> (resource attributes, metric) from the last metrics request."""
    out = {}
    for path, _, req in received:
        if path == "/v1/metrics":
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        out[m.name] = (otlp_attrs(rm.resource.attributes), m)
    return out


def otlp_point(metric, **attrs):
    kind = metric.WhichOneof("data")
    for p in getattr(metric, kind).data_points:
        if all(otlp_attrs(p.attributes).get(k) == v for k, v in attrs.items()):
            return p
    return None


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in Pushgateway: records (method, path, body)."""

    def _record(self):
        n = int(self.headers.get("Content-Length", 0))
        self.server.requests.append((self.command, self.path, self.rfile.read(n).decode()))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = _record

    def log_message(self, *args):
        pass


@contextmanager
def http_server(handler):
    """A threaded HTTP server on 127.0.0.1 (a free port) with `received` and `url`; stopped on exit."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.received = srv.requests = []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def otlp_receiver():
    return http_server(_Receiver)


def pushgateway_recorder():
    return http_server(_Recorder)
