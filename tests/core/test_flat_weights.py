"""The lean IS pass with the flattened density's weights (`compiled_pass._flat_values`).

A model observed at many scalar sites scores its observations as groups
(`genmlx.flat_density` with the observations as data): the particles must be
the site-by-site pass's draws, the weights the same numbers to float32
rounding, new observation values must reach the cached program, and a model
the density cannot flatten must fall back to the site-by-site pass.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import compiled_pass, dist
from genmlx import inference as infer


@gm.gen
def linreg(xs):
    """tests/core/models.py's regression with N(0, 2^2) priors: IS from the prior keeps a usable ESS."""
    slope = gm.trace("slope", dist.normal(0.0, 2.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 2.0))
    for i, x in enumerate(xs):
        gm.trace(("y", i), dist.normal(slope * x + intercept, 1.0))


@gm.gen
def mixed(n):
    """Two forms of observation (a normal group, a Poisson group), a vector latent and a rate latent."""
    w = gm.trace("w", dist.normal(mx.zeros(2), 1.0))
    rate = gm.trace("rate", dist.gamma(2.0, 1.0))
    for i in range(n):
        gm.trace(("y", i), dist.normal(w[0] * i / n + w[1], 0.5))
        gm.trace(("k", i), dist.poisson(rate))


@gm.gen
def rounded_mean(n):
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    m = mx.round(mu * 10.0) / 10.0  # a function the flattening run does not know: it cannot follow it
    for i in range(n):
        gm.trace(("y", i), dist.normal(m, 1.0))


XS = [i / 10 - 2.0 for i in range(40)]
YS = [1.5 * x - 0.5 + 0.3 * math.sin(7 * i) for i, x in enumerate(XS)]
CASES = {
    "linreg": (linreg, (XS,), {("y", i): y for i, y in enumerate(YS)}),
    "mixed": (mixed, (20,), {**{("y", i): 0.1 * i - 1.0 for i in range(20)},
                             **{("k", i): float(i % 4) for i in range(20)}}),
}


def _pass(model, args, obs, n, key, flat: bool, monkeypatch):
    """The lean pass on the flattened weights (the CPU's size rules off) or site by site."""
    monkeypatch.setattr(compiled_pass, "FLAT_MIN_SITES", 1 if flat else 10 ** 9)
    monkeypatch.setattr(compiled_pass, "FLAT_CPU_MAX_ELEMENTS", 1 << 40)
    cm = model._constraints(obs)
    return compiled_pass.vgenerate_values(model, args, cm, n, key)


