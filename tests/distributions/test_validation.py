"""Invalid parameters raise a ValueError naming the distribution and the parameter (and, inside a
model, the trace address); array parameters are checked lazily, at the driver's materialization."""

import math

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist

BAD = [
    (lambda: dist.normal(0.0, 0.0), "normal", "sigma"),
    (lambda: dist.normal(0.0, -1.0), "normal", "sigma"),
    (lambda: dist.normal(math.nan, 1.0), "normal", "mu"),
    (lambda: dist.normal(math.inf, 1.0), "normal", "mu"),
    (lambda: dist.uniform(1.0, 1.0), "uniform", "high"),
    (lambda: dist.bernoulli(1.5), "bernoulli", "p"),
    (lambda: dist.bernoulli(-0.1), "bernoulli", "p"),
    (lambda: dist.beta(0.0, 1.0), "beta", "a"),
    (lambda: dist.beta(1.0, -2.0), "beta", "b"),
    (lambda: dist.gamma(-1.0, 1.0), "gamma", "shape"),
    (lambda: dist.gamma(1.0, 0.0), "gamma", "rate"),
    (lambda: dist.exponential(0.0), "exponential", "rate"),
    (lambda: dist.laplace(0.0, -1.0), "laplace", "scale"),
    (lambda: dist.cauchy(0.0, 0.0), "cauchy", "scale"),
    (lambda: dist.poisson(-1.0), "poisson", "rate"),
    (lambda: dist.binomial(-1, 0.5), "binomial", "n"),
    (lambda: dist.binomial(2.5, 0.5), "binomial", "n"),
    (lambda: dist.binomial(10, 1.5), "binomial", "p"),
    (lambda: dist.geometric(0.0), "geometric", "p"),
    (lambda: dist.lognormal(0.0, -1.0), "lognormal", "sigma"),
    (lambda: dist.inv_gamma(0.0, 1.0), "inv_gamma", "shape"),
    (lambda: dist.inv_gamma(1.0, -1.0), "inv_gamma", "scale"),
    (lambda: dist.student_t(0.0, 0.0, 1.0), "student_t", "df"),
    (lambda: dist.student_t(1.0, 0.0, 0.0), "student_t", "scale"),
    (lambda: dist.categorical([]), "categorical", "logits"),
    (lambda: dist.categorical([math.nan, 1.0]), "categorical", "logits"),
    (lambda: dist.categorical([-math.inf, -math.inf]), "categorical", "logits"),
    (lambda: dist.dirichlet([1.0]), "dirichlet", "alpha"),
    (lambda: dist.dirichlet([1.0, 0.0]), "dirichlet", "alpha"),
    (lambda: dist.mvn([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), "mvn", "cov"),
    (lambda: dist.mvn([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]]), "mvn", "cov"),
    (lambda: dist.mvn([0.0, 0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), "mvn", "shapes"),
    (lambda: dist.neg_binomial(0.0, 0.5), "neg_binomial", "r"),
    (lambda: dist.neg_binomial(1.0, 0.0), "neg_binomial", "p"),
    (lambda: dist.discrete_uniform(3, 1), "discrete_uniform", "hi"),
    (lambda: dist.discrete_uniform(0.5, 3), "discrete_uniform", "lo"),
    (lambda: dist.truncated_normal(0.0, 1.0, 2.0, 1.0), "truncated_normal", "hi"),
    (lambda: dist.truncated_normal(0.0, -1.0, 0.0, 1.0), "truncated_normal", "sigma"),
    (lambda: dist.von_mises(0.0, -1.0), "von_mises", "kappa"),
    (lambda: dist.wrapped_cauchy(0.0, 1.0), "wrapped_cauchy", "rho"),
    (lambda: dist.wrapped_normal(0.0, 0.0), "wrapped_normal", "sigma"),
    (lambda: dist.wishart(1.0, [[1.0, 0.0], [0.0, 1.0]]), "wishart", "df"),
    (lambda: dist.wishart(3.0, [[1.0, 2.0], [2.0, 1.0]]), "wishart", "scale"),
    (lambda: dist.inv_wishart(3.0, [[1.0, 0.0]]), "inv_wishart", "scale"),
    (lambda: dist.mixture([dist.normal(0.0, 1.0)], [0.0, 1.0]), "mixture", "logits"),
    (lambda: dist.mixture([], []), "mixture", "components"),
    (lambda: dist.iid(dist.normal(0.0, 1.0), 0), "iid", "n"),
    (lambda: dist.normal(mx.zeros((2,)), mx.ones((3,))), "normal", "shapes"),
]


@pytest.mark.parametrize("make, name, param", BAD, ids=[f"{b[1]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_python_parameter_raises_naming_distribution_and_parameter(make, name, param):
    with pytest.raises(ValueError) as e:
        make()
    msg = str(e.value)
    assert name in msg and param in msg, msg


@pytest.mark.parametrize("make, name, param", BAD, ids=[f"{b[1]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_parameter_inside_a_model_names_the_trace_address(make, name, param):
    @gm.gen
    def model():
        return gm.trace(("sub", "site"), make())

    with pytest.raises(ValueError) as e:
        model.simulate(())
    msg = str(e.value)
    assert name in msg and param in msg and "site" in msg, msg


ARRAY_BAD = [
    (lambda: dist.normal(0.0, mx.array([1.0, -1.0])), "normal", "sigma"),
    (lambda: dist.beta(mx.array(0.0), 1.0), "beta", "a"),
    (lambda: dist.gamma(2.0, mx.array([1.0, 0.0])), "gamma", "rate"),
    (lambda: dist.poisson(mx.array(-2.0)), "poisson", "rate"),
    (lambda: dist.bernoulli(mx.array([0.5, 1.2])), "bernoulli", "p"),
    (lambda: dist.dirichlet(mx.array([1.0, -1.0])), "dirichlet", "alpha"),
    (lambda: dist.mvn(mx.zeros((2,)), mx.array([[1.0, 2.0], [2.0, 1.0]])), "mvn", "cov"),
    (lambda: dist.wishart(mx.array(0.5), mx.eye(2)), "wishart", "df"),
    (lambda: dist.uniform(mx.array(2.0), mx.array(1.0)), "uniform", "high"),
]


@pytest.mark.parametrize("make, name, param", ARRAY_BAD, ids=[f"{b[1]}-{b[2]}" for b in ARRAY_BAD])
def test_bad_array_parameter_is_checked_lazily_and_named(make, name, param):
    d = make()  # no error, no eval at construction
    with pytest.raises(ValueError) as e:
        d.validate()
    assert name in str(e.value) and param in str(e.value)

    @gm.gen
    def model():
        return gm.trace("z", make())

    tr = model.simulate(())  # the hot path does not evaluate the check
    with pytest.raises(ValueError) as e:
        gm.memory.materialize(tr)
    assert name in str(e.value) and param in str(e.value) and "'z'" in str(e.value)


def test_valid_array_parameters_cost_no_eval_and_pass_at_materialization(monkeypatch):
    @gm.gen
    def model(s):
        return gm.trace("x", dist.normal(0.0, s))

    evals = []
    real_eval = mx.eval
    monkeypatch.setattr(mx, "eval", lambda *a: (evals.append(a), real_eval(*a))[1])
    s = mx.array(2.0)
    mx.eval(s)
    evals.clear()
    tr = model.simulate((s,), key=mx.random.key(0))
    assert evals == []  # the hot path evaluates nothing, the check included
    assert tr.checks  # the check travels with the trace
    gm.memory.materialize(tr)
    assert len(evals) == 1  # checked at materialization, with the trace's own arrays: one eval
    assert all(bool(c.ok.item()) for c in tr.checks)


def test_value_shape_mismatch_with_parameters_raises():
    with pytest.raises(ValueError):
        mx.eval(dist.normal(mx.zeros((3,)), 1.0).log_prob(mx.zeros((4,))))
    with pytest.raises(ValueError):
        dist.product(dist.normal(0.0, 1.0), dist.normal(0.0, 1.0)).log_prob(mx.zeros((3,)))


# -- guarded checks: parameters whose invalid values leave every log density non-finite --------

import numpy as np  # noqa: E402

from genmlx.checks import DeferredCheck, GuardedCheck  # noqa: E402
from genmlx.distributions.base import Distribution  # noqa: E402

INVALID = {"finite": [math.nan, math.inf, -math.inf], "> 0 and finite": [0.0, -1.0, math.nan, math.inf],
           "in [0, 1]": [-0.5, 1.5, math.nan, math.inf, -math.inf]}
GUARDED = {  # class name: (constructor, valid parameters, values to score)
    "Normal": (dist.normal, {"mu": 0.3, "sigma": 1.7}, [-2.5, 0.0, 0.3, 4.0]),
    "Laplace": (dist.laplace, {"loc": 0.3, "scale": 1.7}, [-2.5, 0.0, 0.3, 4.0]),
    "Cauchy": (dist.cauchy, {"loc": 0.3, "scale": 1.7}, [-2.5, 0.0, 0.3, 4.0]),
    "LogNormal": (dist.lognormal, {"mu": 0.3, "sigma": 1.7}, [0.05, 1.0, 1.35, 7.0]),
    "Bernoulli": (dist.bernoulli, {"p": 0.3}, [0.0, 1.0]),
}


def _subclasses(cls):
    for c in cls.__subclasses__():
        yield c
        yield from _subclasses(c)


def test_every_score_guard_declaration_is_tested():
    declared = {c.__name__ for c in _subclasses(Distribution) if c.__dict__.get("_score_guards")}
    assert declared == set(GUARDED)


@pytest.mark.parametrize("cls", sorted(GUARDED))
def test_an_invalid_guarded_parameter_leaves_every_log_density_nan_or_minus_inf(cls):
    make, valid, xs = GUARDED[cls]
    d0 = make(**valid)
    assert set(type(d0)._score_guards) == set(valid)
    for name in valid:
        must = dict((n, m) for n, m, _, _ in make(**{k: mx.array(v) for k, v in valid.items()})._lazy_checks)[name]
        for bad in INVALID[must]:
            d = make(**{**{k: mx.array(v) for k, v in valid.items()}, name: mx.array(bad)})
            with gm.defer_checks():  # the raw log density, unchecked (a user's log_prob raises)
                lp = np.array(d.log_prob(mx.array(xs)))
            # NaN or -inf, never +inf: an MH proposal that fails a guarded check is never accepted
            assert (np.isnan(lp) | (lp == -np.inf)).all(), (cls, name, bad, lp)


@gm.gen
def scaled():
    s = gm.trace("s", dist.normal(0.0, 1.0))
    gm.trace("y", dist.normal(0.0, s))  # s < 0 for about half the particles: an invalid sigma


@gm.gen
def probit():
    z = gm.trace("z", dist.normal(0.0, 1.0))
    gm.trace("y", dist.binomial(3.0, z))  # p outside [0, 1]: not guarded (y = 0 scores 3 log(1 - p), finite)


def test_generate_marks_the_constrained_sites_guarded_parameters():
    with gm.defer_checks():  # (s < 0 with this key: a user's generate would raise before returning)
        tr, _ = scaled.generate((), {"y": 0.5}, key=mx.random.key(0))
    assert [type(c) for c in tr.checks] == [GuardedCheck]
    tr = scaled.simulate((), key=mx.random.key(0))
    assert [type(c) for c in tr.checks] == [DeferredCheck]


@pytest.mark.parametrize("layout", ["shared", "per_lane"])
def test_vectorized_is_raises_a_failed_guarded_check_naming_the_parameter(layout):
    with pytest.raises(ValueError, match=r"normal: parameter sigma must be > 0 and finite \(at trace address 'y'\)"):
        gm.inference.importance_sampling(scaled, (), {"y": 0.5}, n_particles=200, vectorized=True,
                                         key=mx.random.key(1), layout=layout)


def test_vectorized_is_raises_a_failed_unguarded_check_of_an_observation():
    with pytest.raises(ValueError, match=r"binomial: parameter p must be in \[0, 1\] \(at trace address 'y'\)"):
        gm.inference.importance_sampling(probit, (), {"y": 0}, n_particles=200, vectorized=True,
                                         key=mx.random.key(1))


def test_the_checks_pass_leaves_out_only_guarded_checks():
    from genmlx import compiled_pass as V

    cm = scaled._constraints(gm.choicemap({"y": 0.5}))
    vals, _ = V.vgenerate_values(scaled, (), cm, 50, mx.random.key(2))
    assert V.checks_of_values(scaled, (), cm, vals, 50, mx.random.key(2)) == ()
    cm = probit._constraints(gm.choicemap({"y": 0}))
    vals, _ = V.vgenerate_values(probit, (), cm, 50, mx.random.key(2))
    assert len(V.checks_of_values(probit, (), cm, vals, 50, mx.random.key(2))) == 1
