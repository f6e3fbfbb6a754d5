"""Kernel combinators: chain, repeat, cycle, mix; run_kernel / collect on the driver."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.diagnostics import mcse
from genmlx.inference.elliptical import elliptical_slice_kernel
from genmlx.inference.mh import mh_kernel
from memory_flat import FlatRecorder, KeepStore


@gm.gen
def two_normals():
    a = gm.trace("a", dist.normal(0.0, 1.0))
    b = gm.trace("b", dist.normal(a, 1.0))
    gm.trace("y", dist.normal(b, 0.5))


OBS = {"y": 1.5}
# Posterior of (a, b) given y: Gaussian; E[b | y] = var_b / (var_b + 0.25) * y with var_b = 2.
POST_B = 2.0 / 2.25 * 1.5
POST_A = 0.5 * POST_B  # E[a | b] = b / 2, so E[a | y] = E[b | y] / 2


def start(seed=0):
    return two_normals.generate((), OBS, key=mx.random.key(seed))[0]


def test_chain_applies_kernels_in_order_and_stacks_stats():
    k = infer.chain(mh_kernel(gm.select("a")), mh_kernel(gm.select("b")))
    tr, st = k(mx.random.key(1), start())
    assert st["accepted"].shape == (2,)
    res = infer.run_kernel(k, start(), 10, key=mx.random.key(2))
    assert len(res.stats["accepted"]) == 10 and all(len(x) == 2 for x in res.stats["accepted"])
    assert 0.0 <= res.stats["acceptance_rate"] <= 1.0


def test_repeat_and_cycle_counts():
    _, st = infer.repeat(mh_kernel(gm.select("a")), 3)(mx.random.key(0), start())
    assert st["accepted"].shape == (3,)
    _, st = infer.cycle([mh_kernel(gm.select("a")), mh_kernel(gm.select("b"))], 2)(mx.random.key(0), start())
    assert st["accepted"].shape == (4,)


def test_mixed_stat_shapes_are_reported_by_index():
    k = infer.chain(mh_kernel(gm.select("a")), elliptical_slice_kernel(["b"]), mh_kernel(gm.select("b")))
    _, st = k(mx.random.key(0), start())
    assert st["accepted"].shape == (2,) and st["num_steps"] >= 1


@pytest.mark.statistical
def test_cycle_targets_the_posterior():
    k = infer.cycle([mh_kernel(gm.select("a")), elliptical_slice_kernel(["b"])])
    res = infer.run_kernel(k, start(), 1000, burn=50, key=mx.random.key(3))
    a, b = np.array(res.values("a")), np.array(res.values("b"))
    assert abs(b.mean() - POST_B) < 4 * mcse(b)
    assert abs(a.mean() - POST_A) < 4 * mcse(a)


@pytest.mark.statistical
def test_mix_targets_the_posterior_and_counts_its_syncs():
    k = infer.mix([mh_kernel(gm.select("a")), mh_kernel(gm.select("b")), mh_kernel(gm.select("a", "b"))],
                  [1.0, 1.0, 0.5])
    res = infer.run_kernel(k, start(), 2000, burn=100, key=mx.random.key(4))
    b = np.array(res.values("b"))
    assert abs(b.mean() - POST_B) < 4 * mcse(b)
    assert res.stats["syncs"] == 2100  # one host decision (which kernel) per application
    chosen = np.bincount(res.stats["kernel"], minlength=3) / 2100
    assert np.allclose(chosen, [0.4, 0.4, 0.2], atol=0.05)


def test_collect_returns_traces_and_is_reproducible():
    k = mh_kernel(gm.select("a", "b"))
    a = infer.collect(k, start(), 20, thin=2, key=mx.random.key(5))
    b = infer.collect(k, start(), 20, thin=2, key=mx.random.key(5))
    assert len(a) == 20 and [t["a"].item() for t in a] == [t["a"].item() for t in b]


def test_bad_input():
    with pytest.raises(ValueError, match="n_samples"):
        infer.run_kernel(mh_kernel(gm.select("a")), start(), -1)
    with pytest.raises(ValueError, match="at least one kernel"):
        infer.chain()
    with pytest.raises(ValueError, match="n must be >= 1"):
        infer.repeat(mh_kernel(gm.select("a")), 0)
    with pytest.raises(ValueError, match="weights"):
        infer.mix([mh_kernel(gm.select("a"))], [1.0, 2.0])
    with pytest.raises(TypeError, match="trace"):
        infer.run_kernel(mh_kernel(gm.select("a")), {"a": 1}, 3)


def test_run_kernel_memory_flat_under_budget():
    rec = FlatRecorder(every=40, warmup=40)
    k = infer.cycle([mh_kernel(gm.select("a")), mh_kernel(gm.select("b"))])
    with gm.memory.budget(499_000), events.subscribed(KeepStore(rec)):
        infer.run_kernel(k, start(), 400, key=mx.random.key(0), callback=rec)
    rec.assert_flat()
