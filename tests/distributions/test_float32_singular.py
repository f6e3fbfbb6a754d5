"""Matrices that are singular in float32 (issue 22): never MLX's unnamed `RuntimeError` from its
triangular inverse (`[Inverse::eval_cpu] triangular inversion failed`), always a -inf log density (a
value outside the support), a NaN that a deferred check names, or a ValueError naming the parameter."""

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist

SINGULAR = [[0.0, 0.0], [0.0, 1.0]]  # its Cholesky factor has an exact 0 on the diagonal


def _eval(*xs):
    mx.eval(*xs)
    return [np.array(x) for x in xs]


def test_the_ci_seed_case_inv_wishart_with_a_float32_singular_draw_is_a_result():
    # found by the CI fuzz seed at 300 inputs per entry point: the draws' (0, 0) entry is 1e-30 / chi2(1e30),
    # which underflows float32, and scoring that singular draw raised MLX's RuntimeError
    d = dist.inv_wishart(1e30, [[1e-30, 0.0], [0.0, 1e30]])
    x, lp = _eval(*(lambda x: (x, d.log_prob(x)))(d.sample(key=mx.random.key(0), shape=(3,))))
    assert np.isfinite(x).all()
    assert (lp == -np.inf).all()  # singular in float32: outside the positive-definite support

    @gm.gen
    def model():
        return gm.trace("w", d)

    tr = gm.memory.materialize(model.simulate((), key=mx.random.key(1)))
    _, w = model.generate((), {"w": tr["w"]}, key=mx.random.key(2))
    assert not math.isnan(float(gm.memory.materialize(w)))


@pytest.mark.parametrize("make", [lambda: dist.inv_wishart(3.0, np.eye(2)),
                                  lambda: dist.inv_wishart(mx.array(3.0), mx.eye(2)),
                                  lambda: dist.wishart(3.0, np.eye(2)),
                                  lambda: dist.wishart(mx.array(3.0), mx.eye(2))],
                         ids=["inv_wishart-host", "inv_wishart-array", "wishart-host", "wishart-array"])
def test_a_value_singular_in_float32_has_log_density_minus_inf(make):
    lp, = _eval(make().log_prob(mx.array(SINGULAR)))
    assert lp == -np.inf


@pytest.mark.parametrize("make, name, param", [
    (lambda: dist.mvn(mx.zeros((2,)), mx.array(SINGULAR)), "mvn", "cov"),
    (lambda: dist.wishart(mx.array(3.0), mx.array(SINGULAR)), "wishart", "scale"),
    (lambda: dist.inv_wishart(mx.array(3.0), mx.array(SINGULAR)), "inv_wishart", "scale"),
], ids=["mvn", "wishart", "inv_wishart"])
def test_an_array_matrix_with_a_zero_in_its_factor_is_named_not_an_mlx_error(make, name, param):
    d = make()
    value = mx.zeros((2,)) if name == "mvn" else mx.eye(2)
    with gm.defer_checks():  # the raw density: it evaluates (no RuntimeError from the triangular inverse)
        lp, = _eval(d.log_prob(value))
    assert not np.isfinite(lp) or lp == -np.inf
    with pytest.raises(ValueError, match=f"{name}: parameter {param}"):
        d.validate()
    with pytest.raises(ValueError, match=f"{name}: parameter {param}"):
        d.log_prob(value)  # a user's log_prob checks the array parameters first

    @gm.gen
    def model():
        return gm.trace("m", make())

    with pytest.raises(ValueError) as e:
        model.generate((), {"m": value}, key=mx.random.key(0))  # a user's generate checks before returning
    assert f"parameter {param}" in str(e.value) and "'m'" in str(e.value)
    with gm.defer_checks():
        tr, w = model.generate((), {"m": value}, key=mx.random.key(0))
    with pytest.raises(ValueError) as e:
        gm.memory.materialize((tr, w))  # no MLX RuntimeError first: the check is reached and names it
    assert f"parameter {param}" in str(e.value) and "'m'" in str(e.value)


@pytest.mark.parametrize("make, name, param", [
    (lambda m: dist.mvn([0.0, 0.0], m), "mvn", "cov"),
    (lambda m: dist.wishart(3.0, m), "wishart", "scale"),
    (lambda m: dist.inv_wishart(3.0, m), "inv_wishart", "scale"),
], ids=["mvn", "wishart", "inv_wishart"])
@pytest.mark.parametrize("entry", [1e-90, 1e80])
def test_a_host_matrix_whose_factor_leaves_float32_is_refused_naming_it(make, name, param, entry):
    # positive definite in float64, but its factor (1e-45 or 1e40) or the factor's inverse is 0 or inf
    # in float32: every draw and density made from it would be NaN
    with pytest.raises(ValueError, match=f"{name}: parameter {param} must have a Cholesky factor representable"):
        make([[entry, 0.0], [0.0, 1.0]])


def test_a_host_matrix_singular_only_after_rounding_to_float32_stays_exact():
    # 1 - 1e-9 rounds to 1 in float32, but the factor is made in float64: sound densities, no refusal
    c = [[1.0, 1.0 - 1e-9], [1.0 - 1e-9, 1.0]]
    d = dist.mvn([0.0, 0.0], c)
    x, lp = _eval(*(lambda x: (x, d.log_prob(x)))(d.sample(key=mx.random.key(3), shape=(4,))))
    assert np.isfinite(x).all() and np.isfinite(lp).all()


def test_inv_wishart_with_df_at_the_edge_of_its_range_never_raises_from_mlx():
    # df - 1 = 1e-7: the Bartlett factor's last chi2 draw underflows to 0 and is inverted
    x, = _eval(dist.inv_wishart(1.0 + 1e-7, np.eye(2)).sample(key=mx.random.key(4), shape=(50,)))
    assert x.shape == (50, 2, 2)


def test_gradients_through_a_solve_are_unchanged_by_the_guard():
    cov = mx.array([[2.0, 0.3], [0.3, 1.0]])

    def f(c):
        return dist.mvn(mx.zeros((2,)), c).log_prob(mx.array([0.5, -0.2]))

    g = np.array(mx.grad(f)(cov))
    c = np.array(cov, dtype=np.float64)
    x = np.array([0.5, -0.2])
    inv = np.linalg.inv(c)
    expected = 0.5 * (inv @ np.outer(x, x) @ inv - inv)  # d log N(x; 0, C) / dC (symmetric form)
    assert np.allclose(0.5 * (g + g.T), expected, atol=1e-4)
