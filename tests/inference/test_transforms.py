"""Bijections to the real line and the unconstrained log density built on `model.assess`."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats as sps

import genmlx as gm
from genmlx import dist
from genmlx.distributions import support
from genmlx.distributions.base import Distribution
from genmlx.inference import transforms as T
from .gradient_models import BB_OBS, LR_OBS, XS, beta_bernoulli, linreg

# (bijection, unconstrained test point, size of the constrained coordinates the Jacobian maps to)
CASES = {
    "identity": (T.Identity(), [0.3, -1.2]),
    "exp": (T.LowerBound(0.0), [0.3, -1.2]),
    "lower_bound": (T.LowerBound(-2.0), [0.3, -1.2]),
    "upper_bound": (T.UpperBound(5.0), [0.3, -1.2]),
    "softplus": (T.Softplus(), [0.3, -1.2]),
    "sigmoid": (T.ScaledSigmoid(-1.0, 3.0), [0.3, -1.2]),
    "circular": (T.Circular(), [0.3, 5.0]),
    "stick_breaking_3": (T.StickBreaking(3), [0.2, -0.7]),
    "stick_breaking_5": (T.StickBreaking(5), [0.2, -0.7, 1.1, 0.0]),
    "cholesky_2": (T.CholeskyPD(2), [0.3, -0.2, 0.5]),
    "cholesky_3": (T.CholeskyPD(3), [0.3, -0.2, 0.5, 0.1, 0.4, -0.3]),
}


def _coords(b, x):
    """The constrained value's free coordinates (what the bijection's Jacobian is taken to)."""
    if isinstance(b, T.StickBreaking):
        return x[..., :-1]
    if isinstance(b, T.CholeskyPD):
        rows, cols = np.tril_indices(b.n)
        return x[mx.array(rows), mx.array(cols)]
    return x


def _log_abs_det_jacobian(b, z):
    """log |det d coords / dz| by reverse-mode autodiff, one row per output coordinate."""
    f = lambda v: _coords(b, b.forward(v)).reshape(-1)
    m = f(z).size
    rows = []
    for i in range(m):
        e = mx.zeros((m,)).at[i].add(1.0)
        _, (row,) = mx.vjp(f, [z], [e])
        rows.append(np.asarray(row, dtype=np.float64))
    return math.log(abs(np.linalg.det(np.stack(rows))))


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_det_matches_autodiff_jacobian(name):
    b, z = CASES[name]
    z = mx.array(z)
    _, ldj = b.forward_log_det(z)
    got = 0.0 if ldj is None else ldj.item()
    assert got == pytest.approx(_log_abs_det_jacobian(b, z), abs=2e-4)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"circular"}))
def test_inverse_undoes_forward(name):
    b, z = CASES[name]
    z = mx.array(z)
    x = b.forward(z)
    assert np.allclose(np.asarray(b.inverse(x)), np.asarray(z), atol=1e-4)
    assert np.allclose(np.asarray(b.forward(b.inverse(x))), np.asarray(x), atol=1e-5)


def test_circular_wraps_into_its_interval_and_is_periodic():
    b = T.Circular()
    z = mx.array([0.3, 0.3 + 2 * math.pi, 0.3 - 4 * math.pi, math.pi + 0.1])
    x = np.asarray(b.forward(z))
    assert np.all(x >= -math.pi) and np.all(x < math.pi)
    assert np.allclose(x[:3], 0.3, atol=1e-5) and x[3] == pytest.approx(-math.pi + 0.1, abs=1e-5)


def test_forward_lands_in_the_support():
    z = mx.array([-30.0, -3.0, 0.0, 3.0, 30.0])
    assert np.all(np.asarray(T.LowerBound(0.0).forward(z)) >= 0)
    x = np.asarray(T.ScaledSigmoid(-1.0, 3.0).forward(z))
    assert np.all((x >= -1) & (x <= 3))
    s = np.asarray(T.StickBreaking(4).forward(mx.array([[1.0, -2.0, 0.5], [-9.0, 9.0, 0.0]])))
    assert np.all(s >= 0) and np.allclose(s.sum(-1), 1.0, atol=1e-6)
    pd = np.asarray(T.CholeskyPD(3).forward(mx.array([0.3, -0.2, 0.5, 0.1, 0.4, -0.3])))
    assert np.allclose(pd, pd.T) and np.all(np.linalg.eigvalsh(pd) > 0)
    assert np.allclose(np.asarray(T.StickBreaking(3).forward(mx.zeros(2))), 1 / 3)  # z = 0: the centre


@pytest.mark.parametrize("sup, shape, kind", [
    (support.real, (), T.Identity), (support.real_vector, (3,), T.Identity), (support.positive, (), T.LowerBound),
    (support.nonnegative, (), T.LowerBound), (support.unit_interval, (), T.ScaledSigmoid),
    (support.interval(0.0, math.inf), (), T.LowerBound), (support.interval(-math.inf, 1.0), (), T.UpperBound),
    (support.simplex, (4,), T.StickBreaking), (support.circular, (), T.Circular),
    (support.positive_definite, (3, 3), T.CholeskyPD),
])
def test_transform_for_each_support_kind(sup, shape, kind):
    b = T.transform_for(sup, shape)
    assert type(b) is kind
    x = b.forward(mx.zeros(b.zshape(shape)))
    assert tuple(x.shape) == shape and b.size(shape) == int(np.prod(b.zshape(shape)))


def test_transform_for_discrete_or_unknown_support_is_a_value_error():
    with pytest.raises(ValueError, match="discrete"):
        T.transform_for(support.boolean)
    with pytest.raises(ValueError, match="no bijection for support kind 'any'"):
        T.transform_for(support.any_value)


# -- the unconstrained log density -------------------------------------------------------------

def test_logdensity_is_assess_plus_log_jacobian():
    logp = T.unconstrained_logdensity(beta_bernoulli, (), BB_OBS, ["p"], key=mx.random.key(0))
    z = mx.array([0.4])
    p = 1 / (1 + math.exp(-0.4))
    score, _ = beta_bernoulli.assess((), {**BB_OBS, "p": p})
    want = score.item() + math.log(p * (1 - p))
    assert logp(z).item() == pytest.approx(want, abs=1e-4)
    assert logp.dim == 1 and logp.to_constrained(z)["p"].item() == pytest.approx(p, abs=1e-6)


def test_logdensity_works_under_grad_compile_and_vmap():
    logp = T.unconstrained_logdensity(beta_bernoulli, (), BB_OBS, ["p"], key=mx.random.key(0))
    z = mx.array([0.4])
    # posterior Beta(9, 5) in logit space: d/dz [9 log s + 5 log(1 - s)] = 9 - 14 s
    want = 9 - 14 / (1 + math.exp(-0.4))
    assert mx.grad(logp)(z).item() == pytest.approx(want, abs=1e-4)
    v, g = mx.compile(mx.value_and_grad(logp))(z)
    assert g.item() == pytest.approx(want, abs=1e-4) and v.item() == pytest.approx(logp(z).item(), abs=1e-5)
    zs = mx.array([[0.4], [-1.0], [2.0]])
    vs = mx.vmap(logp)(zs)
    assert np.allclose(np.asarray(vs), [logp(zs[i]).item() for i in range(3)], atol=1e-5)


def test_flat_vector_layout_follows_the_address_order():
    logp = T.unconstrained_logdensity(linreg, (XS,), LR_OBS, ["intercept", "slope"], key=mx.random.key(0))
    sites = logp.layout.sites
    assert [s.address for s in sites] == ["intercept", "slope"] and [s.offset for s in sites] == [0, 1]
    z = mx.array([1.5, 2.0])
    score, _ = linreg.assess((XS,), {**LR_OBS, "intercept": 1.5, "slope": 2.0})
    assert logp(z).item() == pytest.approx(score.item(), abs=1e-4)
    vals = logp.to_constrained(z)
    assert vals["intercept"].item() == 1.5 and vals["slope"].item() == 2.0
    assert np.allclose(np.asarray(logp.to_unconstrained(vals)), [1.5, 2.0])


class Exponential(Distribution):
    """A positive-support distribution (test-local, so the test needs no other distribution)."""

    name = "exponential"
    support = support.positive

    def __init__(self, rate):
        super().__init__()
        self.rate = self._param("rate", rate, lambda r: r > 0, "> 0")

    def _sample(self, key, shape):
        return -mx.log1p(-mx.random.uniform(shape=shape, key=key)) / self.rate

    def _log_prob(self, x):
        return mx.where(x >= 0, math.log(self.rate) - self.rate * x, -mx.inf)


@gm.gen
def rate_model():
    lam = gm.trace("lam", Exponential(1.0))
    gm.trace("y", dist.normal(0.0, 1.0 / mx.sqrt(lam)))


def test_positive_address_gets_exp_and_its_jacobian():
    logp = T.unconstrained_logdensity(rate_model, (), {"y": 0.5}, ["lam"], key=mx.random.key(0))
    z = mx.array([0.7])
    lam = math.exp(0.7)
    score, _ = rate_model.assess((), {"lam": lam, "y": 0.5})
    assert logp(z).item() == pytest.approx(score.item() + 0.7, abs=1e-4)


def test_init_sets_the_starting_point():
    logp = T.unconstrained_logdensity(beta_bernoulli, (), BB_OBS, ["p"], init={"p": 0.25})
    assert logp.layout.z0.item() == pytest.approx(math.log(0.25 / 0.75), abs=1e-6)
    with pytest.raises(ValueError, match="init: address 'q' is not in addresses"):
        T.unconstrained_logdensity(beta_bernoulli, (), BB_OBS, ["p"], init={"q": 0.5})


@pytest.mark.parametrize("addresses, obs, message", [
    (["nope"], LR_OBS, "address 'nope' is not a random choice of linreg"),
    (["slope", "y0"], {k: v for k, v in LR_OBS.items()}, "address 'y0' is observed"),
    (["slope"], LR_OBS, r"choices \['intercept'\] of linreg are neither in addresses nor observed"),
    (["slope", "slope", "intercept"], LR_OBS, "address 'slope' is listed twice"),
    ([], LR_OBS, "addresses must be a non-empty list"),
])
def test_bad_addresses_are_value_errors_naming_them(addresses, obs, message):
    with pytest.raises(ValueError, match=message):
        T.unconstrained_logdensity(linreg, (XS,), obs, addresses)


def test_discrete_address_is_a_value_error_naming_it():
    obs = {k: v for k, v in BB_OBS.items() if k != "y3"}
    with pytest.raises(ValueError, match=r"address 'y3' is discrete \(bernoulli"):
        T.unconstrained_logdensity(beta_bernoulli, (), obs, ["p", "y3"])


# -- vector sites: one address, a slice of the flat vector ------------------------------------

def test_vector_sites_give_the_per_site_density_and_gradient():
    """A vector observation site and an iid vector latent site: same log density and gradient as the
    per-site forms, the latent vector laid out as one slice of the flat vector."""
    from .gradient_models import FUNNEL_ADDRS, FUNNEL_N, LR_VEC_ARGS, LR_VEC_OBS, funnel, funnel_vec, linreg_vec

    pairs = [
        (T.unconstrained_logdensity(linreg, (XS,), LR_OBS, ["slope", "intercept"], key=mx.random.key(0)),
         T.unconstrained_logdensity(linreg_vec, LR_VEC_ARGS, LR_VEC_OBS, ["slope", "intercept"], key=mx.random.key(0)),
         mx.array([1.7, -0.4])),
        (T.unconstrained_logdensity(funnel, (), {}, FUNNEL_ADDRS, key=mx.random.key(0)),
         T.unconstrained_logdensity(funnel_vec, (), {}, ["v", "x"], key=mx.random.key(0)),
         mx.array(np.linspace(-1.0, 1.5, FUNNEL_N + 1), dtype=mx.float32)),
    ]
    for per_site, vec, z in pairs:
        assert vec.dim == per_site.dim
        (v1, g1), (v2, g2) = mx.value_and_grad(per_site)(z), mx.compile(mx.value_and_grad(vec))(z)
        assert v2.item() == pytest.approx(v1.item(), rel=1e-5, abs=1e-4)
        assert np.allclose(np.asarray(g2), np.asarray(g1), rtol=1e-4, atol=1e-4)
    fv = pairs[1][1]
    sites = fv.layout.sites
    assert [(s.address, s.offset, s.size, s.shape) for s in sites] == [("v", 0, 1, ()), ("x", 1, FUNNEL_N, (FUNNEL_N,))]
    z = pairs[1][2]
    vals = fv.to_constrained(z)
    assert vals["x"].shape == (FUNNEL_N,) and np.allclose(np.asarray(vals["x"]), np.asarray(z[1:]))
    assert np.allclose(np.asarray(fv.to_unconstrained(vals)), np.asarray(z))
    zs = mx.stack([z, z * 0.5])  # batched: [N, dim] -> x of shape [N, FUNNEL_N]
    assert fv.to_constrained(zs)["x"].shape == (2, FUNNEL_N)
    assert np.allclose(np.asarray(mx.vmap(fv)(zs)), [fv(z).item(), fv(z * 0.5).item()], atol=1e-4)


def test_positive_vector_site_gets_an_elementwise_transform_and_its_jacobian():
    from .gradient_models import GPV_DATA, gamma_poisson_vec

    obs = {"y": mx.array(GPV_DATA)}
    logp = T.unconstrained_logdensity(gamma_poisson_vec, (), obs, ["lam"], key=mx.random.key(0))
    assert logp.dim == 3 and logp.layout.sites[0].zshape == (3,)
    z = mx.array([0.1, -0.5, 1.2])
    lam = np.exp(np.asarray(z, dtype=np.float64))
    # log Gamma(3, 1) + log Poisson(y | lam) + log|d lam / dz| (= z), summed over the 3 elements
    want = sum(sps.gamma(3.0).logpdf(l) + sps.poisson(l).logpmf(y) + zi
               for l, y, zi in zip(lam, GPV_DATA, np.asarray(z, dtype=np.float64)))
    assert logp(z).item() == pytest.approx(want, abs=1e-3)
    # d/dz_i: (3 + y_i) - 2 lam_i
    g = mx.grad(logp)(z)
    assert np.allclose(np.asarray(g), [(3 + y) - 2 * l for l, y in zip(lam, GPV_DATA)], atol=1e-3)
    assert np.allclose(np.asarray(logp.to_constrained(z)["lam"]), lam, rtol=1e-5)


@gm.gen
def _funnel_sites():
    v = gm.trace("v", dist.normal(0.0, 3.0))
    scale = mx.exp(v / 2.0)
    for i in range(9):
        gm.trace(("x", i), dist.normal(0.0, scale))
    s = gm.trace("s", dist.gamma(2.0, 1.0))  # a transformed site after the run
    gm.trace("y", dist.normal(v, s))


@gm.gen
def _funnel_vector():
    v = gm.trace("v", dist.normal(0.0, 3.0))
    gm.trace("x", dist.iid(dist.normal(0.0, mx.exp(v / 2.0)), 9))
    s = gm.trace("s", dist.gamma(2.0, 1.0))
    gm.trace("y", dist.normal(v, s))


def test_scalar_sites_side_by_side_are_one_segment_of_z():
    sites = T.layout(_funnel_sites, (), {"y": 0.5}, ["v", *[("x", i) for i in range(9)], "s"],
                     key=mx.random.key(0)).sites
    assert T.scalar_runs(sites) == [tuple(range(10)), (10,)]
    z = mx.arange(11, dtype=mx.float32)
    xs = T.SiteValues(z, sites, T.scalar_runs(sites))
    assert xs.run(tuple(range(1, 10))).tolist() == list(range(1, 10))
    assert xs.run((2, 1)) is None and xs.run((1, 10)) is None  # out of order; not a real scalar
    assert xs[3].item() == 3.0 and xs[3].ndim == 0
    assert xs[10].item() == pytest.approx(math.exp(10.0), rel=1e-5)  # the transformed site
    assert xs.log_det().item() == pytest.approx(10.0)


def test_a_model_written_per_coordinate_scores_and_differentiates_like_its_vector_form():
    """The same density and gradient, from a graph no larger than the vector-site model's: the
    run of nine scalar sites is one slice of z, not nine slices stacked."""
    from genmlx.memory import count_nodes

    obs = {"y": 0.5}
    per_site = T.unconstrained_logdensity(_funnel_sites, (), obs, ["v", *[("x", i) for i in range(9)], "s"],
                                          key=mx.random.key(0))
    vector = T.unconstrained_logdensity(_funnel_vector, (), obs, ["v", "x", "s"], key=mx.random.key(0))
    assert per_site.flat is not None and vector.flat is not None
    z = mx.array([0.3, *np.linspace(-1.0, 1.0, 9), 0.2], dtype=mx.float32)
    (a, ga), (b, gb) = mx.value_and_grad(per_site)(z), mx.value_and_grad(vector)(z)
    assert count_nodes(a, ga) <= count_nodes(b, gb)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=1e-5, atol=1e-6)
    leaves = {"y": 0.5, "v": 0.3, "s": math.exp(0.2), **{("x", i): float(x) for i, x in enumerate(np.linspace(-1.0, 1.0, 9))}}
    ref, _ = _funnel_sites.assess((), leaves)
    np.testing.assert_allclose(a.item(), ref.item() + 0.2, rtol=1e-5)  # + log|d exp(z) / dz| of s
