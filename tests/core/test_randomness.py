"""Randomness as the contract says: `key=` everywhere, `gm.seed`, keys split in visit order."""

from __future__ import annotations

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist
from genmlx.rng import KeyStream

from .models import CASES, MAP, UNFOLD, VECTORIZABLE, linreg, point, step

cases = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
vcases = pytest.mark.parametrize("case", VECTORIZABLE, ids=[c.name for c in VECTORIZABLE])


def same(a: gm.Trace, b: gm.Trace) -> bool:
    return a.get_choices() == b.get_choices() and mx.array_equal(a.score, b.score).item()


def run_all(case, key):
    """Every keyed GFI method once, from one key; returns what each produced."""
    k = mx.random.split(key, 4)
    tr = case.gf.simulate(case.args, key=k[0])
    g, w = case.gf.generate(case.args, {}, key=k[1])
    addr = tr.get_choices().addresses()[0]
    r, rw = case.gf.regenerate(tr, gm.select(addr), key=k[2])
    u, uw, _ = case.gf.update(r, None, key=k[3])
    ch, pw, _ = case.gf.propose(case.args, key=k[3])
    return [tr, g, r, u], [w, rw, uw, pw], ch


@cases
def test_same_key_gives_the_same_result_bit_for_bit_in_every_method(case):
    t1, w1, c1 = run_all(case, mx.random.key(42))
    t2, w2, c2 = run_all(case, mx.random.key(42))
    assert all(same(a, b) for a, b in zip(t1, t2))
    assert all(mx.array_equal(a, b).item() for a, b in zip(w1, w2))
    assert c1 == c2


@cases
def test_different_keys_give_different_results(case):
    a = case.gf.simulate(case.args, key=mx.random.key(1))
    b = case.gf.simulate(case.args, key=mx.random.key(2))
    assert not same(a, b)


@vcases
def test_vectorized_methods_take_a_key_and_repeat_bit_for_bit(case):
    key = mx.random.key(7)
    a, b = case.gf.vsimulate(case.args, n=3, key=key), case.gf.vsimulate(case.args, n=3, key=key)
    assert same(a, b)
    (ga, wa), (gb, wb) = case.gf.vgenerate(case.args, {}, n=3, key=key), case.gf.vgenerate(case.args, {}, n=3, key=key)
    assert same(ga, gb) and mx.array_equal(wa, wb).item()
    sel = gm.select(gm.vectorize.lane(a, 0).get_choices().addresses()[0])
    ra, rb = case.gf.vregenerate(a, sel, key=key), case.gf.vregenerate(a, sel, key=key)
    assert same(ra[0], rb[0]) and mx.array_equal(ra[1], rb[1]).item()


def test_seed_resets_genmlx_own_stream():
    gm.seed(3)
    a = linreg.simulate(([1.0],))
    b = linreg.simulate(([1.0],))
    gm.seed(3)
    c = linreg.simulate(([1.0],))
    assert same(a, c) and not same(a, b)
    gm.seed(3)
    va = linreg.vsimulate(([1.0],), n=4)
    gm.seed(3)
    assert same(va, linreg.vsimulate(([1.0],), n=4))


def test_untraced_calls_draw_from_genmlx_stream():
    gm.seed(5)
    a = point(1.0)
    gm.seed(5)
    assert mx.array_equal(a, point(1.0)).item()


def test_keys_are_split_in_visit_order_not_by_name():
    @gm.gen
    def ab():
        gm.trace("a", dist.normal(0.0, 1.0))
        gm.trace("b", dist.normal(0.0, 1.0))

    @gm.gen
    def ba():
        gm.trace("b", dist.normal(0.0, 1.0))
        gm.trace("a", dist.normal(0.0, 1.0))

    key = mx.random.key(9)
    ks = KeyStream(key)
    first, second = dist.normal(0.0, 1.0).sample(ks()), dist.normal(0.0, 1.0).sample(ks())
    t1, t2 = ab.simulate((), key=key), ba.simulate((), key=key)
    assert mx.array_equal(t1["a"], first).item() and mx.array_equal(t1["b"], second).item()
    assert mx.array_equal(t2["b"], first).item() and mx.array_equal(t2["a"], second).item()


def test_map_equals_a_loop_of_calls_at_index_addresses():
    """Element i draws from the i-th child stream: the same as tracing the kernel at address i in a loop."""

    @gm.gen
    def loop(xs):
        return [gm.trace(i, point, x) for i, x in enumerate(xs)]

    key = mx.random.key(3)
    assert MAP.simulate(([0.5, 1.0, 2.0],), key=key).get_choices() == loop.simulate(([0.5, 1.0, 2.0],), key=key).get_choices()


def test_unfold_equals_a_loop_of_calls_at_step_addresses():
    @gm.gen
    def loop(n, s, drift):
        for t in range(n):
            s = gm.trace(t, step, t, s, drift)
        return s

    key = mx.random.key(4)
    assert UNFOLD.simulate((4, 0.0, 0.5), key=key).get_choices() == loop.simulate((4, 0.0, 0.5), key=key).get_choices()


def test_a_bad_key_is_a_type_error():
    with pytest.raises(TypeError, match="key"):
        linreg.simulate(([1.0],), key=42)
    with pytest.raises(TypeError, match="key"):
        linreg.vsimulate(([1.0],), n=2, key=mx.array([1.0, 2.0]))
