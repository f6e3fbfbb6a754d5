"""Samplers against scipy: Kolmogorov-Smirnov (continuous) and chi-square (discrete) tests.

Every test uses a fixed key, so it is deterministic; a distribution "passes" when the
test's p-value is above ALPHA = 1e-3 (the significance we state: a correct sampler
fails one such check with probability 1e-3 for a random key, and with these keys it
does not). Moment checks for the multivariate ones allow 6 Monte Carlo standard errors.
"""

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx import dist
from genmlx.distributions import gamma_sampler
from genmlx.distributions.circular import VON_MISES_REJECT
from genmlx.distributions.gamma_sampler import log_gamma_draw, rejection_rate

ALPHA = 1e-3
N = 20_000


def _draw(d, n=N, seed=0):
    return np.array(d.sample(mx.random.key(seed), (n,))).astype(np.float64)


def _wrap(t):
    return t - 2 * np.pi * np.floor((t + np.pi) / (2 * np.pi))


def _wrapped_cdf(pdf):
    grid = np.linspace(-np.pi, np.pi, 20001)
    c = np.concatenate([[0.0], np.cumsum(0.5 * (pdf(grid[1:]) + pdf(grid[:-1])) * np.diff(grid))])
    c /= c[-1]
    return lambda x: np.interp(x, grid, c)


CONTINUOUS = [
    ("normal", dist.normal(1.0, 2.0), stats.norm(1.0, 2.0).cdf),
    ("uniform", dist.uniform(-1.0, 3.0), stats.uniform(-1.0, 4.0).cdf),
    ("exponential", dist.exponential(2.5), stats.expon(scale=0.4).cdf),
    ("laplace", dist.laplace(1.0, 0.5), stats.laplace(1.0, 0.5).cdf),
    ("cauchy", dist.cauchy(0.0, 2.0), stats.cauchy(0.0, 2.0).cdf),
    ("lognormal", dist.lognormal(0.5, 0.8), stats.lognorm(0.8, scale=math.exp(0.5)).cdf),
    ("student_t", dist.student_t(3.0, 1.0, 2.0), stats.t(3.0, 1.0, 2.0).cdf),
    ("student_t_small_df", dist.student_t(0.5, 0.0, 1.0), stats.t(0.5).cdf),
    ("gamma_0.1", dist.gamma(0.1, 1.0), stats.gamma(0.1).cdf),
    ("gamma_0.5", dist.gamma(0.5, 2.0), stats.gamma(0.5, scale=0.5).cdf),
    ("gamma_1", dist.gamma(1.0, 1.0), stats.gamma(1.0).cdf),
    ("gamma_1.5", dist.gamma(1.5, 1.0), stats.gamma(1.5).cdf),
    ("gamma_3.7", dist.gamma(3.7, 0.5), stats.gamma(3.7, scale=2.0).cdf),
    ("gamma_1e4", dist.gamma(1e4, 1e4), stats.gamma(1e4, scale=1e-4).cdf),
    ("inv_gamma", dist.inv_gamma(2.5, 1.5), stats.invgamma(2.5, scale=1.5).cdf),
    ("beta_0.3_0.5", dist.beta(0.3, 0.5), stats.beta(0.3, 0.5).cdf),
    ("beta_2_5", dist.beta(2.0, 5.0), stats.beta(2.0, 5.0).cdf),
    ("beta_0.5_20", dist.beta(0.5, 20.0), stats.beta(0.5, 20.0).cdf),
    ("beta_1e3_1e3", dist.beta(1e3, 1e3), stats.beta(1e3, 1e3).cdf),
    ("truncated_normal", dist.truncated_normal(0.0, 1.0, -1.0, 2.0), stats.truncnorm(-1.0, 2.0).cdf),
    ("truncated_normal_far_tail", dist.truncated_normal(0.0, 1.0, 5.0, 6.0), stats.truncnorm(5.0, 6.0).cdf),
    ("truncated_normal_deep_left", dist.truncated_normal(0.0, 1.0, -40.0, -38.0), stats.truncnorm(-40.0, -38.0).cdf),
    ("truncated_normal_half", dist.truncated_normal(1.0, 2.0, 0.5, math.inf), stats.truncnorm(-0.25, np.inf, 1.0, 2.0).cdf),
    ("von_mises_0.5", dist.von_mises(0.0, 0.5), stats.vonmises(0.5).cdf),
    ("von_mises_2", dist.von_mises(1.0, 2.0), _wrapped_cdf(lambda t: stats.vonmises.pdf(t, 2.0, loc=1.0))),
    ("von_mises_50", dist.von_mises(0.0, 50.0), stats.vonmises(50.0).cdf),
    ("von_mises_500", dist.von_mises(0.0, 500.0), stats.vonmises(500.0).cdf),
    ("wrapped_cauchy", dist.wrapped_cauchy(0.5, 0.6),
     _wrapped_cdf(lambda t: stats.wrapcauchy.pdf(np.mod(t - 0.5, 2 * np.pi), 0.6))),
    ("wrapped_normal", dist.wrapped_normal(2.5, 1.2),
     _wrapped_cdf(lambda t: sum(stats.norm.pdf(t + 2 * np.pi * k, 2.5, 1.2) for k in range(-8, 9)))),
]


