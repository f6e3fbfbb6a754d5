"""genmlx.flat_density: the flattened density equals the model's own (assess) and its gradient; sites of one
form are one group; models it cannot flatten are reported as such (None), never scored wrongly."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from genmlx import dist, flat_density
from genmlx.choicemap import ChoiceMap

from .models import beta_bernoulli, linreg


@gm.gen
def funnel():
    v = gm.trace("v", dist.normal(0.0, 3.0))
    scale = mx.exp(v / 2)
    for i in range(6):
        gm.trace(f"x{i}", dist.normal(0.0, scale))


@gm.gen
def point(mu):
    z = gm.trace("z", dist.normal(mu, 1.0))
    gm.trace("y", dist.normal(z, 0.5))


@gm.gen
def hierarchical(n):
    mu = gm.trace("mu", dist.normal(0.0, 2.0))
    tau = gm.trace("tau", dist.gamma(2.0, 2.0))
    for i in range(n):
        gm.trace(("g", i), point, mu + 0.0 * tau)
    gm.trace("w", dist.iid(dist.normal(mu, mx.sqrt(tau)), 5))


@gm.gen
def branchy():
    k = gm.trace("k", dist.normal(0.0, 1.0))
    if k.item() > 0:  # a Python decision on a random choice: not a static structure
        gm.trace("x", dist.normal(0.0, 1.0))


XS = [float(x) for x in np.linspace(-2, 2, 12)]
CASES = {
    "linreg": (linreg, (XS,), {**{("y", i): 0.5 * x - 1.0 for i, x in enumerate(XS)}}, ["slope", "intercept"]),
    "funnel": (funnel, (), {}, ["v"] + [f"x{i}" for i in range(6)]),
    "hierarchical": (hierarchical, (5,), {**{("g", i, "y"): 0.3 * i for i in range(5)},
                                          "w": mx.array([0.1, -0.2, 0.4, 1.0, 0.0])},
                     ["mu", "tau"] + [("g", i, "z") for i in range(5)]),
    "beta_bernoulli": (beta_bernoulli, (8,), {("y", i): float(i % 3 == 0) for i in range(8)}, ["p"]),
}


def _build(name, key=0):
    model, args, obs, variables = CASES[name]
    tr, _ = model.generate(args, gm.choicemap(obs), key=mx.random.key(key))
    paths = [gm.address.to_path(v) for v in variables]
    return model, args, tr, paths, flat_density.build(model, args, tr.get_choices(), paths)


@pytest.mark.parametrize("name", list(CASES))
def test_flat_density_equals_assess_and_its_gradient(name):
    model, args, tr, paths, flat = _build(name)
    assert flat is not None
    base = dict(tr.get_choices()._leaves)
    rng = np.random.default_rng(3)

    def assess(values):
        leaves = dict(base)
        leaves.update(zip(paths, values))
        return model.assess(args, ChoiceMap._from_leaves(leaves))[0]

    for _ in range(3):  # points other than the one traced
        values = [mx.array(np.clip(np.asarray(tr[p]) + rng.normal(scale=0.3, size=np.shape(tr[p])), 0.05, None)
                           if name in ("beta_bernoulli",) or p == ("tau",) else
                           np.asarray(tr[p]) + rng.normal(scale=0.3, size=np.shape(tr[p])), dtype=mx.float32)
                  for p in paths]
        if name == "beta_bernoulli":
            values = [mx.minimum(values[0], 0.95)]
        want = assess(values)
        got = flat.log_density(values)
        assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-4)
        g_want = mx.grad(lambda *v: assess(list(v)), argnums=list(range(len(values))))(*values)
        g_got = mx.grad(lambda *v: flat.log_density(list(v)), argnums=list(range(len(values))))(*values)
        if len(values) == 1:
            g_got, g_want = [g_got], [g_want]
        for a, b in zip(g_got, g_want):
            assert np.allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_sites_of_one_form_are_one_group():
    _, _, _, _, flat = _build("linreg")
    sizes = sorted(g.n for g in flat.groups())
    assert sizes == [1, 1, len(XS)]  # two priors scored alone, the observations as one batch
    _, _, _, _, flat = _build("funnel")
    assert sorted(g.n for g in flat.groups()) == [1, 6]


def test_a_subset_of_sites_and_compile_and_vmap():
    model, args, tr, paths, flat = _build("linreg")
    obs = [("y", i) for i in range(len(XS))]
    vals = [tr["slope"], tr["intercept"]]
    want = sum(tr.get_subtrace(p).score.item() for p in obs)
    assert flat.log_density(vals, include=obs).item() == pytest.approx(want, rel=1e-5)
    f = mx.compile(lambda s, b: flat.log_density([s, b]))
    assert f(*vals).item() == pytest.approx(tr.score.item(), rel=1e-5)
    batch = mx.vmap(lambda s: flat.log_density([s, vals[1]]))(mx.array([0.0, 1.0, 2.0]))
    assert batch.shape == (3,)


def test_data_paths_take_their_values_at_each_call():
    """Observations named as data: a list of values or one vector of them, the same density as the
    density built with those values fixed, for the first values and for others."""
    model, args, tr, paths, flat = _build("linreg")
    obs = [("y", i) for i in range(len(XS))]
    with_data = flat_density.build(model, args, tr.get_choices(), paths, data=obs)
    vals = [tr["slope"], tr["intercept"]]
    for ys in ([tr[p].item() for p in obs], [0.5 * i - 1.0 for i in range(len(XS))]):
        choices = ChoiceMap({**{p: tr[p] for p in paths}, **dict(zip(obs, ys))})
        fixed = flat_density.build(model, args, choices, paths)
        want = fixed.log_density(vals, include=obs).item()
        as_list = with_data.log_density(vals, include=obs, data=[mx.array(y) for y in ys])
        as_vector = mx.compile(lambda s, b, d: with_data.log_density([s, b], include=obs, data=d))(
            *vals, mx.array(ys))
        assert as_list.item() == pytest.approx(want, rel=1e-5)
        assert as_vector.item() == pytest.approx(want, rel=1e-5)
    k = mx.array([0.0, 1.0, 2.0])  # a batch of states: one density each
    assert with_data.log_density([k, mx.zeros(3)], include=obs, batch=1, data=mx.array(ys)).shape == (3,)


def test_models_that_cannot_be_flattened():
    tr, _ = branchy.generate((), gm.choicemap({}), key=mx.random.key(1))
    assert flat_density.build(branchy, (), tr.get_choices(), [("k",)]) is None

    @gm.gen
    def with_map():
        mu = gm.trace("mu", dist.normal(0.0, 1.0))
        gm.trace("m", gm.map_(point), mx.zeros(3) + mu)

    tr, _ = with_map.generate((), gm.choicemap({}), key=mx.random.key(1))
    assert flat_density.build(with_map, (), tr.get_choices(), [("mu",)]) is None


def test_an_unguarded_parameter_check_makes_the_density_nan():
    @gm.gen
    def probit():
        z = gm.trace("z", dist.normal(0.0, 1.0))
        gm.trace("y", dist.binomial(3.0, z))  # z outside [0, 1]: an invalid p

    tr, _ = probit.generate((), gm.choicemap({"z": 0.5, "y": 1.0}), key=mx.random.key(0))
    flat = flat_density.build(probit, (), tr.get_choices(), [("z",)])
    assert flat.checked()
    assert np.isfinite(flat.log_density([mx.array(0.4)]).item())
    assert np.isnan(flat.log_density([mx.array(1.4)]).item())


@pytest.mark.parametrize("name", list(CASES))
def test_a_batch_of_states_scores_each_state(name):
    """`batch=1`: K states at once (compiled_mh's K proposals) give the K densities of one state each."""
    model, args, tr, paths, flat = _build(name)
    rng = np.random.default_rng(5)
    k = 6
    batch = []
    for p in paths:
        v = np.asarray(tr[p])
        noise = rng.normal(scale=0.2, size=(k, *v.shape))
        x = np.clip(v + noise, 0.05, 0.95) if name == "beta_bernoulli" else (
            np.abs(v + noise) + 0.05 if p == ("tau",) else v + noise)
        batch.append(mx.array(x, dtype=mx.float32))
    got = flat.log_density(batch, batch=1)
    assert got.shape == (k,)
    for j in range(k):
        one = flat.log_density([b[j] for b in batch]).item()
        assert got[j].item() == pytest.approx(one, rel=1e-5, abs=1e-4)


def test_scalar_sites_are_scored_elementwise_and_other_forms_by_vmap():
    _, _, _, _, flat = _build("linreg")
    assert [g.elementwise for g in flat.groups() if g.n > 1] == [True]
    _, _, _, _, flat = _build("hierarchical")  # the iid site nests a distribution: scored through vmap
    nested = [g for g in flat.groups() if g.template.path == ("w",)]
    assert nested and not nested[0].elementwise

    @gm.gen
    def vector_obs():
        w = gm.trace("w", dist.normal(0.0, 1.0))
        for i in range(5):  # a vector value per site: not scalar sites
            gm.trace(("c", i), dist.normal(w * mx.array([0.0, 1.0, 2.0]), 1.0))

    obs = {("c", i): mx.array([0.1 * i, 1.0, 2.0 - i]) for i in range(5)}
    tr, _ = vector_obs.generate((), gm.choicemap(obs), key=mx.random.key(2))
    flat = flat_density.build(vector_obs, (), tr.get_choices(), [("w",)])
    group = [g for g in flat.groups() if g.n == 5][0]
    assert not group._broadcasts([mx.array(0.5)], 0)
    assert flat.log_density([tr["w"]]).item() == pytest.approx(tr.score.item(), rel=1e-5)
    ws = mx.array([-1.0, 0.0, 0.7])
    got = flat.log_density([ws], batch=1)
    for j in range(3):
        assert got[j].item() == pytest.approx(flat.log_density([ws[j]]).item(), rel=1e-5)


def test_a_batch_with_a_failed_check_is_nan_only_where_it_fails():
    @gm.gen
    def probit():
        z = gm.trace("z", dist.normal(0.0, 1.0))
        for i in range(5):
            gm.trace(("y", i), dist.binomial(3.0, z))

    tr, _ = probit.generate((), gm.choicemap({"z": 0.5, **{("y", i): 1.0 for i in range(5)}}), key=mx.random.key(0))
    flat = flat_density.build(probit, (), tr.get_choices(), [("z",)])
    got = np.asarray(flat.log_density([mx.array([0.4, 1.4, 0.6])], batch=1))
    assert np.isfinite(got[0]) and np.isnan(got[1]) and np.isfinite(got[2])


@gm.gen
def _compares():
    a = gm.trace("a", dist.bernoulli(0.3))
    b = gm.trace("b", dist.bernoulli(mx.where(a == 1, 0.8, 0.2)))
    gm.trace("c", dist.bernoulli(mx.where(a != b, 0.4, 0.9)))


def test_equality_of_a_random_value_is_part_of_the_density():
    """`a == 1` and `a != b` on random values are arrays while flattening, as on MLX arrays (Python's
    default `==` would be a plain False, dropping the dependence without an error)."""
    tr, _ = _compares.generate((), {"c": 1}, key=mx.random.key(0))
    flat = flat_density.build(_compares, (), tr.get_choices(), ["a", "b"])
    assert flat is not None and flat.depends(("b",)) and flat.depends(("c",))
    for a in (0, 1):
        for b in (0, 1):
            vals = [mx.array(a, dtype=tr["a"].dtype), mx.array(b, dtype=tr["b"].dtype)]
            want, _ = _compares.assess((), ChoiceMap({"a": vals[0], "b": vals[1], "c": tr["c"]}))
            np.testing.assert_allclose(float(flat.log_density(vals)), float(want), rtol=1e-6)


_X = mx.array(np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32))
_XS = mx.array(np.linspace(-1, 1, 20).astype(np.float32))


