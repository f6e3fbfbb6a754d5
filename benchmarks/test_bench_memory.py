"""Cost of the memory layer's measurements (pytest-benchmark; no timed assertions).

Run: python -m pytest benchmarks/test_bench_memory.py --benchmark-only

The heap holds HELD evaluated arrays (a realistic store of kept samples) on
top of whatever the interpreter has. The baseline is one plain-MLX step: a
few lazy scalar ops and one `mx.eval`, i.e. what a driver step costs at
minimum; compare each measurement against it.
"""

from __future__ import annotations

import gc
import importlib

import mlx.core as mx
import pytest

from genmlx.memory import (
    Census,
    budget,
    check_budget,
    live_arrays,
    materialize,
    pending_nodes,
    report,
    young_pending_nodes,
)

HELD = 5_000
budget_mod = importlib.import_module("genmlx.memory.budget")
checker = importlib.import_module("genmlx.memory.checker")


@pytest.fixture(scope="module")
def heap():
    held = [mx.array(float(i)) for i in range(HELD)]
    mx.eval(held)
    gc.collect()
    yield held
    del held


def plain_step(x):
    s = x
    for _ in range(5):
        s = s * 0.5 + x
    mx.eval(s)
    return s


def test_bench_baseline_plain_mlx_step(benchmark, heap):
    x = mx.array(1.0)
    benchmark(plain_step, x)


def test_bench_live_arrays(benchmark, heap):
    benchmark.extra_info["gc_objects"] = len(gc.get_objects())
    assert benchmark(live_arrays) >= HELD


def test_bench_census_count(benchmark, heap):
    census = Census()
    census.full()
    assert benchmark(census.count) >= HELD


def test_bench_census_count_with_store_exclusion(benchmark, heap):
    census = Census()
    store = [{"value": a} for a in heap[:1000]]
    census.full(exclude=store)
    benchmark(census.count, store)


def test_bench_census_full(benchmark, heap):
    census = Census()
    benchmark(census.full)


def test_bench_pending_nodes_all_live(benchmark, heap):
    assert benchmark(pending_nodes) == 0


def test_bench_young_pending_nodes_none_young(benchmark, heap):
    gc.collect()  # nothing young: no export at all
    benchmark(young_pending_nodes)


def test_bench_young_pending_nodes_100_young(benchmark, heap):
    gc.collect()
    x = mx.array(1.0)
    young = [x * float(i) for i in range(100)]  # the arrays one step leaves behind
    mx.eval(young)
    assert benchmark(young_pending_nodes) == 0


def test_bench_young_pending_nodes_lazy_score(benchmark, heap):
    gc.collect()
    x, s = mx.array(1.0), mx.array(0.0)
    for _ in range(1000):
        s = s + x  # a leaked lazy accumulator, 1,000 nodes
    assert benchmark(young_pending_nodes) == 1000


def test_bench_check_budget_inactive(benchmark, heap):
    assert benchmark(check_budget, "bench") is None


def test_bench_check_budget_active(benchmark, heap):
    """The average check: rate-limited measurements, most checks return None."""
    with budget(limit=10**7):
        check_budget("warm up")  # the first check under a budget is a full sweep
        benchmark(check_budget, "bench")
        benchmark.extra_info.update(budget_mod.budget_status())


def test_bench_check_budget_measuring_every_check(benchmark, heap, monkeypatch):
    """One measurement (census + young pending nodes), as near the limit."""
    monkeypatch.setattr(checker, "_DUTY", 1e9)
    monkeypatch.setattr(checker, "_SWEEP_DUTY", 1e-12)
    with budget(limit=10**7):
        check_budget("warm up")
        benchmark(check_budget, "bench")
        benchmark.extra_info.update(budget_mod.budget_status())


def test_bench_plain_step_plus_check_budget(benchmark, heap):
    x = mx.array(1.0)

    def step():
        plain_step(x)
        check_budget("bench")

    with budget(limit=10**7):
        check_budget("warm up")
        benchmark(step)


def test_bench_report(benchmark, heap):
    r = benchmark(report)
    assert r["live_arrays"] >= HELD


class _Trace:
    def __init__(self, arrays):
        self.arrays = arrays

    def _genmlx_arrays(self):
        return iter(self.arrays)


def test_bench_materialize_100_traces(benchmark, heap):
    x = mx.array(1.0)

    def setup():
        traces = [_Trace([x * float(i), x + float(i), x - float(i)]) for i in range(100)]
        return (traces,), {}

    benchmark.pedantic(materialize, setup=setup, rounds=200)