@pytest.mark.parametrize("name, d, cdf", CONTINUOUS, ids=[c[0] for c in CONTINUOUS])
def test_continuous_sampler_passes_ks_test(name, d, cdf):
    x = _draw(d)
    assert np.all(np.isfinite(x))
    assert stats.kstest(x, cdf).pvalue > ALPHA


@pytest.mark.parametrize("a", [1e-3, 0.02])
def test_tiny_gamma_shapes_in_log_space(a):
    """Gamma(1e-3) draws underflow float32; their logs must still follow the law (log G = log U / a + ...)."""
    lg = np.array(log_gamma_draw(mx.random.key(3), a, (N,))).astype(np.float64)
    assert np.all(np.isfinite(lg))
    from scipy.special import gammainc, gammaln

    def cdf(v):  # P(log G <= v); for e^v << 1, P(a, y) = y^a / Gamma(a + 1) (1 + O(y))
        return np.where(v < -30, np.exp(a * v - gammaln(a + 1)), gammainc(a, np.exp(np.maximum(v, -30))))

    assert stats.kstest(lg, cdf).pvalue > ALPHA


def test_beta_with_tiny_shapes_is_never_nan():
    x = _draw(dist.beta(1e-3, 1e-3))
    assert np.all((x >= 0) & (x <= 1))
    # Beta(e, e) puts half its mass near each end
    assert abs(np.mean(x > 0.5) - 0.5) < 6 * 0.5 / math.sqrt(N)


def _chi2_pvalue(x, pmf, support):
    counts = np.array([np.sum(x == k) for k in support], dtype=np.float64)
    expected = pmf(np.asarray(support)) * len(x)
    rest = len(x) - counts.sum()
    rest_exp = len(x) - expected.sum()
    keep = expected >= 5
    obs = np.concatenate([counts[keep], [counts[~keep].sum() + rest]])
    exp = np.concatenate([expected[keep], [expected[~keep].sum() + rest_exp]])
    if exp[-1] < 5:
        obs[-2] += obs[-1]
        exp[-2] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp).pvalue


