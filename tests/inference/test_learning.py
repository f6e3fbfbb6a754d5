"""Optimizers, `train` (maximum likelihood), wake-sleep: correctness, bad input, flat memory."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer
from genmlx.inference.learning import AdamState, SGDState
from memory_flat import FlatRecorder

DATA = [1.0, 2.5, 3.0, 0.5, 2.0, 1.7]


@gm.gen
def gaussian(params, n):
    for i in range(n):
        gm.trace(f"y{i}", dist.normal(params["mu"], mx.exp(params["log_sigma"])))


OBS = {f"y{i}": y for i, y in enumerate(DATA)}


def log_lik(params, key):
    return gaussian.assess((params, len(DATA)), OBS)[0]


# -- optimizers -------------------------------------------------------------------------------------

def test_adam_and_sgd_on_a_quadratic():
    # minimize (x - 3)^2 + (y + 1)^2 from 0
    target = {"x": mx.array(3.0), "y": mx.array(-1.0)}
    for opt, its in [(infer.adam(0.1), 300), (infer.sgd(0.1), 100), (infer.sgd(0.05, momentum=0.9), 200)]:
        p = {"x": mx.array(0.0), "y": mx.array(0.0)}
        st = opt.init(p)
        grad = mx.grad(lambda q: sum(mx.square(q[k] - target[k]) for k in q))
        for _ in range(its):
            p, st = opt.update(grad(p), st, p)
            mx.eval(p, st)
        assert p["x"].item() == pytest.approx(3.0, abs=1e-3) and p["y"].item() == pytest.approx(-1.0, abs=1e-3), opt.name


def test_adam_first_step_is_the_learning_rate_times_the_gradient_sign():
    opt = infer.adam(0.01)
    p = {"w": mx.array([1.0, -2.0])}
    p2, st = opt.update({"w": mx.array([4.0, -0.5])}, opt.init(p), p)
    np.testing.assert_allclose(np.asarray(p2["w"]), [0.99, -1.99], atol=1e-6)  # bias-corrected: lr * sign
    assert isinstance(st, AdamState) and st.step.item() == 1.0
    assert isinstance(infer.sgd(0.1).init(p), SGDState)


@pytest.mark.parametrize("make, match", [
    (lambda: infer.adam(0.0), "learning_rate"),
    (lambda: infer.adam(-1e-3), "learning_rate"),
    (lambda: infer.adam(float("nan")), "learning_rate"),
    (lambda: infer.sgd(0.0), "learning_rate"),
    (lambda: infer.sgd(0.1, momentum=1.0), "momentum"),
    (lambda: infer.adam(0.1, b1=1.0), "b1"),
])
def test_optimizer_bad_input_names_the_parameter(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- train --------------------------------------------------------------------------------------------

def test_train_recovers_the_maximum_likelihood_estimate():
    # The MLE of a Gaussian's mean and sd: the sample mean and the (biased) sample sd.
    res = infer.train(log_lik, {"mu": 0.0, "log_sigma": 0.0}, iterations=400, optimizer=infer.adam(0.05),
                      key=mx.random.key(0))
    assert res.params["mu"].item() == pytest.approx(np.mean(DATA), abs=1e-3)
    assert math.exp(res.params["log_sigma"].item()) == pytest.approx(np.std(DATA), abs=1e-3)
    obj = res.stats["objective"]
    assert len(obj) == 400 and obj[-1] > obj[0] and res.stats["syncs"] == 0
    # the maximum of the log likelihood: -n/2 (log 2 pi sigma^2 + 1)
    top = -len(DATA) / 2 * (math.log(2 * math.pi * np.var(DATA)) + 1)
    assert obj[-1] == pytest.approx(top, abs=1e-3)


def test_train_minimizes_a_loss_with_sgd_momentum_eagerly():
    res = infer.train(lambda p, k: mx.sum(mx.square(p["w"] - mx.array([1.0, 2.0]))), {"w": [0.0, 0.0]},
                      iterations=150, optimizer=infer.sgd(0.05, momentum=0.9), maximize=False, compile=False)
    np.testing.assert_allclose(np.asarray(res.params["w"]), [1.0, 2.0], atol=1e-3)
    assert res.stats["objective"][-1] < 1e-5  # the loss itself, not its negation


def test_train_stochastic_objective_uses_the_key():
    # maximize E_eps[-(w - 2 - eps)^2], eps ~ N(0, 0.1): the optimum is w = 2
    def obj(p, key):
        eps = 0.1 * mx.random.normal((16,), key=key)
        return -mx.mean(mx.square(p["w"] - 2.0 - eps))

    a = infer.train(obj, {"w": 0.0}, iterations=300, optimizer=infer.adam(0.05), key=mx.random.key(1))
    b = infer.train(obj, {"w": 0.0}, iterations=300, optimizer=infer.adam(0.05), key=mx.random.key(1))
    assert a.params["w"].item() == pytest.approx(2.0, abs=0.05)
    assert a.stats["objective"] == b.stats["objective"]  # same key, same run


@pytest.mark.parametrize("kw, err, match", [
    ({"iterations": -1}, ValueError, "iterations"),
    ({"params": {}}, ValueError, "params"),
    ({"params": {"mu": "a"}}, ValueError, "params"),
    ({"optimizer": "adam"}, TypeError, "optimizer"),
])
def test_train_bad_input_names_the_parameter(kw, err, match):
    args = {"params": {"mu": 0.0, "log_sigma": 0.0}, "iterations": 3, **kw}
    p = args.pop("params")
    with pytest.raises(err, match=match):
        infer.train(log_lik, p, **args)


# -- wake-sleep ------------------------------------------------------------------------------------

N = 5
WS_DATA = {f"x{i}": v for i, v in enumerate([2.3, 1.7, 2.5, 1.9, 2.1])}


@gm.gen
def hier(mp):
    z = gm.trace("z", dist.normal(mp["mu"], 1.0))
    for i in range(N):
        gm.trace(f"x{i}", dist.normal(z, 1.0))


@gm.gen
def amortized_guide(gp, y):
    gm.trace("z", dist.normal(mx.sum(gp["w"] * y) + gp["b"], mx.exp(gp["log_s"])))


def ws_log_ml(mu: float) -> float:
    """log p(x; mu): x ~ N(mu 1, I + 1 1^T)."""
    cov = np.eye(N) + np.ones((N, N))
    x = np.array(list(WS_DATA.values())) - mu
    return float(-0.5 * x @ np.linalg.solve(cov, x) - 0.5 * np.linalg.slogdet(cov)[1] - N / 2 * math.log(2 * math.pi))


def run_ws(iterations, key=0, callback=None):
    return infer.wake_sleep(hier, amortized_guide, (), WS_DATA, {"mu": 0.0},
                            {"w": mx.zeros((N,)), "b": 0.0, "log_s": 0.0}, iterations=iterations,
                            model_optimizer=infer.adam(0.05), guide_optimizer=infer.adam(0.05), n_samples=8,
                            key=mx.random.key(key), callback=callback)


@pytest.mark.statistical
def test_wake_sleep_learns_the_model_and_improves_the_elbo():
    res = run_ws(1000)
    e = res.stats["elbo"]
    assert len(e) == 1000 and len(res.stats["sleep_log_q"]) == 1000
    # The ELBO rose from about -6.7 to within 0.2 of the best log marginal likelihood (at mu = mean(x)).
    assert np.mean(e[-100:]) > np.mean(e[:100]) + 0.5
    assert np.mean(e[-100:]) == pytest.approx(ws_log_ml(np.mean(list(WS_DATA.values()))), abs=0.2)
    # The wake phase's fixed point is mu = mean(x) = 2.1 (the MLE); Adam's jitter: seed 0 gave 2.17.
    assert res.model_params["mu"].item() == pytest.approx(2.1, abs=0.15)
    # The amortized guide approaches the exact posterior given mu: z | x ~ N((mu + sum x) / 6, 1/6).
    assert math.exp(res.guide_params["log_s"].item()) == pytest.approx(math.sqrt(1 / 6), rel=0.15)
    assert float(mx.sum(res.guide_params["w"]).item()) == pytest.approx(5 / 6, abs=0.25)


def test_wake_sleep_bad_input():
    with pytest.raises(ValueError, match="iterations"):
        infer.wake_sleep(hier, amortized_guide, (), WS_DATA, {"mu": 0.0}, {"b": 0.0}, iterations=-1)
    with pytest.raises(ValueError, match="observed"):
        infer.wake_sleep(hier, amortized_guide, (), WS_DATA, {"mu": 0.0}, {"b": 0.0}, iterations=1,
                         observed=["nope"])
    with pytest.raises(ValueError, match="n_samples"):
        infer.wake_sleep(hier, amortized_guide, (), WS_DATA, {"mu": 0.0}, {"b": 0.0}, iterations=1, n_samples=0)


# -- memory ---------------------------------------------------------------------------------------

@pytest.mark.stress
@pytest.mark.no_leak_gate  # measured here, with the Metal budget on
def test_train_memory_flat_under_the_metal_budget(full_stress):
    n = 10_000 if full_stress else 1000
    rec = FlatRecorder(every=n // 8, warmup=50)  # 8 exact censuses (each a gc.collect)
    with gm.memory.budget(499_000):
        res = infer.train(log_lik, {"mu": 0.0, "log_sigma": 0.0}, iterations=n, key=mx.random.key(0), callback=rec)
    rec.assert_flat()
    assert res.stats["iterations"] == n


@pytest.mark.stress
@pytest.mark.no_leak_gate
def test_wake_sleep_memory_flat_under_the_metal_budget(full_stress):
    n = 10_000 if full_stress else 1000
    rec = FlatRecorder(every=n // 8, warmup=50)  # 8 exact censuses (each a gc.collect)
    with gm.memory.budget(499_000):
        res = run_ws(n, key=1, callback=rec)
    rec.assert_flat()
    assert res.stats["iterations"] == n
