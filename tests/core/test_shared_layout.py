"""The shared-key lane layout of vectorized execution (`layout="shared"`, the default of vectorized IS).

One unbatched key for all lanes; each draw takes row `lane` of an (N,) + shape draw
(`genmlx.rng.lanewise`). What it guarantees: the same key gives the same pass bit for
bit; lanes are independent draws from the right law (checked here by the
distribution tests' KS / chi-square tests at ALPHA = 1e-3 with fixed keys, by
moments within 6 Monte Carlo standard errors, and by log_ml against exact
answers); nested `gm.vmap`, `gm.switch` and `gm.mix` work. Lane i is NOT the
scalar run of any key (that is the per-lane layout's guarantee, tests in
test_vectorize.py).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer
from genmlx.distributions.base import Distribution
from genmlx.vectorize import lane

from .models import VECTORIZABLE, beta_bernoulli

ALPHA = 1e-3
N = 20_000
BB_DATA = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
BB_LOG_EVIDENCE = math.lgamma(9) + math.lgamma(5) - math.lgamma(14) - (2 * math.lgamma(2) - math.lgamma(4))

vcases = pytest.mark.parametrize("case", VECTORIZABLE, ids=[c.name for c in VECTORIZABLE])


def _site(d):
    @gm.gen
    def one():
        return gm.trace("x", d)

    return one


def _shared_draws(d, n=N, seed=0):
    vt = _site(d).vsimulate((), n=n, key=mx.random.key(seed), layout="shared")
    return np.array(vt["x"]).astype(np.float64)


def _same(a, b):
    from genmlx.tree import flatten

    la, _ = flatten(a)
    lb, _ = flatten(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.shape == y.shape and mx.array_equal(x, y, equal_nan=True).item()


@vcases
def test_shared_layout_repeats_bit_for_bit_with_a_fixed_key(case):
    key = mx.random.key(3)
    a = case.gf.vsimulate(case.args, n=6, key=key, layout="shared")
    b = case.gf.vsimulate(case.args, n=6, key=key, layout="shared")
    _same(a.get_choices()._leaves, b.get_choices()._leaves)
    _same(a.score, b.score)
    (ga, wa), (gb, wb) = (case.gf.vgenerate(case.args, {}, n=6, key=key, layout="shared") for _ in range(2))
    _same(wa, wb)
    _same(ga.score, gb.score)
    sel = gm.select(*a.get_choices().addresses()[:1])
    ra, rb = (case.gf.vregenerate(a, sel, key=key, layout="shared") for _ in range(2))
    _same(ra[1], rb[1])
    _same(ra[0].score, rb[0].score)


@vcases
def test_shared_layout_lanes_are_valid_scalar_traces(case):
    """Each lane of a shared-key trace is a trace of the model: its score is what `assess` gives."""
    vt = case.gf.vsimulate(case.args, n=4, key=mx.random.key(8), layout="shared")
    for i in range(4):
        tr = lane(vt, i)
        sc, _ = case.gf.assess(case.args, tr.get_choices())
        assert sc.item() == pytest.approx(tr.score.item(), rel=1e-4, abs=1e-4)


def test_shared_lanes_are_distinct_and_have_the_right_moments():
    @gm.gen
    def m():
        a = gm.trace("a", dist.normal(1.0, 2.0))
        b = gm.trace("b", dist.normal(0.0, 1.0))
        return a + b

    vt = m.vsimulate((), n=N, key=mx.random.key(1), layout="shared")
    a, b = np.array(vt["a"], np.float64), np.array(vt["b"], np.float64)
    assert len(np.unique(a)) > 0.999 * N
    se = 2.0 / math.sqrt(N)
    assert abs(a.mean() - 1.0) < 6 * se
    assert abs(a.var() - 4.0) < 6 * 4.0 * math.sqrt(2.0 / N)
    assert abs(np.corrcoef(a, b)[0, 1]) < 6 / math.sqrt(N)  # the two sites are independent
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 6 / math.sqrt(N)  # neighbouring lanes are independent


def test_shared_and_per_lane_layouts_differ_but_both_are_reproducible():
    m = _site(dist.normal(0.0, 1.0))
    key = mx.random.key(2)
    s = np.array(m.vsimulate((), n=8, key=key, layout="shared")["x"])
    p = np.array(m.vsimulate((), n=8, key=key)["x"])
    assert not np.allclose(s, p)
    with pytest.raises(ValueError, match="layout"):
        m.vsimulate((), n=8, key=key, layout="lanes")


# -- every distribution family at a scalar site under the shared layout ---------------------------

def test_a_shared_lane_takes_its_row_of_the_one_draw_without_a_gather():
    """Under the pass's vmap over arange(N) every lane's row, stacked, is the (N, ...) draw itself."""
    from genmlx import rng

    key, n = mx.random.key(5), 7

    def lane_draw(i):
        with rng.lane_layout((n, i)):
            return rng.uniform(key, (3,))

    got, plain = mx.vmap(lane_draw)(mx.arange(n, dtype=mx.int32)), mx.random.uniform(shape=(n, 3), key=key)
    assert gm.memory.count_nodes(got) == gm.memory.count_nodes(plain)  # (counted before evaluation)
    assert mx.array_equal(got, plain).item()
    # a single lane outside a batch gathers its own row
    assert mx.array_equal(lane_draw(mx.array(4)), mx.random.uniform(shape=(n, 3), key=key)[4]).item()


from distributions.test_samplers import CONTINUOUS, DISCRETE, _chi2_pvalue  # noqa: E402  (the module pytest already imported)


@pytest.mark.parametrize("name, d, cdf", CONTINUOUS, ids=[c[0] for c in CONTINUOUS])
def test_continuous_family_in_shared_layout_passes_ks_test(name, d, cdf):
    x = _shared_draws(d)
    assert np.all(np.isfinite(x))
    assert stats.kstest(x, cdf).pvalue > ALPHA


@pytest.mark.parametrize("name, d, pmf, support", DISCRETE, ids=[c[0] for c in DISCRETE])
def test_discrete_family_in_shared_layout_passes_chi_square_test(name, d, pmf, support):
    x = _shared_draws(d, seed=5)
    assert _chi2_pvalue(x, pmf, list(support)) > ALPHA


@pytest.mark.parametrize("a, b", [(2.0, 3.0), (0.5, 0.7)])
def test_beta_with_per_lane_parameters_in_shared_layout(a, b):
    """Parameters computed from another site (batched): the gamma rule's batched-shape path."""

    @gm.gen
    def m():
        u = gm.trace("u", dist.uniform(0.0, 1.0))
        return gm.trace("x", dist.beta(a + 0.0 * u, b))

    x = np.array(m.vsimulate((), n=N, key=mx.random.key(4), layout="shared")["x"], np.float64)
    assert stats.kstest(x, stats.beta(a, b).cdf).pvalue > ALPHA


