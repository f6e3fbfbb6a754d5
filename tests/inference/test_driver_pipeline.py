"""driver.run(pipeline=True): step i + 1 is built and scheduled before step i lands, and the run reports
exactly what the unpipelined run reports (samples, statistics, callbacks, events, errors)."""

from __future__ import annotations

import mlx.core as mx
import pytest

from genmlx import events
from genmlx.checks import DeferredCheck
from genmlx.inference import driver
from genmlx.memory import count_nodes


class State:
    """A toy chain state: one value and the checks of the step that made it."""

    def __init__(self, x, checks=()):
        self.x, self.checks = x, checks

    def _genmlx_arrays(self):
        yield self.x


def _stepper(log: list, bad_at: int | None = None, raise_at: int | None = None):
    built = [0]

    def step(key, state):
        i = built[0]
        built[0] += 1
        log.append(("build", i))
        if i == raise_at:
            raise RuntimeError(f"step {i} cannot be built")
        x = state.x * 0.5 + mx.random.normal(key=key)
        ok = mx.array(i != bad_at)
        checks = (DeferredCheck(ok, lambda i=i: ValueError(f"bad parameter at step {i}")),)
        return driver.Step(State(x, checks), x, {"x": x, "accepted": x > 0})

    return step


def _run(pipeline: bool, n: int = 12, **kw):
    log: list = []
    step = _stepper(log, kw.pop("bad_at", None), kw.pop("raise_at", None))

    def callback(i, state, stats):
        log.append(("land", i))
        seen.append((i, state.x.item(), stats["x"]))

    seen: list = []
    res = driver.run(step, State(mx.array(0.0)), n, algorithm="toy", key=mx.random.key(7), burn=2, thin=3,
                     callback=callback, pipeline=pipeline, **kw)
    return res, seen, log


def test_pipelined_run_reports_what_the_unpipelined_run_reports():
    a, seen_a, _ = _run(False)
    b, seen_b, _ = _run(True)
    assert seen_a == seen_b and len(seen_b) == 12
    assert [s.item() for s in a.samples] == [s.item() for s in b.samples] and len(b.samples) == 4
    assert a.stats == b.stats
    assert a.state.x.item() == b.state.x.item()
    assert (a.steps, a.iterations, a.syncs) == (b.steps, b.iterations, b.syncs) == (12, 12, 0)


def test_at_most_two_steps_are_in_flight():
    _, _, log = _run(True, n=5)
    assert log == [("build", 0), ("build", 1), ("land", 0), ("build", 2), ("land", 1), ("build", 3), ("land", 2),
                   ("build", 4), ("land", 3), ("land", 4)]
    _, _, log = _run(False, n=3)
    assert log == [("build", 0), ("land", 0), ("build", 1), ("land", 1), ("build", 2), ("land", 2)]


def test_steps_in_flight_are_scheduled_not_pending():
    pending = []

    def step(key, state):
        pending.append(count_nodes(state.x))
        x = state.x + mx.random.normal(key=key)
        return driver.Step(State(x), None, {})

    driver.run(step, State(mx.array(0.0)), 4, algorithm="toy", key=mx.random.key(1), pipeline=True)
    # step i + 1 is built on step i's state in flight: scheduled already, no pending node
    assert pending == [0, 0, 0, 0]


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_failed_check_raises_at_its_step_with_the_steps_before_it(pipeline):
    with pytest.raises(ValueError, match="bad parameter at step 5") as e:
        _run(pipeline, bad_at=5)
    assert e.value.partial_result.steps == 5


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_step_that_cannot_be_built_lands_the_step_before_it(pipeline):
    with pytest.raises(RuntimeError, match="step 6 cannot be built") as e:
        _run(pipeline, raise_at=6)
    assert e.value.partial_result.steps == 6
    assert len(e.value.partial_result.samples) == 2  # steps 2 and 5


class StepRecorder:
    def __init__(self):
        self.steps = []

    def on_step(self, e):
        self.steps.append((e.step, e.stats["x"]))


@pytest.mark.parametrize("pipeline", [False, True])
def test_events_come_in_step_order_with_the_steps_statistics(pipeline):
    rec = StepRecorder()
    with events.subscribed(rec):
        _, seen, _ = _run(pipeline, n=6)
    assert rec.steps == [(i, x) for i, _, x in seen] and [s for s, _ in rec.steps] == list(range(6))


def test_a_decide_cannot_be_pipelined():
    def step(key, state):
        return driver.Step(driver.Decide(mx.array(True), state, state), None, {})

    with pytest.raises(TypeError, match="cannot return a Decide"):
        driver.run(step, State(mx.array(0.0)), 3, algorithm="toy", key=mx.random.key(1), pipeline=True)
