"""The soak's small models: a regression (continuous latents), a one-step walk (SMC on a model of
fixed size, so particle traces do not grow with time), discrete bits (Gibbs) and a hierarchical
model with an amortized guide (wake-sleep)."""

from __future__ import annotations

import math

import mlx.core as mx

import genmlx as gm
from genmlx import dist


@gm.gen
def regression(xs):
    slope = gm.trace("slope", dist.normal(0.0, 2.0))
    noise = gm.trace("noise", dist.gamma(2.0, 2.0))
    for i, x in enumerate(xs):
        gm.trace(("y", i), dist.normal(slope * x, noise))
    return slope


XS = [0.5, 1.0, 1.5, 2.0]
OBS = {("y", i): v for i, v in enumerate([0.9, 2.1, 2.8, 4.2])}
LATENTS = ["slope", "noise"]


@gm.gen
def walk(T):
    x = 0.0
    for t in range(T):
        x = gm.trace(("x", t), dist.normal(x, 1.0))
        gm.trace(("y", t), dist.normal(x, 0.5))
    return x


def walk_observation(t: int) -> dict:
    return {("y", 0): 0.8 * math.sin(t / 10.0)}


@gm.gen
def walk_forward(prev, obs, t):
    """SMCP3 forward proposal: x_0 from its posterior given this step's y (overwriting the old x_0)."""
    gm.trace(("x", 0), dist.normal(0.8 * obs[("y", 0)], 0.45))


@gm.gen
def walk_backward(new, obs, t):
    """SMCP3 L-kernel over the overwritten values: the old x_0 under its prior, and the old y_0 (the model
    has a fixed size, so each step's observation replaces the last) around the new x_0."""
    gm.trace(("x", 0), dist.normal(0.0, 1.0))
    gm.trace(("y", 0), dist.normal(new[("x", 0)], 1.0))


@gm.gen
def bits():
    a = gm.trace("a", dist.bernoulli(0.3))
    b = gm.trace("b", dist.bernoulli(mx.where(a == 1, 0.8, 0.2)))
    gm.trace("c", dist.bernoulli(mx.where(a == b, 0.9, 0.4)))


@gm.gen
def slope_walk(tr, scale):
    """A random-walk proposal on the regression's slope (mh_custom)."""
    gm.trace("slope", dist.normal(tr["slope"], scale))


@gm.gen
def slope_step(tr, scale):
    """The auxiliary step of a reflected random walk (involutive MH)."""
    gm.trace("d", dist.normal(0.0, scale))


def reflect(tr, fwd, _ret, _args):
    """(slope, d) -> (slope + d, -d): an involution with Jacobian 1."""
    d = fwd["d"]
    new, w, _ = tr.gen_fn.update(tr, {"slope": tr["slope"] + d})
    return new, {"d": -d}, w


@gm.gen
def regression_guide(params):
    """A reparameterized guide (a gamma guide for the noise takes the score-function path with a
    rejection sampler: 2.5 ms per iteration against 0.76 here, on this box)."""
    gm.trace("slope", dist.normal(params["m"], mx.exp(params["log_s"])))
    gm.trace("noise", dist.lognormal(params["m_noise"], mx.exp(params["log_s_noise"])))


GUIDE_INIT = {"m": 0.0, "log_s": 0.0, "m_noise": 0.0, "log_s_noise": 0.0}

N_WS = 5
WS_DATA = {f"x{i}": v for i, v in enumerate([2.3, 1.7, 2.5, 1.9, 2.1])}


@gm.gen
def hier(mp):
    z = gm.trace("z", dist.normal(mp["mu"], 1.0))
    for i in range(N_WS):
        gm.trace(f"x{i}", dist.normal(z, 1.0))


@gm.gen
def amortized_guide(gp, y):
    gm.trace("z", dist.normal(mx.sum(gp["w"] * y) + gp["b"], mx.exp(gp["log_s"])))


def gaussian_log_lik(params, key):
    """train's objective: the log likelihood of 8 points under N(mu, sigma)."""
    data = mx.array([1.2, 0.7, 2.1, 1.5, 0.9, 1.8, 1.1, 1.4])
    s = mx.exp(params["log_sigma"])
    return mx.sum(-0.5 * mx.square((data - params["mu"]) / s) - params["log_sigma"])