DISCRETE = [
    ("bernoulli", dist.bernoulli(0.3), stats.bernoulli(0.3).pmf, range(2)),
    ("poisson_small", dist.poisson(3.5), stats.poisson(3.5).pmf, range(30)),
    ("poisson_tiny", dist.poisson(1e-3), stats.poisson(1e-3).pmf, range(5)),
    ("poisson_10", dist.poisson(10.0), stats.poisson(10.0).pmf, range(50)),
    ("poisson_large", dist.poisson(250.0), stats.poisson(250.0).pmf, range(150, 350)),
    ("binomial_small", dist.binomial(12, 0.3), stats.binom(12, 0.3).pmf, range(13)),
    ("binomial_flip", dist.binomial(12, 0.8), stats.binom(12, 0.8).pmf, range(13)),
    ("binomial_large", dist.binomial(1000, 0.4), stats.binom(1000, 0.4).pmf, range(300, 500)),
    ("binomial_rare", dist.binomial(10_000, 5e-4), stats.binom(10_000, 5e-4).pmf, range(30)),
    ("geometric", dist.geometric(0.25), lambda k: stats.geom(0.25).pmf(k + 1), range(60)),
    ("neg_binomial", dist.neg_binomial(2.5, 0.3), stats.nbinom(2.5, 0.3).pmf, range(80)),
    ("neg_binomial_small_r", dist.neg_binomial(0.4, 0.6), stats.nbinom(0.4, 0.6).pmf, range(30)),
    ("discrete_uniform", dist.discrete_uniform(-2, 4), stats.randint(-2, 5).pmf, range(-2, 5)),
    ("categorical", dist.categorical([0.0, 1.0, -1.0, 2.0]),
     lambda k: np.exp(np.array([0.0, 1.0, -1.0, 2.0]) - np.log(np.sum(np.exp([0.0, 1.0, -1.0, 2.0]))))[k], range(4)),
]


@pytest.mark.parametrize("name, d, pmf, support", DISCRETE, ids=[c[0] for c in DISCRETE])
def test_discrete_sampler_passes_chi_square_test(name, d, pmf, support):
    x = d.sample(mx.random.key(5), (N,))
    assert x.dtype == mx.int32
    assert _chi2_pvalue(np.array(x), pmf, list(support)) > ALPHA


def test_array_parameters_sample_per_lane():
    """Mixed array parameters take the general (per-lane) sampler branches."""
    shapes = mx.array([0.3, 1.2, 2.5, 50.0])
    g = np.array(dist.gamma(shapes, 1.0).sample(mx.random.key(7), (N,)))
    rates = mx.array([0.5, 4.0, 12.0, 400.0])
    p = np.array(dist.poisson(rates).sample(mx.random.key(8), (N,)))
    ns, ps = mx.array([5.0, 40.0, 2000.0]), mx.array([0.3, 0.9, 0.45])
    b = np.array(dist.binomial(ns, ps).sample(mx.random.key(9), (N,)))
    for j, a in enumerate([0.3, 1.2, 2.5, 50.0]):
        assert stats.kstest(g[:, j], stats.gamma(a).cdf).pvalue > ALPHA
    for j, lam in enumerate([0.5, 4.0, 12.0, 400.0]):
        assert _chi2_pvalue(p[:, j], stats.poisson(lam).pmf, list(range(int(lam + 10 * math.sqrt(lam) + 10)))) > ALPHA
    for j, (n, q) in enumerate([(5, 0.3), (40, 0.9), (2000, 0.45)]):
        assert _chi2_pvalue(b[:, j], stats.binom(n, q).pmf, list(range(n + 1))) > ALPHA


def test_sample_shapes_follow_batch_and_event_shapes():
    k = mx.random.key(0)
    assert dist.normal(mx.zeros((2, 3)), 1.0).sample(k, (4,)).shape == (4, 2, 3)
    assert dist.beta(mx.ones((3,)), 2.0).sample(k, (5, 2)).shape == (5, 2, 3)
    assert dist.dirichlet([1.0, 2.0, 3.0]).sample(k, (7,)).shape == (7, 3)
    assert dist.mvn(mx.zeros((2, 3)), mx.eye(3)).sample(k, (4,)).shape == (4, 2, 3)
    assert dist.wishart(5.0, np.eye(3).tolist()).sample(k, (2,)).shape == (2, 3, 3)
    assert dist.categorical(mx.zeros((2, 5))).sample(k, (3,)).shape == (3, 2)
    assert dist.iid(dist.gamma(2.0, 1.0), 4).sample(k, (3,)).shape == (3, 4)
    assert dist.normal(0.0, 1.0).sample(k).shape == ()


