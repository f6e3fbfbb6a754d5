"""Vectorized execution: one pass over [N] arrays, equal to N scalar runs bit for bit."""

from __future__ import annotations

import io
import re

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist
from genmlx.checks import raise_failed
from genmlx.tree import arrays_and_checks, flatten
from genmlx.vectorize import VectorizationError, lane

from .models import MAP, UNFOLD, VECTORIZABLE, by_name, linreg, nested, point

vcases = pytest.mark.parametrize("case", VECTORIZABLE, ids=[c.name for c in VECTORIZABLE])
N = 5


def assert_same(a, b):
    """Bit-for-bit equality of arrays (shape, dtype, values) and of the structure around them."""
    la, ra = flatten(a)
    lb, rb = flatten(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.shape == y.shape and x.dtype == y.dtype, (x, y)
        assert mx.array_equal(x, y, equal_nan=True).item(), (x, y)


def assert_trace_equal(t: gm.Trace, s: gm.Trace):
    ca, cb = t.get_choices(), s.get_choices()
    assert ca.addresses() == cb.addresses()
    for a in ca.addresses():
        assert_same(ca[a], cb[a])
    assert_same(t.score, s.score)
    assert_same(t.retval, s.retval)


def scalar_runs(key, n):
    return mx.random.split(key, n)


@vcases
def test_vsimulate_lane_i_equals_scalar_run_with_split_key_bit_for_bit(case):
    key = mx.random.key(11)
    vt = case.gf.vsimulate(case.args, n=N, key=key)
    assert vt.batch == N and vt.score.shape == (N,)
    for i, k in enumerate(scalar_runs(key, N)):
        assert_trace_equal(lane(vt, i), case.gf.simulate(case.args, key=k))


@vcases
def test_vgenerate_lanes_and_weights_equal_scalar_runs_bit_for_bit(case):
    key = mx.random.key(12)
    ref = case.gf.simulate(case.args, key=mx.random.key(99))
    addrs = ref.get_choices().addresses()
    obs = gm.choicemap({a: ref[a] for a in addrs[len(addrs) // 2:]})
    vt, w = case.gf.vgenerate(case.args, obs, n=N, key=key)
    assert w.shape == (N,)
    for i, k in enumerate(scalar_runs(key, N)):
        t, wi = case.gf.generate(case.args, obs, key=k)
        assert_trace_equal(lane(vt, i), t)
        assert_same(w[i], wi)


@vcases
def test_vupdate_lanes_equal_scalar_updates_bit_for_bit(case):
    vt = case.gf.vsimulate(case.args, n=N, key=mx.random.key(13))
    ref = case.gf.simulate(case.args, key=mx.random.key(98))
    addrs = ref.get_choices().addresses()
    cm = gm.choicemap({addrs[0]: ref[addrs[0]]})
    key = mx.random.key(14)
    new, w, discard = case.gf.vupdate(vt, cm, key=key)
    assert w.shape == (N,) and new.batch == N
    for i, k in enumerate(scalar_runs(key, N)):
        t, wi, d = case.gf.update(lane(vt, i), cm, key=k)
        assert_trace_equal(lane(new, i), t)
        assert_same(w[i], wi)
        assert d.addresses() == discard.addresses()
        for a in d.addresses():
            assert_same(discard[a][i], d[a])


@vcases
def test_vregenerate_lanes_equal_scalar_regenerates_bit_for_bit(case):
    vt = case.gf.vsimulate(case.args, n=N, key=mx.random.key(15))
    addrs = lane(vt, 0).get_choices().addresses()
    sel = gm.select(addrs[0], addrs[-1])
    key = mx.random.key(16)
    new, w = case.gf.vregenerate(vt, sel, key=key)
    for i, k in enumerate(scalar_runs(key, N)):
        t, wi = case.gf.regenerate(lane(vt, i), sel, key=k)
        assert_trace_equal(lane(new, i), t)
        assert_same(w[i], wi)


def test_vupdate_growing_an_unfold_equals_scalar_updates():
    """A particle filter's move: one more step, observed; every lane equals its scalar update."""
    vt = UNFOLD.vsimulate((3, 0.0, 0.5), n=N, key=mx.random.key(1))
    key = mx.random.key(2)
    new, w, _ = UNFOLD.vupdate(vt, {(3, "o"): 1.5}, args=(4, 0.0, 0.5), key=key)
    assert len(new.sites) == 4
    for i, k in enumerate(scalar_runs(key, N)):
        t, wi, _ = UNFOLD.update(lane(vt, i), {(3, "o"): 1.5}, args=(4, 0.0, 0.5), key=k)
        assert_trace_equal(lane(new, i), t)
        assert_same(w[i], wi)


def test_a_distribution_vectorizes():
    d = dist.normal(1.0, 2.0)
    key = mx.random.key(3)
    vt = d.vsimulate((), n=N, key=key)
    for i, k in enumerate(scalar_runs(key, N)):
        assert_same(vt.retval[i], d.simulate((), key=k).retval)


# -- one pass: the graph does not grow with N ------------------------------------------------

_NODE = re.compile(r"^\{ (\d+) \[label", re.MULTILINE)


def pending_nodes(*objs) -> int:
    arrays = []
    for o in objs:
        arrays += arrays_and_checks(o)[0]
    buf = io.StringIO()
    mx.export_to_dot(buf, *arrays)
    return len(set(_NODE.findall(buf.getvalue())))


@pytest.mark.parametrize("model,args", [(nested, ()), (linreg, ([1.0, 2.0, 3.0],)), (MAP, ([0.5, 1.5],))],
                         ids=["nested", "linreg", "map_"])
def test_graph_node_count_is_the_same_for_n_10_and_10000(model, args):
    counts = {}
    for n in (10, 10_000):
        vt = model.vsimulate(args, n=n, key=mx.random.key(4))
        gt, w = model.vgenerate(args, {}, n=n, key=mx.random.key(5))
        counts[n] = (pending_nodes(vt), pending_nodes(gt, w))
        assert vt.score.shape == (n,)
    assert counts[10] == counts[10_000]
    assert counts[10][0] > 0  # counted before evaluation: a stub would give 0 on both sides


def test_vectorized_trace_evaluates_without_transformation_arrays():
    """Every array the trace holds (values, scores, distribution parameters) can be evaluated."""
    vt = nested.vsimulate((), n=N, key=mx.random.key(6))
    arrays, checks = arrays_and_checks(vt)
    for st in vt.sites.values():
        if st.sites is None:
            arrays += [v for v in vars(st.gen_fn).values() if isinstance(v, mx.array)]
    mx.eval(arrays, [c.ok for c in checks])
    raise_failed(checks)
    assert lane(vt, 2).get_subtrace("p").gen_fn.name == "beta"


def test_vectorized_deferred_checks_cover_all_lanes():
    @gm.gen
    def scale():
        s = gm.trace("s", dist.normal(0.0, 1.0))
        gm.trace("x", dist.normal(0.0, s))  # sigma must be > 0: fails in the lanes where s < 0

    vt = scale.vsimulate((), n=50, key=mx.random.key(7))
    assert len(vt.checks) == 1 and vt.checks[0].ok.shape == ()
    mx.eval(vt.checks[0].ok)
    with pytest.raises(ValueError, match="sigma"):
        raise_failed(vt.checks)


# -- what cannot be batched -----------------------------------------------------------------


def test_python_branch_on_random_value_raises_vectorization_error_naming_model():
    m = by_name("branching").gf
    with pytest.raises(VectorizationError, match="branching") as e:
        m.vsimulate((), n=4)
    assert "gm.switch" in str(e.value) and "mx.where" in str(e.value)
    assert isinstance(e.value, TypeError)


@pytest.mark.parametrize("name", ["recurse", "mask"])
def test_models_deciding_on_values_raise_vectorization_error(name):
    case = by_name(name)
    with pytest.raises(VectorizationError):
        case.gf.vgenerate(case.args, {}, n=3)


def test_mask_with_array_flag_raises_vectorization_error():
    @gm.gen
    def m():
        on = gm.trace("on", dist.bernoulli(0.5))
        gm.trace("inner", gm.mask(point), on, 1.0)

    with pytest.raises(VectorizationError, match="flag"):
        m.vsimulate((), n=3)


def test_switch_branches_of_different_structure_raise_vectorization_error():
    @gm.gen
    def one():
        gm.trace("a", dist.normal(0.0, 1.0))

    @gm.gen
    def two():
        gm.trace("b", dist.normal(0.0, 1.0))

    @gm.gen
    def m():
        k = gm.trace("k", dist.bernoulli(0.5))
        gm.trace("s", gm.switch(one, two), k)

    with pytest.raises(VectorizationError, match="branch 0 and branch 1 differ"):
        m.vsimulate((), n=3)
    m.simulate(())  # the scalar GFI runs it


def test_vupdate_needs_a_vectorized_trace():
    with pytest.raises(ValueError, match="vectorized"):
        linreg.vupdate(linreg.simulate(([1.0],)), {})
    with pytest.raises(ValueError, match="n"):
        linreg.vsimulate(([1.0],), n=0)


def test_lane_checks_its_input():
    vt = linreg.vsimulate(([1.0],), n=3, key=mx.random.key(0))
    with pytest.raises(IndexError):
        lane(vt, 3)
    with pytest.raises(ValueError):
        lane(linreg.simulate(([1.0],)), 0)
