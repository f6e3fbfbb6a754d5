"""infer.enumerative against the exact posterior and log marginal likelihood of discrete models."""

import itertools
import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer

PB, PC = [0.7, 0.3], [0.2, 0.5, 0.3]


@gm.gen
def two_latents():
    a = gm.trace("a", dist.bernoulli(0.3))
    b = gm.trace("b", dist.categorical(mx.log(mx.array(PC))))
    mu = mx.where(a, 1.0, -1.0) + b.astype(mx.float32)
    gm.trace("y", dist.normal(mu, 1.0))


def _exact(y):
    joint = [math.log(PB[a]) + math.log(PC[b]) + stats.norm.logpdf(y, (1 if a else -1) + b, 1.0)
             for a, b in itertools.product([0, 1], [0, 1, 2])]
    lml = logsumexp(joint)
    return lml, [j - lml for j in joint]


def test_exact_posterior_and_log_marginal_likelihood_of_a_discrete_model():
    r = infer.enumerative(two_latents, (), {"y": 1.2}, grid={"a": [False, True], "b": [0, 1, 2]})
    lml, post = _exact(1.2)
    assert abs(r.log_ml - lml) < 1e-5
    np.testing.assert_allclose(list(r.log_weights), post, atol=1e-5)
    assert len(r.traces) == 6 and r.stats["n_points"] == 6
    assert [bool(t["a"].item()) for t in r.traces] == [False] * 3 + [True] * 3


def test_choice_vol_grid_over_a_continuous_choice_approaches_the_exact_evidence():
    @gm.gen
    def nn():
        x = gm.trace("x", dist.normal(0.0, 1.0))
        gm.trace("y", dist.normal(x, 1.0))

    grid = infer.choice_vol_grid(("x", np.linspace(-8, 8, 321), "continuous"))
    r = infer.enumerative(nn, (), {"y": 0.5}, grid=grid)
    # midpoint rule, cell width 0.05: error ~ width^2 / 24 * |f''| relative, far below 1e-3
    assert abs(r.log_ml - stats.norm.logpdf(0.5, 0.0, math.sqrt(2.0))) < 1e-3
    xs = np.array([t["x"].item() for t in r.traces])
    mean = float(np.sum(np.exp(np.array(list(r.log_weights))) * xs))
    assert abs(mean - 0.25) < 1e-3  # exact posterior mean y / 2


def test_grid_volumes_are_summed_over_addresses():
    g = infer.choice_vol_grid(("a", [0.0, 1.0, 3.0], "continuous"), ("b", [1, 2]), anchor="left")
    assert [(c["a"].item(), c["b"].item(), round(v, 6)) for c, v in g] == [
        (0.0, 1, 0.0), (0.0, 2, 0.0), (1.0, 1, round(math.log(2.0), 6)), (1.0, 2, round(math.log(2.0), 6))]


@pytest.mark.parametrize("kw, err, match", [
    ({"grid": {"y": [1.0]}}, ValueError, "grid includes the observed address 'y'"),
    ({"grid": {}}, ValueError, "grid is empty"),
    ({"grid": []}, ValueError, "grid is empty"),
    ({"grid": {"zz": [1]}}, gm.AddressError, "'zz'"),
    ({"grid": "a"}, TypeError, "grid must be"),
    ({"grid": [({"a": True}, math.nan)]}, ValueError, "log_volume"),
])
def test_bad_input_raises_naming_it(kw, err, match):
    with pytest.raises(err, match=match):
        infer.enumerative(two_latents, (), {"y": 1.2}, **kw)


def test_all_grid_points_of_zero_density_raise():
    with pytest.raises(ValueError, match="-inf"):
        infer.enumerative(two_latents, (), {"y": 1.2}, grid={"a": [False], "b": [7]})
