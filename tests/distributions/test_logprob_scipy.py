"""Log-densities of the scalar distributions against scipy.stats (float64), over grids with extremes."""

import mlx.core as mx
import numpy as np
import pytest

from dist_cases import CASES, Case
from dist_helpers import assert_close_logp, f32


def _params32(ps):
    return tuple(p if isinstance(p, int) else float(np.float32(p)) for p in ps)


def _ref(case: Case, x, ps):
    with np.errstate(all="ignore"):
        return np.asarray(case.ref(x, *ps), dtype=np.float64)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_log_prob_matches_scipy_on_grid_with_python_number_params(case):
    for ps in case.params:
        ps = _params32(ps)
        x = f32(case.values(*ps))
        ours = case.make(*ps).log_prob(mx.array(x.astype(np.float32)))
        assert ours.shape == x.shape
        assert_close_logp(ours, _ref(case, x, ps), case.tol, f"{case.name}{ps}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_log_prob_broadcasts_batched_array_params_against_batched_values(case):
    """Parameters as [P, 1] arrays, values as [P, V]: one call, same numbers as the reference."""
    grid = [_params32(ps) for ps in case.params]
    values = [f32(case.values(*ps)) for ps in grid]
    width = max(len(v) for v in values)
    xs = np.stack([np.pad(v, (0, width - len(v)), mode="edge") for v in values])
    cols = list(zip(*grid))
    arrays = [mx.array(np.array(c, dtype=np.float32)[:, None]) for c in cols]
    ours = np.array(case.make(*arrays).log_prob(mx.array(xs.astype(np.float32))))
    assert ours.shape == xs.shape
    for i, ps in enumerate(grid):
        assert_close_logp(ours[i], _ref(case, xs[i], ps), case.tol, f"{case.name}{ps} (array params)")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_scalar_value_gives_scalar_log_prob(case):
    ps = _params32(case.params[0])
    d = case.make(*ps)
    x = d.sample(mx.random.key(1))
    lp = d.log_prob(x)
    assert lp.shape == () and lp.dtype == mx.float32


def test_discrete_log_prob_accepts_int_and_float_values_equally():
    from genmlx import dist

    for d, vals in [(dist.poisson(3.5), [0, 1, 7]), (dist.binomial(12, 0.3), [0, 5, 12]),
                    (dist.neg_binomial(2.5, 0.4), [0, 3, 9]), (dist.geometric(0.2), [0, 4]),
                    (dist.categorical([0.0, 1.0, 2.0]), [0, 2]), (dist.bernoulli(0.3), [0, 1])]:
        a = np.array(d.log_prob(mx.array(vals, dtype=mx.int32)))
        b = np.array(d.log_prob(mx.array(vals, dtype=mx.float32)))
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("array_params", [False, True], ids=["float", "array"])
@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 12.0])
def test_gamma_density_at_zero_matches_scipy(a, array_params):
    """At x = 0: +inf below shape 1, log(rate) at shape 1, -inf above (both kernels: host-known and array)."""
    from scipy import stats

    from genmlx import dist

    rate = 2.0
    d = dist.gamma(mx.array(a), mx.array(rate)) if array_params else dist.gamma(a, rate)
    got = np.array(d.log_prob(mx.array([0.0, 0.7])))
    want = stats.gamma.logpdf([0.0, 0.7], a, scale=1.0 / rate)
    assert got[0] == want[0] if np.isinf(want[0]) else abs(got[0] - want[0]) < 1e-6
    assert abs(got[1] - want[1]) < 1e-4