def test_vector_sites_in_shared_layout():
    @gm.gen
    def m():
        g = gm.trace("g", dist.gamma(mx.array([0.5, 3.0]), 1.0))
        d = gm.trace("d", dist.dirichlet([1.0, 2.0, 3.0]))
        z = gm.trace("z", dist.normal(mx.zeros(3), 1.0))
        return g, d, z

    vt = m.vsimulate((), n=N, key=mx.random.key(6), layout="shared")
    g = np.array(vt["g"], np.float64)
    assert stats.kstest(g[:, 0], stats.gamma(0.5).cdf).pvalue > ALPHA
    assert stats.kstest(g[:, 1], stats.gamma(3.0).cdf).pvalue > ALPHA
    d = np.array(vt["d"], np.float64)
    assert stats.kstest(d[:, 2], stats.beta(3.0, 3.0).cdf).pvalue > ALPHA
    z = np.array(vt["z"], np.float64)
    for j in range(3):
        assert stats.kstest(z[:, j], stats.norm().cdf).pvalue > ALPHA
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 6 / math.sqrt(N)


# -- combinators --------------------------------------------------------------------------------


def test_nested_vmap_in_shared_layout_gives_independent_elements():
    @gm.gen
    def point(mu):
        return gm.trace("x", dist.normal(mu, 1.0))

    inner = gm.vmap(point)

    @gm.gen
    def outer():
        s = gm.trace("s", dist.normal(0.0, 1.0))
        return gm.trace("v", inner, mx.array([0.0, 10.0, 20.0]) + 0.0 * s)

    vt = outer.vsimulate((), n=N, key=mx.random.key(9), layout="shared")
    x = np.array(vt["v", "x"], np.float64)
    assert x.shape == (N, 3)
    for j, mu in enumerate([0.0, 10.0, 20.0]):
        assert stats.kstest(x[:, j] - mu, stats.norm().cdf).pvalue > ALPHA
    c = np.corrcoef(x.T)
    assert np.all(np.abs(c[np.triu_indices(3, 1)]) < 6 / math.sqrt(N))
    tr = lane(vt, 7)
    assert tr.score.item() == pytest.approx(outer.assess((), tr.get_choices())[0].item(), rel=1e-5)


