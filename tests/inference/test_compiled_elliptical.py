"""compiled_elliptical_slice: exact posteriors, agreement with elliptical_slice, the round cap,
validation, fallback, memory, same key."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events, flat_density
from genmlx import inference as infer
from genmlx.inference.compiled_elliptical import (
    DEFAULT_BLOCK, CompiledElliptical, _angles, _default_block, kernel_for,
)
from genmlx.inference.diagnostics import mcse
from memory_flat import FlatRecorder, KeepStore


def within_mc(draws: np.ndarray, exact_mean: float, exact_var: float, z: float = 4.5) -> None:
    """Mean and variance of a chain's draws against exact values, each within z Monte Carlo standard
    errors (MCSE: the chain's own autocorrelation, through its ESS)."""
    m = draws.mean()
    assert abs(m - exact_mean) < z * mcse(draws), (m, exact_mean, mcse(draws))
    sq = (draws - m) ** 2
    assert abs(sq.mean() - exact_var) < z * mcse(sq) + 1e-3 * exact_var, (sq.mean(), exact_var, mcse(sq))


# -- a conjugate vector: x ~ N(mu0, 1) in R^2, y_i ~ N(x, 0.5) -------------------------------------------

MU0 = [0.0, 0.5]
SIGMA_Y = 0.5
YS = [[0.3, 1.2], [0.9, 0.8], [0.5, 1.5], [1.2, 0.4], [0.1, 1.1], [0.8, 0.9]]


@gm.gen
def vector_mean(n):
    x = gm.trace("x", dist.normal(mx.array(MU0), 1.0))
    for i in range(n):
        gm.trace(("y", i), dist.normal(x, SIGMA_Y))


VM_OBS = {("y", i): mx.array(y) for i, y in enumerate(YS)}


def vector_posterior() -> tuple[np.ndarray, float]:
    prec = 1.0 + len(YS) / SIGMA_Y ** 2
    mean = (np.asarray(MU0) + np.asarray(YS).sum(0) / SIGMA_Y ** 2) / prec
    return mean, 1.0 / prec


@pytest.mark.statistical
def test_conjugate_vector_matches_the_closed_form():
    res = infer.compiled_elliptical_slice(vector_mean, (len(YS),), VM_OBS, addresses=["x"], n_samples=4000,
                                          key=mx.random.key(0))
    st = res.stats
    assert st["compiled"] is True and st["syncs"] == 0 and st["capped"] == 0
    assert st["iterations_per_step"] == DEFAULT_BLOCK and len(st["num_steps"]) == st["iterations"] == 4000
    x = res.traces.array("x")
    assert x.shape == (4000, 2)
    mean, var = vector_posterior()
    for j in range(2):
        within_mc(x[:, j], mean[j], var)


# -- scalar sites, updated jointly: a linear regression whose posterior is correlated ---------------

XS, LR_YS = [1.0, 2.0, 3.0, 4.0], [3.1, 5.0, 6.9, 9.2]


@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(1.0, 5.0))
    for i, x in enumerate(xs):
        gm.trace(f"y{i}", dist.normal(slope * x + intercept, 1.0))


LR_OBS = {f"y{i}": y for i, y in enumerate(LR_YS)}


@pytest.mark.statistical
def test_scalar_sites_jointly_match_the_conjugate_posterior():
    res = infer.compiled_elliptical_slice(linreg, (XS,), LR_OBS, addresses=["slope", "intercept"], n_samples=6000,
                                          burn=100, key=mx.random.key(1))
    assert res.stats["compiled"] is True and res.stats["capped"] == 0
    x = np.stack([np.asarray(XS), np.ones(len(XS))], axis=1)
    prior_prec = np.diag([1 / 100.0, 1 / 25.0])
    cov = np.linalg.inv(x.T @ x + prior_prec)
    mean = cov @ (x.T @ np.asarray(LR_YS) + prior_prec @ np.array([0.0, 1.0]))
    for i, a in enumerate(["slope", "intercept"]):
        within_mc(np.asarray(res.values(a)), mean[i], cov[i, i])


# -- a non-Gaussian likelihood: logistic regression, 2 weights, 20 observations ---------------------

_rng = np.random.default_rng(1)
LX = _rng.standard_normal((20, 2))
LY = (_rng.random(20) < 1 / (1 + np.exp(-LX @ np.array([-1.2, 0.4])))).astype(int)
LX_ROWS = LX.tolist()


