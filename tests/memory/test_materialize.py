"""materialize: one mx.eval over everything an object holds, then its deferred checks."""

from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple

import mlx.core as mx
import pytest

from genmlx.checks import DeferredCheck
from genmlx.memory import arrays_in, count_nodes, materialize, pending_nodes


ZERO = mx.array(0.0)  # made from a Python number: already evaluated


def lazy(v: float, k: int = 3) -> mx.array:
    """A lazy scalar with k pending nodes."""
    a = mx.array(float(v))
    for _ in range(k):
        a = a + ZERO
    return a


class FakeTrace:
    """Implements the core's protocol: `_genmlx_arrays()` and a `checks` tuple."""

    def __init__(self, choices: dict, score, retval=None, checks=()):
        self.choices, self.score, self.retval, self.checks = choices, score, retval, checks

    def _genmlx_arrays(self):
        yield from self.choices.values()
        yield self.score
        yield self.retval  # may be a container or None


class FakeChoiceMap:
    def __init__(self, **values):
        self.values = values

    def _genmlx_arrays(self):
        return self.values.values()


class OnlyChecks:
    def __init__(self, *checks):
        self._c = checks

    def _genmlx_checks(self):
        return self._c


class State(NamedTuple):
    trace: FakeTrace
    step: mx.array


@dataclasses.dataclass
class Result:
    traces: list
    log_ml: mx.array
    name: str = "r"


class Opaque:
    """Not part of the protocol: its arrays are not walked."""

    def __init__(self, a):
        self.a = a


@pytest.fixture
def count_evals(monkeypatch):
    calls = []
    real = mx.eval

    def counting(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(mx, "eval", counting)
    return calls


def check(ok: bool | mx.array, msg: str) -> DeferredCheck:
    ok = ok if isinstance(ok, mx.array) else mx.array(ok) == mx.array(True)  # lazy bool
    return DeferredCheck(ok, lambda: ValueError(msg))


def test_materialize_evaluates_a_trace_in_one_eval_and_returns_it(count_evals):
    tr = FakeTrace({"x": lazy(1.0), "y": lazy(2.0)}, lazy(-3.0), retval=[lazy(4.0), "s", 1.5])
    assert pending_nodes(tr) > 0
    out = materialize(tr)
    assert out is tr
    assert pending_nodes(tr) == 0
    assert len(count_evals) == 1
    assert len(count_evals[0]) == 4
    assert tr.score.item() == -3.0 and tr.retval[0].item() == 4.0


def test_materialize_walks_nested_containers_namedtuples_and_dataclasses(count_evals):
    shared = lazy(7.0)
    obj = {
        "traces": [FakeTrace({"a": shared}, lazy(0.0)), FakeTrace({"a": shared}, lazy(1.0))],
        "state": State(FakeTrace({}, lazy(2.0)), lazy(3.0)),
        "result": Result([FakeTrace({"b": lazy(4.0)}, lazy(5.0))], lazy(6.0)),
        "cm": FakeChoiceMap(u=lazy(8.0)),
        "more": (collections.deque([lazy(9.0)]), frozenset({1, 2}), None, 3.0, "text"),
    }
    arrays = arrays_in(obj)
    assert len(arrays) == 10  # `shared` once
    assert count_nodes(*arrays) > 0
    materialize(obj)
    assert len(count_evals) == 1 and len(count_evals[0]) == 10
    assert count_nodes(*arrays) == 0


def test_non_array_leaves_and_unknown_objects_are_ignored(count_evals):
    hidden = lazy(1.0)
    obj = [1, 2.5, "x", None, Opaque(hidden), b"bytes", True]
    assert materialize(obj) is obj
    assert count_evals == []  # nothing to evaluate: no eval call at all
    assert count_nodes(hidden) == 3


def test_cycles_and_deep_nesting_are_safe():
    a = [lazy(1.0)]
    a.append(a)
    d = {"self": None, "v": lazy(2.0)}
    d["self"] = d
    deep: list = [lazy(3.0)]
    for _ in range(20_000):
        deep = [deep]
    materialize([a, d, deep])
    assert count_nodes(*arrays_in([a, d, deep])) == 0
    assert len(arrays_in([a, d, deep])) == 3


def test_trace_checks_are_evaluated_in_the_same_eval_and_raise_the_first_failure(count_evals):
    checks = (check(True, "fine"), check(False, "normal: sigma must be > 0 at 'y'"), check(False, "second"))
    tr = FakeTrace({"y": lazy(1.0)}, lazy(0.0), checks=checks)
    with pytest.raises(ValueError, match="sigma must be > 0 at 'y'"):
        materialize(tr)
    assert len(count_evals) == 1
    evaluated = {id(a) for a in count_evals[0]}
    assert all(id(c.ok) in evaluated for c in checks)
    assert count_nodes(tr.score) == 0  # the arrays were evaluated before raising


def test_passing_checks_do_not_raise():
    tr = FakeTrace({"y": lazy(1.0)}, lazy(0.0), checks=(check(True, "a"), check(True, "b")))
    assert materialize(tr) is tr


def test_objects_with_genmlx_checks_and_bare_checks_are_checked():
    with pytest.raises(ValueError, match="from protocol"):
        materialize([OnlyChecks(check(False, "from protocol"))])
    with pytest.raises(ValueError, match="bare"):
        materialize({"c": check(False, "bare")})
    materialize(OnlyChecks(check(True, "ok")))


def test_checks_known_on_the_host_are_honoured_in_order():
    good = DeferredCheck(True, lambda: ValueError("never"))
    bad = DeferredCheck(False, lambda: ValueError("host-known failure"))
    materialize([good])
    with pytest.raises(ValueError, match="host-known failure"):
        materialize([good, bad, check(False, "later")])


def test_materialize_cuts_a_lazily_accumulated_score():
    x = mx.array(1.0)
    s = mx.array(0.0)
    for _ in range(100):
        s = s + x
    tr = FakeTrace({}, s)
    assert count_nodes(tr.score) == 100
    materialize(tr)
    assert count_nodes(tr.score) == 0
    assert tr.score.item() == 100.0
