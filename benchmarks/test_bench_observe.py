"""Overhead of genmlx_observe on an MH loop (pytest-benchmark; ratios, no timed unit tests).

Run: python -m pytest benchmarks/test_bench_observe.py --benchmark-only -s

The loop is a random-walk MH on N(0, 1) written in plain MLX and run by the
loop driver (one `mx.eval` per step, ~0.1 ms per iteration on the CPU
backend: the cheapest realistic step, so the hardest case for overhead). The
same loop runs detached (nobody subscribed), observed with metrics only
(both dialects: an OpenTelemetry meter provider and a Prometheus registry,
no tracer), with spans at the default sampling (every 100th step) and with a
span per step. Configurations are interleaved round by round and compared by
their median time per iteration, measured in the same run.

Targets (DESIGN.md / the observability issue):
* nobody listening: one emission point costs < 1% of an iteration;
* metrics only: within 3% of detached;
* spans at the default sampling: within 15% of detached.
`test_overhead_ratios` asserts them with the measured ratio; a noisy machine
may need a rerun (the per-round ratios are in `extra_info`).
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext

import mlx.core as mx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, generate_latest

import genmlx_observe as go
from genmlx import events
from genmlx.inference import driver
from genmlx.inference.driver import Step
from genmlx_observe import spans as span_mod

N_STEPS = 2000
ROUNDS = 9


def mh_step(key, state):
    x, lp = state
    k1, k2 = mx.random.split(key)
    xp = x + 2.0 * mx.random.normal(key=k1)
    lpp = -0.5 * xp * xp
    la = lpp - lp
    acc = mx.log(mx.random.uniform(key=k2)) < la
    x2 = mx.where(acc, xp, x)
    return Step((x2, mx.where(acc, lpp, lp)), None, {"accepted": acc, "accept_prob": mx.minimum(mx.exp(la), 1.0)})


def mh_loop(n: int = N_STEPS, seed: int = 0):
    return driver.run(mh_step, (mx.array(0.0), mx.array(0.0)), n, algorithm="mh", model="gauss",
                      key=mx.random.key(seed))


class Discard(SpanExporter):
    """A span exporter that accepts and drops everything (the export thread still runs)."""

    def export(self, spans):
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def _tracer_provider() -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(Discard()))
    return tp


def _metrics_kwargs() -> dict:
    return {"meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]), "registry": CollectorRegistry()}


CONFIGS = {
    "detached": lambda: nullcontext(),
    "metrics_only": lambda: go.observe(step_spans=False, **_metrics_kwargs()),
    "spans_default": lambda: go.observe(tracer_provider=_tracer_provider(), **_metrics_kwargs()),
    "span_per_step": lambda: go.observe(tracer_provider=_tracer_provider(), sample_every=1, **_metrics_kwargs()),
}


def _per_iteration(make) -> float:
    with make():
        t0 = time.perf_counter()
        mh_loop()
        return (time.perf_counter() - t0) / N_STEPS


def measure() -> dict:
    mh_loop(200)  # warm up MLX and the driver
    times: dict[str, list[float]] = {k: [] for k in CONFIGS}
    for _ in range(ROUNDS):
        for name, make in CONFIGS.items():
            times[name].append(_per_iteration(make))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["detached"]
    return {
        "median_us": {k: v * 1e6 for k, v in med.items()},
        "ratio": {k: v / base for k, v in med.items()},
        "round_ratios": {k: [a / b for a, b in zip(v, times["detached"])] for k, v in times.items()},
    }


@pytest.fixture(scope="module")
def overhead():
    return measure()


def _cost(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def test_overhead_ratios(benchmark, overhead):
    """The headline numbers: median time per iteration and ratios against detached."""
    res = benchmark.pedantic(lambda: overhead, rounds=1, iterations=1)
    it_us = res["median_us"]["detached"]
    emit_s = _cost(_emission_point, 200_000)
    benchmark.extra_info.update(res)
    benchmark.extra_info["emission_point_ns"] = emit_s * 1e9
    benchmark.extra_info["emission_point_share_of_iteration"] = emit_s * 1e6 / it_us
    print("\nMH loop, per iteration (median of", ROUNDS, "rounds of", N_STEPS, "steps):")
    for k in CONFIGS:
        print(f"  {k:<14} {res['median_us'][k]:8.1f} us   x{res['ratio'][k]:.4f}")
    print(f"  emission point with nobody listening: {emit_s * 1e9:.0f} ns "
          f"= {100 * emit_s * 1e6 / it_us:.4f}% of an iteration")
    assert emit_s * 1e6 < 0.01 * it_us
    assert res["ratio"]["metrics_only"] < 1.03
    assert res["ratio"]["spans_default"] < 1.15


def _emission_point():
    # exactly what the driver does per step when nobody listens
    if events.step_listeners:
        raise AssertionError("someone is listening")


def test_bench_emission_point_nobody_listening(benchmark):
    assert not events.step_listeners
    benchmark(_emission_point)


def _step_event(step: int) -> events.StepEnded:
    return events.StepEnded(1, "mh", "gauss", step, step, 1, 1e-4, 0, "sampling",
                            {"accepted": True, "accept_prob": 0.7}, 0, [], None, None)


def test_bench_one_event_to_the_observer(benchmark):
    """Building a StepEnded and delivering it to the Observer on a non-sampled step (metrics only)."""
    obs = go.Observer(sample_every=10**9)
    obs.on_run_start(events.RunStarted(1, "mh", "gauss", {}, None, 0, []))
    with events.subscribed(obs):
        benchmark(lambda: events.emit_step(_step_event(1)))


def test_bench_one_step_span(benchmark):
    """One sampled step written as a span (BatchSpanProcessor, discarding exporter)."""
    tp = _tracer_provider()
    tracer = tp.get_tracer("bench")
    run = tracer.start_span("mh run")
    e = _step_event(100)
    extra = {"genmlx.memory.active_bytes": 1024, "genmlx.memory.cache_bytes": 0}
    benchmark(span_mod.step_span, tracer, run, e, extra)
    run.end()
    tp.shutdown()


def test_bench_prometheus_scrape(benchmark):
    """One scrape of the exposition (collection time: memory census, psutil, every catalog metric)."""
    reg = CollectorRegistry()
    with go.observe(registry=reg):
        mh_loop(100)
        benchmark(generate_latest, reg)


def test_bench_otel_collection(benchmark):
    reader = InMemoryMetricReader()
    with go.observe(meter_provider=MeterProvider(metric_readers=[reader])):
        mh_loop(100)
        benchmark(reader.get_metrics_data)
