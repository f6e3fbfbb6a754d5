"""Spans: the tree's shape and attribute values equal to what the run really did."""

from __future__ import annotations

import mlx.core as mx
import pytest
from opentelemetry.trace import StatusCode

import genmlx_observe as go
from genmlx.inference import driver
from genmlx.inference.driver import Step

from .helpers import gauss_mh, run_mh


def _by_name(finished, name):
    return [s for s in finished if s.name == name]


def test_run_span_has_one_child_per_sampled_step(spans):
    tp, exporter = spans
    with go.observe(tracer_provider=tp, sample_every=10):
        res = run_mh(50, burn=5)
    finished = exporter.get_finished_spans()
    (run,) = _by_name(finished, "mh run")
    steps = _by_name(finished, "mh step")
    assert [s.attributes["genmlx.step.index"] for s in steps] == [0, 10, 20, 30, 40]
    for s in steps:
        assert s.parent.span_id == run.context.span_id
        assert s.context.trace_id == run.context.trace_id
        assert run.start_time <= s.start_time <= s.end_time <= run.end_time
    assert run.parent is None
    a = run.attributes
    assert (a["genmlx.algorithm"], a["genmlx.model"], a["genmlx.chain"]) == ("mh", "gauss", 0)
    assert a["genmlx.run.steps"] == res.steps == 50
    assert a["genmlx.run.iterations"] == res.iterations == 50
    assert a["genmlx.run.total_steps"] == 50
    assert a["genmlx.run.syncs"] == 0
    accepted = res.stats["accepted"]
    assert a["genmlx.run.acceptance_rate"] == pytest.approx(sum(accepted) / len(accepted), abs=0)
    assert a["genmlx.diagnostics.acceptance_rate"] == pytest.approx(sum(accepted) / len(accepted), abs=0)
    assert a["genmlx.diagnostics.log_ml"] == -1.25 and a["genmlx.diagnostics.r_hat"] == 1.01
    assert run.status.status_code is StatusCode.UNSET


def test_step_span_attributes_are_the_step(spans):
    tp, exporter = spans
    from genmlx import memory

    before = memory.pending_nodes()  # what earlier tests of this process left pending (not this run's)
    with go.observe(tracer_provider=tp, sample_every=7, census_overhead=float("inf")):
        res = run_mh(15, burn=3)
    steps = _by_name(exporter.get_finished_spans(), "mh step")
    assert [s.attributes["genmlx.step.index"] for s in steps] == [0, 7, 14]
    for s in steps:
        i = s.attributes["genmlx.step.index"]
        a = s.attributes
        assert a["genmlx.step.first_iteration"] == i and a["genmlx.step.iterations"] == 1
        assert a["genmlx.step.phase"] == ("warmup" if i < 3 else "sampling")
        assert a["genmlx.stats.accepted"] == res.stats["accepted"][i]
        assert a["genmlx.stats.accept_prob"] == pytest.approx(res.stats["accept_prob"][i])
        assert a["genmlx.step.syncs"] == 0
        # census_overhead=float("inf"): every sampled step took a census; the chain's trace is live and
        # the driver has just evaluated everything the loop holds
        assert a["genmlx.memory.live_arrays"] > 0 and a["genmlx.memory.pending_nodes"] == before
        assert a["genmlx.memory.active_bytes"] > 0 and "genmlx.memory.cache_bytes" in a
        assert 0 < s.end_time - s.start_time < 10**9


def test_fused_steps_report_their_iteration_range(spans):
    tp, exporter = spans
    base = gauss_mh()

    def step4(key, state):  # 4 iterations per driver step, statistics of shape [4]
        acc = []
        for k in mx.random.split(key, 4):
            out = base(k, state)
            state = out.state
            acc.append(out.stats["accepted"])
        return Step(state, None, {"accepted": mx.stack(acc)})

    with go.observe(tracer_provider=tp, sample_every=2):
        res = driver.run(step4, (mx.array(0.0), mx.array(0.0)), 5, algorithm="mh", model="fused",
                         key=mx.random.key(1), iterations_per_step=4)
    finished = exporter.get_finished_spans()
    steps = _by_name(finished, "mh step")
    assert [(s.attributes["genmlx.step.first_iteration"], s.attributes["genmlx.step.iterations"])
            for s in steps] == [(0, 4), (8, 4), (16, 4)]
    assert list(steps[1].attributes["genmlx.stats.accepted"]) == res.stats["accepted"][8:12]
    (run,) = _by_name(finished, "mh run")
    assert run.attributes["genmlx.run.iterations"] == 20
    assert run.attributes["genmlx.run.acceptance_rate"] == sum(res.stats["accepted"]) / 20


