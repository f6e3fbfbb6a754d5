"""The seed's stress cases, scaled up: long MH and IS runs stay flat under the Metal-sized budget.

Full sizes with GENMLX_FULL_STRESS=1 (MH on Beta-Bernoulli: 20,000 iterations +
5,000 burn-in; MH on Beta(2,2): 15,000; importance sampling: 5,000 sequential
particles on a 5-site Beta model); CI runs them reduced, still long enough to
show a flat live-array count and flat pending nodes.
"""

from __future__ import annotations

import math
import time

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.diagnostics import mcse
from memory_flat import FlatRecorder, KeepStore

pytestmark = pytest.mark.stress

BB_DATA = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]


@gm.gen
def beta_bernoulli():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i, _ in enumerate(BB_DATA):
        gm.trace(f"y{i}", dist.bernoulli(p))
    return p


@gm.gen
def beta22():
    return gm.trace("p", dist.beta(2.0, 2.0))


@gm.gen
def five_betas():
    for i in range(5):
        gm.trace(f"p{i}", dist.beta(2.0, 2.0))


def flat(run, n_steps):
    rec = FlatRecorder(every=max(10, n_steps // 40), warmup=max(20, n_steps // 20))
    t0 = time.perf_counter()
    with gm.memory.budget(499_000), events.subscribed(KeepStore(rec)):
        res = run(rec)
    dt = time.perf_counter() - t0
    rec.assert_flat()
    print(f"\n{n_steps} steps in {dt:.1f} s ({dt / n_steps * 1e6:.0f} us/step); census {rec.points[0]} -> {rec.points[-1]}")
    return res


def test_mh_beta_bernoulli(full_stress):
    n, burn = (20_000, 5_000) if full_stress else (2_000, 500)
    obs = {f"y{i}": v for i, v in enumerate(BB_DATA)}
    res = flat(lambda rec: infer.mh(beta_bernoulli, (), obs, selection=gm.select("p"), n_samples=n, burn=burn,
                                    key=mx.random.key(0), callback=rec), n + burn)
    p = np.array(res.values("p"))
    assert len(p) == n and res.stats["syncs"] == 0
    assert abs(p.mean() - 9 / 14) < 4 * mcse(p)  # Beta(9, 5) posterior, 4 MCSE


def test_mh_beta22(full_stress):
    n = 15_000 if full_stress else 2_000
    res = flat(lambda rec: infer.mh(beta22, (), None, selection=gm.select("p"), n_samples=n, key=mx.random.key(1),
                                    callback=rec), n)
    p = np.array(res.values("p"))
    assert res.stats["acceptance_rate"] == 1.0  # the prior proposes from the target itself
    assert abs(p.mean() - 0.5) < 4 * math.sqrt(0.05 / n)  # iid Beta(2, 2) draws: variance 1/20


def test_importance_five_site_beta_model(full_stress):
    n = 5_000 if full_stress else 300
    res = flat(lambda rec: infer.importance_sampling(five_betas, (), {"p0": 0.3}, n_particles=n,
                                                     key=mx.random.key(2), callback=rec), n)
    assert len(res.traces) == n and res.stats["syncs"] == 0
    # log weight = Beta(2, 2) log density at 0.3 for every particle: log 6 * 0.3 * 0.7
    assert res.log_ml == pytest.approx(math.log(6 * 0.3 * 0.7), abs=1e-4)
    assert res.stats["ess"] == pytest.approx(n, rel=1e-4)
