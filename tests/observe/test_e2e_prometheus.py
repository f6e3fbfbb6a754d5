"""End to end: a real Prometheus server (Debian's `prometheus`) scrapes our /metrics endpoint."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import genmlx_observe as go

from .binaries import require
from .helpers import run_mh

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, **params) -> dict:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    if path == "alerts":
        url = f"{base}/api/v1/alerts"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]


def _wait(fn, timeout_s: float = 40.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as e:  # the server is still starting
            last = e
        time.sleep(0.25)
    raise AssertionError(f"Prometheus did not answer in {timeout_s} s; last: {last!r}")


@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus on 127.0.0.1 scraping a target set later (rules optional); stopped at the end."""
    binary = require("prometheus")
    procs = []

    def start(target: str, rules: str | None = None) -> str:
        port = _free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n  - {rules}\n" if rules else "")
            + f"scrape_configs:\n  - job_name: genmlx\n    static_configs:\n      - targets: ['{target}']\n"
        )
        log = open(tmp_path / "prometheus.log", "w")
        procs.append(subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        ))
        return f"http://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def test_prometheus_scrapes_our_endpoint(prometheus):
    with go.observe(prometheus_port=0) as o:
        res = run_mh(25, burn=5)
        base = prometheus(f"127.0.0.1:{o.server.port}")

        def sampling():
            return _api(base, "query", query='genmlx_inference_iterations_total{phase="sampling"}')["result"]

        (series,) = _wait(sampling)
        targets = _api(base, "targets")["activeTargets"]
        meta = _api(base, "metadata", metric="genmlx_memory_active_bytes")
        accepted = _wait(lambda: _api(base, "query", query="genmlx_inference_accepted_total")["result"])
        hist = _wait(lambda: _api(base, "query", query="genmlx_inference_iteration_duration_seconds_count")["result"])
    labels = series["metric"]
    assert float(series["value"][1]) == 20
    assert {k: labels[k] for k in ("algorithm", "model", "chain", "phase", "job")} == {
        "algorithm": "mh", "model": "gauss", "chain": "0", "phase": "sampling", "job": "genmlx"}
    assert float(accepted[0]["value"][1]) == sum(res.stats["accepted"])
    assert float(hist[0]["value"][1]) == 1  # step 0 is the only sampled step of 25 (sample_every=100)
    (t,) = targets
    assert t["health"] == "up" and t["lastError"] == ""
    (m,) = meta["genmlx_memory_active_bytes"]
    assert m["type"] == "gauge" and m["help"] == go.metric("memory.active").description


# Panel queries that legitimately have no data on this machine: the device buffer cap exists only on Metal.
METAL_ONLY = go.metric("memory.resource.limit").prometheus_name


def _leaky_step(kept: list):
    import mlx.core as mx

    from genmlx.inference.driver import Step

    def step(key, state):
        kept.append(mx.exp(state))  # one more live array per iteration: the growth alert's case
        return Step(state + 1.0, None, {})

    return step


def _coin_model():
    import genmlx as gm
    from genmlx import dist

    @gm.gen
    def coin():
        p = gm.trace("p", dist.beta(2.0, 2.0))
        gm.trace("y", dist.bernoulli(p))

    return coin


_coin = _coin_model()


@pytest.mark.no_leak_gate  # one loop leaks on purpose, for the growth alert
def test_every_dashboard_panel_returns_data_and_the_growth_alert_fires(prometheus, tmp_path):
    import mlx.core as mx

    import genmlx as gm
    from genmlx import inference as infer
    from genmlx.checkpoint import checkpointing
    from genmlx.inference import driver
    from genmlx_observe import alerts, dashboards
    from genmlx_observe.demo import run_workloads

    rules = tmp_path / alerts.FILE
    rules.write_text(alerts.render(growth_for="2s", budget_for="1s", stuck_after="1m"))
    kept: list = []
    with socket.socket() as s:  # a Pushgateway nobody answers: a real drop for the drops panel
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with go.observe(prometheus_port=0, site_metrics=True, census_overhead=math.inf, sample_every=5,
                    pushgateway=dead, shutdown_timeout_s=1) as o:
        base = prometheus(f"127.0.0.1:{o.server.port}", str(rules))
        _wait(lambda: [t for t in _api(base, "targets")["activeTargets"] if t["health"] == "up"])
        t0 = time.time()
        with pytest.warns(RuntimeWarning, match="dropped 1 push"):
            o.push()
        with gm.memory.budget(gm.memory.METAL_RESOURCE_LIMIT):
            driver.run(_leaky_step(kept), mx.array(0.0), 60, algorithm="mh", model="leaky", key=mx.random.key(0))
            n = 0
            while time.time() - t0 < 8:  # several scrapes while runs go on: rates have points to work with
                run_workloads(20, seed=int(time.time()))
                with checkpointing(tmp_path / f"run-{n}.db", every=5):  # the checkpoint panels' series
                    infer.mh(_coin, (), {"y": 1.0}, n_samples=20, key=mx.random.key(n))
                n += 1
        firing = _wait(lambda: [a for a in _api(base, "alerts")["alerts"]
                                if a["labels"]["alertname"] == "GenmlxLiveArrayGrowth" and a["state"] == "firing"])
        t1 = time.time()
        empty = []
        for name in sorted(dashboards.DASHBOARDS):
            board = json.loads(dashboards.render(name))
            for title, expr in dashboards.panel_exprs(board):
                q = dashboards.substitute(expr, rate_interval="4s")
                result = _api(base, "query_range", query=q, start=t0, end=t1, step=1)["result"]
                values = [float(v) for series in result for _, v in series["values"]]
                if not any(math.isfinite(v) for v in values) and METAL_ONLY not in expr:
                    empty.append((name, title, q))
    assert empty == [], "panel queries without data:\n" + "\n".join(map(str, empty))
    (alert,) = [a for a in firing if a["labels"]["model"] == "leaky"]
    assert alert["labels"]["algorithm"] == "mh" and float(alert["value"]) == pytest.approx(1.0, abs=0.05)
    assert not [a for a in firing if a["labels"]["model"] != "leaky"]  # the demo's loops do not leak