def test_multivariate_sampler_moments():
    n = 40_000
    alpha = np.array([0.3, 2.0, 5.0])
    x = np.array(dist.dirichlet(alpha.tolist()).sample(mx.random.key(11), (n,))).astype(np.float64)
    a0 = alpha.sum()
    mean = alpha / a0
    var = mean * (1 - mean) / (a0 + 1)
    np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.abs(x.mean(0) - mean) < 6 * np.sqrt(var / n))
    cov01 = -mean[0] * mean[1] / (a0 + 1)
    assert abs(np.cov(x.T)[0, 1] - cov01) < 6 * math.sqrt(var[0] * var[1] / n) + 1e-4

    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    mean = np.array([1.0, -2.0, 0.5])
    for c in (cov.tolist(), mx.array(cov.astype(np.float32))):
        z = np.array(dist.mvn(mean.tolist(), c).sample(mx.random.key(12), (n,))).astype(np.float64)
        assert np.all(np.abs(z.mean(0) - mean) < 6 * np.sqrt(np.diag(cov) / n))
        np.testing.assert_allclose(np.cov(z.T), cov, atol=6 * np.sqrt(2 * np.outer(np.diag(cov), np.diag(cov)) / n).max())

    scale = np.array([[1.0, 0.3], [0.3, 0.5]])
    df = 6.5
    w = np.array(dist.wishart(df, scale.tolist()).sample(mx.random.key(13), (n,))).astype(np.float64)
    # E W = df V; Var W_ij = df (V_ij^2 + V_ii V_jj)
    sd = np.sqrt(df * (scale ** 2 + np.outer(np.diag(scale), np.diag(scale))) / n)
    assert np.all(np.abs(w.mean(0) - df * scale) < 6 * sd)
    np.testing.assert_allclose(w, np.swapaxes(w, -1, -2), atol=1e-5)
    iw = np.array(dist.inv_wishart(df, scale.tolist()).sample(mx.random.key(14), (n,))).astype(np.float64)
    p = 2
    want = scale / (df - p - 1)
    var = ((df - p + 1) * scale ** 2 + (df - p - 1) * np.outer(np.diag(scale), np.diag(scale))) / (
        (df - p) * (df - p - 1) ** 2 * (df - p - 3))
    assert np.all(np.abs(iw.mean(0) - want) < 6 * np.sqrt(var / n))
    # scipy's Wishart KS on a 1-d statistic: the trace of V^{-1} W ~ chi2(df p)
    tr = np.einsum("ij,nji->n", np.linalg.inv(scale), w)
    assert stats.kstest(tr, stats.chi2(df * p).cdf).pvalue > ALPHA


# -- rejection samplers: stated failure probabilities ------------------------------------------


@pytest.mark.parametrize("a", [2.0, 3.0, 10.0])
def test_gamma_one_round_rejection_is_within_the_stated_bound(a):
    """One Marsaglia-Tsang round rejects with probability <= 0.037 / a (the bound behind FAIL_PROB)."""
    rej = rejection_rate(a, n=400_000, key=mx.random.key(21))
    bound = gamma_sampler.reject_prob_bound(a)
    assert rej <= bound + 4 * math.sqrt(bound / 400_000)


def test_gamma_failure_probability_multiplies_over_rounds():
    """With 2 rounds at shape 2 a lane falls back with probability p^2 ~ 3.4e-4 (counted over 1e6 lanes)."""
    n = 1_000_000
    _, ok = log_gamma_draw(mx.random.key(22), 2.0, (n,), rounds=2, with_ok=True)
    fails = n - int(mx.sum(ok.astype(mx.int32)).item())
    p1 = rejection_rate(2.0, n=400_000, key=mx.random.key(23))
    expected = n * p1 * p1
    assert abs(fails - expected) < 6 * math.sqrt(expected)
    assert gamma_sampler.rounds_for(2.0) >= 4 and gamma_sampler.reject_prob_bound(2.0) ** 4 <= gamma_sampler.FAIL_PROB