@gm.gen
def logistic():
    w0 = gm.trace("w0", dist.normal(0.0, 1.0))
    w1 = gm.trace("w1", dist.normal(0.0, 1.0))
    for i, (a, b) in enumerate(LX_ROWS):
        gm.trace(("y", i), dist.bernoulli(mx.sigmoid(a * w0 + b * w1)))


L_OBS = {("y", i): int(y) for i, y in enumerate(LY)}


def logistic_moments() -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and variances of (w0, w1) by quadrature on a fine grid (the reference)."""
    g = np.linspace(-6.0, 6.0, 1201)
    w0, w1 = np.meshgrid(g, g, indexing="ij")
    logit = w0[..., None] * LX[:, 0] + w1[..., None] * LX[:, 1]
    lp = (LY * logit - np.logaddexp(0.0, logit)).sum(-1) - 0.5 * (w0 ** 2 + w1 ** 2)
    p = np.exp(lp - lp.max())
    p /= p.sum()
    means = np.array([(p * w0).sum(), (p * w1).sum()])
    variances = np.array([(p * w0 ** 2).sum(), (p * w1 ** 2).sum()]) - means ** 2
    return means, variances


@pytest.mark.statistical
def test_logistic_regression_matches_quadrature_and_elliptical_slice():
    kw = dict(addresses=["w0", "w1"], key=mx.random.key(2))
    fast = infer.compiled_elliptical_slice(logistic, (), L_OBS, n_samples=8000, **kw)
    slow = infer.elliptical_slice(logistic, (), L_OBS, n_samples=500, **kw)
    assert fast.stats["compiled"] is True and fast.stats["syncs"] == 0 and fast.stats["capped"] == 0
    means, variances = logistic_moments()
    for i, a in enumerate(["w0", "w1"]):
        f, s = np.asarray(fast.values(a)), np.asarray(slow.values(a))
        within_mc(f, means[i], variances[i])
        # the two chains' means: 4.5 standard errors of their difference
        assert abs(f.mean() - s.mean()) < 4.5 * math.hypot(mcse(f), mcse(s)), (a, f.mean(), s.mean())
    # the same transition: the rounds an iteration takes have the same distribution
    nf, ns = np.asarray(fast.stats["num_steps"], float), np.asarray(slow.stats["num_steps"], float)
    assert abs(nf.mean() - ns.mean()) < 4.5 * math.hypot(mcse(nf), mcse(ns)), (nf.mean(), ns.mean())


# -- the round cap --------------------------------------------------------------------------------------

@gm.gen
def normal_mean(n):
    x = gm.trace("x", dist.normal(0.0, 1.0))
    for i in range(n):
        gm.trace(("y", i), dist.normal(x, SIGMA_Y))


NM_Y = [0.3, 0.9, 0.5, 1.2, 0.1, 0.8]
NM_OBS = {("y", i): y for i, y in enumerate(NM_Y)}
NM_PREC = 1.0 + len(NM_Y) / SIGMA_Y ** 2


@pytest.mark.statistical
@pytest.mark.parametrize("rounds", [1, 2])
def test_a_capped_chain_stays_valid_and_on_target(rounds):
    res = infer.compiled_elliptical_slice(normal_mean, (len(NM_Y),), NM_OBS, addresses=["x"], n_samples=12000,
                                          max_rounds=rounds, key=mx.random.key(3))
    st = res.stats
    assert st["compiled"] is True and st["max_rounds"] == rounds
    steps = np.asarray(st["num_steps"])
    assert 0 < st["capped"] < st["iterations"] and steps.max() == rounds
    # a capped iteration keeps its point; one that lands moves
    x = np.asarray(res.values("x"))
    assert 0 < np.mean(np.diff(x) == 0) < 1
    assert all(math.isfinite(res.traces[i].score.item()) for i in (0, 5000, 11999))
    assert math.isfinite(res.state.score.item())
    # every part of the kernel that takes k <= R rounds is reversible on its own: still the posterior
    within_mc(x, sum(NM_Y) / SIGMA_Y ** 2 / NM_PREC, 1 / NM_PREC)


def test_angles_follow_the_papers_bracket():
    us = mx.random.uniform(shape=(9, 5), key=mx.random.key(4))  # R = 8 rounds of 5 iterations
    got = np.asarray(_angles(us))
    u = np.asarray(us, dtype=np.float64)
    for it in range(5):
        theta = 2 * math.pi * u[1, it]
        lo, hi = theta - 2 * math.pi, theta
        want = [theta]
        for j in range(2, 9):  # every round off the slice: shrink towards 0, draw in the bracket
            if theta < 0:
                lo = theta
            else:
                hi = theta
            theta = lo + (hi - lo) * u[j, it]
            want.append(theta)
        np.testing.assert_allclose(got[it], want, rtol=1e-5, atol=1e-5)


# -- blocks, burn-in, thinning, validation ----------------------------------------------------------------

def run_nm(**kw):
    return infer.compiled_elliptical_slice(normal_mean, (len(NM_Y),), NM_OBS, addresses=["x"],
                                           key=mx.random.key(5), **kw)


def test_thin_keeps_every_thin_th_iteration_of_the_same_chain():
    every = run_nm(n_samples=150, iterations_per_step=10)
    thinned = run_nm(n_samples=30, thin=5, iterations_per_step=10)
    assert len(thinned.traces) == 30 and thinned.stats["iterations"] == 150
    assert thinned.values("x") == every.values("x")[::5]
    assert thinned.stats["num_steps"] == every.stats["num_steps"]


def test_burn_is_rounded_up_to_whole_blocks():
    whole = run_nm(n_samples=60, iterations_per_step=10)
    burned = run_nm(n_samples=30, burn=25, iterations_per_step=10)  # 3 blocks of burn-in
    assert burned.stats["iterations"] == 60 and len(burned.traces) == 30
    assert burned.values("x") == whole.values("x")[30:]


def test_kept_views_and_the_final_state_are_the_models_traces():
    res = run_nm(n_samples=25, iterations_per_step=10)
    assert len(res.traces) == 25 and res.stats["iterations"] == 30 and res.stats["steps"] == 3
    tr = res.traces[24]
    assert tr["x"].item() == res.values("x")[24]
    score, _ = normal_mean.assess((len(NM_Y),), gm.choicemap({"x": tr["x"], **NM_OBS}))
    assert tr.score.item() == pytest.approx(score.item(), rel=1e-5)
    longer = run_nm(n_samples=30, iterations_per_step=10)
    assert longer.values("x")[:25] == res.values("x")
    assert res.state["x"].item() == longer.values("x")[29]


@pytest.mark.parametrize("n_samples, burn, thin, k", [
    (4000, 0, 1, 50),
    (4000, 0, 3, 51),  # the multiple of thin nearest 50
    (20, 0, 1, 20),  # a short run: one block of its length
    (0, 30, 1, 30),  # burn-in only
])
def test_default_block_length(n_samples, burn, thin, k):
    assert _default_block(n_samples, burn, thin) == k


@pytest.mark.parametrize("kw, match", [
    ({"iterations_per_step": 0}, "iterations_per_step must be >= 1"),
    ({"iterations_per_step": 4, "thin": 3}, r"iterations_per_step \(4\) must be a multiple of thin \(3\)"),
    ({"thin": 0}, "thin must be >= 1"),
    ({"burn": -1}, "burn must be >= 0"),
    ({"n_samples": -1}, "n_samples must be >= 0"),
    ({"max_rounds": 0}, "max_rounds must be >= 1"),
])
def test_bad_block_parameters(kw, match):
    args = {"n_samples": 10, **kw}
    with pytest.raises(ValueError, match=match):
        infer.compiled_elliptical_slice(normal_mean, (len(NM_Y),), NM_OBS, addresses=["x"], **args)


@gm.gen
def beta_site():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    gm.trace("y", dist.bernoulli(p))


@pytest.mark.parametrize("model, obs, addresses, match", [
    (beta_site, {"y": 1}, ["p"], "'p' is beta, not normal"),
    (normal_mean, NM_OBS, [], "addresses"),
    (normal_mean, NM_OBS, [("y", 0)], r"observed address \('y', 0\)"),
    (normal_mean, NM_OBS, ["nope"], "'nope' is not a random choice"),
])
def test_bad_addresses_as_elliptical_slice(model, obs, addresses, match):
    args = () if model is beta_site else (len(NM_Y),)
    for alg in (infer.elliptical_slice, infer.compiled_elliptical_slice):
        with pytest.raises(ValueError, match=match):
            alg(model, args, obs, addresses=addresses, n_samples=3)


# -- fallback ----------------------------------------------------------------------------------------------

@gm.gen
def folded():
    x = gm.trace("x", dist.normal(0.0, 1.0))
    if x.item() > 0:  # a Python branch on the value: flat_density cannot follow it
        gm.trace("y", dist.normal(x, 0.5))
    else:
        gm.trace("y", dist.normal(-x, 0.5))


@pytest.mark.statistical
def test_a_python_branch_runs_elliptical_slice():
    kw = dict(addresses=["x"], n_samples=600, key=mx.random.key(6))
    res = infer.compiled_elliptical_slice(folded, (), {"y": 1.2}, **kw)
    assert res.stats["compiled"] is False and "flatten" in res.stats["fallback"]
    assert res.values("x") == infer.elliptical_slice(folded, (), {"y": 1.2}, **kw).values("x")  # its chain, same keys
    g = np.linspace(-6, 6, 4001)
    p = np.exp(-0.5 * g ** 2 - 0.5 * ((1.2 - np.abs(g)) / 0.5) ** 2)
    p /= p.sum()
    a = np.abs(np.asarray(res.values("x")))
    assert abs(a.mean() - (p * np.abs(g)).sum()) < 4.5 * mcse(a)


@gm.gen
def chained():
    a = gm.trace("a", dist.normal(0.0, 1.0))
    b = gm.trace("b", dist.normal(a, 1.0))  # b's prior reads a
    gm.trace("y", dist.normal(a + b, 1.0))


def test_a_prior_that_reads_another_address_runs_elliptical_slice():
    res = infer.compiled_elliptical_slice(chained, (), {"y": 1.0}, addresses=["a", "b"], n_samples=5,
                                          key=mx.random.key(0))
    assert res.stats["compiled"] is False and "prior of address 'b' reads" in res.stats["fallback"]
    # one address at a time is fine: a's prior reads nothing, b's prior and y are its likelihood
    one = infer.compiled_elliptical_slice(chained, (), {"y": 1.0}, addresses=["a"], n_samples=5,
                                          key=mx.random.key(0))
    assert one.stats["compiled"] is True


@gm.gen
def normal_mean_other(n):  # normal_mean's sites with another likelihood: a density it must not use
    x = gm.trace("x", dist.normal(0.0, 1.0))
    for i in range(n):
        gm.trace(("y", i), dist.normal(2.0 * x, SIGMA_Y))


def test_a_flattened_density_that_disagrees_with_the_model_is_not_used(monkeypatch):
    build = flat_density.build
    monkeypatch.setattr(flat_density, "build", lambda model, *a, **k: build(normal_mean_other, *a, **k))
    tr, _ = normal_mean.generate((len(NM_Y),), NM_OBS, key=mx.random.key(0))
    kernel = CompiledElliptical(tr, [("x",)], 4, 1, 8)
    assert kernel.compiled is False and "disagrees" in kernel.reason


def test_the_kernel_is_cached_per_run_and_not_reused_for_other_observations():
    args = (len(NM_Y),)
    tr, _ = normal_mean.generate(args, NM_OBS, key=mx.random.key(0))
    kernel = kernel_for(tr, [("x",)], 10, 1, 8)
    assert kernel_for(normal_mean.generate(args, NM_OBS, key=mx.random.key(1))[0], [("x",)], 10, 1, 8) is kernel
    other = {**NM_OBS, ("y", 0): -1.0}
    assert kernel_for(normal_mean.generate(args, other, key=mx.random.key(1))[0], [("x",)], 10, 1, 8) is not kernel
    assert kernel_for(tr, [("x",)], 10, 1, 16) is not kernel


# -- memory, same key ---------------------------------------------------------------------------------------

def test_compiled_elliptical_memory_flat_under_budget():
    rec = FlatRecorder(every=10, warmup=20)
    with gm.memory.budget(499_000), events.subscribed(KeepStore(rec)):
        res = infer.compiled_elliptical_slice(normal_mean, (len(NM_Y),), NM_OBS, addresses=["x"], n_samples=600,
                                              iterations_per_step=2, key=mx.random.key(0), callback=rec)
    assert res.stats["steps"] == 300
    rec.assert_flat()


def test_same_key_same_chain():
    a, b = run_nm(n_samples=60, iterations_per_step=20), run_nm(n_samples=60, iterations_per_step=20)
    assert a.values("x") == b.values("x") and a.stats["num_steps"] == b.stats["num_steps"]
    other = infer.compiled_elliptical_slice(normal_mean, (len(NM_Y),), NM_OBS, addresses=["x"], n_samples=60,
                                            iterations_per_step=20, key=mx.random.key(6))
    assert other.values("x") != a.values("x")
