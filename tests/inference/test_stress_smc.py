"""The seed's SMC stress case, scaled up: long particle filters stay flat under the Metal-sized budget.

Section 4.2 of the seed: scalar SMC with T=100, N=100 made 10,000 traces with
no cleanup (100K+ buffers). Full sizes with GENMLX_FULL_STRESS=1: sequential
SMC with 100 particles over 100 time steps on the dynamic model (each step
O(t): `update` re-runs the body), and vectorized SMC with 1,000 particles over
100 steps on the `unfold` model. CI runs them reduced, still long enough to
show flat live arrays (outside the particles, which grow by design) and flat
pending graph nodes, and checks the answers against the Kalman filter.
"""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import inference as infer
from memory_flat import FlatRecorder

from .smc_models import data, kalman, lg, sequence, unfold_lg, unfold_sequence, weighted_mean

# FlatRecorder (state excluded) is the judge; the plugin's gate is off (see test_smc.py).
pytestmark = [pytest.mark.stress, pytest.mark.no_leak_gate]


def _flat(run, obs, n_steps):
    rec = FlatRecorder(every=max(2, n_steps // 25), warmup=max(6, n_steps // 10), keep=obs)
    t0 = time.perf_counter()
    with gm.memory.budget(499_000):
        res = run(rec)
    dt = time.perf_counter() - t0
    rec.assert_flat()
    print(f"\n{n_steps} steps in {dt:.1f} s ({dt / n_steps * 1e3:.1f} ms/step); census {rec.points[0]} -> {rec.points[-1]}")
    return res


def test_sequential_smc_100_particles_100_steps(full_stress):
    T, N = (100, 100) if full_stress else (30, 20)
    ys = data(T, seed=11)
    args, obs = sequence(ys)
    obs = [gm.choicemap(o) for o in obs]
    res = _flat(lambda rec: infer.smc(lg, args, obs, n_particles=N, key=mx.random.key(0), callback=rec), obs, T)
    exact, means, variances = kalman(ys)
    assert len(res.traces) == N and res.stats["syncs"] == T - 1
    # One run: log-ML sd grows like sqrt(T) (~0.35 per 8 steps at N=100, more at N=20); the
    # check is loose on purpose (this is a memory test), tight checks live in test_smc.py.
    assert abs(res.log_ml - exact) < (3.0 if full_stress else 4.0), (res.log_ml, exact)
    fm = weighted_mean(res.log_weights, res.values(("x", T - 1)))
    assert abs(fm - means[-1]) < 4 * np.sqrt(variances[-1]), (fm, means[-1])


def test_vectorized_smc_1000_particles_100_steps(full_stress):
    T, N = (100, 1000) if full_stress else (40, 300)
    ys = data(T, seed=12)
    args, obs = unfold_sequence(ys)
    obs = [gm.choicemap(o) for o in obs]
    model = unfold_lg()
    res = _flat(lambda rec: infer.vsmc(model, args, obs, n_particles=N, key=mx.random.key(0), callback=rec), obs, T)
    exact, means, _ = kalman(ys)
    assert len(res.traces) == N and res.stats["syncs"] == 0
    # N=1000, T=100: sd of the log-ML estimate ~0.3 (measured); N=300, T=40: ~0.35. Allow 1.5.
    assert abs(res.log_ml - exact) < 1.5, (res.log_ml, exact)
    fm = weighted_mean(res.log_weights, np.array(res.traces.values((T - 1, "x"))))
    assert abs(fm - means[-1]) < 0.15, (fm, means[-1])