@gm.gen
def _arrays_on_the_left():
    w = gm.trace("w", dist.normal(mx.zeros(3), 1.0))
    s = gm.trace("s", dist.normal(0.0, 1.0))
    z = gm.trace("z", dist.categorical(mx.zeros(3)))
    gm.trace("y", dist.normal(_X @ w + _XS * s + mx.array([-1.0, 0.0, 1.0])[z], 1.0))
    gm.trace("q", dist.bernoulli(mx.where(mx.array(1) == z, 0.9, 0.1)))


def test_an_mlx_array_on_the_left_of_a_random_value_flattens():
    """`X @ w`, `xs * s`, `means[z]`, `mx.array(1) == z`: MLX's own operators raise on a symbolic
    operand (before, such a model silently took the slow path); within a trace they defer to it."""
    obs = {"y": mx.zeros(20), "q": 1}
    tr, _ = _arrays_on_the_left.generate((), obs, key=mx.random.key(0))
    mul, getitem = mx.array.__mul__, mx.array.__getitem__
    flat = flat_density.build(_arrays_on_the_left, (), tr.get_choices(), ["w", "s", "z"])
    assert mx.array.__mul__ is mul and mx.array.__getitem__ is getitem  # MLX's own, restored after the trace
    assert flat is not None
    for seed in range(4):
        t2, _ = _arrays_on_the_left.generate((), obs, key=mx.random.key(seed + 5))
        want, _ = _arrays_on_the_left.assess((), t2.get_choices())
        np.testing.assert_allclose(float(flat.log_density([t2["w"], t2["s"], t2["z"]])), float(want), rtol=1e-5)
