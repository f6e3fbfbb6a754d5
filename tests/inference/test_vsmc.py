"""Vectorized SMC (`infer.vsmc`, `infer.smc(..., vectorized=True)`): agreement, exactness, no syncs, memory."""

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer
from genmlx.inference.resampling import ZeroLikelihoodError
from genmlx.inference.vsmc import index_trace, prefers_vectorized
from genmlx.vectorize import BatchedTraces
from genmlx.vectorize import lane
from memory_flat import FlatRecorder

from .smc_models import data, kalman, lg, rts_smoother, sequence, unfold_lg, unfold_sequence, weighted_mean

T = 8

# A batched trace gains the new step's leaves at every step (state, by design: about 10 arrays per
# step for `unfold_lg`, whatever N is): the plugin's gate, which cannot tell state from a leak,
# gets that allowance; FlatRecorder (which excludes the state) checks that nothing else grows.
pytestmark = pytest.mark.limit_wrapper_growth(per_iteration=16)


@pytest.fixture(scope="module")
def problem():
    ys = data(T)
    return ys, *sequence(ys)


@pytest.fixture(scope="module")
def ulg():
    return unfold_lg()


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual", "multinomial"])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_vectorized_equals_sequential_particle_by_particle_with_the_same_key(problem, scheme, threshold):
    # vgenerate/vupdate split a key into lanes exactly as the sequential path splits it per
    # particle, and both paths draw the same ancestors: the runs coincide, not just in law.
    _, args, obs = problem
    kw = dict(n_particles=24, resample=scheme, ess_threshold=threshold, key=mx.random.key(5))
    seq = infer.smc(lg, args, obs, **kw)
    vec = infer.smc(lg, args, obs, vectorized=True, **kw)
    assert vec.stats["resampled"] == seq.stats["resampled"]
    assert abs(vec.log_ml - seq.log_ml) < 1e-4
    np.testing.assert_allclose(vec.log_weights, seq.log_weights, atol=1e-4)
    np.testing.assert_allclose(np.array(vec.traces.values(("x", T - 1))), seq.values(("x", T - 1)), atol=1e-5)
    assert vec.stats["syncs"] == 0 and seq.stats["syncs"] == (T - 1 if threshold > 0 else 0)


@pytest.mark.statistical
def test_unfold_vsmc_log_ml_agrees_in_distribution_with_sequential_smc(problem, ulg):
    ys, args, obs = problem
    exact, means, _ = kalman(ys)
    uargs, uobs = unfold_sequence(ys)
    seq = np.array([infer.smc(lg, args, obs, n_particles=60, key=mx.random.key(40 + s)).log_ml for s in range(5)])
    vec = np.array([infer.vsmc(ulg, uargs, uobs, n_particles=60, key=mx.random.key(s)).log_ml for s in range(30)])
    # Same algorithm, different models (dynamic vs unfold) and keys: the log-ML laws must agree.
    # Spread of one estimate at N=60 is ~0.4; the mean of 5 has SE ~0.18, of 30 ~0.08: allow 0.6.
    assert abs(seq.mean() - vec.mean()) < 0.6, (seq, vec)
    assert 0.5 < vec.std() / max(seq.std(), 1e-6) < 2.5, (seq.std(), vec.std())
    assert abs(vec.mean() - exact) < 0.3, (vec.mean(), exact)


@pytest.mark.statistical
def test_thousand_particles_match_kalman_tightly(ulg):
    ys = data(30, seed=2)
    exact, means, variances = kalman(ys)
    args, obs = unfold_sequence(ys)
    est, fm = [], []
    for s in range(4):
        r = infer.vsmc(ulg, args, obs, n_particles=1000, key=mx.random.key(s))
        est.append(r.log_ml)
        fm.append(weighted_mean(r.log_weights, np.array(r.traces.values((29, "x")))))
        assert isinstance(r.traces, BatchedTraces) and len(r.traces) == 1000
    # N=1000, T=30: sd of one log-ML estimate ~0.15 (measured), Jensen bias ~-0.01; mean of 4: SE ~0.08.
    assert abs(np.mean(est) - exact) < 0.3, (est, exact)
    # Filtering mean: posterior sd ~0.45, ESS >= 500 -> MC sd ~0.02 per run.
    assert abs(np.mean(fm) - means[-1]) < 0.06, (fm, means[-1])


