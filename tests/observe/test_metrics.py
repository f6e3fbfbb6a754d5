"""OpenTelemetry metrics: values equal to what the runs did and to genmlx.memory's own report."""

from __future__ import annotations

import gc

import mlx.core as mx
import psutil
import pytest

import genmlx_observe as go
from genmlx import memory
from genmlx.inference import driver
from genmlx.inference.driver import Step, host

from .helpers import gauss_mh, otel_value, run_mh


def test_counters_equal_what_the_runs_did(meter):
    mp, reader = meter
    with go.observe(meter_provider=mp, sample_every=10):
        a = run_mh(30, burn=10)
        b = run_mh(20, seed=1)
        c = run_mh(15, model="other")
        _check_counters(reader, a, b, c)
    # stopped: the instruments stay in the provider (OpenTelemetry cannot remove them) but report nothing
    assert otel_value(reader, "genmlx.inference.steps", model="gauss") is None


def _check_counters(reader, a, b, c):
    gauss = {"algorithm": "mh", "model": "gauss", "chain": "0"}
    assert otel_value(reader, "genmlx.inference.iterations", **gauss, phase="warmup") == 10
    assert otel_value(reader, "genmlx.inference.iterations", **gauss, phase="sampling") == 40
    assert otel_value(reader, "genmlx.inference.iterations", model="other", phase="sampling") == 15
    assert otel_value(reader, "genmlx.inference.steps", **gauss) == 50
    assert otel_value(reader, "genmlx.inference.runs", **gauss, outcome="ok") == 2
    assert otel_value(reader, "genmlx.inference.runs.active", **gauss) == 0
    acc = sum(a.stats["accepted"]) + sum(b.stats["accepted"])
    assert otel_value(reader, "genmlx.inference.accepted", **gauss) == acc
    assert otel_value(reader, "genmlx.inference.proposals", **gauss) == 50
    # the gauge is the latest run's rate
    assert otel_value(reader, "genmlx.inference.acceptance.ratio", **gauss) == sum(b.stats["accepted"]) / 20
    assert otel_value(reader, "genmlx.inference.acceptance.ratio", model="other") == sum(c.stats["accepted"]) / 15
    # time inside steps: less than the runs' wall time (which includes the driver's setup)
    in_steps = otel_value(reader, "genmlx.inference.duration", **gauss)
    assert 0 < in_steps < a.duration_s + b.duration_s
    # the histogram sees the sampled steps: 0, 10, 20 of run a and 0, 10 of run b
    h = otel_value(reader, "genmlx.inference.iteration.duration", **gauss)
    assert h.count == 5 and 0 < h.sum < in_steps
    assert list(h.explicit_bounds) == list(go.metric("inference.iteration.duration").buckets)


def test_metric_names_units_and_kinds_follow_the_catalog(meter):
    mp, reader = meter
    with go.observe(meter_provider=mp):
        run_mh(3)
        data = reader.get_metrics_data()
    got = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    kinds = {"counter": "Sum", "updowncounter": "Sum", "gauge": "Gauge", "histogram": "Histogram"}
    for m in go.CATALOG:
        if m.opt_in:
            assert m.otel_name not in got
            continue
        if m.otel_name not in got and m.group == "checkpoint":  # no checkpoint in this run: no point
            continue
        if m.otel_name not in got:  # gauges without a value (no budget, not Metal) report no point
            assert m.key in ("memory.budget.limit", "memory.budget.used", "memory.resource.limit",
                             "inference.particle.ess", "observe.dropped", "memory.live_arrays.growth",
                             "memory.pending_nodes.growth"), m.key
            continue
        o = got[m.otel_name]
        assert o.unit == m.unit and o.description == m.description
        assert type(o.data).__name__ == kinds[m.kind]
        if m.kind in ("counter", "updowncounter"):
            assert o.data.is_monotonic is (m.kind == "counter")
        for p in o.data.data_points:
            assert set(p.attributes) <= set(m.attributes), (m.key, p.attributes)


def test_syncs_divergences_and_particle_ess_from_sampler_statistics(meter):
    mp, reader = meter
    base = gauss_mh()

    def step(key, state):
        out = base(key, state)
        host(out.state[0])  # one counted host sync per iteration
        n = step.n = step.n + 1
        return Step(out.state, None, {"diverging": n % 4 == 0, "ess": 100.0 - n, "accept_prob": 0.5})

    step.n = 0
    labels = {"algorithm": "hmc", "model": "m", "chain": "0"}
    with go.observe(meter_provider=mp):
        res = driver.run(step, (mx.array(0.0), mx.array(0.0)), 12, algorithm="hmc", model="m", key=mx.random.key(0))
        assert res.syncs == 12
        assert otel_value(reader, "genmlx.inference.syncs", **labels) == 12
        assert otel_value(reader, "genmlx.inference.divergences", **labels) == 3
        assert otel_value(reader, "genmlx.inference.particle.ess", **labels) == 88.0
        # no `accepted` statistic: the acceptance gauge is the mean accept_prob
        assert otel_value(reader, "genmlx.inference.acceptance.ratio", **labels) == 0.5
        assert otel_value(reader, "genmlx.inference.proposals", **labels) == 0


