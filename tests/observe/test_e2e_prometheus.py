"""End to end: a real Prometheus server (Debian's `prometheus`) scrapes our /metrics endpoint."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import genmlx_observe as go

from .helpers import run_mh

PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(PROMETHEUS is None, reason="the `prometheus` binary is not installed "
                                                  "(apt-get install prometheus; .ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, **params) -> dict:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
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
    """Start Prometheus on 127.0.0.1 scraping a target set later; stopped at the end."""
    procs = []

    def start(target: str) -> str:
        port = _free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: genmlx\n    static_configs:\n      - targets: ['{target}']\n"
        )
        log = open(tmp_path / "prometheus.log", "w")
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
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
