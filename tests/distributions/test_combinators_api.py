"""delta, mixture, product, iid; the public names; supports; user-defined distributions; models."""

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

import genmlx as gm
from genmlx import dist
from genmlx.distributions import Distribution, support
from genmlx.special.fuse import as_float, fused

KINDS = {"real", "real_vector", "positive", "nonnegative", "interval", "simplex", "circular", "positive_definite",
         "boolean", "nonnegative_integer", "integer_interval"}


def test_every_name_in_all_imports():
    import genmlx.distributions as d
    import genmlx.special as s

    for mod in (d, s):
        for name in mod.__all__:
            assert getattr(mod, name) is not None, name


SAMPLES = {
    "normal": dist.normal(0.0, 1.0), "uniform": dist.uniform(0.0, 2.0), "bernoulli": dist.bernoulli(0.3),
    "beta": dist.beta(2.0, 3.0), "gamma": dist.gamma(2.0, 1.0), "exponential": dist.exponential(1.0),
    "laplace": dist.laplace(0.0, 1.0), "cauchy": dist.cauchy(0.0, 1.0), "poisson": dist.poisson(3.0),
    "binomial": dist.binomial(10, 0.3), "geometric": dist.geometric(0.3), "lognormal": dist.lognormal(0.0, 1.0),
    "inv_gamma": dist.inv_gamma(3.0, 1.0), "student_t": dist.student_t(3.0, 0.0, 1.0),
    "categorical": dist.categorical([0.0, 1.0]), "dirichlet": dist.dirichlet([1.0, 1.0, 1.0]),
    "mvn": dist.mvn([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), "neg_binomial": dist.neg_binomial(2.0, 0.5),
    "discrete_uniform": dist.discrete_uniform(0, 3), "truncated_normal": dist.truncated_normal(0.0, 1.0, -1.0, 1.0),
    "von_mises": dist.von_mises(0.0, 1.0), "wishart": dist.wishart(3.0, [[1.0, 0.0], [0.0, 1.0]]),
    "inv_wishart": dist.inv_wishart(4.0, [[1.0, 0.0], [0.0, 1.0]]), "wrapped_cauchy": dist.wrapped_cauchy(0.0, 0.5),
    "wrapped_normal": dist.wrapped_normal(0.0, 1.0), "delta": dist.delta(2.0),
    "mixture": dist.mixture([dist.normal(0.0, 1.0), dist.normal(2.0, 1.0)], [0.0, 0.0]),
    "product": dist.product(dist.normal(0.0, 1.0), dist.normal(1.0, 1.0)), "iid": dist.iid(dist.normal(0.0, 1.0), 3),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_name_support_kind_and_event_ndim_are_consistent(name):
    d = SAMPLES[name]
    assert d.name == name
    assert d.support.kind in KINDS
    x = d.sample(mx.random.key(0), (5,))
    assert x.ndim == 1 + d.event_ndim
    lp = np.array(d.log_prob(x))
    assert lp.shape == (5,) and np.all(np.isfinite(lp))


def test_delta_mixture_product_iid_log_probs():
    assert np.array(dist.delta(2.0).log_prob(mx.array([2.0, 2.5]))).tolist() == [0.0, -math.inf]
    v = mx.array([1.0, 2.0])
    assert dist.delta(v).log_prob(mx.array([1.0, 2.0])).item() == 0.0
    assert dist.delta(v).log_prob(mx.array([1.0, 3.0])).item() == -math.inf

    m = dist.mixture([dist.normal(0.0, 1.0), dist.normal(3.0, 0.5)], [math.log(0.3), math.log(0.7)])
    x = np.linspace(-3, 6, 11)
    ref = np.log(0.3 * stats.norm.pdf(x, 0, 1) + 0.7 * stats.norm.pdf(x, 3, 0.5))
    np.testing.assert_allclose(np.array(m.log_prob(mx.array(x.astype(np.float32)))), ref, rtol=1e-5, atol=1e-5)

    p = dist.product(dist.normal(0.0, 1.0), dist.gamma(2.0, 1.0), dist.dirichlet([1.0, 2.0]))
    val = mx.array([0.5, 1.5, 0.3, 0.7])
    want = stats.norm.logpdf(0.5) + stats.gamma.logpdf(1.5, 2.0) + stats.dirichlet.logpdf([0.3, 0.7], [1.0, 2.0])
    assert abs(p.log_prob(val).item() - want) < 1e-5
    assert p.sample(mx.random.key(0), (4,)).shape == (4, 4)

    i = dist.iid(dist.beta(2.0, 3.0), 4)
    xs = np.array([0.1, 0.2, 0.3, 0.4])
    assert abs(i.log_prob(mx.array(xs.astype(np.float32))).item() - stats.beta.logpdf(xs, 2, 3).sum()) < 1e-5


def test_mixture_sampler_matches_weights():
    m = dist.mixture([dist.normal(-5.0, 0.1), dist.normal(5.0, 0.1)], [math.log(0.25), math.log(0.75)])
    x = np.array(m.sample(mx.random.key(3), (20_000,)))
    assert abs(np.mean(x > 0) - 0.75) < 6 * math.sqrt(0.25 * 0.75 / 20_000)


class ShiftedExponential(Distribution):
    """The documented way to define a distribution (docs/distributions.md)."""

    name = "shifted_exponential"
    support = support.real

    def __init__(self, rate, shift):
        super().__init__()
        self.rate = self._param("rate", rate, lambda r: r > 0, "> 0")
        self.shift = self._param("shift", shift)

    def _sample(self, key, shape):
        u = mx.random.uniform(shape=shape, key=key)
        return self.shift - mx.log1p(-u) / self.rate

    def _log_prob(self, x):
        return _shifted_lp(x, self.rate, self.shift)


@fused
def _shifted_lp(x, rate, shift):
    x = as_float(x)
    return mx.where(x >= shift, mx.log(rate) - rate * (x - shift), -mx.inf)


def test_user_defined_distribution_works_in_models_and_validates():
    @gm.gen
    def model():
        return gm.trace("t", ShiftedExponential(2.0, 1.0))

    tr = model.simulate((), key=mx.random.key(0))
    assert tr["t"].item() >= 1.0
    assert abs(tr.get_score().item() - (math.log(2.0) - 2.0 * (tr["t"].item() - 1.0))) < 1e-5
    with pytest.raises(ValueError, match="shifted_exponential.*rate"):
        ShiftedExponential(-1.0, 0.0)


def test_models_use_every_distribution_in_generate_and_update():
    @gm.gen
    def model():
        a = gm.trace("a", dist.beta(2.0, 2.0))
        n = gm.trace("n", dist.binomial(20, a))
        g = gm.trace("g", dist.gamma(2.0, 1.0))
        gm.trace("y", dist.poisson(g))
        gm.trace("v", dist.dirichlet([1.0, 2.0, 3.0]))
        gm.trace("m", dist.mvn([0.0, 0.0], [[1.0, 0.2], [0.2, 1.0]]))
        return n

    obs = gm.choicemap({"n": 7, "y": 3})
    tr, w = model.generate((), obs, key=mx.random.key(1))
    gm.memory.materialize(tr)
    assert np.isfinite(w.item()) and np.isfinite(tr.get_score().item())
    tr2, w2, _ = model.update(tr, gm.choicemap({"a": 0.4}))
    assert np.isfinite(w2.item())
