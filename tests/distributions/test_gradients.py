"""Gradients of log_prob (mx.grad) w.r.t. the value and every continuous parameter, against
central finite differences of scipy's float64 log-density."""

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx import dist

# (name, constructor, scipy logpdf(x, *params), params, values, differentiable-param mask, continuous value?)
GRAD_CASES = [
    ("normal", dist.normal, lambda x, m, s: stats.norm.logpdf(x, m, s), (0.3, 1.7), [-2.0, 0.1, 3.0], (1, 1), True),
    ("lognormal", dist.lognormal, lambda x, m, s: stats.lognorm.logpdf(x, s, scale=np.exp(m)), (0.2, 0.8), [0.3, 1.0, 4.0], (1, 1), True),
    ("exponential", dist.exponential, lambda x, r: stats.expon.logpdf(x, scale=1 / r), (1.5,), [0.1, 2.0], (1,), True),
    ("laplace", dist.laplace, lambda x, m, s: stats.laplace.logpdf(x, m, s), (0.5, 2.0), [-1.0, 3.0], (1, 1), True),
    ("cauchy", dist.cauchy, lambda x, m, s: stats.cauchy.logpdf(x, m, s), (0.5, 2.0), [-1.0, 0.6, 30.0], (1, 1), True),
    ("gamma", dist.gamma, lambda x, a, b: stats.gamma.logpdf(x, a, scale=1 / b), (2.5, 1.5), [0.2, 1.5, 6.0], (1, 1), True),
    ("gamma_small", dist.gamma, lambda x, a, b: stats.gamma.logpdf(x, a, scale=1 / b), (0.4, 3.0), [0.01, 0.5], (1, 1), True),
    ("gamma_big", dist.gamma, lambda x, a, b: stats.gamma.logpdf(x, a, scale=1 / b), (40.0, 2.0), [15.0, 20.0, 26.0], (1, 1), True),
    ("inv_gamma", dist.inv_gamma, lambda x, a, s: stats.invgamma.logpdf(x, a, scale=s), (3.0, 2.0), [0.3, 1.0, 4.0], (1, 1), True),
    ("inv_gamma_big", dist.inv_gamma, lambda x, a, s: stats.invgamma.logpdf(x, a, scale=s), (30.0, 60.0), [1.8, 2.0, 2.5], (1, 1), True),
    ("beta", dist.beta, lambda x, a, b: stats.beta.logpdf(x, a, b), (2.0, 3.5), [0.05, 0.4, 0.9], (1, 1), True),
    ("beta_small", dist.beta, lambda x, a, b: stats.beta.logpdf(x, a, b), (0.5, 0.7), [0.05, 0.6], (1, 1), True),
    ("beta_big", dist.beta, lambda x, a, b: stats.beta.logpdf(x, a, b), (30.0, 50.0), [0.3, 0.4, 0.45], (1, 1), True),
    ("student_t", dist.student_t, lambda x, n, m, s: stats.t.logpdf(x, n, m, s), (4.5, 0.3, 1.2), [-3.0, 0.5, 8.0], (1, 1, 1), True),
    ("student_t_big_df", dist.student_t, lambda x, n, m, s: stats.t.logpdf(x, n, m, s), (300.0, 0.0, 1.0), [-2.0, 0.5], (1, 1, 1), True),
    ("uniform", dist.uniform, lambda x, a, b: stats.uniform.logpdf(x, a, b - a), (-1.0, 3.0), [0.0, 2.5], (1, 1), True),
    ("truncated_normal", dist.truncated_normal, lambda x, m, s, lo, hi: stats.truncnorm.logpdf(x, (lo - m) / s, (hi - m) / s, m, s),
     (0.3, 1.5, -1.0, 2.0), [-0.5, 1.0, 1.9], (1, 1, 1, 1), True),
    ("von_mises", dist.von_mises, lambda x, m, k: stats.vonmises.logpdf(x, k, loc=m), (0.4, 3.0), [-1.0, 0.5, 2.5], (1, 1), True),
    ("von_mises_big", dist.von_mises, lambda x, m, k: stats.vonmises.logpdf(x, k, loc=m), (0.0, 300.0), [-0.05, 0.02], (1, 1), True),
    ("wrapped_cauchy", dist.wrapped_cauchy, lambda x, m, r: stats.wrapcauchy.logpdf(np.mod(x - m, 2 * np.pi), r), (0.3, 0.6), [-2.0, 0.5], (1, 1), True),
    ("poisson", dist.poisson, lambda x, r: stats.poisson.logpmf(x, r), (4.5,), [0, 3, 11], (1,), False),
    ("poisson_big", dist.poisson, lambda x, r: stats.poisson.logpmf(x, r), (500.0,), [480, 530], (1,), False),
    ("binomial", dist.binomial, lambda x, n, p: stats.binom.logpmf(x, n, p), (20, 0.3), [0, 5, 20], (0, 1), False),
    ("geometric", dist.geometric, lambda x, p: stats.geom.logpmf(np.asarray(x) + 1, p), (0.3,), [0, 4], (1,), False),
    ("neg_binomial", dist.neg_binomial, lambda x, r, p: stats.nbinom.logpmf(x, r, p), (3.5, 0.4), [0, 2, 9], (1, 1), False),
    ("bernoulli", dist.bernoulli, lambda x, p: stats.bernoulli.logpmf(x, p), (0.3,), [0, 1], (1,), False),
]


