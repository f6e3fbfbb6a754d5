"""HMC: exact posteriors, invariance, adaptation (step size and mass matrix), no syncs, errors, memory."""

from __future__ import annotations

import importlib

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats as sps

from genmlx import inference as infer
from genmlx.inference.adaptation import slow_windows
from genmlx.inference.transforms import unconstrained_logdensity

from .gradient_models import (
    BB_OBS, BB_POST, CORR_POST, FUNNEL_ADDRS, LR_CORR, LR_OBS, LR_POST, NN_OBS, NN_POST, RHO, XS,
    assert_flat_run, beta_bernoulli, check_posterior, corr, corr_tolerance, correlated, funnel, linreg,
    normal_normal, values_of, GPV_DATA, GPV_POST, check_vector_posterior, gamma_poisson_vec,
)

hmc_mod = importlib.import_module("genmlx.inference.hmc")
LR = dict(addresses=["slope", "intercept"])


@pytest.mark.statistical
def test_hmc_normal_normal_posterior():
    r = infer.hmc(normal_normal, (3,), NN_OBS, addresses=["mu"], n_samples=1000, burn=300, n_leapfrog=5,
                  key=mx.random.key(1))
    check_posterior(r, NN_POST)


@pytest.mark.statistical
def test_hmc_linear_regression_posterior():
    r = infer.hmc(linreg, (XS,), LR_OBS, **LR, n_samples=1500, burn=500, n_leapfrog=10, key=mx.random.key(2))
    check_posterior(r, LR_POST)
    assert abs(corr(r, "slope", "intercept") - LR_CORR) < corr_tolerance(LR_CORR, min(r.stats["ess_bulk"].values()))


@pytest.mark.statistical
def test_hmc_positive_vector_latent_site_gamma_poisson():
    r = infer.hmc(gamma_poisson_vec, (), {"y": mx.array(GPV_DATA)}, addresses=["lam"], n_samples=1500, burn=500,
                  n_leapfrog=10, key=mx.random.key(22))
    check_vector_posterior(r, "lam", GPV_POST)


@pytest.mark.statistical
def test_hmc_correlated_gaussian():
    r = infer.hmc(correlated, (), {}, addresses=["x", "y"], n_samples=1500, burn=500, n_leapfrog=10,
                  key=mx.random.key(3))
    check_posterior(r, CORR_POST)
    assert abs(corr(r, "x", "y") - RHO) < corr_tolerance(RHO, min(r.stats["ess_bulk"].values()))


@pytest.mark.statistical
def test_hmc_beta_bernoulli_through_the_logit_transform():
    r = infer.hmc(beta_bernoulli, (), BB_OBS, addresses=["p"], n_samples=1000, burn=300, n_leapfrog=5,
                  key=mx.random.key(4))
    check_posterior(r, BB_POST)
    p = np.asarray(r.values("p"))
    assert np.all((p > 0) & (p < 1))


@pytest.mark.statistical
def test_hmc_funnel_has_no_divergence_storm():
    """Neal's funnel, 9 + 1 dimensions, centered: at most 5% divergent iterations after warm-up (see test_nuts)."""
    r = infer.hmc(funnel, (), {}, addresses=FUNNEL_ADDRS, n_samples=300, burn=300, n_leapfrog=10,
                  target_accept=0.9, key=mx.random.key(5))
    assert r.stats["divergences"] <= 0.05 * 300, r.stats["divergences"]
    assert r.stats["acceptance_rate"] > 0.5
    assert np.all(np.isfinite(np.asarray(r.values("v"))))


def test_one_transition_leaves_the_exact_posterior_invariant():
    """1,000 chains started at exact draws of a correlated Gaussian, one HMC step each: still exact."""
    logp = unconstrained_logdensity(correlated, (), {}, ["x", "y"], key=mx.random.key(0))
    vg = mx.vmap(mx.value_and_grad(logp))
    kernel = hmc_mod.hmc_kernel(vg, 8)
    starts = np.random.default_rng(0).multivariate_normal([0, 0], [[1, RHO], [RHO, 1]], size=1000)
    z = mx.array(starts.astype(np.float32))
    lp, g = vg(z)
    z2, *_, acc, ap, div = kernel(mx.random.key(1), z, lp, g, mx.array(0.25), mx.ones((2,)))
    # the kernel draws one momentum per point when batched, so this is 1,000 independent transitions
    ends = np.asarray(z2)
    assert sps.kstest(ends[:, 0], "norm").pvalue > 1e-3 and sps.kstest(ends[:, 1], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(ends.T)[0, 1] - RHO) < 0.02 and 0.5 < np.asarray(acc).mean() < 1.0


