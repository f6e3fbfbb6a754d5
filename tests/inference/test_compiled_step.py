"""mh(compile=True): one compiled call per iteration, of the chain state (a model whose score sums its sites:
`CompiledMH.step`, states are `ChainTrace`s) or of the trace's leaves (other static models: `compiled_step`).

Same chain as the GFI's proposal with the same key; models that cannot be compiled run the GFI's; a proposal
with an invalid parameter is rejected as the GFI rejects it; site accounting sees the GFI's graph; live
arrays and pending nodes stay flat."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference import compiled, compiled_step
from genmlx.inference.compiled import ChainTrace

from core.models import beta_bernoulli

from .test_mh import assert_flat_run

BB_DATA = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]


@gm.gen
def point(mu, s):
    z = gm.trace("z", dist.normal(mu, s))
    gm.trace("y", dist.normal(z, 0.5))
    return z


@gm.gen
def hierarchical(n):
    mu = gm.trace("mu", dist.normal(0.0, 2.0))
    s = gm.trace("s", dist.gamma(2.0, 2.0))
    return [gm.trace(("g", i), point, mu, s) for i in range(n)]


@gm.gen
def mapped():
    mu = gm.trace("mu", dist.normal(0.0, 2.0))
    gm.trace("m", gm.map_(point), mx.zeros(4) + mu, mx.ones(4))


@gm.gen
def branchy():
    k = gm.trace("k", dist.normal(0.0, 1.0))
    if k.item() > 0:  # a Python decision on a random value: not compilable
        gm.trace("x", dist.normal(1.0, 1.0))
    else:
        gm.trace("x", dist.normal(-1.0, 1.0))
    gm.trace("y", dist.normal(k, 1.0))


CASES = {
    "beta_bernoulli": (beta_bernoulli, (10,), {("y", i): float(v) for i, v in enumerate(BB_DATA)}, None),
    "hierarchical": (hierarchical, (4,), {("g", i, "y"): 0.4 * i - 0.5 for i in range(4)}, None),
    "hierarchical_subset": (hierarchical, (4,), {("g", i, "y"): 0.4 * i - 0.5 for i in range(4)},
                            ["mu", ("g", 2, "z")]),
    "combinator": (mapped, (), {("m", i, "y"): 0.3 * i for i in range(4)}, None),
}


def _values(res, path):
    return np.array([np.asarray(t[path]) for t in res.traces])


@pytest.mark.parametrize("name", list(CASES))
def test_the_same_chain_as_the_gfi_proposal(name):
    model, args, obs, sel = CASES[name]
    kw = dict(selection=sel, n_samples=60, burn=5, key=mx.random.key(7))
    eager = infer.mh(model, args, obs, **kw)
    fast = infer.mh(model, args, obs, compile=True, **kw)
    assert eager.stats["accepted"] == fast.stats["accepted"]
    assert 0 < sum(fast.stats["accepted"]) < len(fast.stats["accepted"])
    assert np.allclose(eager.stats["accept_prob"], fast.stats["accept_prob"], rtol=1e-5, atol=1e-6)
    for path in eager.traces[0].get_choices().paths():
        assert np.allclose(_values(eager, path), _values(fast, path), rtol=1e-6, atol=1e-6), path
    for a, b in zip(eager.traces[::10], fast.traces[::10]):
        assert b.score.item() == pytest.approx(a.score.item(), rel=1e-5, abs=1e-5)
        assert isinstance(b, gm.Trace) and b.get_choices().paths() == a.get_choices().paths()


def test_combinator_traces_are_rebuilt_by_the_compiled_step():
    model, args, obs, _ = CASES["combinator"]
    compiled_step._cache.clear()
    infer.mh(model, args, obs, n_samples=5, compile=True, key=mx.random.key(1))
    (kern,) = compiled_step._cache.values()
    assert kern.ok and kern.traced  # map_'s trace went through the compiled step, not the fallback


def test_a_model_that_sums_its_sites_runs_one_compiled_call_of_the_chain_state():
    model, args, obs, _ = CASES["beta_bernoulli"]
    compiled._cache.clear()
    compiled_step._cache.clear()
    infer.mh(model, args, obs, n_samples=5, compile=True, key=mx.random.key(1))
    res = infer.mh(model, args, obs, n_samples=5, compile=True, key=mx.random.key(2))
    (kern,) = [k for k in compiled._cache.values() if k.gen_fn is model]  # one kernel for both runs
    assert kern.changed == [("p",)] and kern._one_fn is not None
    assert not list(compiled_step._cache.values())  # the leaves' compiled proposal was not needed
    # (a step observed per site, as the leak gate's sampled steps are, runs the GFI's: a plain Trace)
    assert sum(isinstance(t, ChainTrace) for t in res.traces) >= 3


def test_a_chain_state_reads_its_choices_without_building_and_its_scores_from_a_full_trace():
    model, args, obs, _ = CASES["beta_bernoulli"]
    res = infer.mh(model, args, obs, n_samples=20, compile=True, key=mx.random.key(3))
    t = [x for x in res.traces if isinstance(x, ChainTrace)][-1]
    before = len(gm.memory.arrays_in(t))
    assert t["p"] is t.values[0] and t["y", 0] is res.traces[0]["y", 0]  # its own value; the run's data
    assert t.get_choices().paths() == model.simulate(args, key=mx.random.key(0)).get_choices().paths()
    full = t.full()
    assert type(full) is gm.Trace and full is not t.full()  # built anew, kept by nobody
    assert full["p"].item() == t["p"].item()
    assert t.score.item() == pytest.approx(full.score.item())
    assert t.get_subtrace("p").score.item() == full.get_subtrace("p").score.item()
    assert len(gm.memory.arrays_in(t)) == before  # a stored sample never grows when read


def test_a_model_that_cannot_be_compiled_runs_the_gfi_proposal():
    kw = dict(n_samples=40, key=mx.random.key(3))
    eager = infer.mh(branchy, (), {"y": 0.7}, **kw)
    fast = infer.mh(branchy, (), {"y": 0.7}, compile=True, **kw)
    assert np.array_equal(_values(eager, "k"), _values(fast, "k"))
    assert not [k for k in compiled_step._cache.values() if k.gen_fn is branchy and k.ok]


def test_a_proposal_with_an_invalid_parameter_is_rejected_as_the_gfi_rejects_it():
    @gm.gen
    def bad_scale():
        z = gm.trace("z", dist.normal(0.0, 1.0))
        w = gm.trace("w", dist.normal(0.0, z))  # a resampled z < 0 is an invalid scale for w
        gm.trace("y", dist.normal(w, 1.0))

    kw = dict(n_samples=200, key=mx.random.key(4))
    eager = infer.mh(bad_scale, (), {"y": 0.3}, **kw)
    fast = infer.mh(bad_scale, (), {"y": 0.3}, compile=True, **kw)
    assert eager.stats["accepted"] == fast.stats["accepted"]
    assert np.array_equal(_values(eager, "z"), _values(fast, "z"))
    assert _values(fast, "z").min() > 0


def test_site_accounting_observes_the_gfi_proposal_every_iteration():
    class Sites:
        def __init__(self):
            self.n = 0

        def on_site(self, ev):
            self.n += 1

    model, args, obs, _ = CASES["beta_bernoulli"]
    obs_ = Sites()
    with events.subscribed(obs_):
        infer.mh(model, args, obs, n_samples=20, compile=True, key=mx.random.key(5))
    assert obs_.n >= 20 * 11  # every site of every iteration


def test_compile_must_be_a_bool():
    model, args, obs, _ = CASES["beta_bernoulli"]
    with pytest.raises(TypeError, match="compile"):
        infer.mh(model, args, obs, n_samples=2, compile="yes")


def test_live_arrays_and_pending_nodes_stay_flat():
    model, args, obs, _ = CASES["hierarchical"]
    res = assert_flat_run(lambda rec: infer.mh(model, args, obs, n_samples=600, compile=True,
                                               key=mx.random.key(6), callback=rec))
    assert len(res.traces) == 600
