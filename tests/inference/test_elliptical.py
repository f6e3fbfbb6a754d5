"""Elliptical slice sampling: Gaussian-prior posteriors, counted shrink syncs, bad input, memory."""

from __future__ import annotations


import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.diagnostics import mcse
from memory_flat import FlatRecorder, KeepStore

YS = [1.0, 2.0, 0.5]


@gm.gen
def normal_normal():
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    for i, _ in enumerate(YS):
        gm.trace(f"y{i}", dist.normal(mu, 1.0))


NN_OBS = {f"y{i}": y for i, y in enumerate(YS)}


@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    for i, x in enumerate(xs):
        gm.trace(f"y{i}", dist.normal(slope * x + intercept, 1.0))


XS, LR_YS = [1.0, 2.0, 3.0], [3.1, 5.0, 6.9]


@pytest.mark.statistical
def test_normal_normal_posterior():
    res = infer.elliptical_slice(normal_normal, (), NN_OBS, addresses=["mu"], n_samples=2000, burn=50,
                                 key=mx.random.key(0))
    mu = np.array(res.values("mu"))
    assert abs(mu.mean() - 0.875) < 4 * mcse(mu)
    assert mu.std() == pytest.approx(0.5, rel=0.12)
    # each shrink round is one counted host decision; no rejections, so every iteration moves
    assert res.stats["syncs"] == sum(res.stats["num_steps"])
    assert min(res.stats["num_steps"]) >= 1
    assert np.all(np.diff(mu) != 0)


@pytest.mark.statistical
def test_linreg_joint_update_matches_conjugate_posterior():
    obs = {f"y{i}": y for i, y in enumerate(LR_YS)}
    res = infer.elliptical_slice(linreg, (XS,), obs, addresses=["slope", "intercept"], n_samples=800, burn=50,
                                 key=mx.random.key(1))
    x = np.stack([np.array(XS), np.ones(3)], axis=1)
    cov = np.linalg.inv(x.T @ x + np.eye(2) / 100.0)
    mean = cov @ x.T @ np.array(LR_YS)
    for i, a in enumerate(["slope", "intercept"]):
        v = np.array(res.values(a))
        assert abs(v.mean() - mean[i]) < 4 * mcse(v), a


def test_same_key_same_chain():
    run = lambda: infer.elliptical_slice(normal_normal, (), NN_OBS, addresses="mu", n_samples=30, key=mx.random.key(3))
    assert run().values("mu") == run().values("mu")


@gm.gen
def beta_site():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    gm.trace("y", dist.bernoulli(p))


def test_non_gaussian_prior_is_rejected():
    with pytest.raises(ValueError, match="'p' is beta, not normal"):
        infer.elliptical_slice(beta_site, (), {"y": 1}, addresses=["p"], n_samples=3)


@pytest.mark.parametrize("kw, match", [
    ({"addresses": ["mu"], "n_samples": -1}, "n_samples"),
    ({"addresses": [], "n_samples": 3}, "addresses"),
    ({"addresses": ["y0"], "n_samples": 3}, "observed address 'y0'"),
    ({"addresses": ["nope"], "n_samples": 3}, "'nope' is not a random choice"),
])
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        infer.elliptical_slice(normal_normal, (), NN_OBS, **kw)


def test_elliptical_memory_flat_under_budget():
    rec = FlatRecorder(every=40, warmup=40)
    with gm.memory.budget(499_000), events.subscribed(KeepStore(rec)):
        infer.elliptical_slice(normal_normal, (), NN_OBS, addresses=["mu"], n_samples=400, key=mx.random.key(0),
                               callback=rec)
    rec.assert_flat()
