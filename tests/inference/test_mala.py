"""MALA and many-chain MALA: exact posteriors, the proposal density, adaptation, no syncs, errors, memory."""

from __future__ import annotations

import importlib
import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats as sps

from genmlx import inference as infer
from genmlx.inference.transforms import unconstrained_logdensity
from genmlx.vectorize import lane

from .gradient_models import (
    BB_OBS, BB_POST, CORR_POST, LR_CORR, LR_OBS, LR_POST, NN_OBS, NN_POST, RHO, XS, assert_flat_run,
    beta_bernoulli, check_posterior, corr, corr_tolerance, correlated, linreg, normal_normal, values_of,
)

mala_mod = importlib.import_module("genmlx.inference.mala")
LR = dict(addresses=["slope", "intercept"])


@pytest.mark.statistical
def test_mala_normal_normal_posterior():
    r = infer.mala(normal_normal, (3,), NN_OBS, addresses=["mu"], n_samples=3000, burn=500, key=mx.random.key(1))
    check_posterior(r, NN_POST)


@pytest.mark.statistical
def test_mala_linear_regression_posterior():
    r = infer.mala(linreg, (XS,), LR_OBS, **LR, n_samples=6000, burn=1000, key=mx.random.key(2))
    check_posterior(r, LR_POST)
    assert abs(corr(r, "slope", "intercept") - LR_CORR) < corr_tolerance(LR_CORR, min(r.stats["ess_bulk"].values()))


@pytest.mark.statistical
def test_mala_correlated_gaussian():
    r = infer.mala(correlated, (), {}, addresses=["x", "y"], n_samples=6000, burn=1000, key=mx.random.key(3))
    check_posterior(r, CORR_POST)
    assert abs(corr(r, "x", "y") - RHO) < corr_tolerance(RHO, min(r.stats["ess_bulk"].values()))


@pytest.mark.statistical
def test_mala_beta_bernoulli_through_the_logit_transform():
    r = infer.mala(beta_bernoulli, (), BB_OBS, addresses=["p"], n_samples=3000, burn=500, key=mx.random.key(4))
    check_posterior(r, BB_POST)


@pytest.mark.statistical
def test_mala_chains_agree_and_mix():
    """Four chains in one pass: R-hat near 1, pooled moments exact, chain c is an ordinary trace sequence."""
    r = infer.mala_chains(normal_normal, (3,), NN_OBS, addresses=["mu"], n_chains=4, n_samples=1000, burn=300,
                          key=mx.random.key(5))
    assert len(r.traces) == 1000 and r.traces[0].batch == 4 and r.stats["n_chains"] == 4
    assert r.stats["r_hat"]["mu"] < 1.05
    (mean, sd), ess = NN_POST["mu"], r.stats["ess_bulk"]["mu"]
    pooled = np.asarray(r.values("mu"))  # [draws, C]
    assert pooled.shape == (1000, 4)
    assert abs(pooled.mean() - mean) < 4 * sd / math.sqrt(ess)
    assert abs(pooled.std(ddof=1) - sd) < 4 * sd / math.sqrt(2 * ess)
    assert np.asarray(r.stats["accepted"]).shape == (1300, 4)
    one = lane(r.traces[10], 2)
    score, _ = normal_normal.assess((3,), one.get_choices())
    assert one.get_score().item() == pytest.approx(score.item(), abs=1e-4)
    assert len(set(np.round(pooled[0], 6))) == 4  # each chain its own path


def test_mala_kernel_is_the_langevin_metropolis_hastings_step():
    """The accept probability equals the MALA ratio computed by hand from the kernel's own proposal."""
    logp = unconstrained_logdensity(normal_normal, (3,), NN_OBS, ["mu"], key=mx.random.key(0))
    vg = mx.value_and_grad(logp)
    kernel = mala_mod.mala_kernel(vg)
    z = mx.array([0.3])
    lp, g = vg(z)
    eps = 0.7
    k1, _ = mx.random.split(mx.random.key(7))
    prop = z + 0.5 * eps * eps * g + eps * mx.random.normal(z.shape, key=k1)
    lp2, g2 = vg(prop)

    def log_q(to, frm, grad):
        d = to - frm - 0.5 * eps * eps * grad
        return -float(mx.sum(d * d).item()) / (2 * eps * eps)

    want = min(1.0, math.exp(lp2.item() - lp.item() + log_q(z, prop, g2) - log_q(prop, z, g)))
    z_new, _, _, acc, ap = kernel(mx.random.key(7), z, lp, g, mx.array(eps))
    assert ap.item() == pytest.approx(want, rel=1e-4)
    assert z_new.item() == pytest.approx(prop.item() if acc.item() else 0.3, abs=1e-6)


