"""Diagnostics: R-hat, bulk/tail ESS, MCSE, particle ESS, summary table."""

import math
import statistics

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from genmlx.inference import diagnostics as d


def _ar1(n, rho, seed):
    r = np.random.default_rng(seed)
    e = r.normal(size=n)
    y = np.empty(n)
    y[0] = e[0] / math.sqrt(1 - rho * rho)
    for i in range(1, n):
        y[i] = rho * y[i - 1] + e[i]
    return y


def test_normal_ppf_matches_statistics_inv_cdf():
    p = np.concatenate([np.linspace(1e-9, 1e-3, 200), np.linspace(1e-3, 1 - 1e-3, 2000), 1 - np.linspace(1e-9, 1e-3, 200)])
    ref = np.array([statistics.NormalDist().inv_cdf(x) for x in p])
    assert np.max(np.abs(d.normal_ppf(p) - ref)) < 1e-7


def test_ranks_are_pooled_over_chains_with_ties_averaged():
    from scipy.stats import rankdata

    x = np.random.default_rng(0).integers(0, 5, size=(3, 40)).astype(float)
    pooled = d.rank_normalize(x)  # pooled over chains
    np.testing.assert_allclose(pooled, d.normal_ppf((rankdata(x).reshape(x.shape) - 0.375) / (x.size + 0.25)))


def _geyer_tau_loop(rho):
    """Geyer's initial monotone sequence as Stan and ArviZ write it, pair by pair (the reference)."""
    n = rho.size
    kept = np.zeros(n)
    kept[0], kept[1] = 1.0, rho[1]
    t, even, odd = 1, 1.0, rho[1]
    while t < n - 3 and even + odd > 0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            kept[t + 1], kept[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        kept[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if kept[t + 1] + kept[t + 2] > kept[t - 1] + kept[t]:
            kept[t + 1] = kept[t + 2] = (kept[t - 1] + kept[t]) / 2.0
        t += 2
    return -1.0 + 2.0 * kept[: max_t + 1].sum() + kept[max_t + 1: max_t + 2].sum()


@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=3, max_size=40),
       st.sampled_from([0.0, 0.5, -0.5, 0.25]))
@settings(max_examples=300, deadline=None)
def test_geyer_tau_for_all_rows_at_once_is_the_pair_by_pair_rule(tail, snap):
    """The vectorized rule against the loop, on any autocorrelations (exact zeros and ties included)."""
    rho = np.array([1.0] + [snap if abs(v) < 0.1 else v for v in tail])
    rev = np.concatenate(([1.0], rho[:0:-1]))  # a second row, read in the same call
    got = d._geyer_tau(np.stack([rho, rev]))
    np.testing.assert_allclose(got, [_geyer_tau_loop(rho), _geyer_tau_loop(rev)], rtol=1e-12, atol=1e-12)


def test_chain_summaries_of_many_sites_at_once_equal_each_sites_own():
    rng = np.random.default_rng(4)
    x = np.cumsum(rng.normal(size=(2, 300)), axis=1)
    draws = {"a": x, "b": np.round(x), "c": np.ones((2, 300)), "v": np.stack([x, -x], axis=-1), "short": x[:, :50]}
    got = d.chain_summaries(draws)
    cols = {"a": x, "b": np.round(x), "c": np.ones((2, 300)), ("v", 0): x, ("v", 1): -x, "short": x[:, :50]}
    for k, c in cols.items():
        for name, f in (("ess_bulk", d.ess_bulk), ("ess_tail", d.ess_tail), ("r_hat", d.r_hat)):
            want = f(c)
            assert (np.isnan(want) and np.isnan(got[name][k])) or got[name][k] == pytest.approx(want, rel=1e-12)
    assert list(got["r_hat"]) == list(cols)  # the draws' order


@pytest.mark.parametrize("n", [1, 2, 7, 97, 1000, 1250])
def test_autocovariance_is_the_direct_sums(n):
    """The FFT pads to a 2-3-5-smooth length >= 2n - 1 (not a power of two): still the linear one."""
    a = np.random.default_rng(n).normal(size=(2, n))
    c = a - a.mean(axis=1, keepdims=True)
    direct = np.array([[np.dot(r[: n - t], r[t:]) / n for t in range(n)] for r in c])
    np.testing.assert_allclose(d._autocov(a), direct, rtol=1e-9, atol=1e-12)