def test_memory_gauges_agree_with_genmlx_memory_report(meter):
    mp, reader = meter
    with go.observe(meter_provider=mp) as o:
        res = run_mh(20)
        lazy = mx.array(1.0)
        for _ in range(5):
            lazy = lazy + 1.0  # 5 pending nodes that the census must see
        gc.collect()
        live, pending = o.census()
        want = memory.report()
        data = {name: otel_value(reader, f"genmlx.memory.{name}")
                for name in ("active", "cache", "peak", "live_arrays", "pending_nodes")}
    assert data["active"] == want["active_bytes"]
    assert data["cache"] == want["cache_bytes"]
    assert data["peak"] == want["peak_bytes"]
    assert data["live_arrays"] == want["live_arrays"] == live
    assert data["pending_nodes"] == want["pending_nodes"] == pending >= 5
    del res, lazy


def test_budget_gauges_report_the_budget_and_its_use(meter):
    mp, reader = meter
    with go.observe(meter_provider=mp):
        with memory.budget(limit=400_000):
            run_mh(10)
            status = memory.budget_status()
            assert otel_value(reader, "genmlx.memory.budget.limit") == 400_000
            assert otel_value(reader, "genmlx.memory.budget.used") == status["used"] > 0
        assert otel_value(reader, "genmlx.memory.budget.limit") is None


def test_process_gauges_are_psutil(meter):
    mp, reader = meter
    with go.observe(meter_provider=mp):
        rss = otel_value(reader, "genmlx.process.memory.rss")
        cpu = otel_value(reader, "genmlx.process.cpu.time")
    p = psutil.Process()
    assert rss == pytest.approx(p.memory_info().rss, rel=0.2)
    t = p.cpu_times()
    assert 0 < cpu <= t.user + t.system


@pytest.mark.no_leak_gate  # the step leaks on purpose
def test_growth_gauges_are_the_census_slopes(meter):
    mp, reader = meter
    base = gauss_mh()
    kept, lazy = [], [mx.array(0.0)]

    def leaky(key, state):
        out = base(key, state)
        kept.append(mx.array(1.0))  # one live array more per iteration
        lazy[0] = lazy[0] + out.state[0]  # one pending node more per iteration (never evaluated)
        return Step(out.state, None, out.stats)

    with go.observe(meter_provider=mp, sample_every=5, census_overhead=float("inf")) as o:
        driver.run(leaky, (mx.array(0.0), mx.array(0.0)), 40, algorithm="mh", model="leaky", key=mx.random.key(0))
        run_mh(40, model="tight")
        assert o.observer.censuses == 1 + 16  # at start, then steps 0, 5, ..., 35 of each run
        live = otel_value(reader, "genmlx.memory.live_arrays.growth", model="leaky")
        pending = otel_value(reader, "genmlx.memory.pending_nodes.growth", model="leaky")
        assert live == pytest.approx(1.0, abs=0.05)
        assert pending == pytest.approx(1.0, abs=0.05)
        assert otel_value(reader, "genmlx.memory.live_arrays.growth", model="tight") == pytest.approx(0.0, abs=0.05)
        assert otel_value(reader, "genmlx.memory.pending_nodes.growth", model="tight") == 0.0


def test_census_stays_within_its_share_of_run_time(meter):
    mp, reader = meter
    with go.observe(meter_provider=mp, sample_every=1, census_overhead=0.05) as o:
        run_mh(1500)
        ((_, in_steps),) = o.snapshot()["inference.duration"]
        obs = o.observer
    assert 1 <= obs.censuses < 1500
    # a census starts only when the expected total stays within 5% of the observed step time
    assert obs.census_in_runs_s <= 0.05 * in_steps + obs.census_max_s


def test_uses_the_drivers_census_when_a_budget_is_active(meter):
    mp, reader = meter
    with go.observe(meter_provider=mp, sample_every=1000, census_overhead=0.0) as o:
        with memory.budget(limit=400_000):
            run_mh(30)
        assert o.observer.censuses == 1  # ours ran only at start ...
        # ... yet the run has growth points (from the driver's budget checks)
        assert otel_value(reader, "genmlx.memory.live_arrays.growth", model="gauss") == pytest.approx(0.0, abs=0.2)