def test_step_spans_off_keeps_the_run_span(spans):
    tp, exporter = spans
    with go.observe(tracer_provider=tp, step_spans=False, sample_every=1):
        run_mh(20)
    assert [s.name for s in exporter.get_finished_spans()] == ["mh run"]


def test_error_is_recorded_on_the_run_span_with_status(spans):
    tp, exporter = spans
    base = gauss_mh()

    def step(key, state):
        if step.n == 7:
            raise FloatingPointError("proposal blew up at step 7")
        step.n += 1
        return base(key, state)

    step.n = 0
    with go.observe(tracer_provider=tp, sample_every=5) as o:
        with pytest.raises(FloatingPointError):
            driver.run(step, (mx.array(0.0), mx.array(0.0)), 20, algorithm="mh", model="bad", key=mx.random.key(0))
        snap = o.snapshot()
    (run,) = _by_name(exporter.get_finished_spans(), "mh run")
    assert run.status.status_code is StatusCode.ERROR
    assert "FloatingPointError: proposal blew up at step 7" in run.status.description
    (ev,) = [e for e in run.events if e.name == "exception"]
    assert ev.attributes["exception.type"] == "FloatingPointError"
    assert run.attributes["genmlx.run.steps"] == 7
    assert [s.attributes["genmlx.step.index"] for s in _by_name(exporter.get_finished_spans(), "mh step")] == [0, 5]
    runs = {a["outcome"]: v for a, v in snap["inference.runs"]}
    assert runs == {"ok": 0, "error": 1}


def test_nested_run_is_a_child_of_the_enclosing_run(spans):
    tp, exporter = spans
    base = gauss_mh()

    def outer(key, state):
        if outer.n == 1:  # a rejuvenation-like inner loop inside one outer step
            run_mh(4, model="inner")
        outer.n += 1
        return base(key, state)

    outer.n = 0
    with go.observe(tracer_provider=tp, sample_every=1):
        driver.run(outer, (mx.array(0.0), mx.array(0.0)), 3, algorithm="smc", model="outer", key=mx.random.key(2))
    finished = exporter.get_finished_spans()
    (o,) = _by_name(finished, "smc run")
    inner = [s for s in _by_name(finished, "mh run") if s.attributes["genmlx.model"] == "inner"]
    assert len(inner) == 1 and inner[0].parent.span_id == o.context.span_id
    inner_steps = [s for s in _by_name(finished, "mh step") if s.parent.span_id == inner[0].context.span_id]
    assert len(inner_steps) == 4


def test_run_span_joins_the_callers_trace(spans):
    tp, exporter = spans
    tracer = tp.get_tracer("user")
    with go.observe(tracer_provider=tp, step_spans=False):
        with tracer.start_as_current_span("fit") as fit:
            run_mh(5)
    (run,) = _by_name(exporter.get_finished_spans(), "mh run")
    assert run.parent.span_id == fit.get_span_context().span_id


def test_params_become_attributes_when_plain(spans):
    tp, exporter = spans
    with go.observe(tracer_provider=tp, step_spans=False):
        run_mh(3, params={"n_samples": 3, "step_size": 0.5, "selection": ["p", "q"], "kernel": object()})
    (run,) = exporter.get_finished_spans()
    a = run.attributes
    assert a["genmlx.param.n_samples"] == 3 and a["genmlx.param.step_size"] == 0.5
    assert list(a["genmlx.param.selection"]) == ["p", "q"]
    assert "genmlx.param.kernel" not in a
