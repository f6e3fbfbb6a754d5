"""Compiled K-iteration MH: the same chain as mh_step with the same keys, no syncs, posterior, memory."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.compiled import CompiledMH
from genmlx.inference.diagnostics import mcse
from genmlx.inference.mh import mh_step
from memory_flat import FlatRecorder, KeepStore

from core.models import point


@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    for i, x in enumerate(xs):
        gm.trace(f"y{i}", dist.normal(slope * x + intercept, 1.0))
    return slope


XS, YS = [1.0, 2.0, 3.0], [3.1, 5.0, 6.9]
OBS = {f"y{i}": y for i, y in enumerate(YS)}


@gm.gen
def normal_normal():
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    for i, y in enumerate([1.0, 2.0, 0.5]):
        gm.trace(f"y{i}", dist.normal(mu, 1.0))


NN_OBS = {"y0": 1.0, "y1": 2.0, "y2": 0.5}


@pytest.mark.parametrize("sel", [("slope",), ("slope", "intercept")])
def test_compiled_kernel_equals_per_iteration_chain(sel):
    tr, _ = linreg.generate((XS,), OBS, key=mx.random.key(0))
    selection = gm.select(*sel)
    k = 25
    keys = mx.random.split(mx.random.key(7), k)
    kernel = CompiledMH(tr, selection, k, thin=1, keys="per_iteration")
    new, samples, st = kernel(keys, tr)
    t, accepted, values = tr, [], []
    for j in range(k):
        t, s = mh_step(keys[j], t, selection)
        accepted.append(s["accepted"].item())
        values.append(t["slope"].item())
    assert st["accepted"].tolist() == accepted
    assert samples.values[("slope",)].tolist() == pytest.approx(values, rel=1e-6, abs=1e-6)
    assert new["slope"].item() == pytest.approx(t["slope"].item(), rel=1e-6)
    assert new.score.item() == pytest.approx(t.score.item(), rel=1e-5)
    # the kept trace's distributions carry the chosen parameters (a child's mean follows the parents)
    assert new.get_subtrace("y0").gen_fn.mu.item() == pytest.approx((t["slope"] + t["intercept"]).item(), rel=1e-5)


@pytest.mark.statistical
def test_compiled_mh_posterior_no_syncs():
    res = infer.compiled_mh(normal_normal, (), NN_OBS, n_samples=2000, burn=100, iterations_per_step=20,
                            key=mx.random.key(1))
    mu = np.array(res.traces.values("mu"))
    assert len(res.traces) == 2000 and len(mu) == 2000
    assert abs(mu.mean() - 0.875) < 4 * mcse(mu)
    assert res.stats["syncs"] == 0 and res.stats["iterations_per_step"] == 20
    assert res.stats["iterations"] == res.stats["steps"] * 20
    assert len(res.stats["accepted"]) == res.stats["iterations"]
    assert res.traces[7]["mu"].item() == pytest.approx(mu[7])
    assert "mu" in res.stats["ess_bulk"]


def test_thin_keeps_every_thin_th_iteration():
    res = infer.compiled_mh(normal_normal, (), NN_OBS, n_samples=30, thin=5, iterations_per_step=10,
                            key=mx.random.key(2))
    assert len(res.traces) == 30 and res.stats["iterations"] == 150
    with pytest.raises(ValueError, match="multiple of thin"):
        infer.compiled_mh(normal_normal, (), NN_OBS, n_samples=3, thin=3, iterations_per_step=10)


@pytest.mark.parametrize("n_samples, burn, thin, k", [
    (2000, 0, 1, 500),   # the default block
    (1200, 100, 3, 501),  # the multiple of thin nearest 500
    (40, 0, 1, 40),      # a short run: one block of its length, no iteration thrown away
    (7, 0, 3, 21),
    (0, 30, 1, 30),      # burn-in only
])
def test_default_block_length(n_samples, burn, thin, k):
    res = infer.compiled_mh(normal_normal, (), NN_OBS, n_samples=n_samples, burn=burn, thin=thin,
                            key=mx.random.key(4))
    assert res.stats["iterations_per_step"] == k and len(res.traces) == n_samples


def test_same_key_same_chain():
    run = lambda: infer.compiled_mh(normal_normal, (), NN_OBS, n_samples=40, iterations_per_step=10,
                                    key=mx.random.key(3)).traces.values("mu")
    assert run() == run()


@gm.gen
def branchy():
    k = gm.trace("k", dist.bernoulli(0.5))
    if k.item():
        gm.trace("x", dist.normal(0.0, 1.0))


def test_dynamic_model_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot be compiled"):
        infer.compiled_mh(branchy, (), {}, n_samples=5, iterations_per_step=5, key=mx.random.key(0))


@pytest.mark.parametrize("kw, match", [
    ({"n_samples": -1}, "n_samples"), ({"n_samples": 2, "iterations_per_step": 0}, "iterations_per_step"),
    ({"n_samples": 2, "selection": gm.select("nope")}, "selection"),
])
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        infer.compiled_mh(normal_normal, (), NN_OBS, **kw)


def test_compiled_memory_flat_under_budget():
    rec = FlatRecorder(every=10, warmup=10)
    with gm.memory.budget(499_000), events.subscribed(KeepStore(rec)):
        infer.compiled_mh(normal_normal, (), NN_OBS, n_samples=1000, iterations_per_step=10, key=mx.random.key(0),
                          callback=rec)
    rec.assert_flat()


@pytest.mark.parametrize("thin", [1, 2])
def test_compiled_mh_equals_mh_with_the_same_key(thin):
    kw = dict(selection=gm.select("slope", "intercept"), n_samples=40, burn=20, thin=thin, key=mx.random.key(8))
    a = infer.mh(linreg, (XS,), OBS, **kw)
    b = infer.compiled_mh(linreg, (XS,), OBS, iterations_per_step=10, keys="per_iteration", **kw)
    assert b.stats["accepted"] == a.stats["accepted"]
    assert b.traces.values("slope") == pytest.approx(a.values("slope"), rel=1e-5, abs=1e-6)
    assert b.state["intercept"].item() == pytest.approx(a.state["intercept"].item(), rel=1e-5)


@gm.gen
def hierarchical():
    mu = gm.trace("mu", dist.normal(0.0, 2.0))
    gm.trace("a", point, mu)  # a nested @gm.gen: its sites are leaves of the same sum
    gm.trace("b", point, mu)


H_OBS = {"a": {"y": 1.2}, "b": {"y": 0.4}}


@gm.gen
def batched():
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    gm.trace("m", gm.vmap(point), mu + mx.zeros(3))  # a combinator: its score is not read as a sum of sites


B_OBS = {"m": {"y": mx.array([0.3, 1.0, -0.2])}}


def _kernel_chain(model, obs, sel, lean):
    tr, _ = model.generate((), obs, key=mx.random.key(1))
    kernel = CompiledMH(tr, gm.select(*sel), 30, keys="per_iteration")
    kernel.lean = lean  # before the first call traces the body
    new, _, st = kernel(mx.random.split(mx.random.key(5), 30), tr)
    return st["accepted"].tolist(), new


@pytest.mark.parametrize("sel", [("mu",), ("mu", ("a", "z"))])
def test_lean_weight_keeps_the_chain_of_the_regenerate_weight(sel):
    """The retained sites' log-density change (lean) and the regenerate weight decide alike: a
    selected parent whose unselected children (nested, hierarchical) change their density."""
    tr, _ = hierarchical.generate((), H_OBS, key=mx.random.key(1))
    assert CompiledMH(tr, gm.select(*sel), 30).lean
    acc_lean, lean = _kernel_chain(hierarchical, H_OBS, sel, True)
    acc_full, full = _kernel_chain(hierarchical, H_OBS, sel, False)
    assert acc_lean == acc_full and 0 < sum(acc_lean) < 30
    # the lean block's last state is re-scored from its choices: same score and site scores
    assert lean.score.item() == pytest.approx(full.score.item(), rel=1e-5)
    assert lean.get_subtrace(("a", "y")).score.item() == pytest.approx(full.get_subtrace(("a", "y")).score.item(),
                                                                      rel=1e-5)
    assert mx.array_equal(lean["mu"], full["mu"]).item()


def test_combinator_models_use_the_regenerate_weight():
    tr, _ = batched.generate((), B_OBS, key=mx.random.key(1))
    assert not CompiledMH(tr, gm.select("mu"), 10).lean
    kw = dict(selection=gm.select("mu"), n_samples=30, key=mx.random.key(2))
    a = infer.mh(batched, (), B_OBS, **kw)
    b = infer.compiled_mh(batched, (), B_OBS, iterations_per_step=10, keys="per_iteration", **kw)
    assert b.stats["accepted"] == a.stats["accepted"] and 0 < sum(a.stats["accepted"]) < 30


@gm.gen
def scale_model():
    s = gm.trace("s", dist.normal(0.0, 1.0))
    gm.trace("y", dist.normal(0.0, s))  # s < 0: an invalid sigma, guarded by the weight (NaN)


@gm.gen
def probit_model():
    z = gm.trace("z", dist.normal(0.0, 1.0))
    gm.trace("y", dist.binomial(3.0, z))  # z outside [0, 1]: invalid p, not guarded (y = 0 scores 3 log(1 - z))


def test_guarded_checks_are_not_evaluated_their_proposals_are_rejected():
    """About half the proposals have sigma < 0: their weight is NaN, none is accepted, nothing raises."""
    tr, _ = scale_model.generate((), {"y": 0.3, "s": 1.0}, key=mx.random.key(0))
    kernel = CompiledMH(tr, gm.select("s"), 50, keys="per_iteration")
    new, samples, st = kernel(mx.random.split(mx.random.key(3), 50), tr)
    mx.eval(new, st)
    assert all(c.ok.item() for c in new.checks)
    s = np.array(samples.values[("s",)])
    assert (s > 0).all() and 0 < sum(st["accepted"].tolist()) < 50


def test_unguarded_checks_still_raise_when_an_invalid_proposal_is_accepted():
    tr, _ = probit_model.generate((), {"y": 0, "z": 0.5}, key=mx.random.key(0))  # a valid start
    kernel = CompiledMH(tr, gm.select("z"), 50)
    new, _, st = kernel(mx.random.split(mx.random.key(1), 50), tr)
    with pytest.raises(ValueError, match=r"binomial: parameter p must be in \[0, 1\] \(at trace address 'y'\)"):
        gm.memory.materialize(new)


# -- keys="block": proposals drawn as [K] batches from one key, scored by the flattened density ------

@gm.gen
def beta_bernoulli():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i, y in enumerate([1, 1, 0, 1, 1, 1, 0, 1, 1, 0]):
        gm.trace(("y", i), dist.bernoulli(p))


BB_OBS = {("y", i): float(y) for i, y in enumerate([1, 1, 0, 1, 1, 1, 0, 1, 1, 0])}


@pytest.mark.statistical
@pytest.mark.parametrize("k", [50, 500])
def test_block_keys_posterior_of_beta_bernoulli(k):
    """Posterior Beta(9, 5): mean 9/14, sd 0.1237; allowed error 4 Monte Carlo standard errors."""
    res = infer.compiled_mh(beta_bernoulli, (), BB_OBS, n_samples=6000, burn=500, iterations_per_step=k,
                            key=mx.random.key(11))
    assert res.stats["keys"] == "block" and res.stats["syncs"] == 0
    p = res.traces.array("p")
    assert p.shape == (6000,)
    assert abs(p.mean() - 9 / 14) < 4 * mcse(p)
    assert abs(p.std() - 0.1237) < 0.02
    assert res.traces[5]["p"].item() == pytest.approx(float(p[5]))
    assert res.state.score.item() == pytest.approx(
        beta_bernoulli.assess((), gm.choicemap({**BB_OBS, "p": res.state["p"]}))[0].item(), rel=1e-5)


def test_block_keys_posterior_of_the_regression_matches_per_iteration_keys():
    kw = dict(selection=gm.select("slope", "intercept"), n_samples=4000, burn=500, iterations_per_step=100)
    a = infer.compiled_mh(linreg, (XS,), OBS, keys="block", key=mx.random.key(5), **kw)
    b = infer.compiled_mh(linreg, (XS,), OBS, keys="per_iteration", key=mx.random.key(6), **kw)
    assert a.stats["keys"] == "block" and b.stats["keys"] == "per_iteration"
    sa, sb = a.traces.array("slope"), b.traces.array("slope")
    assert abs(sa.mean() - sb.mean()) < 4 * np.hypot(mcse(sa), mcse(sb))


def test_block_keys_fall_back_for_models_the_density_cannot_flatten():
    res = infer.compiled_mh(batched, (), B_OBS, selection=gm.select("mu"), n_samples=20, iterations_per_step=10,
                            key=mx.random.key(2))
    assert res.stats["keys"] == "per_iteration"
    tr, _ = probit_model.generate((), {"y": 0, "z": 0.5}, key=mx.random.key(0))
    assert CompiledMH(tr, gm.select("z"), 10).keys == "per_iteration"  # an unguarded check: named by the lanes


def test_a_cached_block_kernel_is_not_reused_for_other_observations():
    run = lambda obs: infer.compiled_mh(normal_normal, (), obs, n_samples=1000, burn=100, iterations_per_step=50,
                                        key=mx.random.key(9)).traces.array("mu").mean()
    low, high = run({"y0": -3.0, "y1": -3.0, "y2": -3.0}), run({"y0": 3.0, "y1": 3.0, "y2": 3.0})
    assert low < -1.5 and high > 1.5  # posterior means -2.25 and 2.25


def test_bad_key_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="keys must be one of"):
        infer.compiled_mh(normal_normal, (), NN_OBS, n_samples=5, keys="lanes")


def test_a_blocks_launches_do_not_grow(monkeypatch):
    """The launches of a K = 50 block, counted from MLX's graph with the GPU's normal sampler forced
    (benchmarks/gpu/launch_count.py). On a CUDA GPU the count is direct: 21 for the regression, 34
    for Beta-Bernoulli on the H100 (2026-12-08, before the accept kernel wrote its flags,
    probabilities and last density itself, four to five launches fewer; about 30 for the regression
    before MLX's normal on a GPU and views for keys and the last state). Elsewhere it is the CPU's graph with the accept
    recursion's array form taken off (12 / 25): an estimate that reads 9 low against the H100's
    direct count, kept as a guard. An int index (a gather) or a sampler that splits into many
    kernels shows here as a higher count."""
    from benchmarks.gpu import launch_count as L
    from genmlx.distributions import _common
    from genmlx.inference import accept_scan as A

    monkeypatch.setattr(_common, "_normal_by_erfinv", lambda: True)
    probe = mx.zeros((L.K,))
    on_cuda = A._kernel_runs(probe, probe)
    for name, most in (("regression5", 21 if on_cuda else 12), ("beta_bernoulli", 34 if on_cuda else 25)):
        n, prims = L.block_launches(*L.CASES[name])
        assert n <= most, (name, n, dict(prims))