def test_dual_averaging_moves_the_step_size_toward_the_target():
    kw = dict(n_samples=200, burn=300, n_leapfrog=5, key=mx.random.key(8))
    big = infer.hmc(normal_normal, (3,), NN_OBS, addresses=["mu"], step_size=10.0, **kw)
    small = infer.hmc(normal_normal, (3,), NN_OBS, addresses=["mu"], step_size=1e-3, **kw)
    for r in (big, small):
        assert abs(np.mean(r.stats["accept_prob"][100:300]) - 0.8) < 0.05
        assert r.stats["acceptance_rate"] > 0.7
    assert np.mean(big.stats["accept_prob"][:5]) < 0.5
    assert big.stats["final_step_size"] < 2.0 and small.stats["final_step_size"] > 0.1
    fixed = infer.hmc(normal_normal, (3,), NN_OBS, addresses=["mu"], step_size=0.05, n_samples=30, key=mx.random.key(8))
    assert np.allclose(fixed.stats["step_size"], 0.05) and fixed.stats["final_step_size"] == pytest.approx(0.05)
    frozen = infer.hmc(normal_normal, (3,), NN_OBS, addresses=["mu"], step_size=0.05, burn=50, n_samples=30,
                       adapt_step_size=False, adapt_mass=False, key=mx.random.key(8))
    assert np.allclose(frozen.stats["step_size"], 0.05) and frozen.stats["inv_mass"] == [1.0]


def test_mass_matrix_adapts_to_the_posterior_scales():
    """The diagonal inverse mass matrix ends near the posterior variances (Stan's shrinkage aside)."""
    r = infer.hmc(linreg, (XS,), LR_OBS, **LR, n_samples=10, burn=600, n_leapfrog=10, key=mx.random.key(9))
    want = np.array([LR_POST["slope"][1], LR_POST["intercept"][1]]) ** 2
    assert np.allclose(r.stats["inv_mass"], want, rtol=0.5), (r.stats["inv_mass"], want)
    assert slow_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert slow_windows(100) == [(15, 90)] and slow_windows(10) == []


def test_hmc_runs_without_host_syncs():
    r = infer.hmc(linreg, (XS,), LR_OBS, **LR, n_samples=50, burn=50, key=mx.random.key(10))
    assert r.stats["syncs"] == 0 and r.stats["num_steps"] == [10] * 100
    assert r.stats["divergences"] == 0 and len(r.stats["diverging"]) == 100


def test_long_trajectories_use_the_looped_kernel():
    a = infer.hmc(normal_normal, (3,), NN_OBS, addresses=["mu"], n_samples=20, n_leapfrog=70, step_size=0.05,
                  key=mx.random.key(11))
    assert a.stats["num_steps"] == [70] * 20 and a.stats["acceptance_rate"] > 0.9


def test_same_key_same_chain_bit_for_bit():
    kw = dict(n_samples=100, burn=100, key=mx.random.key(12))
    a = infer.hmc(linreg, (XS,), LR_OBS, **LR, **kw)
    b = infer.hmc(linreg, (XS,), LR_OBS, **LR, **kw)
    assert values_of(a) == values_of(b)
    c = infer.hmc(linreg, (XS,), LR_OBS, **LR, n_samples=100, burn=100, key=mx.random.key(13))
    assert a.values("slope") != c.values("slope")


@pytest.mark.parametrize("kwargs, message", [
    (dict(step_size=0.0), "hmc: step_size must be finite and > 0"),
    (dict(step_size=-1.0), "step_size"),
    (dict(step_size="big"), "step_size"),
    (dict(n_leapfrog=0), "n_leapfrog"),
    (dict(n_leapfrog=2.5), "n_leapfrog"),
    (dict(addresses=["slope", "nope"]), "'nope'"),
    (dict(addresses=["slope"]), "intercept"),
])
def test_bad_input_is_a_value_error_naming_it(kwargs, message):
    kw = dict(addresses=["slope", "intercept"], n_samples=10)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=message):
        infer.hmc(linreg, (XS,), LR_OBS, **kw)


def test_discrete_address_is_a_value_error_naming_it():
    obs = {k: v for k, v in BB_OBS.items() if k != "y0"}
    with pytest.raises(ValueError, match="address 'y0' is discrete"):
        infer.hmc(beta_bernoulli, (), obs, addresses=["p", "y0"], n_samples=10)


@pytest.mark.stress
@pytest.mark.no_leak_gate  # measured here, phase by phase; the gate's own census would interleave
def test_hmc_memory_flat_under_budget_with_adaptation(full_stress):
    n, burn = (5000, 5000) if full_stress else (700, 500)
    res, rec = assert_flat_run(lambda cb: infer.hmc(linreg, (XS,), LR_OBS, **LR, n_samples=n, burn=burn,
                                                    n_leapfrog=5, key=mx.random.key(14), callback=cb), burn)
    assert len(res.traces) == n and len(rec.warm.points) >= 10 and len(rec.samp.points) >= 10
    assert res.stats["final_step_size"] != 0.1
