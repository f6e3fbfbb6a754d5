"""Telemetry per rank: resource attributes, the `rank` label, base port + rank, Pushgateway grouping."""

from __future__ import annotations

import http.server
import threading

import mlx.core as mx
import pytest

import genmlx_observe as go
from genmlx import inference as infer
from genmlx.distributed import launch
from genmlx.distributed.launch import free_ports
from genmlx_observe.config import ConfigError, from_env
from genmlx_observe.otlp import resource

import dist_models as dm
from jobs import outputs


def test_rank_comes_from_the_launchers_environment(tmp_path):
    c = from_env({"MLX_RANK": "1", "MLX_WORLD_SIZE": "4"})
    assert (c.rank, c.world_size) == (1, 4)
    c = from_env({"GENMLX_RANK": "2", "GENMLX_WORLD_SIZE": "3", "MLX_RANK": "0", "MLX_WORLD_SIZE": "3"})
    assert (c.rank, c.world_size, c.distributed) == (2, 3, True)
    hostfile = tmp_path / "hosts.json"  # mlx.launch's ring job: MLX_RANK and a hostfile of the ranks
    hostfile.write_text('[["127.0.0.1:5000"], ["127.0.0.1:5001"]]')
    c = from_env({"MLX_RANK": "1", "MLX_HOSTFILE": str(hostfile)})
    assert (c.rank, c.world_size) == (1, 2)
    single = from_env({})
    assert single.rank is None and not single.distributed and single.grouping_key == {}


def test_bad_rank_is_named():
    with pytest.raises(ConfigError, match=r"rank must be an int in \[0, world_size=2\), got 2"):
        from_env({}, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="rank and world_size go together"):
        from_env({}, rank=0)
    with pytest.raises(ConfigError, match="GENMLX_RANK"):
        from_env({"GENMLX_RANK": "one", "GENMLX_WORLD_SIZE": "2"})


def test_rank_and_world_size_are_resource_attributes():
    attrs = resource(from_env({}, rank=1, world_size=2)).attributes
    assert attrs["genmlx.rank"] == 1 and attrs["genmlx.world_size"] == 2
    assert "genmlx.rank" not in resource(from_env({})).attributes


def test_every_series_carries_the_rank_label_and_the_port_is_base_plus_rank():
    base = free_ports(1)[0]
    with go.observe(prometheus_port=base, rank=1, world_size=2) as o:
        infer.mh(dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, n_samples=30, key=mx.random.key(0))
        assert o.server.port == base + 1
        reg = o.registry
        v = reg.get_sample_value("genmlx_inference_runs_total",
                                 {"algorithm": "mh", "model": "normal_mean", "chain": "0", "outcome": "ok", "rank": "1"})
        assert v == 1.0
        for fam in reg.collect():
            for s in fam.samples:
                assert s.labels.get("rank") == "1", s


class _Gateway(http.server.BaseHTTPRequestHandler):
    paths: list = []

    def do_PUT(self):
        self.paths.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_pushgateway_groups_by_rank():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Gateway)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with go.observe(pushgateway=url, pushgateway_job="fit", rank=3, world_size=4):
            infer.mh(dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, n_samples=10, key=mx.random.key(0))
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)
    assert _Gateway.paths == ["/metrics/job/fit/rank/3"]


def test_two_ranks_serve_two_endpoints(tmp_path):
    base = free_ports(1)[0]
    import jobs

    cmd, n, kw = _telemetry_job(jobs, tmp_path, base)
    res = launch(cmd, n, **kw)
    assert res.ok
    got = outputs(tmp_path, "telemetry")
    assert [g["port"] for g in got] == [base, base + 1]
    assert all(f'rank="{g["rank"]}"' in g["runs"][0] for g in got)


def _telemetry_job(jobs, out, base):
    import sys

    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           f"{jobs.HERE}/rank_cases.py::test_telemetry"]
    return cmd, 2, ({"timeout_s": jobs.JOB_TIMEOUT_S, "cwd": jobs.ROOT,
                     "env": jobs.env(GENMLX_TEST_OUT=str(out), GENMLX_TEST_PORT=str(base))})
