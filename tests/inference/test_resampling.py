"""Resampling schemes: unbiased counts, variance ordering, support, ESS, bad input."""

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx import inference as infer
from genmlx.inference import resampling as rs

SCHEMES = sorted(rs.SCHEMES)
W = np.array([0.07, 0.0, 0.31, 0.13, 0.01, 0.48])  # one zero weight, one tiny; n*W never near an integer
M = 4000  # independent resamplings per scheme


def _counts(scheme: str, w=W, n=None, m=M, seed=0) -> np.ndarray:
    lw = mx.log(mx.array(w, dtype=mx.float32))
    f = rs.SCHEMES[scheme]
    keys = mx.random.split(mx.random.key(seed), m)
    a = np.array(mx.vmap(lambda k: f(k, lw, n))(keys))  # m independent resamplings in one pass
    return (a[:, :, None] == np.arange(len(w))).sum(1)


@pytest.mark.statistical
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n", [6, 20])
def test_counts_are_unbiased(scheme, n):
    c = _counts(scheme, n=n)
    expected = n * W
    # Monte Carlo error bound: the multinomial count variance n w (1 - w) bounds every
    # scheme's; allow 4.5 standard errors of the mean over M resamplings (+1e-9 for w = 0).
    se = np.sqrt(n * W * (1 - W) / M)
    assert np.all(np.abs(c.mean(0) - expected) <= 4.5 * se + 1e-9), (scheme, c.mean(0), expected, se)
    assert np.all(c.sum(1) == n)


@pytest.mark.statistical
@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual"])
def test_low_variance_schemes_beat_multinomial(scheme):
    v = _counts(scheme, n=20).var(0).sum()
    vm = _counts("multinomial", n=20, seed=1).var(0).sum()
    # Multinomial total variance is n(1 - sum w^2) ~ 12.6 here; the others are below 1.
    assert vm > 10.0
    assert v < 0.25 * vm, (scheme, v, vm)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_counts_respect_scheme_bounds_and_zero_weight_is_never_drawn(scheme):
    c = _counts(scheme, n=20, m=500)
    assert np.all(c[:, 1] == 0)  # weight zero
    if scheme in ("systematic", "residual"):
        lo = np.floor(20 * W)
        assert np.all(c >= lo)
    if scheme == "systematic":
        assert np.all(c <= np.ceil(20 * W))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ancestors_are_int32_in_range_and_deterministic_in_key(scheme):
    lw = mx.array([-1.0, 0.5, -float("inf"), 2.0])
    f = rs.get_scheme(scheme)
    a = f(mx.random.key(3), lw, 9)
    b = f(mx.random.key(3), lw, 9)
    assert a.dtype == mx.int32 and a.shape == (9,)
    assert mx.array_equal(a, b).item()
    vals = set(np.array(a).tolist())
    assert vals <= {0, 1, 3} and 2 not in vals


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unnormalized_and_extreme_log_weights(scheme):
    # Log weights far from 0 (as after many observations) give the same law as normalized ones.
    lw = mx.log(mx.array(W, dtype=mx.float32)) - 5000.0
    a = np.array(rs.SCHEMES[scheme](mx.random.key(0), lw))
    assert a.shape == (len(W),) and 1 not in a.tolist() and a.min() >= 0 and a.max() < len(W)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_hot_weight_selects_only_that_particle(scheme):
    lw = mx.array([-float("inf"), -float("inf"), 0.0, -float("inf")])
    a = rs.SCHEMES[scheme](mx.random.key(1), lw, 50)
    assert np.all(np.array(a) == 2)


def test_ess_bounds_and_formula():
    n = 7
    assert abs(rs.ess(mx.zeros((n,))).item() - n) < 1e-4
    assert abs(rs.ess(mx.array([0.0] + [-float("inf")] * 6)).item() - 1.0) < 1e-6
    lw = np.log(W[W > 0])
    w = W[W > 0] / W.sum()
    assert abs(rs.ess(mx.array(lw)).item() - 1.0 / np.sum(w**2)) < 1e-4
    assert abs(rs.log_ess(mx.array(lw + 300.0)).item() - math.log(1.0 / np.sum(w**2))) < 1e-4


def test_unknown_scheme_names_the_parameter():
    with pytest.raises(ValueError, match="resample"):
        rs.get_scheme("bogus")
    with pytest.raises(ValueError, match="resample"):
        rs.get_scheme(3)
    f = lambda k, lw, n: mx.zeros((n,), dtype=mx.int32)  # noqa: E731
    assert rs.get_scheme(f) is f


def test_bad_shapes_and_sizes():
    with pytest.raises(ValueError, match="log_weights"):
        rs.systematic(mx.random.key(0), mx.zeros((2, 2)))
    with pytest.raises(ValueError, match="n must be"):
        rs.multinomial(mx.random.key(0), mx.zeros((3,)), 0)


def test_public_names_resolve_through_the_inference_package():
    for name in ("systematic", "stratified", "residual", "multinomial"):
        assert getattr(infer, name) is rs.SCHEMES[name]
