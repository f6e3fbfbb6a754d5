"""A user's call never hands back a silent NaN from an invalid array parameter (issue 22; genmlx.boundary).

Array parameter checks are deferred (no eval on the hot path). A public call from user code
evaluates the checks of what it returns as a bare array (weights, scores, densities, draws) before
returning: the checks alone, one `mx.eval`; a trace carries its checks to its getters. genmlx's own
calls, model bodies, `mx.compile` / `mx.vmap` tracing and `gm.defer_checks()` evaluate nothing.
"""

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer

BAD = -1.0  # an invalid sigma
MSG = "normal: parameter sigma must be > 0 and finite"


@gm.gen
def model(s):
    x = gm.trace("x", dist.normal(0.0, s))
    gm.trace("y", dist.normal(x, 1.0))
    return x


@gm.gen
def plain():
    x = gm.trace("x", dist.normal(0.0, 1.0))
    return x


def _tr(s=1.0):
    with gm.defer_checks():
        return model.simulate((mx.array(s),), key=mx.random.key(0))


OBS = {"x": 0.5, "y": 0.1}
ENTRY_POINTS = {
    "assess": lambda s: model.assess((s,), OBS)[0],
    "generate": lambda s: model.generate((s,), {"y": 0.1}, key=mx.random.key(1))[1],
    "update": lambda s: model.update(_tr(), {"y": 0.3}, args=(s,), key=mx.random.key(1))[1],
    "regenerate": lambda s: model.regenerate(_tr(), gm.select("x"), args=(s,), key=mx.random.key(1))[1],
    "project": lambda s: model.project(model.simulate((s,), key=mx.random.key(1)), gm.select("x", "y")),
    "propose": lambda s: model.propose((s,), key=mx.random.key(1))[1],
    "get_trace": lambda s: model.get_trace((s,), OBS).get_score(),
    "simulate.get_score": lambda s: model.simulate((s,), key=mx.random.key(1)).get_score(),
    "simulate.get_retval": lambda s: model.simulate((s,), key=mx.random.key(1)).get_retval(),
    "simulate.get_choices": lambda s: model.simulate((s,), key=mx.random.key(1)).get_choices()["x"],
    "simulate[addr]": lambda s: model.simulate((s,), key=mx.random.key(1))["y"],
    "vgenerate": lambda s: model.vgenerate((s,), {"y": 0.1}, n=3, key=mx.random.key(1))[1],
    "vsimulate.get_score": lambda s: model.vsimulate((s,), n=3, key=mx.random.key(1)).get_score(),
    "map_.assess": lambda s: gm.map_(model).assess(([mx.array(1.0), s],), {(0, "x"): 0.1, (0, "y"): 0.0,
                                                                            (1, "x"): 0.2, (1, "y"): 0.0})[0],
    "vmap.assess": lambda s: gm.vmap(model).assess((mx.stack([mx.array(1.0), s]),),
                                                   {"x": mx.array([0.1, 0.2]), "y": mx.array([0.0, 0.0])})[0],
    "dist.log_prob": lambda s: dist.normal(0.0, s).log_prob(0.3),
    "dist.sample": lambda s: dist.normal(0.0, s).sample(key=mx.random.key(1)),
    "dist.__call__": lambda s: dist.normal(0.0, s)(key=mx.random.key(1)),
    "dist.assess": lambda s: dist.normal(0.0, s).assess((), 0.3)[0],
    "dist.generate": lambda s: dist.normal(0.0, s).generate((), 0.3)[1],
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_an_invalid_array_parameter_raises_a_named_error_at_the_users_call(entry):
    with pytest.raises(ValueError, match=MSG):
        ENTRY_POINTS[entry](mx.array(BAD))


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_the_same_call_with_a_valid_array_parameter_returns_a_finite_result(entry):
    assert np.isfinite(np.array(ENTRY_POINTS[entry](mx.array(1.5)))).all()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_under_defer_checks_the_call_returns_unchecked(entry):
    with gm.defer_checks():
        out = ENTRY_POINTS[entry](mx.array(BAD))  # no error: the caller takes materialization on
    mx.eval(out)  # NaN, or finite garbage (a draw with sigma = -1): what the boundary protects a user from


class _Evals:
    def __init__(self, monkeypatch):
        self.calls = []
        real = mx.eval
        monkeypatch.setattr(mx, "eval", lambda *a: (self.calls.append(a), real(*a))[1])


def test_a_users_generate_evaluates_the_checks_alone_and_leaves_the_weight_lazy(monkeypatch):
    s = mx.array(2.0)
    mx.eval(s)
    ev = _Evals(monkeypatch)
    tr, w = model.generate((s,), {"y": 0.1}, key=mx.random.key(0))
    assert len(ev.calls) == 1  # the checks, in one eval
    assert gm.memory.count_nodes(w) > 0  # the weight's own graph is not evaluated
    tr.get_score(), tr["x"], tr.get_choices()  # already checked: the getters evaluate nothing more
    assert len(ev.calls) == 1


def test_python_number_parameters_cost_no_eval_at_the_boundary(monkeypatch):
    ev = _Evals(monkeypatch)
    tr, w = plain.generate((), {"x": 0.3}, key=mx.random.key(0))
    plain.assess((), {"x": 0.3})
    tr.get_score()
    dist.normal(0.0, 1.0).log_prob(0.3)
    assert ev.calls == []


def test_a_trace_getter_evaluates_the_checks_once(monkeypatch):
    s = mx.array(2.0)
    mx.eval(s)
    ev = _Evals(monkeypatch)
    tr = model.simulate((s,), key=mx.random.key(0))
    assert ev.calls == []  # simulate returns a trace: it carries its checks
    tr.get_score()
    tr.get_retval()
    tr["x"]
    assert len(ev.calls) == 1


def test_inference_loops_get_no_eval_from_the_boundary(monkeypatch):
    obs = {"y": 0.4}

    def count(run):
        ev = _Evals(monkeypatch)
        run()
        monkeypatch.undo()
        return len(ev.calls)

    def importance():
        return infer.importance_sampling(model, (mx.array(1.5),), obs, n_particles=5, key=mx.random.key(0))

    def smc():  # generate, update and (rejuvenation) regenerate, all called by genmlx
        return infer.smc(model, [(mx.array(1.5),)] * 3, [obs] * 3, n_particles=4, rejuvenation=gm.select("x"),
                         key=mx.random.key(0))

    for run in (importance, smc):
        users = count(run)
        with gm.defer_checks():
            deferred = count(run)
        assert users == deferred, run.__name__  # genmlx's own calls are not user calls


def test_a_bad_parameter_in_an_inference_run_is_still_named():
    with pytest.raises(ValueError, match=MSG):
        infer.importance_sampling(model, (mx.array(BAD),), {"y": 0.4}, n_particles=3, key=mx.random.key(0))


def test_inside_a_model_body_a_users_call_joins_the_models_checks(monkeypatch):
    @gm.gen
    def outer(s):
        factor, _ = model.assess((s,), OBS)  # a user's call inside a body: nothing evaluated here
        return gm.trace("z", dist.normal(factor, 1.0))

    s = mx.array(BAD)
    mx.eval(s)
    ev = _Evals(monkeypatch)
    tr = outer.simulate((s,), key=mx.random.key(0))
    assert ev.calls == []
    monkeypatch.undo()
    with pytest.raises(ValueError, match=MSG):
        gm.memory.materialize(tr)  # the nested assess's checks travel with the trace
    with pytest.raises(ValueError, match=MSG):
        outer.generate((s,), {"z": 0.0}, key=mx.random.key(0))


def test_under_compile_and_vmap_tracing_nothing_is_evaluated_and_checks_keep_travelling():
    bad = mx.array(BAD)
    w = mx.compile(lambda s: model.assess((s,), OBS)[0])(bad)
    assert math.isnan(w.item())  # no eval was possible while tracing: a bare score made there is unchecked
    lanes = mx.vmap(lambda s: model.assess((s,), OBS)[0])(mx.array([1.5, BAD]))
    assert np.isfinite(np.array(lanes)).tolist() == [True, False]
    # a trace made under vmap carries its checks out (genmlx's own vectorized pass does the same)
    vt = model.vsimulate((bad,), n=2, key=mx.random.key(2))
    with pytest.raises(ValueError, match=MSG):
        gm.memory.materialize(vt)


def test_gradients_of_a_users_assess_still_work():
    g = mx.grad(lambda s: model.assess((s,), OBS)[0])(mx.array(1.5))
    # d/ds log N(0.5; 0, s) = -1/s + 0.5^2 / s^3
    assert abs(g.item() - (-1 / 1.5 + 0.25 / 1.5 ** 3)) < 1e-5


NAN_VALUE_CALLS = {
    "generate": lambda v: plain.generate((), {"x": v}, key=mx.random.key(0))[1],
    "update": lambda v: plain.update(plain.simulate((), key=mx.random.key(0)), {"x": v})[1],
    "assess": lambda v: plain.assess((), {"x": v})[0],
    "assess(choicemap)": lambda v: plain.assess((), gm.choicemap({"x": v}))[0],
    "log_prob": lambda v: dist.normal(0.0, 1.0).log_prob(v),
}


# log_prob of an mx.array value is elementwise, NaN in, NaN out (the next test)
NAN_CASES = [(c, k) for c in sorted(NAN_VALUE_CALLS) for k in ["float", "list", "numpy", "mx.array"]
             if (c, k) != ("log_prob", "mx.array")]


@pytest.mark.parametrize("call, kind", NAN_CASES)
def test_a_nan_value_to_score_is_refused_naming_its_address(call, kind):
    v = {"float": math.nan, "list": [0.5, math.nan], "numpy": np.array([math.nan]),
         "mx.array": mx.array([0.5, math.nan])}[kind]
    with pytest.raises(ValueError, match="NaN") as e:
        NAN_VALUE_CALLS[call](v)
    assert call == "log_prob" or "address 'x'" in str(e.value)


def test_log_prob_of_an_array_value_is_elementwise_nan_in_nan_out(monkeypatch):
    ev = _Evals(monkeypatch)
    lp = dist.normal(0.0, 1.0).log_prob(mx.array([0.5, math.nan]))  # no scan of the data, no eval
    assert ev.calls == []
    monkeypatch.undo()
    assert np.isfinite(np.array(lp)).tolist() == [True, False]


def test_a_nan_given_as_host_data_is_refused_without_an_eval(monkeypatch):
    ev = _Evals(monkeypatch)
    with pytest.raises(ValueError, match="NaN"):
        plain.generate((), {"x": math.nan})
    with pytest.raises(ValueError, match="NaN"):
        dist.normal(0.0, 1.0).log_prob([1.0, math.nan])
    assert ev.calls == []


def test_a_value_that_does_not_fit_the_parameters_is_named_with_its_address():
    @gm.gen
    def grid():
        return gm.trace("x", dist.normal(mx.zeros((2, 2)), 1.0))

    with pytest.raises(ValueError, match=r"normal: a value of shape \(3,\) does not broadcast.*'x'"):
        grid.assess((), {"x": mx.zeros((3,))})
    with pytest.raises(ValueError, match=r"normal: a value of shape \(3,\) does not broadcast"):
        dist.normal(mx.zeros((2, 2)), 1.0).log_prob(mx.zeros((3,)))


def test_a_materialized_trace_reads_without_another_eval(monkeypatch):
    s = mx.array(2.0)
    tr, w = gm.memory.materialize(model.generate((s,), {"y": 0.1}, key=mx.random.key(0)))
    tr2 = gm.memory.materialize(model.simulate((s,), key=mx.random.key(1)))
    ev = _Evals(monkeypatch)
    tr.get_score(), tr2.get_score(), tr2["x"]
    assert ev.calls == []


@pytest.mark.parametrize("value", [None, "a", {}])
def test_a_non_numeric_value_to_log_prob_is_named(value):
    # found by the campaign's bare:log_prob entry: as_value's message named neither the distribution nor log_prob
    with pytest.raises(TypeError, match="normal.log_prob: the value must be a number"):
        dist.normal(0.0, 1.0).log_prob(value)
