"""Two inference runs in two threads, observed at the same time, keep their telemetry apart."""

from __future__ import annotations

import threading

import mlx.core as mx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import genmlx as gm
import genmlx_observe as go
from genmlx import dist
from genmlx import inference as infer


@gm.gen
def left(x):
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    gm.trace("y", dist.normal(mu + x, 1.0))
    return mu


@gm.gen
def right(x):
    a = gm.trace("a", dist.normal(0.0, 2.0))
    gm.trace("y", dist.normal(a * x, 0.5))
    return a


@pytest.mark.no_leak_gate  # its census cannot separate concurrent runs: each loop counts the other's kept samples
def test_two_threads_keep_metrics_and_spans_apart():
    # Growth verdicts are not asserted: a census counts the whole process's arrays minus the run's own kept
    # samples, so two healthy runs in two threads each see the other's samples as growth (the leak gate
    # reported 2.3 and 0.13 arrays/iteration here). Left open: excluding every active run's store.
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    results: dict = {}
    errors: list = []
    barrier = threading.Barrier(2)
    seen: list = []

    def run(name, fn):
        try:
            barrier.wait(timeout=30)
            results[name] = fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((name, e))

    def steps(i, state, stats):
        seen.append(threading.current_thread().name)

    with go.observe(tracer_provider=tp, sample_every=10, census_overhead=0.0) as obs:
        threads = [
            threading.Thread(target=run, args=("left", lambda: infer.mh(
                left, (0.5,), {"y": 1.0}, n_samples=300, key=mx.random.key(1)))),
            threading.Thread(target=run, args=("right", lambda: infer.mh(
                right, (2.0,), {"y": 3.0}, n_samples=200, burn=20, key=mx.random.key(2), callback=steps))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        snap = obs.snapshot()
    assert not errors, errors
    its = {(a["model"], a["phase"]): v for a, v in snap["inference.iterations"]}
    assert its == {("left", "warmup"): 0, ("left", "sampling"): 300, ("right", "warmup"): 20,
                   ("right", "sampling"): 200}
    acc = {a["model"]: v for a, v in snap["inference.accepted"]}
    assert acc == {"left": sum(results["left"].stats["accepted"]), "right": sum(results["right"].stats["accepted"])}
    spans = exporter.get_finished_spans()
    runs = {s.attributes["genmlx.model"]: s for s in spans if s.name == "mh run"}
    assert set(runs) == {"left", "right"}
    assert all(s.parent is None for s in runs.values())  # neither run is nested in the other's span
    for model, n in (("left", 300), ("right", 220)):
        steps = [s for s in spans if s.name == "mh step" and s.parent.span_id == runs[model].context.span_id]
        assert [s.attributes["genmlx.step.index"] for s in steps] == list(range(0, n, 10))
        assert runs[model].attributes["genmlx.run.steps"] == n
    assert len(seen) == 220 and len(set(seen)) == 1 and seen[0] != threading.main_thread().name