def test_switch_and_mix_in_shared_layout_pick_branches_at_the_right_rates():
    @gm.gen
    def low():
        return gm.trace("x", dist.normal(-5.0, 1.0))

    @gm.gen
    def high():
        return gm.trace("x", dist.normal(5.0, 1.0))

    @gm.gen
    def sw():
        k = gm.trace("k", dist.bernoulli(0.3))
        return gm.trace("v", gm.switch(low, high), k.astype(mx.int32))

    mix = gm.mix([low, high], [0.0, math.log(3.0)])  # P(high) = 0.75
    for gf, p_high in ((sw, 0.3), (mix, 0.75)):
        vt = gf.vsimulate((), n=N, key=mx.random.key(10), layout="shared")
        r = np.array(vt.retval, np.float64)
        frac = np.mean(r > 0)
        assert abs(frac - p_high) < 6 * math.sqrt(p_high * (1 - p_high) / N), (gf, frac)
        assert stats.kstest(r[r > 0] - 5.0, stats.norm().cdf).pvalue > ALPHA


# -- importance sampling (shared layout by default) -----------------------------------------------


def test_vectorized_is_log_ml_matches_the_exact_beta_bernoulli_evidence():
    obs = {("y", i): float(y) for i, y in enumerate(BB_DATA)}
    res = infer.importance_sampling(beta_bernoulli, (len(BB_DATA),), obs, n_particles=100_000, vectorized=True,
                                    key=mx.random.key(0))
    # Monte Carlo standard error of log_ml: sqrt(var(w) / N) / mean(w) ~ 0.003 here; 0.03 is 10 of them
    assert abs(res.log_ml - BB_LOG_EVIDENCE) < 0.03
    p = np.array(res.traces.values("p"), np.float64)
    w = np.exp(np.array(res.log_weights) - max(res.log_weights))
    post_mean = np.sum(w * p) / np.sum(w)
    assert abs(post_mean - 9.0 / 14.0) < 0.01  # posterior Beta(9, 5)
    again = infer.importance_sampling(beta_bernoulli, (len(BB_DATA),), obs, n_particles=100_000, vectorized=True,
                                      key=mx.random.key(0))
    assert again.log_weights == res.log_weights
    per_lane = infer.importance_sampling(beta_bernoulli, (len(BB_DATA),), obs, n_particles=2_000, vectorized=True,
                                         key=mx.random.key(0), layout="per_lane")
    assert abs(per_lane.log_ml - BB_LOG_EVIDENCE) < 0.1