def test_von_mises_acceptance_is_above_best_fisher_bound():
    from genmlx.distributions.circular import _bf_params, _bf_round

    for kappa in [0.1, 1.0, 10.0, 500.0]:
        u = mx.random.uniform(shape=(2, 200_000), key=mx.random.key(24))
        th = _bf_round(u[0] * (1 - 2 ** -24) + 2 ** -25, u[1] * (1 - 2 ** -24) + 2 ** -25, kappa, _bf_params(kappa))
        acc = float(mx.mean((th >= 0).astype(mx.float32)).item())
        assert acc >= 1 - VON_MISES_REJECT - 0.005, (kappa, acc)


def test_ptrs_and_btrs_rejection_rates_are_within_stated_bounds():
    from genmlx.distributions.discrete_samplers import _btrs_round, _ptrs_round

    u = mx.random.uniform(shape=(2, 400_000), key=mx.random.key(25)) * (1 - 2 ** -24) + 2 ** -25
    for lam, bound in [(10.0, 0.25), (100.0, 0.17), (1e4, 0.125)]:
        rej = float(mx.mean((_ptrs_round(u[0], u[1], lam) < 0).astype(mx.float32)).item())
        assert rej <= bound, (lam, rej)
    for n, p, bound in [(20.0, 0.5, 0.30), (1000.0, 0.5, 0.20), (1e4, 0.01, 0.20)]:
        rej = float(mx.mean((_btrs_round(u[0], u[1], n, p) < 0).astype(mx.float32)).item())
        assert rej <= bound, (n, p, rej)


# -- vectorized execution: lanes under mx.vmap equal scalar draws ---------------------------------


@pytest.mark.parametrize("make", [lambda: dist.gamma(0.7, 2.0), lambda: dist.beta(2.0, 3.0), lambda: dist.poisson(40.0),
                                  lambda: dist.von_mises(0.3, 4.0), lambda: dist.dirichlet([0.5, 1.0]),
                                  lambda: dist.student_t(3.0, 0.0, 1.0), lambda: dist.binomial(50, 0.4)])
def test_vmap_over_keys_equals_scalar_draws(make):
    d = make()
    keys = mx.random.split(mx.random.key(31), 8)
    batched = mx.vmap(lambda k: d._sample(k, ()))(keys)
    for i in range(8):
        np.testing.assert_array_equal(np.array(batched[i]), np.array(d._sample(keys[i], ())))


def test_sampling_runs_inside_compile_without_host_sync():
    f = mx.compile(lambda k: dist.beta(0.5, 2.0)._sample(k, (100,)) + dist.poisson(30.0)._sample(k, (100,)))
    y = f(mx.random.key(1))
    assert y.shape == (100,) and np.all(np.isfinite(np.array(y)))


# -- Beta's single draw: both gammas from one sampler pass (log_gamma_pair) ------------------------


@pytest.mark.parametrize("a, b", [(2.0, 2.0), (0.5, 3.0), (1.5, 0.3), (0.2, 7.0)])  # the last: two boost levels
def test_single_beta_draws_follow_the_law(a, b):
    """One draw per key (the path of a scalar site): vmapped lanes, KS against scipy."""
    keys = mx.random.split(mx.random.key(41), N)
    x = np.array(mx.vmap(lambda k: dist.beta(a, b)._sample(k, ()))(keys)).astype(np.float64)
    assert np.all((x >= 0) & (x <= 1))
    assert stats.kstest(x, stats.beta(a, b).cdf).pvalue > ALPHA