def _fd(f, v, rel=1e-6):
    h = rel * max(1.0, abs(v))
    return (f(v + h) - f(v - h)) / (2 * h)


@pytest.mark.parametrize("name, make, ref, params, values, mask, cont", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradient_of_log_prob_matches_finite_differences(name, make, ref, params, values, mask, cont):
    params = tuple(p if isinstance(p, int) else float(np.float32(p)) for p in params)
    for x in values:
        x32 = float(np.float32(x))
        if cont:
            g = mx.grad(lambda v: make(*params).log_prob(v))(mx.array(x32))
            want = _fd(lambda v: float(ref(v, *params)), x32)
            assert abs(g.item() - want) <= 2e-3 * max(1.0, abs(want)), (name, "value", x, g.item(), want)
        for i, diff in enumerate(mask):
            if not diff:
                continue

            def lp_of(p):
                ps = list(params)
                ps[i] = p
                return make(*ps).log_prob(mx.array(x32))

            g = mx.grad(lp_of)(mx.array(params[i], dtype=mx.float32))
            want = _fd(lambda v: float(ref(x32, *(params[:i] + (v,) + params[i + 1:]))), params[i])
            assert np.isfinite(g.item()), (name, i, x)
            assert abs(g.item() - want) <= 2e-3 * max(1.0, abs(want)), (name, f"param {i}", x, g.item(), want)


def test_gradient_is_finite_at_boundary_values_of_parameters():
    """Gamma/Beta at shape exactly 1 (the switch of the x = 0 boundary) keep finite parameter gradients."""
    for make, x in [(lambda a: dist.gamma(a, 2.0), 0.7), (lambda a: dist.beta(a, 2.0), 0.3), (lambda a: dist.beta(2.0, a), 0.3),
                    (lambda a: dist.inv_gamma(a, 1.0), 0.5), (lambda a: dist.neg_binomial(a, 0.5), 0)]:
        g = mx.grad(lambda a: make(a).log_prob(mx.array(x)))(mx.array(1.0))
        assert np.isfinite(g.item())


def test_gradients_batch_over_values_and_parameters():
    mu = mx.array([0.0, 1.0, 2.0])
    x = mx.array([[0.5, 0.5, 0.5], [1.0, 2.0, 3.0]])
    g = mx.grad(lambda m: dist.normal(m, 2.0).log_prob(x).sum())(mu)
    np.testing.assert_allclose(np.array(g), ((np.array(x) - np.array(mu)) / 4.0).sum(0), rtol=1e-6)


def test_multivariate_gradients_w_r_t_value_mean_and_covariance():
    cov = np.array([[2.0, 0.3], [0.3, 1.0]])
    mean = np.array([0.5, -0.2])
    x = np.array([1.0, 0.4])
    c = mx.array(cov.astype(np.float32))
    gx, gm, gc = mx.grad(lambda v, m, s: dist.mvn(m, s).log_prob(v), argnums=(0, 1, 2))(
        mx.array(x.astype(np.float32)), mx.array(mean.astype(np.float32)), c)
    prec = np.linalg.inv(cov)
    d = x - mean
    np.testing.assert_allclose(np.array(gx), -prec @ d, rtol=1e-4)
    np.testing.assert_allclose(np.array(gm), prec @ d, rtol=1e-4)
    want_c = 0.5 * (prec @ np.outer(d, d) @ prec - prec)  # d lp / d Sigma, symmetric
    np.testing.assert_allclose(np.array(gc), want_c, rtol=1e-3, atol=1e-5)
    alpha = np.array([2.0, 3.0, 4.0])
    xs = np.array([0.2, 0.3, 0.5])
    ga = mx.grad(lambda a: dist.dirichlet(a).log_prob(mx.array(xs.astype(np.float32))))(mx.array(alpha.astype(np.float32)))
    from scipy.special import digamma
    np.testing.assert_allclose(np.array(ga), np.log(xs) - digamma(alpha) + digamma(alpha.sum()), rtol=1e-4, atol=1e-5)
    gw = mx.grad(lambda s: dist.wishart(5.0, s).log_prob(mx.array(cov.astype(np.float32))))(mx.eye(2) * 1.5)
    v = 1.5 * np.eye(2)
    vinv = np.linalg.inv(v)
    want = 0.5 * (vinv @ cov @ vinv) - 0.5 * 5.0 * vinv
    np.testing.assert_allclose(np.array(gw), want, rtol=1e-3, atol=1e-5)
