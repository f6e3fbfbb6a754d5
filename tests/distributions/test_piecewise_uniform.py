"""dist.piecewise_uniform: Gen.jl's semantics (bins (bounds[i], bounds[i+1]], density probs[i] / width)."""

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist

B, P = [0.0, 1.0, 3.0, 4.0], [0.2, 0.5, 0.3]


@pytest.mark.parametrize("arrays", [False, True], ids=["host", "mx.array"])
def test_log_density_against_exact_values(arrays):
    d = dist.piecewise_uniform(mx.array(B), mx.array(P)) if arrays else dist.piecewise_uniform(B, P)
    xs = [-1.0, 0.0, 1e-3, 0.5, 1.0, 1.5, 3.0, 3.5, 4.0, 5.0]
    # Gen: -inf at x <= bounds[0] or x >= bounds[end]; bin i holds bounds[i] < x <= bounds[i+1]
    exact = [-math.inf, -math.inf, math.log(0.2), math.log(0.2), math.log(0.2), math.log(0.25), math.log(0.25),
             math.log(0.3), -math.inf, -math.inf]
    np.testing.assert_allclose(np.array(d.log_prob(mx.array(xs))), exact, rtol=1e-6)


def test_zero_probability_bin_has_zero_density():
    d = dist.piecewise_uniform([0.0, 1.0, 2.0], [0.0, 1.0])
    assert d.log_prob(0.5).item() == -math.inf and d.log_prob(1.5).item() == 0.0


def test_samples_fall_in_the_bins_at_their_probabilities():
    d = dist.piecewise_uniform(B, P)
    x = np.array(d.sample(key=mx.random.key(0), shape=(40_000,)))
    frac = np.histogram(x, bins=B)[0] / x.size
    # binomial sd <= sqrt(0.25 / 40000) = 0.0025: allow 4 sd
    np.testing.assert_allclose(frac, P, atol=0.01)
    assert x.min() > B[0] and x.max() < B[-1]
    assert np.isfinite(np.array(d.log_prob(mx.array(x)))).all()


def test_in_a_model_and_vectorized():
    @gm.gen
    def model():
        return gm.trace("x", dist.piecewise_uniform(B, P))

    tr, w = model.generate((), {"x": 2.0})
    assert abs(w.item() - math.log(0.25)) < 1e-6
    vtr = model.vsimulate((), n=16, key=mx.random.key(1))
    assert vtr["x"].shape == (16,) and np.isfinite(np.array(vtr.get_score())).all()


@pytest.mark.parametrize("bounds, probs, param", [
    ([0.0, 1.0], [0.5], "probs"),  # does not sum to 1
    ([1.0, 0.0], [1.0], "bounds"),  # not increasing
    ([0.0, 0.0, 1.0], [0.5, 0.5], "bounds"),  # an empty bin
    ([0.0, math.inf], [1.0], "bounds"),
    ([0.0, 1.0, 2.0], [1.0], "probs"),  # one probability per bin
    ([0.0, 1.0], [-1.0], "probs"),
    ([0.0], [], "bounds"),
    ("ab", [1.0], "bounds"),
])
def test_bad_parameters_raise_naming_them(bounds, probs, param):
    with pytest.raises(ValueError, match=f"piecewise_uniform: parameter {param}"):
        dist.piecewise_uniform(bounds, probs)


def test_bad_array_parameters_are_checked_lazily():
    d = dist.piecewise_uniform(mx.array([1.0, 0.0]), mx.array([1.0]))
    with pytest.raises(ValueError, match="parameter bounds"):
        d.validate()
