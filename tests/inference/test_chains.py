"""Vectorized many-chain MH: per-lane accept without syncs, equivalence to scalar chains, R-hat."""

from __future__ import annotations

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.chains import mh_chains_step
from genmlx.vectorize import lane
from memory_flat import FlatRecorder

YS = [1.0, 2.0, 0.5]


@gm.gen
def normal_normal():
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    for i, _ in enumerate(YS):
        gm.trace(f"y{i}", dist.normal(mu, 1.0))


NN_OBS = {f"y{i}": y for i, y in enumerate(YS)}


def test_each_lane_is_a_scalar_mh_step():
    vtr, _ = normal_normal.vgenerate((), NN_OBS, 6, key=mx.random.key(0))
    key = mx.random.key(1)
    new, st = mh_chains_step(key, vtr, gm.select("mu"))
    # the vectorized step accepts per lane by mx.where: lane c keeps its old value iff rejected
    acc = st["accepted"].tolist()
    old_mu, new_mu = vtr["mu"].tolist(), new["mu"].tolist()
    for c in range(6):
        assert (new_mu[c] != old_mu[c]) == acc[c]
        assert lane(new, c).score.item() == pytest.approx(
            normal_normal.generate((), {**NN_OBS, "mu": new_mu[c]})[0].score.item(), rel=1e-5)


@pytest.mark.statistical
def test_chains_posterior_and_r_hat():
    res = infer.mh_chains(normal_normal, (), NN_OBS, n_chains=8, n_samples=600, burn=50, key=mx.random.key(2))
    assert len(res.traces) == 600 and res.traces[0].batch == 8
    assert res.stats["syncs"] == 0
    assert len(res.stats["accepted"][0]) == 8 and len(res.stats["acceptance_rate_per_chain"]) == 8
    assert res.stats["r_hat"]["mu"] < 1.02
    s = infer.summary(res, ["mu"])
    assert abs(s["mu"]["mean"] - 0.875) < 4 * s["mu"]["mcse"]
    assert s["mu"]["ess_bulk"] > 500


def test_same_key_same_chains():
    run = lambda: infer.mh_chains(normal_normal, (), NN_OBS, n_chains=3, n_samples=20, key=mx.random.key(4))
    assert [t["mu"].tolist() for t in run().traces] == [t["mu"].tolist() for t in run().traces]


@pytest.mark.parametrize("kw, match", [
    ({"n_chains": 0, "n_samples": 5}, "n_chains"),
    ({"n_chains": 2, "n_samples": -5}, "n_samples"),
    ({"n_chains": 2, "n_samples": 5, "selection": gm.select("q")}, "selection"),
])
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        infer.mh_chains(normal_normal, (), NN_OBS, **kw)


class _Keep:
    def __init__(self, rec):
        self.rec = rec

    def on_run_start(self, e):
        self.rec.keep = e.store


def test_mh_chains_memory_flat_under_budget():
    rec = FlatRecorder(every=25, warmup=50)
    with gm.memory.budget(499_000), events.subscribed(_Keep(rec)):
        infer.mh_chains(normal_normal, (), NN_OBS, n_chains=4, n_samples=300, key=mx.random.key(0), callback=rec)
    rec.assert_flat()
