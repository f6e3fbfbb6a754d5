"""Importance sampling and resampling: exact evidences, posteriors, bad input, flat memory."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, events
from genmlx import inference as infer
from genmlx.inference.importance import log_ml_estimate
from memory_flat import FlatRecorder

YS = [1.0, 2.0, 0.5]
BB_DATA = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
BB_LOG_EVIDENCE = -6.9778  # log B(9, 5) / B(2, 2)


@gm.gen
def normal_normal(n):
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    for i in range(n):
        gm.trace(f"y{i}", dist.normal(mu, 1.0))
    return mu


NN_OBS = {f"y{i}": y for i, y in enumerate(YS)}


def nn_log_evidence():
    y = np.array(YS)
    cov = np.eye(3) + 1.0  # y ~ N(0, I + 1 1^T)
    return float(-0.5 * y @ np.linalg.solve(cov, y) - 0.5 * np.linalg.slogdet(cov)[1] - 1.5 * math.log(2 * math.pi))


@gm.gen
def beta_bernoulli():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(10):
        gm.trace(f"y{i}", dist.bernoulli(p))
    return p


BB_OBS = {f"y{i}": v for i, v in enumerate(BB_DATA)}


@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    for i, x in enumerate(xs):
        gm.trace(f"y{i}", dist.normal(slope * x + intercept, 1.0))
    return slope


XS, LR_YS = [1.0, 2.0, 3.0], [3.1, 5.0, 6.9]


def linreg_log_evidence():
    x = np.stack([np.array(XS), np.ones(3)], axis=1)
    cov = 100.0 * x @ x.T + np.eye(3)
    y = np.array(LR_YS)
    return float(-0.5 * y @ np.linalg.solve(cov, y) - 0.5 * np.linalg.slogdet(cov)[1] - 1.5 * math.log(2 * math.pi))


def log_ml_se(log_weights):
    """Delta-method standard error of log(mean w): sd(w) / (sqrt(N) mean(w))."""
    lw = np.asarray(log_weights)
    w = np.exp(lw - lw.max())
    return float(w.std(ddof=1) / (math.sqrt(len(w)) * w.mean()))


def weighted_mean_and_se(values, log_weights):
    lw = np.asarray(log_weights)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    v = np.asarray(values, dtype=np.float64)
    m = float((w * v).sum())
    ess = 1.0 / float((w * w).sum())
    return m, math.sqrt(float((w * (v - m) ** 2).sum()) / ess)


def test_log_ml_estimate_is_logmeanexp():
    assert log_ml_estimate([0.0, 0.0]) == pytest.approx(0.0)
    assert log_ml_estimate([math.log(1.0), math.log(3.0)]) == pytest.approx(math.log(2.0))
    assert log_ml_estimate([float("-inf")] * 3) == float("-inf")


@pytest.mark.statistical
def test_sequential_is_normal_normal_evidence_and_posterior():
    res = infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=1500, key=mx.random.key(0))
    assert len(res.traces) == 1500 and len(res.log_weights) == 1500
    exact = nn_log_evidence()
    assert abs(res.log_ml - exact) < 4 * log_ml_se(res.log_weights) + 1e-3  # 4 standard errors
    m, se = weighted_mean_and_se(res.values("mu"), res.log_weights)
    assert abs(m - sum(YS) / 4) < 4 * se
    assert 1 <= res.stats["ess"] <= 1500 and res.stats["n_particles"] == 1500
    assert res.stats["syncs"] == 0 and res.stats["iterations"] == 1500


@pytest.mark.statistical
def test_vectorized_is_beta_bernoulli_exact_evidence():
    res = infer.importance_sampling(beta_bernoulli, (), BB_OBS, n_particles=3000, vectorized=True,
                                    key=mx.random.key(1))
    assert len(res.traces) == 3000
    assert abs(res.log_ml - BB_LOG_EVIDENCE) < 4 * log_ml_se(res.log_weights) + 1e-3
    m, se = weighted_mean_and_se(res.traces.batched["p"].tolist(), res.log_weights)
    assert abs(m - 9 / 14) < 4 * se
    assert 0 <= res.traces[5]["p"].item() <= 1  # a per-particle view


@pytest.mark.statistical
def test_vectorized_is_linreg_exact_evidence():
    obs = {f"y{i}": y for i, y in enumerate(LR_YS)}
    res = infer.importance_sampling(linreg, (XS,), obs, n_particles=200_000, vectorized=True, key=mx.random.key(2))
    # prior sd 10 against a likelihood of sd 1: few particles matter, the standard error says how few
    assert abs(res.log_ml - linreg_log_evidence()) < 4 * log_ml_se(res.log_weights) + 1e-3
    assert res.stats["ess"] > 50


@pytest.mark.statistical
def test_sequential_and_vectorized_agree_on_normal_normal():
    seq = infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=800, key=mx.random.key(3))
    vec = infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=20_000, vectorized=True,
                                    key=mx.random.key(3))
    assert abs(seq.log_ml - vec.log_ml) < 4 * math.hypot(log_ml_se(seq.log_weights), log_ml_se(vec.log_weights))


@pytest.mark.statistical
def test_importance_resampling_draws_follow_the_posterior():
    res = infer.importance_resampling(normal_normal, (3,), NN_OBS, n_particles=5000, n_samples=400, vectorized=True,
                                      key=mx.random.key(4))
    mu = np.array(res.values("mu"))
    assert len(mu) == 400 and len(res.stats["indices"]) == 400
    # draws with replacement from ~5000 weighted particles: close to iid posterior draws (sd 1/2)
    assert abs(mu.mean() - 0.875) < 4 * 0.5 / math.sqrt(400) + 0.02
    assert res.log_ml == pytest.approx(nn_log_evidence(), abs=0.05)


def test_same_key_same_weights():
    a = infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=50, key=mx.random.key(7))
    b = infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=50, key=mx.random.key(7))
    c = infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=50, key=mx.random.key(8))
    assert a.log_weights == b.log_weights and a.values("mu") == b.values("mu")
    assert a.log_weights != c.log_weights


@pytest.mark.parametrize("n", [0, -3])
def test_zero_or_negative_particles_is_a_value_error(n):
    with pytest.raises(ValueError, match="n_particles"):
        infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=n)


def test_observation_outside_support_is_a_clear_error_not_nan():
    obs = dict(BB_OBS, y2=3)
    with pytest.raises(ValueError, match=r"all 5 particles have log weight -inf.*'y2'"):
        infer.importance_sampling(beta_bernoulli, (), obs, n_particles=5, key=mx.random.key(0))


@gm.gen
def uniform_scale():
    theta = gm.trace("theta", dist.uniform(0.0, 2.0))
    gm.trace("y", dist.uniform(0.0, theta + 1e-6))


@pytest.mark.parametrize("vectorized,on_device", [(False, False), (True, False), (True, True)])
def test_some_impossible_particles_are_fine(vectorized, on_device, monkeypatch):
    # y = 1.5 is impossible when theta < 1.5: those particles weigh 0, the rest carry the estimate
    from genmlx.inference import importance

    monkeypatch.setattr(importance, "_sums_on_device", lambda: on_device)
    res = infer.importance_sampling(uniform_scale, (), {"y": 1.5}, n_particles=400, key=mx.random.key(0),
                                    vectorized=vectorized)
    lw = np.array(res.log_weights)
    assert np.isinf(lw).any() and np.isfinite(lw).any()
    exact = math.log(0.5 * math.log(2.0 / 1.5))  # int_{1.5}^2 (1/2)(1/theta) dtheta
    assert abs(res.log_ml - exact) < 4 * log_ml_se(lw)


class _Keep:
    def __init__(self, rec):
        self.rec = rec

    def on_run_start(self, e):
        self.rec.keep = e.store


def test_sequential_is_memory_flat_under_budget():
    rec = FlatRecorder(every=50, warmup=50)
    with gm.memory.budget(499_000), events.subscribed(_Keep(rec)):
        res = infer.importance_sampling(normal_normal, (3,), NN_OBS, n_particles=700, key=mx.random.key(0),
                                        callback=rec)
    rec.assert_flat()
    assert len(res.traces) == 700


# -- conjugate models that need gamma / poisson / dirichlet / categorical -------------------------

POISSON_DATA = [3, 1, 4, 2, 2]
CAT_DATA = [0, 2, 2, 1, 2, 0]
ALPHA = [1.0, 2.0, 3.0]


@gm.gen
def gamma_poisson():
    lam = gm.trace("lam", dist.gamma(2.0, 1.0))
    for i, _ in enumerate(POISSON_DATA):
        gm.trace(f"y{i}", dist.poisson(lam))
    return lam


def gamma_poisson_log_evidence(a=2.0, b=1.0):
    s, n = sum(POISSON_DATA), len(POISSON_DATA)
    return (a * math.log(b) - math.lgamma(a) + math.lgamma(a + s) - (a + s) * math.log(b + n)
            - sum(math.lgamma(y + 1) for y in POISSON_DATA))


@gm.gen
def dirichlet_categorical():
    theta = gm.trace("theta", dist.dirichlet(mx.array(ALPHA)))
    for i, _ in enumerate(CAT_DATA):
        gm.trace(f"y{i}", dist.categorical(mx.log(theta)))
    return theta


def dirichlet_log_evidence():
    counts = [CAT_DATA.count(k) for k in range(3)]
    log_b = lambda a: sum(math.lgamma(x) for x in a) - math.lgamma(sum(a))
    return log_b([a + c for a, c in zip(ALPHA, counts)]) - log_b(ALPHA)


@pytest.mark.statistical
def test_gamma_poisson_exact_evidence_and_posterior():
    obs = {f"y{i}": y for i, y in enumerate(POISSON_DATA)}
    res = infer.importance_sampling(gamma_poisson, (), obs, n_particles=20_000, vectorized=True, key=mx.random.key(5))
    assert abs(res.log_ml - gamma_poisson_log_evidence()) < 4 * log_ml_se(res.log_weights) + 1e-3
    m, se = weighted_mean_and_se(res.traces.batched["lam"].tolist(), res.log_weights)
    assert abs(m - 14 / 6) < 4 * se  # Gamma(2 + 12, 1 + 5)


@pytest.mark.statistical
def test_dirichlet_categorical_exact_evidence_and_posterior():
    obs = {f"y{i}": y for i, y in enumerate(CAT_DATA)}
    res = infer.importance_sampling(dirichlet_categorical, (), obs, n_particles=20_000, vectorized=True,
                                    key=mx.random.key(6))
    assert abs(res.log_ml - dirichlet_log_evidence()) < 4 * log_ml_se(res.log_weights) + 1e-3
    theta = np.array(res.traces.batched["theta"].tolist())
    post = np.array([3.0, 3.0, 6.0]) / 12.0  # Dirichlet(1 + 2, 2 + 1, 3 + 3)
    for k in range(3):
        m, se = weighted_mean_and_se(theta[:, k], res.log_weights)
        assert abs(m - post[k]) < 4 * se, k


def test_log_weights_behave_as_a_list_of_floats():
    from genmlx.inference.result import Floats

    lw = Floats(np.array([-1.5, 0.25, -np.inf, 2.0]))
    assert lw == [-1.5, 0.25, -math.inf, 2.0] and len(lw) == 4
    assert type(lw[1]) is float and lw[-1] == 2.0 and lw[1:3] == [0.25, -math.inf]
    assert list(lw) == lw.tolist() and max(lw) == 2.0
    assert np.asarray(lw).dtype == np.float64 and np.array_equal(np.asarray(lw, dtype=np.float32), [-1.5, 0.25, -np.inf, 2.0])
    assert "n=20" in repr(Floats(np.zeros(20))) and repr(Floats([1.0])) == "[1.0]"
    lazy = Floats(mx.array([0.5, -2.0]))  # an MLX array: copied to the host on first use
    assert len(lazy) == 2 and lazy._host is None and lazy == [0.5, -2.0] and lazy._host is not None
    with pytest.raises(ValueError):
        np.asarray(lw)[0] = 0.0  # read-only


@pytest.mark.parametrize("on_device", [False, True], ids=["host_sums", "device_sums"])
@pytest.mark.parametrize("layout", ["shared", "per_lane"])
def test_vectorized_log_ml_and_ess_from_the_device_match_float64(layout, on_device, monkeypatch):
    """log_ml and ESS come from logsumexps computed with the weights (float32): in NumPy on a CPU
    device, in the compiled pass on a GPU (forced here); float64 on the host agrees."""
    from genmlx.inference import importance
    from genmlx.inference.diagnostics import particle_ess

    monkeypatch.setattr(importance, "_sums_on_device", lambda: on_device)
    res = infer.importance_sampling(_bb_for_device_sums, (), {f"y{i}": y for i, y in enumerate([1, 0, 1, 1])},
                                    n_particles=20_000, vectorized=True, key=mx.random.key(3), layout=layout)
    assert res.log_weights._host is None  # all weights finite: nothing copied to the host yet
    assert res.log_ml == pytest.approx(log_ml_estimate(res.log_weights), abs=1e-5)
    assert res.stats["ess"] == pytest.approx(particle_ess(res.log_weights), rel=1e-4)


@gm.gen
def _bb_for_device_sums():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(4):
        gm.trace(f"y{i}", dist.bernoulli(p))


def test_vectorized_batched_trace_is_made_on_first_use():
    from genmlx.deferred import Deferred
    from genmlx.trace import Trace

    res = infer.importance_sampling(_bb_for_device_sums, (), {f"y{i}": y for i, y in enumerate([1, 0, 1, 1])},
                                    n_particles=300, vectorized=True, key=mx.random.key(3))
    assert type(object.__getattribute__(res, "state")) is Deferred  # nothing made yet
    state = res.state
    assert type(state) is Trace and state.batch == 300 and res.traces.batched is state and res.state is state
    assert res.traces[7]["p"].item() == state["p"][7].item()


_SWITCH_YS = [1.5, 2.2, -0.3, 2.8, 1.1] * 8  # 40 scalar observations: the flattened-weights path


@gm.gen
def _switch(n):
    z = gm.trace("z", dist.bernoulli(0.3))
    for i in range(n):
        gm.trace(("y", i), dist.normal(mx.where(z == 1, 2.0, -2.0), 1.0))


def test_vectorized_is_of_a_model_comparing_a_random_value_with_eq():
    """`z == 1` is part of the flattened weights (before, Python's default `==` made it a plain
    False: log_ml read -308 against the exact -66). 20,000 particles of a two-point prior: the
    estimate's standard error is well under 0.05."""
    from scipy import stats as sps

    exact = math.log(0.3 * np.prod(sps.norm.pdf(_SWITCH_YS, 2.0, 1.0)) + 0.7 * np.prod(sps.norm.pdf(_SWITCH_YS, -2.0, 1.0)))
    obs = {("y", i): y for i, y in enumerate(_SWITCH_YS)}
    res = infer.importance_sampling(_switch, (len(_SWITCH_YS),), obs, n_particles=20_000, vectorized=True,
                                    key=mx.random.key(0))
    assert abs(res.log_ml - exact) < 0.1, (res.log_ml, exact)