# -- the compiled vectorized pass of IS (genmlx.compiled_pass) ----------------------------------------


@gm.gen
def _reg(xs):
    s = gm.trace("s", dist.normal(0.0, 10.0))
    b = gm.trace("b", dist.normal(0.0, 10.0))
    gm.trace("y", dist.normal(s * xs + b, 1.0))
    return s


def test_compiled_pass_is_cached_and_takes_observations_and_array_args_as_inputs():
    from genmlx import compiled_pass
    from genmlx import vectorize as V

    xs = mx.array([0.0, 1.0, 2.0])
    key = mx.random.key(3)
    outs = []
    for ys in ([1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]):
        obs = gm.choicemap({"y": mx.array(ys)})
        comp, wc = compiled_pass.compiled_vgenerate(_reg, (xs,), obs, 64, key, "shared")
        plain, wp = V.vgenerate(_reg, (xs,), obs, 64, key, "shared")
        np.testing.assert_allclose(np.array(wc), np.array(wp), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(np.array(comp["s"]), np.array(plain["s"]), rtol=1e-6)
        assert comp.batch == 64 and comp.args[0] is xs
        assert lane(comp, 5)["y"].tolist() == ys
        outs.append(wc)
    assert not np.allclose(np.array(outs[0]), np.array(outs[1]))  # new observation values, same compiled pass
    n_cached = len(compiled_pass._COMPILED)
    compiled_pass.compiled_vgenerate(_reg, (xs + 1.0,), gm.choicemap({"y": mx.array([0.0, 0.0, 0.0])}), 64, key, "shared")
    assert len(compiled_pass._COMPILED) == n_cached


def test_compiled_vgenerate_runs_the_plain_pass_when_it_cannot_cache_one():
    from genmlx import compiled_pass
    from genmlx import vectorize as V

    @gm.gen
    def tagged(xs, tags):  # a set in the args: no cache signature
        return gm.trace("s", dist.normal(0.0, 10.0)) * xs

    obs, key, n_cached = gm.choicemap({}), mx.random.key(7), len(compiled_pass._COMPILED)
    tr, w = compiled_pass.compiled_vgenerate(tagged, (mx.array([1.0, 2.0]), {"a"}), obs, 8, key, "per_lane")
    plain, wp = V.vgenerate(tagged, (mx.array([1.0, 2.0]), {"a"}), obs, 8, key, "per_lane")
    assert len(compiled_pass._COMPILED) == n_cached
    assert tr.batch == 8 and np.array_equal(np.array(tr["s"]), np.array(plain["s"]))
    assert np.array_equal(np.array(w), np.array(wp))


def test_compiled_pass_reports_invalid_parameters_naming_the_site():
    @gm.gen
    def bad():
        s = gm.trace("s", dist.normal(0.0, 1.0))
        gm.trace("x", dist.normal(0.0, s), )  # sigma < 0 in about half the lanes

    with pytest.raises(ValueError, match="sigma"):
        infer.importance_sampling(bad, (), {"x": 0.5}, n_particles=100, vectorized=True, key=mx.random.key(0))


def test_lean_is_pass_traces_hold_exactly_the_weighted_particles():
    """Vectorized IS evaluates only particle values and weights; the trace is made from those values."""
    from genmlx import compiled_pass as V

    obs = {("y", i): float(y) for i, y in enumerate(BB_DATA)}
    res = infer.importance_sampling(beta_bernoulli, (len(BB_DATA),), obs, n_particles=500, vectorized=True,
                                    key=mx.random.key(4))
    cm = beta_bernoulli._constraints(gm.choicemap(obs))
    k = mx.random.split(mx.random.key(4), 1)[0]  # the driver's one step key
    vals, w = V.vgenerate_values(beta_bernoulli, (len(BB_DATA),), cm, 500, k)
    assert np.array_equal(np.array(res.traces.values("p")), np.array(vals[("p",)]))
    assert np.allclose(np.array(w, np.float64), res.log_weights, rtol=1e-6, atol=1e-6)
    for i in (0, 123, 499):
        tr = res.traces[i]
        obs_score = sum(tr.get_subtrace(("y", j)).score.item() for j in range(len(BB_DATA)))
        assert obs_score == pytest.approx(res.log_weights[i], rel=1e-5, abs=1e-5)
        assert tr.score.item() == pytest.approx(beta_bernoulli.assess((len(BB_DATA),), tr.get_choices())[0].item(),
                                                rel=1e-5)


def test_lean_is_pass_with_switch_and_vmap_sites():
    @gm.gen
    def low(mu):
        return gm.trace("x", dist.normal(mu - 2.0, 1.0))

    @gm.gen
    def high(mu):
        return gm.trace("x", dist.normal(mu + 2.0, 1.0))

    @gm.gen
    def point(m):
        return gm.trace("z", dist.normal(m, 1.0))

    @gm.gen
    def m():
        mu = gm.trace("mu", dist.normal(0.0, 1.0))
        k = gm.trace("k", dist.bernoulli(0.5)).astype(mx.int32)
        x = gm.trace("s", gm.switch(low, high), k, mu)
        gm.trace("v", gm.vmap(point), mx.zeros(3) + x)
        gm.trace("obs", dist.normal(x, 0.5))

    res = infer.importance_sampling(m, (), {"obs": 1.0}, n_particles=2_000, vectorized=True, key=mx.random.key(5))
    assert np.all(np.isfinite(res.log_weights))
    for i in (0, 7, 1999):
        tr = res.traces[i]
        assert tr.score.item() == pytest.approx(m.assess((), tr.get_choices())[0].item(), rel=1e-5, abs=1e-5)
        assert tr.get_subtrace("obs").score.item() == pytest.approx(res.log_weights[i], rel=1e-5, abs=1e-5)


def test_lean_is_pass_still_reports_invalid_parameters_of_latent_sites():
    """The lean pass has no checks; the separate checks pass must still raise (a latent site's sigma < 0)."""

    @gm.gen
    def bad():
        s = gm.trace("s", dist.normal(0.0, 1.0))
        x = gm.trace("x", dist.normal(0.0, s))  # latent: its score is not in the IS weight
        gm.trace("y", dist.normal(0.0 * x, 1.0))

    with pytest.raises(ValueError, match="sigma"):
        infer.importance_sampling(bad, (), {"y": 0.5}, n_particles=100, vectorized=True, key=mx.random.key(0))


class _PlainNormal(Distribution):
    """A user-defined distribution whose sampler calls mx.random directly."""

    name = "plain_normal"

    def __init__(self, mu):
        super().__init__()
        self.mu = mu

    def _sample(self, key, shape):
        return self.mu + mx.random.normal(shape=shape, key=key)

    def _log_prob(self, x):
        return -0.5 * (x - self.mu) ** 2 - 0.5 * math.log(2 * math.pi)


def test_user_distribution_calling_mx_random_still_gets_distinct_lanes():
    @gm.gen
    def m():
        x = gm.trace("x", _PlainNormal(1.0))
        gm.trace("y", dist.normal(x, 1.0))

    res = infer.importance_sampling(m, (), {"y": 0.5}, n_particles=20_000, vectorized=True, key=mx.random.key(4))
    xs = np.asarray(res.state["x"])
    assert len(np.unique(xs)) > 0.99 * xs.size  # not one draw repeated across lanes (float32 ties aside)
    # posterior of x: N((1 + 0.5) / 2, 1/2); importance-weighted mean within 6 Monte Carlo SEs
    w = np.exp(np.asarray(res.log_weights) - max(res.log_weights))
    mean = float(np.sum(w * xs) / np.sum(w))
    se = math.sqrt(0.5 / res.stats["ess"])
    assert abs(mean - 0.75) < 6 * se
