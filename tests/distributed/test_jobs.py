"""2-rank ring jobs on loopback: each distributed algorithm against the single-process computation.

Each job runs `rank_cases.py::<case>` as a pytest session in both ranks (the leak gate judges each
rank's loops); the ranks write what they computed, and the test recomputes it in this process from
the same particles / chains (the ranks' keys: `split(key, W)[r]`, chain c's: `split(key, C)[c]`).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx import inference as infer, select
from genmlx.distributed import JobFailed
from genmlx.inference.diagnostics import chain_summaries
from genmlx.inference.importance import log_ml_estimate

import dist_models as dm
from jobs import outputs, rank_pytest

W = 2


def test_importance_log_ml_equals_single_process_over_the_same_particles(tmp_path):
    rank_pytest("test_is", tmp_path)
    got = outputs(tmp_path, "is")
    keys = mx.random.split(mx.random.key(dm.KEY), W)
    sizes = [dm.IS_N // W + (r < dm.IS_N % W) for r in range(W)]
    assert [g["n_local"] for g in got] == sizes
    lw = np.concatenate([np.asarray(infer.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=sizes[r],
                                                              vectorized=True, key=keys[r]).log_weights)
                         for r in range(W)])
    for g in got:  # every rank holds the same global estimate: the single-process one over these N weights
        np.testing.assert_array_equal(np.asarray(g["log_weights"]), lw)
        assert g["log_ml"] == pytest.approx(log_ml_estimate(lw), rel=0, abs=1e-12)
        assert g["ess"] == pytest.approx(infer.particle_ess(lw), rel=1e-12)
    assert got[0]["slope"] == got[1]["slope"] and len(got[0]["slope"]) == dm.IS_N


def test_multichain_r_hat_equals_single_process_over_the_same_chains(tmp_path):
    rank_pytest("test_chains", tmp_path)
    got = outputs(tmp_path, "chains")
    keys = mx.random.split(mx.random.key(dm.KEY), dm.N_CHAINS)
    draws = np.stack([np.asarray(infer.mh(dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, selection=select("mu"),
                                          n_samples=dm.N_SAMPLES, burn=dm.BURN, key=keys[c]).values("mu"))
                      for c in range(dm.N_CHAINS)])
    want = chain_summaries({"mu": draws})
    for g in got:
        np.testing.assert_array_equal(np.asarray(g["draws"]), draws)
        assert g["r_hat"] == want["r_hat"]["mu"] and g["ess_bulk"] == want["ess_bulk"]["mu"]
        assert g["ess_tail"] == want["ess_tail"]["mu"]
        assert len(g["acceptance_rate_per_chain"]) == dm.N_CHAINS
    assert 0.99 < got[0]["r_hat"] < 1.1  # four chains of the same posterior mix


@pytest.mark.statistical
def test_smc_log_ml_within_monte_carlo_tolerance_of_kalman(tmp_path):
    rank_pytest("test_smc", tmp_path)
    got = outputs(tmp_path, "smc")
    exact = dm.exact_log_ml()
    assert got[0]["log_ml"] == got[1]["log_ml"]  # one global estimate
    assert abs(got[0]["log_ml"] - exact) < dm.SMC_TOL
    assert got[0]["ess"] == got[1]["ess"] and got[0]["resampled"] == got[1]["resampled"]  # global decisions
    assert any(got[0]["resampled"])
    assert sum(got[0]["migrated"]) + sum(got[1]["migrated"]) > 0  # particles crossed ranks


@pytest.mark.statistical
def test_island_smc_combines_the_ranks_estimates(tmp_path):
    rank_pytest("test_island", tmp_path)
    got = outputs(tmp_path, "island")
    combined = math.log(0.5 * (math.exp(got[0]["log_ml_local"]) + math.exp(got[1]["log_ml_local"])))
    assert got[0]["log_ml"] == got[1]["log_ml"] == pytest.approx(combined, abs=1e-12)
    assert abs(got[0]["log_ml"] - dm.exact_log_ml()) < dm.SMC_TOL * math.sqrt(2)  # two filters of N/2


def test_leak_gate_works_inside_each_rank(tmp_path):
    with pytest.raises(JobFailed) as e:
        rank_pytest("test_gate_sees_a_leak_on_rank_1", tmp_path)
    assert e.value.rank == 1
    out = e.value.result.outcomes
    assert "LEAKED" in out[1].stdout and "wrapper growth" in out[1].stdout
    assert "LEAKED" not in out[0].stdout