def _flat_entries():
    return [v for k, v in compiled_pass._COMPILED.items() if k[0] == "flat"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_flat_weights_equal_the_site_by_site_weights_for_the_same_particles(case, monkeypatch):
    model, args, obs = CASES[case]
    key = mx.random.key(11)
    compiled_pass._COMPILED.clear()
    vals, w = _pass(model, args, obs, 500, key, True, monkeypatch)
    assert len(_flat_entries()) == 1 and _flat_entries()[0] is not compiled_pass._UNCOMPILABLE
    vals_s, w_s = _pass(model, args, obs, 500, key, False, monkeypatch)
    assert set(vals) == set(vals_s)
    for p in vals:
        assert np.array_equal(np.array(vals[p]), np.array(vals_s[p]))
    assert w.shape == (500,)
    np.testing.assert_allclose(np.array(w), np.array(w_s), rtol=2e-5, atol=1e-4)


def test_the_observation_vector_is_the_same_read_on_the_host_or_stacked_on_the_device(monkeypatch):
    """The CPU reads the observations on the host, a GPU stacks them: both give the same vector, so
    the GPU's branch runs here too, through the whole pass."""
    vals = [mx.array(v) for v in (1.5, -0.25, 3.0)] + [mx.array(2.0) * 2.0]  # the last one lazy
    host, device = compiled_pass._observation_vector(vals, True), compiled_pass._observation_vector(vals, False)
    assert host.dtype == device.dtype == mx.float32 and host.tolist() == device.tolist() == [1.5, -0.25, 3.0, 4.0]
    model, args, obs = CASES["linreg"]
    key = mx.random.key(13)
    compiled_pass._COMPILED.clear()
    _, w_host = _pass(model, args, obs, 200, key, True, monkeypatch)
    stacked = compiled_pass._observation_vector
    monkeypatch.setattr(compiled_pass, "_observation_vector", lambda v, on_host: stacked(v, False))
    _, w_device = _pass(model, args, obs, 200, key, True, monkeypatch)
    assert np.array_equal(np.array(w_host), np.array(w_device))


def test_observations_given_as_host_numbers_are_read_on_the_host():
    model, _, obs = CASES["linreg"]
    assert compiled_pass._given_as_host_data(model._constraints(obs))
    some_arrays = {p: (mx.array(y) if i % 2 else y) for i, (p, y) in enumerate(obs.items())}
    assert not compiled_pass._given_as_host_data(model._constraints(some_arrays))
    assert not compiled_pass._given_as_host_data(gm.ChoiceMap._from_leaves({("y", 0): mx.array(1.0)}))


def test_new_observation_values_reach_the_cached_program(monkeypatch):
    model, args, obs = CASES["linreg"]
    key = mx.random.key(12)
    compiled_pass._COMPILED.clear()
    other = {p: -y for p, y in obs.items()}
    for o in (obs, other, obs):
        _, w = _pass(model, args, o, 300, key, True, monkeypatch)
        _, w_s = _pass(model, args, o, 300, key, False, monkeypatch)
        np.testing.assert_allclose(np.array(w), np.array(w_s), rtol=2e-5, atol=1e-4)
    assert len(_flat_entries()) == 1  # one compiled program served all three


def test_a_model_that_does_not_flatten_falls_back_to_the_site_by_site_pass(monkeypatch):
    obs = {("y", i): (-1.0) ** i for i in range(8)}
    compiled_pass._COMPILED.clear()
    monkeypatch.setattr(compiled_pass, "FLAT_MIN_SITES", 1)
    res = infer.importance_sampling(rounded_mean, (8,), obs, n_particles=200, vectorized=True, key=mx.random.key(1))
    assert _flat_entries() == [compiled_pass._UNCOMPILABLE]
    assert any(k[0] == "values" for k in compiled_pass._COMPILED)  # the site-by-site lean pass ran
    assert math.isfinite(res.log_ml)


def test_flat_weights_are_taken_only_where_they_pay():
    cpu = mx.default_device().type == mx.DeviceType.cpu
    model, args, obs = CASES["linreg"]  # 40 observed sites
    few = {p: y for p, y in list(obs.items())[:20]}  # 20 observed, 20 latent
    for o, n, taken in ((obs, 1_000, True), (obs, 200_000, not cpu), (few, 1_000, False)):
        compiled_pass._COMPILED.clear()
        compiled_pass.vgenerate_values(model, args, model._constraints(o), n, mx.random.key(0))
        assert bool(_flat_entries()) == taken, (len(o), n)


@pytest.mark.statistical
def test_vectorized_is_on_the_flat_path_matches_the_exact_evidence():
    """y_i ~ N(slope x_i + intercept, 1) with N(0, 2^2) priors: y ~ N(0, 4 X X^T + I)."""
    model, args, obs = CASES["linreg"]
    compiled_pass._COMPILED.clear()
    res = infer.importance_sampling(model, args, obs, n_particles=100_000, vectorized=True,
                                    key=mx.random.key(5))
    assert _flat_entries() and _flat_entries()[0] is not compiled_pass._UNCOMPILABLE
    x = np.stack([np.array(XS), np.ones(len(XS))], axis=1)
    cov = 4.0 * x @ x.T + np.eye(len(XS))
    y = np.array(YS)
    exact = float(-0.5 * y @ np.linalg.solve(cov, y) - 0.5 * np.linalg.slogdet(cov)[1]
                  - 0.5 * len(YS) * math.log(2 * math.pi))
    lw = np.array(res.log_weights, np.float64)
    w = np.exp(lw - lw.max())
    se = w.std() / (math.sqrt(len(w)) * w.mean())  # delta-method standard error of log(mean w)
    assert abs(res.log_ml - exact) < 5 * se + 0.05


# -- property: any mix of observed scalar forms ---------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FORMS = ("normal", "poisson", "bernoulli", "gamma")
_site = st.tuples(st.sampled_from(FORMS), st.floats(-2.0, 2.0), st.floats(0.05, 0.95))


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_site, min_size=1, max_size=32))
def test_flat_weights_equal_site_weights_for_any_mix_of_observed_forms(sites):
    """Observed scalar sites of four forms in any order, their parameters mixing two latents and a
    per-site constant: the flattened weights are the site-by-site ones for the same particles."""

    @gm.gen
    def model():
        a = gm.trace("a", dist.normal(0.0, 1.0))
        r = gm.trace("r", dist.gamma(2.0, 2.0))
        for i, (form, x, _) in enumerate(sites):
            if form == "normal":
                gm.trace(("o", i), dist.normal(a * x + 0.5, r + 0.5))
            elif form == "poisson":
                gm.trace(("o", i), dist.poisson(r * abs(x) + 0.1))
            elif form == "bernoulli":
                gm.trace(("o", i), dist.bernoulli(mx.sigmoid(a * x)))
            else:
                gm.trace(("o", i), dist.gamma(r + 1.0, 1.0 + abs(x)))

    def value(form, x, u):
        return {"normal": x, "poisson": float(round(3 * u)), "bernoulli": float(u > 0.5), "gamma": 0.1 + 2 * u}[form]

    obs = {("o", i): value(*s) for i, s in enumerate(sites)}
    with pytest.MonkeyPatch.context() as mp:
        key = mx.random.key(len(sites))
        compiled_pass._COMPILED.clear()
        vals, w = _pass(model, (), obs, 64, key, True, mp)
        assert _flat_entries() and _flat_entries()[0] is not compiled_pass._UNCOMPILABLE  # it was flattened
        vals_s, w_s = _pass(model, (), obs, 64, key, False, mp)
    assert all(np.array_equal(np.array(vals[p]), np.array(vals_s[p])) for p in vals_s)
    np.testing.assert_allclose(np.array(w), np.array(w_s), rtol=1e-4, atol=1e-3)


def test_a_vectorized_is_call_signs_its_args_once(monkeypatch):
    """Its two compiled passes (the lean one, the checks of its particles) share one `call_key`: the
    args' signature (XS: 40 floats) is made once per call, and both passes still hit their cache."""
    model, args, obs = CASES["linreg"]
    real_key, real_sig = compiled_pass.call_key, compiled_pass._sig
    keys, signed = [], []
    monkeypatch.setattr(compiled_pass, "call_key", lambda *a: keys.append(1) or real_key(*a))
    monkeypatch.setattr(compiled_pass, "_sig", lambda o, arrays: (signed.append(1) if o is XS else None)
                        or real_sig(o, arrays))
    runs = [infer.importance_sampling(model, args, obs, n_particles=64, vectorized=True, key=mx.random.key(i))
            for i in range(3)]
    assert len(keys) == 3 and len(signed) == 3  # once per call
    assert all(math.isfinite(r.log_ml) for r in runs)
    before = len(compiled_pass._COMPILED)
    infer.importance_sampling(model, args, obs, n_particles=64, vectorized=True, key=mx.random.key(9))
    assert len(compiled_pass._COMPILED) == before  # the shared key finds the cached passes
