"""Involutive MH: a swap, a reflected random walk and a scaling move with a Jacobian."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.diagnostics import mcse
from genmlx.inference.involutive import involutive_mh_kernel, involutive_mh_step, log_abs_det_jacobian
from genmlx.inference.mh import mh_kernel
from memory_flat import FlatRecorder

YS = [1.0, 2.0, 0.5]


@gm.gen
def normal_normal():
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    for i, _ in enumerate(YS):
        gm.trace(f"y{i}", dist.normal(mu, 1.0))


NN_OBS = {f"y{i}": y for i, y in enumerate(YS)}


@gm.gen
def step_proposal(tr, scale):
    gm.trace("d", dist.normal(0.0, scale))


def reflect(tr, fwd, _ret, _args):
    """(mu, d) -> (mu + d, -d): an involution with |det J| = 1."""
    d = fwd["d"]
    new, w, _ = tr.gen_fn.update(tr, {"mu": tr["mu"] + d})
    return new, {"d": -d}, w


@gm.gen
def positive():
    x = gm.trace("x", dist.uniform(0.0, 10.0))
    gm.trace("y", dist.normal(x, 1.0))


def truncated_mean(weight):
    """Mean of x under weight(x) N(x; 2, 1) on (0, 10), by quadrature."""
    x = np.linspace(1e-6, 10.0, 200_001)
    dens = weight(x) * np.exp(-0.5 * (x - 2.0) ** 2)
    return float((x * dens).sum() / dens.sum())


def scale_move(with_jacobian):
    def involution(tr, fwd, _ret, _args):
        """(x, u) -> (x e^u, -u): Jacobian [[e^u, x e^u], [0, -1]], |det| = e^u."""
        u = fwd["u"]
        new, w, _ = tr.gen_fn.update(tr, {"x": tr["x"] * mx.exp(u)})
        return new, {"u": -u}, (w + u if with_jacobian else w)

    return involution


@gm.gen
def log_scale(tr, s):
    gm.trace("u", dist.normal(0.0, s))


@pytest.mark.statistical
def test_reflected_random_walk_normal_normal():
    res = infer.involutive_mh(normal_normal, (), NN_OBS, proposal=step_proposal, proposal_args=(1.0,),
                              involution=reflect, n_samples=2000, burn=100, key=mx.random.key(0))
    mu = np.array(res.values("mu"))
    assert abs(mu.mean() - 0.875) < 4 * mcse(mu)
    assert mu.std() == pytest.approx(0.5, rel=0.12)
    assert res.stats["syncs"] == 0


@pytest.mark.statistical
def test_scaling_move_needs_its_jacobian():
    kw = dict(proposal=log_scale, proposal_args=(0.5,), n_samples=2500, burn=100)
    good = infer.involutive_mh(positive, (), {"y": 2.0}, involution=scale_move(True), key=mx.random.key(1), **kw)
    x = np.array(good.values("x"))
    assert abs(x.mean() - truncated_mean(lambda v: 1.0)) < 4 * mcse(x)
    # Without the Jacobian the chain is invariant for p(x | y) / x (improper at 0): it drifts low.
    bad = infer.involutive_mh(positive, (), {"y": 2.0}, involution=scale_move(False), key=mx.random.key(1), **kw)
    q = np.array(bad.values("x"))
    assert q.mean() < 0.75 * truncated_mean(lambda v: 1.0)  # the correct chain is within 4 MCSE (~0.1) of 2.06


@gm.gen
def pair():
    x = gm.trace("x", dist.normal(0.0, 1.0))
    y = gm.trace("y", dist.normal(2.0, 0.5))
    gm.trace("o", dist.normal(x + y, 1.0))


@gm.gen
def nothing(tr):
    return None


def swap(tr, _fwd, _ret, _args):
    new, w, _ = tr.gen_fn.update(tr, {"x": tr["y"], "y": tr["x"]})
    return new, {}, w


def test_swap_accept_probability_is_the_density_ratio():
    tr, _ = pair.generate((), {"x": 0.3, "y": 1.7, "o": 2.5})
    sw, _ = pair.generate((), {"x": 1.7, "y": 0.3, "o": 2.5})
    new, st = involutive_mh_step(mx.random.key(0), tr, nothing, (), swap)
    expect = min(1.0, math.exp(sw.score.item() - tr.score.item()))
    assert st["accept_prob"].item() == pytest.approx(expect, rel=1e-5)
    assert new["x"].item() in (pytest.approx(0.3), pytest.approx(1.7))


@pytest.mark.statistical
def test_swap_mixed_with_prior_mh_targets_posterior():
    # Exact posterior of (x, y) given o: Gaussian; the mean of x + y is known in closed form.
    k = infer.chain(involutive_mh_kernel(nothing, (), swap), mh_kernel(gm.select("x")), mh_kernel(gm.select("y")))
    tr, _ = pair.generate((), {"o": 2.5}, key=mx.random.key(3))
    res = infer.run_kernel(k, tr, 1500, burn=100, key=mx.random.key(4))
    s = np.array(res.values("x")) + np.array(res.values("y"))
    prior_var = 1.0 + 0.25
    post_mean = 2.0 + prior_var / (prior_var + 1.0) * (2.5 - 2.0)
    assert abs(s.mean() - post_mean) < 4 * mcse(s)


def test_log_abs_det_jacobian():
    x = mx.array([0.5, -1.0])
    f = lambda v: mx.stack([v[0] * mx.exp(v[1]), -v[1]])
    assert log_abs_det_jacobian(f, x).item() == pytest.approx(-1.0, abs=1e-5)  # log e^u with u = -1
    assert log_abs_det_jacobian(lambda t: 3.0 * t, mx.array(2.0)).item() == pytest.approx(math.log(3.0))


def test_bad_input():
    with pytest.raises(TypeError, match="proposal"):
        infer.involutive_mh(normal_normal, (), NN_OBS, proposal=lambda t: t, involution=reflect, n_samples=2)
    with pytest.raises(ValueError, match="n_samples"):
        infer.involutive_mh(normal_normal, (), NN_OBS, proposal=step_proposal, proposal_args=(1.0,),
                            involution=reflect, n_samples=-2)


class _Keep:
    def __init__(self, rec):
        self.rec = rec

    def on_run_start(self, e):
        self.rec.keep = e.store


def test_involutive_memory_flat_under_budget():
    rec = FlatRecorder(every=40, warmup=40)
    with gm.memory.budget(499_000), events.subscribed(_Keep(rec)):
        infer.involutive_mh(normal_normal, (), NN_OBS, proposal=step_proposal, proposal_args=(1.0,),
                            involution=reflect, n_samples=450, key=mx.random.key(0), callback=rec)
    rec.assert_flat()