def test_smc_picks_the_vectorized_path_for_unfold_models(ulg):
    assert prefers_vectorized(ulg) and not prefers_vectorized(lg)
    args, obs = unfold_sequence(data(4))
    r = infer.smc(ulg, args, obs, n_particles=16, key=mx.random.key(0))
    assert isinstance(r.traces, BatchedTraces) and r.stats["syncs"] == 0
    r2 = infer.smc(ulg, args, obs, n_particles=16, vectorized=False, key=mx.random.key(0))
    assert isinstance(r2.traces, list) and r2.stats["syncs"] == 3


def test_batched_particles_unbatch_like_lane(ulg):
    args, obs = unfold_sequence(data(3))
    r = infer.vsmc(ulg, args, obs, n_particles=5, key=mx.random.key(1))
    ps = r.traces
    batched = ps.batched
    for i in (0, 3, -1):
        a, b = ps[i], lane(batched, i % 5)
        assert a.batch is None and a.get_args() == (3, 0.0)
        for addr in ((0, "x"), (2, "x"), (2, "y")):
            assert a[addr].item() == b[addr].item()
        assert abs(a.get_score().item() - b.get_score().item()) < 1e-6
    assert len(ps[1:4]) == 3
    with pytest.raises(IndexError):
        ps[5]
    # Gathering with ancestor indices permutes particles and keeps the batch.
    g = index_trace(batched, mx.array([4, 4, 0, 1, 2]), 5)
    assert g.batch == 5 and g[(1, "x")].tolist() == [batched[(1, "x")][j].item() for j in (4, 4, 0, 1, 2)]
    # The distributions recorded at the sites are gathered too (their [N] parameters).
    mu_old = batched.sites[(1,)].sites[("x",)].gen_fn.mu
    assert g.sites[(1,)].sites[("x",)].gen_fn.mu.tolist() == [mu_old[j].item() for j in (4, 4, 0, 1, 2)]


@pytest.mark.statistical
def test_prior_mh_rejuvenation_on_batched_particles(problem, ulg):
    ys, _, _ = problem
    ms, _ = rts_smoother(ys)
    args, obs = unfold_sequence(ys)
    r = infer.vsmc(ulg, args, obs, n_particles=400, rejuvenation=gm.select((0, "x")), rejuvenation_steps=2,
                   key=mx.random.key(9))
    acc = r.stats["rejuvenation_accepted"]
    assert len(acc) == T and 0.05 < r.stats["acceptance_rate"] < 0.95 and r.stats["syncs"] == 0
    est = weighted_mean(r.log_weights, np.array(r.traces.values((0, "x"))))
    # Smoothing posterior of x_0 (sd ~0.42); 400 particles with MH refreshing x_0: allow 0.15.
    assert abs(est - ms[0]) < 0.15, (est, ms[0])


def test_all_particles_impossible_is_a_clear_error():
    @gm.gen
    def box_step(t, x):
        x = gm.trace("x", dist.normal(x, 1.0))
        gm.trace("y", dist.uniform(x - 1.0, x + 1.0))
        return x

    model = unfold_lg().__class__(box_step)
    args = [(t + 1, 0.0) for t in range(3)]
    obs = [{(0, "y"): 0.0}, {(1, "y"): 1e6}, {(2, "y"): 0.0}]
    with pytest.raises(ZeroLikelihoodError, match=r"t=1.*-inf"):
        infer.vsmc(model, args, obs, n_particles=32, key=mx.random.key(0))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_particles": 0}, "n_particles"), ({"ess_threshold": 2}, "ess_threshold"), ({"resample": "x"}, "resample"),
     ({"rejuvenation_steps": -1}, "rejuvenation_steps")],
)
def test_bad_parameters(ulg, kwargs, match):
    args, obs = unfold_sequence(data(2))
    with pytest.raises(ValueError, match=match):
        infer.vsmc(ulg, args, obs, **{"n_particles": 4, **kwargs})
    with pytest.raises(ValueError, match="observations_seq"):
        infer.vsmc(ulg, args, obs[:1], n_particles=4)


# FlatRecorder (state excluded: the particles' traces grow by design) is the judge here. The
# plugin's gate is switched off for this test: its census reads the driver frame's f_locals,
# which pins the previous step's state and shows up as growth in FlatRecorder's census.
@pytest.mark.no_leak_gate
@pytest.mark.parametrize("rejuvenation", [gm.select((0, "x")), None], ids=["general path", "chain particles"])
def test_memory_is_flat_under_the_metal_budget(ulg, rejuvenation):
    ys = data(40, seed=4)
    args, obs = unfold_sequence(ys)
    obs = [gm.choicemap(o) for o in obs]
    rec = FlatRecorder(every=4, warmup=8, keep=obs)
    with gm.memory.budget(499_000):
        r = infer.vsmc(ulg, args, obs, n_particles=200, rejuvenation=rejuvenation, key=mx.random.key(0),
                       callback=rec)
    rec.assert_flat()
    assert math.isfinite(r.log_ml) and r.stats["syncs"] == 0