def test_one_step_leaves_the_exact_posterior_invariant():
    logp = unconstrained_logdensity(correlated, (), {}, ["x", "y"], key=mx.random.key(0))
    vg = mx.vmap(mx.value_and_grad(logp))
    kernel = mala_mod.mala_kernel(vg)
    starts = np.random.default_rng(0).multivariate_normal([0, 0], [[1, RHO], [RHO, 1]], size=2000)
    z = mx.array(starts.astype(np.float32))
    lp, g = vg(z)
    z2, _, _, acc, _ = kernel(mx.random.key(1), z, lp, g, mx.array(0.4))
    ends = np.asarray(z2)
    assert sps.kstest(ends[:, 0], "norm").pvalue > 1e-3 and sps.kstest(ends[:, 1], "norm").pvalue > 1e-3
    assert 0.3 < np.asarray(acc).mean() < 1.0


def test_dual_averaging_moves_the_step_size_toward_the_target():
    kw = dict(n_samples=300, burn=500, key=mx.random.key(8))
    big = infer.mala(normal_normal, (3,), NN_OBS, addresses=["mu"], step_size=20.0, **kw)
    small = infer.mala(normal_normal, (3,), NN_OBS, addresses=["mu"], step_size=1e-4, **kw)
    for r in (big, small):
        assert abs(np.mean(r.stats["accepted"][150:500]) - 0.574) < 0.1
        assert 0.45 < r.stats["acceptance_rate"] < 0.95
    assert not any(big.stats["accepted"][:3])  # it started far from the target
    assert big.stats["final_step_size"] < 5.0 and small.stats["final_step_size"] > 0.05
    fixed = infer.mala(normal_normal, (3,), NN_OBS, addresses=["mu"], step_size=0.3, n_samples=40, key=mx.random.key(8))
    assert np.allclose(fixed.stats["step_size"], 0.3)


def test_mala_runs_without_host_syncs():
    r = infer.mala(linreg, (XS,), LR_OBS, **LR, n_samples=50, burn=50, key=mx.random.key(9))
    c = infer.mala_chains(linreg, (XS,), LR_OBS, **LR, n_chains=3, n_samples=50, burn=50, key=mx.random.key(9))
    assert r.stats["syncs"] == 0 and c.stats["syncs"] == 0


def test_same_key_same_chain_bit_for_bit():
    kw = dict(n_samples=150, burn=100, key=mx.random.key(10))
    a = infer.mala(beta_bernoulli, (), BB_OBS, addresses=["p"], **kw)
    b = infer.mala(beta_bernoulli, (), BB_OBS, addresses=["p"], **kw)
    assert values_of(a) == values_of(b)
    ca = infer.mala_chains(beta_bernoulli, (), BB_OBS, addresses=["p"], n_chains=3, **kw)
    cb = infer.mala_chains(beta_bernoulli, (), BB_OBS, addresses=["p"], n_chains=3, **kw)
    assert ca.values("p") == cb.values("p") and ca.stats["accepted"] == cb.stats["accepted"]
    c = infer.mala(beta_bernoulli, (), BB_OBS, addresses=["p"], n_samples=150, burn=100, key=mx.random.key(11))
    assert a.values("p") != c.values("p")


@pytest.mark.parametrize("kwargs, message", [
    (dict(step_size=0.0), "mala: step_size must be finite and > 0"),
    (dict(step_size=-0.5), "step_size"),
    (dict(step_size=float("inf")), "step_size"),
    (dict(addresses=["nope", "slope", "intercept"]), "'nope'"),
    (dict(n_samples=-1), "n_samples"),
])
def test_bad_input_is_a_value_error_naming_it(kwargs, message):
    kw = dict(addresses=["slope", "intercept"], n_samples=10)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=message):
        infer.mala(linreg, (XS,), LR_OBS, **kw)


def test_bad_chain_input_is_an_error_naming_it():
    with pytest.raises(ValueError, match="n_chains"):
        infer.mala_chains(linreg, (XS,), LR_OBS, **LR, n_chains=0, n_samples=10)
    obs = {k: v for k, v in BB_OBS.items() if k != "y0"}
    with pytest.raises(ValueError, match="address 'y0' is discrete"):
        infer.mala_chains(beta_bernoulli, (), obs, addresses=["p", "y0"], n_chains=2, n_samples=10)


@pytest.mark.stress
@pytest.mark.no_leak_gate  # measured here, phase by phase; the gate's own census would interleave
def test_mala_memory_flat_under_budget_with_adaptation(full_stress):
    n, burn = (10_000, 10_000) if full_stress else (800, 1000)
    res, rec = assert_flat_run(lambda cb: infer.mala(linreg, (XS,), LR_OBS, **LR, n_samples=n, burn=burn,
                                                     key=mx.random.key(12), callback=cb), burn, every=40)
    assert len(res.traces) == n and len(rec.warm.points) >= 10 and len(rec.samp.points) >= 10
    assert res.stats["final_step_size"] != 0.1


@pytest.mark.stress
@pytest.mark.no_leak_gate  # measured here, phase by phase; the gate's own census would interleave
def test_mala_chains_memory_flat_under_budget(full_stress):
    n, burn = (5000, 5000) if full_stress else (600, 800)
    res, rec = assert_flat_run(lambda cb: infer.mala_chains(linreg, (XS,), LR_OBS, **LR, n_chains=8, n_samples=n,
                                                            burn=burn, key=mx.random.key(13), callback=cb),
                               burn, every=40)
    assert len(res.traces) == n and res.traces[0].batch == 8