@pytest.mark.parametrize("params", [(2.0, 2.0), (0.5, 3.0), (1.5, 0.3)])
def test_paired_lanes_equal_scalar_draws_bit_for_bit(params):
    """The vmap rule compacts rounds 2..K over (lane, gamma) pairs: the scalar call's numbers, exactly;
    also with a parameter batched over the lanes (boosts decided per lane)."""
    keys = mx.random.split(mx.random.key(5), 300)
    d = dist.beta(*params)
    lanes = mx.vmap(lambda k: d._sample(k, ()))(keys)
    np.testing.assert_array_equal(np.array(lanes), np.array(mx.stack([d._sample(k, ()) for k in keys])))
    av = mx.array(np.linspace(0.2, 4.0, 300).astype(np.float32))
    lanes = mx.vmap(lambda k, a: dist.beta(a, params[1])._sample(k, ()))(keys, av)
    one = mx.stack([dist.beta(av[i], params[1])._sample(keys[i], ()) for i in range(300)])
    np.testing.assert_array_equal(np.array(lanes), np.array(one))


@pytest.mark.parametrize("a, b", [(2.0, 2.0), (0.5, 3.0), (1.5, 0.3), (0.2, 7.0)])
def test_one_beta_draw_is_one_compiled_call_with_the_lanes_numbers(a, b):
    """`beta_draw` (a scalar site's draw) is the pair's single lane as one compiled call: the same
    numbers as sigmoid(log G_a - log G_b) of `log_gamma_pair`, key for key, also with array
    parameters and under `mx.vmap` (the lane's vmap rule still applies inside the compiled call)."""
    from genmlx.distributions.gamma_sampler import beta_draw, log_gamma_pair

    keys = mx.random.split(mx.random.key(17), 200)
    for pa, pb in [(mx.array(a), b), (a, b)]:
        got = mx.stack([beta_draw(k, pa, pb) for k in keys])
        want = mx.stack([mx.sigmoid(mx.subtract(*log_gamma_pair(k, pa, pb))) for k in keys])
        np.testing.assert_array_equal(np.array(got), np.array(want))
    np.testing.assert_array_equal(np.array(mx.vmap(lambda k: beta_draw(k, a, b))(keys)), np.array(want))


def test_lane_caches_stay_small_whatever_the_shapes():
    """The lane functions are cached by q; `q_bucket` rounds q up to a few values, so a model drawing
    from many different shapes adds a handful of entries, not one per shape."""
    from genmlx.distributions import gamma_sampler as G

    qs = [G.reject_prob_bound(max(a, 2.0)) for a in np.linspace(0.1, 500.0, 2000)]
    buckets = {G.q_bucket(q) for q in qs}
    assert all(G.q_bucket(q) >= q for q in qs) and len(buckets) <= 9, sorted(buckets)
    before, compiled = len(G._LANES), G._beta_lane.cache_info().currsize
    for a in np.linspace(2.0, 3.9, 50):
        dist.beta(float(a), float(a) + 0.05)._sample(mx.random.key(0), ())
    assert len(G._LANES) - before <= 2 and G._beta_lane.cache_info().currsize - compiled <= 2


def test_paired_draw_builds_fewer_graph_nodes_than_two_draws():
    """Why the pair exists: one sampler pass for both gammas, not two."""
    from genmlx.distributions.gamma_sampler import log_gamma_pair, other_key
    from genmlx.memory.graph import count_nodes

    key = mx.random.key(2)
    mx.eval(key)
    pair = count_nodes(*log_gamma_pair(key, 2.0, 2.0))
    two = count_nodes(log_gamma_draw(key, 2.0), log_gamma_draw(other_key(key), 2.0))
    assert pair < 0.7 * two, (pair, two)


@pytest.mark.parametrize("a, b", [(2.0, 2.0), (0.5, 3.0), (0.2, 7.0)])
@pytest.mark.parametrize("n", [50, N])  # below and above the batch size whose later rounds are compacted
def test_batched_beta_pairs_follow_the_law(a, b, n):
    x = _draw(dist.beta(a, b), n=n, seed=7)
    assert np.all((x >= 0) & (x <= 1))
    assert stats.kstest(x, stats.beta(a, b).cdf).pvalue > ALPHA