def test_custom_kernel_gets_the_batched_trace_and_its_stats_are_averaged(ulg):
    args, obs = unfold_sequence(data(3))
    seen = []

    def kernel(key, tr):
        seen.append(tr.batch)
        return tr, {"accepted": mx.arange(8) < 2}

    r = infer.vsmc(ulg, args, obs, n_particles=8, rejuvenation=kernel, key=mx.random.key(0))
    assert seen == [8, 8, 8]
    assert r.stats["rejuvenation_accepted"] == [0.25, 0.25, 0.25] and r.stats["acceptance_rate"] == 0.25


# -- an unfold filtered one step at a time: ChainParticles (O(1) per step) -----------------------

def _general_path(monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["genmlx.inference.vsmc"], "steps_one_at_a_time", lambda *a: False)


def _leaves(tr):
    from genmlx.tree import flatten
    from genmlx.vectorize import _pack_top

    return flatten(_pack_top(tr))[0]


@pytest.mark.parametrize("scheme", ["systematic", "multinomial"])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_chain_particles_equal_the_general_path_bit_for_bit(ulg, monkeypatch, scheme, threshold):
    from genmlx.inference.chain_particles import steps_one_at_a_time

    args, obs = unfold_sequence(data(T))
    kw = dict(n_particles=32, resample=scheme, ess_threshold=threshold, key=mx.random.key(9))
    assert steps_one_at_a_time(ulg, args, [gm.choicemap(o) for o in obs])
    fast = infer.vsmc(ulg, args, obs, **kw)
    _general_path(monkeypatch)
    slow = infer.vsmc(ulg, args, obs, **kw)
    assert fast.log_ml == slow.log_ml and fast.log_weights == slow.log_weights
    assert fast.stats["resampled"] == slow.stats["resampled"] and fast.stats["syncs"] == 0
    a, b = fast.state.particles, slow.state.particles
    assert a.batch == b.batch == 32 and a.get_args() == b.get_args() and len(a.sites) == len(b.sites) == T
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):  # values, site scores, distribution parameters, carried states: all gathered alike
        assert x.shape == y.shape and mx.array_equal(x, y).item()
    assert mx.allclose(a.score, b.score, rtol=1e-6).item()
    assert fast.traces[5][(T - 1, "x")].item() == slow.traces[5][(T - 1, "x")].item()


def test_chain_particles_cost_the_same_at_every_step(ulg):
    """The general path's step t walks and gathers the whole history (O(t)); here graph nodes per step stay flat."""
    from genmlx.inference.chain_particles import ChainParticles
    from genmlx.memory.graph import pending_node_ids

    args, obs = unfold_sequence(data(40))
    tr, _ = ulg.vgenerate(args[0], gm.choicemap(obs[0]), 16, key=mx.random.key(0))
    p = ChainParticles.of_trace(tr, 16)
    nodes = []
    for t in range(1, 40):
        p = p.reindex(mx.random.randint(0, 16, (16,), key=mx.random.key(t)))
        p, w = p.extend(mx.random.key(100 + t), args[t], gm.choicemap(obs[t]))
        nodes.append(len(pending_node_ids(p.steps[-1].score, p.carry, w)))
        mx.eval(p.steps[-1].score, p.carry, w, p.moves[-2])
    assert max(nodes[1:]) == min(nodes[1:])  # (the first step differs: its carry is the scalar init)


def test_other_step_patterns_take_the_general_path(ulg):
    from genmlx.inference.chain_particles import steps_one_at_a_time

    args, obs = unfold_sequence(data(3))
    cms = [gm.choicemap(o) for o in obs]
    assert not steps_one_at_a_time(lg, args, cms)  # not an unfold
    assert not steps_one_at_a_time(ulg, [args[0], (3, 0.0), (4, 0.0)], cms)  # grows by two
    assert not steps_one_at_a_time(ulg, [args[0], (2, 0.5), (3, 0.5)], cms)  # init changes: re-runs from step 0
    assert not steps_one_at_a_time(ulg, args, [cms[0], gm.choicemap({(0, "y"): 0.1, (1, "y"): 0.2}), cms[2]])
    r = infer.vsmc(ulg, [args[0], (3, 0.0)], [obs[0], {(1, "y"): 0.3, (2, "y"): 0.1}], n_particles=8,
                   key=mx.random.key(0))  # a step of two: the general path, same contract
    assert r.state.particles.batch == 8 and len(r.state.particles.sites) == 3
