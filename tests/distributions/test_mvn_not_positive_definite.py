"""Issue 22: dist.mvn with a covariance that is not positive definite never gives a silent NaN."""

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer

BAD = [[1.0, 2.0], [2.0, 1.0]]


@gm.gen
def host_cov():
    return gm.trace("x", dist.mvn([0.0, 0.0], BAD))


@gm.gen
def array_cov():
    return gm.trace("x", dist.mvn(mx.zeros((2,)), mx.array(BAD)))


@pytest.mark.parametrize("call", [
    lambda: dist.mvn([0.0, 0.0], BAD),
    lambda: host_cov.simulate(()),
    lambda: host_cov.generate((), {"x": mx.zeros((2,))}),
    lambda: host_cov.assess((), {"x": mx.zeros((2,))}),
    lambda: host_cov.vsimulate((), n=3),
    lambda: dist.mvn(mx.zeros((2,)), mx.array(BAD)).validate(),
    lambda: gm.memory.materialize(array_cov.simulate(())),
    lambda: infer.importance_sampling(array_cov, (), {}, n_particles=4),
    lambda: infer.importance_sampling(array_cov, (), {}, n_particles=4, vectorized=True),
    lambda: infer.mh(array_cov, (), {}, selection=gm.select("x"), n_samples=2),
], ids=["ctor", "simulate", "generate", "assess", "vsimulate", "validate", "materialize", "is", "is-vectorized", "mh"])
def test_a_clear_error_naming_cov(call):
    with pytest.raises(ValueError, match="mvn: parameter cov must be positive definite"):
        call()


def test_array_cov_draws_are_nan_not_finite_garbage():
    with gm.defer_checks():  # the raw draws (a user's sample checks cov first and raises)
        x = dist.mvn(mx.zeros((2,)), mx.array(BAD)).sample(key=mx.random.key(0), shape=(5,))
    assert np.isnan(np.array(x)).all()
    ok = dist.mvn(mx.zeros((2,)), mx.array([[1.0, 0.5], [0.5, 1.0]])).sample(key=mx.random.key(0), shape=(5,))
    assert np.isfinite(np.array(ok)).all()


def test_half_precision_covariance_is_factored_in_float32():
    d = dist.mvn(mx.zeros((2,)), mx.array([[1.0, 0.5], [0.5, 1.0]], dtype=mx.float16))
    assert np.isfinite(np.array(d.log_prob(mx.zeros((2,))))).all()