def test_ess_of_iid_draws_is_close_to_their_number():
    x = np.random.default_rng(1).normal(size=(4, 1000))
    # Sampling spread of the estimate at N=4000 is a few percent; allow 15%.
    for f in (d.ess_bulk, d.ess_tail, d.ess_mean):
        assert 0.85 * 4000 < f(x) < 1.3 * 4000, f.__name__


def test_ess_of_ar1_matches_theory():
    rho, n = 0.9, 40_000
    y = _ar1(n, rho, 2)
    theory = n * (1 - rho) / (1 + rho)  # integrated autocorrelation time (1+rho)/(1-rho)
    assert 0.8 * theory < d.ess_bulk(y) < 1.25 * theory
    assert 0.8 * theory < d.ess_mean(y) < 1.25 * theory


def test_mcse_is_sd_over_sqrt_ess():
    x = np.random.default_rng(3).normal(size=4000)
    assert d.mcse(x) == pytest.approx(x.std(ddof=1) / math.sqrt(d.ess_mean(x)))
    assert d.mcse(x) == pytest.approx(1 / math.sqrt(4000), rel=0.15)


def test_r_hat_near_one_for_mixed_chains_and_large_for_shifted():
    r = np.random.default_rng(4)
    x = r.normal(size=(4, 1000))
    assert abs(d.r_hat(x) - 1) < 0.01
    x[0] += 1.0
    assert d.r_hat(x) > 1.05
    # a scale difference is caught by the folded (tail) part
    y = r.normal(size=(4, 1000))
    y[0] *= 3
    assert d.r_hat(y) > 1.05


def test_constant_draws_give_nan_not_errors():
    x = np.ones((2, 100))
    assert math.isnan(d.ess_bulk(x)) and math.isnan(d.r_hat(x))
    assert d.mcse(x) == 0.0


def test_particle_ess():
    assert d.particle_ess([0.0] * 7) == pytest.approx(7)
    assert d.particle_ess(mx.array([0.0, -100.0, -100.0])) == pytest.approx(1.0)
    assert d.particle_ess([float("-inf"), float("-inf")]) == 0.0
    w = np.log(np.array([1.0, 2.0, 3.0]))
    assert d.particle_ess(w) == pytest.approx(36 / 14)
    with pytest.raises(ValueError, match="empty"):
        d.particle_ess([])


def test_acceptance_rate_from_list_and_result():
    from genmlx.inference.result import InferenceResult

    assert d.acceptance_rate([True, False, True, True]) == 0.75
    assert d.acceptance_rate(InferenceResult([], {"accepted": [1, 0]})) == 0.5
    with pytest.raises(ValueError, match="accepted"):
        d.acceptance_rate(InferenceResult([], {}))


def test_summary_dict_and_table():
    r = np.random.default_rng(5)
    s = d.summary({"a": r.normal(2.0, 1.0, size=(2, 500)), "v": r.normal(size=(2, 500, 2))})
    assert set(s) == {"a", ("v", 0), ("v", 1)}
    assert s["a"]["mean"] == pytest.approx(2.0, abs=4 * s["a"]["mcse"])
    assert set(s["a"]) == {"mean", "sd", "mcse", "q5", "q50", "q95", "ess_bulk", "ess_tail", "r_hat"}
    text = str(s)
    assert text.splitlines()[0].split()[:3] == ["address", "mean", "sd"]
    assert len(text.splitlines()) == 4


def test_summary_of_results_single_multi_chain_and_compiled():
    import genmlx as gm
    from genmlx import dist
    from genmlx import inference as infer

    @gm.gen
    def nn():
        mu = gm.trace("mu", dist.normal(0.0, 1.0))
        gm.trace("y", dist.normal(mu, 1.0))

    runs = [infer.mh(nn, (), {"y": 1.0}, n_samples=300, key=mx.random.key(i)) for i in range(2)]
    one = d.summary(runs[0])
    assert list(one) == ["mu"]  # the observation is constant: left out by default
    both = d.summary(runs)
    assert both["mu"]["r_hat"] < 1.05 and both["mu"]["ess_bulk"] > one["mu"]["ess_bulk"]
    comp = infer.compiled_mh(nn, (), {"y": 1.0}, n_samples=300, iterations_per_step=10, key=mx.random.key(3))
    s = d.summary(comp, ["mu"])
    assert abs(s["mu"]["mean"] - 0.5) < 4 * s["mu"]["mcse"] + 0.02
