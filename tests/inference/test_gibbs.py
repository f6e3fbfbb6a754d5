"""Gibbs over enumerated finite supports: invariance, posterior, lazy selection, bad input, memory."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats as sps

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.gibbs import enumerate_support, gibbs_step
from memory_flat import FlatRecorder
from .discrete_models import two_bits, two_bits_posterior as posterior




@pytest.mark.statistical
def test_gibbs_sweep_leaves_posterior_invariant():
    post = posterior()
    states = list(post)
    idx = np.random.default_rng(3).choice(4, size=1200, p=[post[s] for s in states])
    keys = mx.random.split(mx.random.key(5), len(idx))
    out = []
    for n, i in enumerate(idx):
        tr, _ = two_bits.generate((), {"a": states[i][0], "b": states[i][1], "c": 1})
        out.append(gibbs_step(keys[n], tr, ["a", "b"])[0])
    mx.eval([t.score for t in out])
    counts = np.array([sum(1 for t in out if (int(t["a"].item()), int(t["b"].item())) == s) for s in states])
    assert sps.chisquare(counts, np.array([post[s] for s in states]) * len(out)).pvalue > 1e-3


@pytest.mark.statistical
def test_gibbs_chain_frequencies_match_posterior():
    res = infer.gibbs(two_bits, (), {"c": 1}, addresses=["a", "b"], n_samples=1200, key=mx.random.key(1))
    assert res.stats["syncs"] == 0  # static structure: the draw is merged with mx.where
    pairs = list(zip(res.values("a"), res.values("b")))
    for s, p in posterior().items():
        freq = sum(1 for q in pairs if q == s) / len(pairs)
        # Gibbs on two strongly coupled bits mixes slowly: allow 4 SE with an ESS of a quarter of the draws
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / (len(pairs) / 4)), (s, freq, p)


def test_gibbs_step_matches_full_conditional_exactly():
    # From (a=1, b=0, c=1), the conditional of a given b=0, c=1 is known in closed form.
    tr, _ = two_bits.generate((), {"a": 1, "b": 0, "c": 1})
    pa1 = 0.3 * 0.2 * 0.4
    pa0 = 0.7 * 0.8 * 0.9
    keys = mx.random.split(mx.random.key(2), 2000)
    draws = [gibbs_step(keys[i], tr, ["a"])[0]["a"] for i in range(2000)]
    mean = float(mx.mean(mx.stack(draws).astype(mx.float32)).item())
    p = pa1 / (pa1 + pa0)
    assert abs(mean - p) < 4 * math.sqrt(p * (1 - p) / 2000)


def test_supports():
    assert enumerate_support(dist.bernoulli(0.5)) == [0, 1]
    with pytest.raises(ValueError, match="not finite"):
        enumerate_support(dist.normal(0.0, 1.0), "x")


def test_same_key_same_chain():
    run = lambda: infer.gibbs(two_bits, (), {"c": 1}, addresses=["a", "b"], n_samples=50, key=mx.random.key(4))
    assert run().values("a") == run().values("a")


@pytest.mark.parametrize("kw, match", [
    ({"addresses": ["a"], "n_samples": -1}, "n_samples"),
    ({"addresses": [], "n_samples": 5}, "addresses"),
    ({"addresses": ["zz"], "n_samples": 5}, "'zz' is not a random choice"),
    ({"addresses": ["c"], "n_samples": 5}, "observed address 'c'"),
])
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        infer.gibbs(two_bits, (), {"c": 1}, **kw)


@gm.gen
def gauss():
    gm.trace("x", dist.normal(0.0, 1.0))


def test_continuous_site_is_rejected():
    with pytest.raises(ValueError, match="normal, whose support is not finite"):
        infer.gibbs(gauss, (), {}, addresses=["x"], n_samples=3)


class _Keep:
    def __init__(self, rec):
        self.rec = rec

    def on_run_start(self, e):
        self.rec.keep = e.store


def test_gibbs_memory_flat_under_budget():
    rec = FlatRecorder(every=40, warmup=40)
    with gm.memory.budget(499_000), events.subscribed(_Keep(rec)):
        infer.gibbs(two_bits, (), {"c": 1}, addresses=["a", "b"], n_samples=400, key=mx.random.key(0), callback=rec)
    rec.assert_flat()


MEANS = [-2.0, 0.0, 3.0]


@gm.gen
def cluster():
    z = gm.trace("z", dist.categorical(mx.log(mx.array([0.5, 0.3, 0.2]))))
    gm.trace("y", dist.normal(mx.array(MEANS)[z], 1.0))


@pytest.mark.statistical
def test_gibbs_categorical_matches_exact_posterior():
    y = 1.0
    prior = np.array([0.5, 0.3, 0.2])
    lik = np.exp(-0.5 * (y - np.array(MEANS)) ** 2)
    post = prior * lik / (prior * lik).sum()
    res = infer.gibbs(cluster, (), {"y": y}, addresses=["z"], n_samples=1500, key=mx.random.key(9))
    z = np.array(res.values("z"))
    for k in range(3):
        # each sweep is an exact draw from p(z | y): iid, 4 binomial standard errors
        assert abs((z == k).mean() - post[k]) < 4 * math.sqrt(post[k] * (1 - post[k]) / len(z)), k


@gm.gen
def _invalid_at_one_state():
    a = gm.trace("a", dist.bernoulli(0.5))
    b = gm.trace("b", dist.bernoulli(0.5))
    gm.trace("y", dist.exponential(1.0 - 2.0 * a * b))  # rate -1 (invalid) at a = b = 1


def test_a_nan_full_conditional_is_an_error_naming_the_address():
    """The weight at a = b = 1 is NaN (the rate's check is guarded by it); MLX's draw would pick it and
    the chain would keep NaN-score states: the driver raises instead, naming the address."""
    with pytest.raises(ValueError, match="full conditional of address 'b' is NaN"):
        infer.gibbs(_invalid_at_one_state, (), {"y": 0.5}, addresses=["a", "b"], n_samples=50, key=mx.random.key(0))
