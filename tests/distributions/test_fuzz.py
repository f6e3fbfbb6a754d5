"""Property test: random valid parameters (log-uniform over the extremes of issue 3) never give NaN,
and agree with scipy wherever scipy's float64 value is finite (the extreme tolerance: 1e-2)."""

import math

import mlx.core as mx
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dist_cases import BY_NAME
from dist_helpers import assert_close_logp, f32

pos = st.floats(-3.0, 4.0).map(lambda e: float(np.float32(10.0 ** e)))
loc = st.floats(-1e3, 1e3).map(lambda v: float(np.float32(v)))
prob = st.floats(0.0, 1.0).map(lambda v: float(np.float32(v)))
count = st.integers(0, 10_000)

PARAMS = {
    "normal": st.tuples(loc, st.floats(-10, 10).map(lambda e: float(np.float32(10.0 ** e)))),
    "exponential": st.tuples(pos),
    "laplace": st.tuples(loc, pos),
    "cauchy": st.tuples(loc, pos),
    "lognormal": st.tuples(st.floats(-5, 5), st.floats(-2, 1).map(lambda e: 10.0 ** e)),
    "gamma": st.tuples(pos, pos),
    "inv_gamma": st.tuples(pos, pos),
    "beta": st.tuples(pos, pos),
    "student_t": st.tuples(pos, loc, pos),
    "von_mises": st.tuples(st.floats(-3, 3), st.floats(-3, math.log10(500)).map(lambda e: 10.0 ** e)),
    "wrapped_cauchy": st.tuples(st.floats(-3, 3), st.floats(0, 0.999)),
    "wrapped_normal": st.tuples(st.floats(-3, 3), st.floats(-3, 2).map(lambda e: 10.0 ** e)),
    "bernoulli": st.tuples(prob),
    "poisson": st.tuples(st.floats(-3, 4).map(lambda e: 10.0 ** e)),
    "binomial": st.tuples(count, prob),
    "geometric": st.tuples(st.floats(1e-4, 1.0)),
    "neg_binomial": st.tuples(pos, st.floats(1e-4, 1.0)),
}


def _values(name, ps, rng):
    base = f32(BY_NAME[name].values(*ps))
    d = BY_NAME[name].make(*ps)
    draws = np.array(d.sample(mx.random.key(int(rng.integers(1 << 30))), (16,))).astype(np.float64)
    return np.concatenate([base, draws])


def _check(name, ps):
    ps = tuple(p if isinstance(p, int) else float(np.float32(p)) for p in ps)
    case = BY_NAME[name]
    x = _values(name, ps, np.random.default_rng(0))
    ours = np.array(case.make(*ps).log_prob(mx.array(x.astype(np.float32)))).astype(np.float64)
    with np.errstate(all="ignore"):
        ref = np.asarray(case.ref(x, *ps), dtype=np.float64)
    assert not np.any(np.isnan(ours)), (name, ps, x[np.isnan(ours)])
    assert_close_logp(ours, ref, 1e-2, f"{name}{ps}")


def _make_test(name):
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(PARAMS[name])
    def test(ps):
        _check(name, ps)

    test.__name__ = f"test_random_parameters_never_give_nan_{name}"
    return test


for _name in PARAMS:
    globals()[f"test_random_parameters_never_give_nan_{_name}"] = _make_test(_name)
