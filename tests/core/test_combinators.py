"""Combinators: their addresses, scores as sums of element log densities, and incremental update."""

from __future__ import annotations

import importlib

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

import genmlx as gm
from genmlx import dist
from genmlx.rng import KeyStream

from .models import MAP, MASK, MIX, SCAN, SWITCH, UNFOLD, VMAP, composite, high, low, point, step


def f(x) -> float:
    return float(np.asarray(x))


def close(a, b, tol=1e-4):
    np.testing.assert_allclose(f(a), f(b), rtol=1e-5, atol=tol)


def point_logpdf(x, z, y) -> float:
    return stats.norm.logpdf(z, x, 1.0) + stats.norm.logpdf(y, z, 0.5)


class Counting:
    """Counts kernel runs (to show which steps an update re-runs)."""

    def __init__(self):
        self.calls = []

        @gm.gen
        def kernel(t, s, drift):
            self.calls.append(t)
            s2 = gm.trace("s", dist.normal(s + drift, 1.0))
            gm.trace("o", dist.normal(s2, 0.3))
            return s2

        self.kernel = kernel


# -- addresses (as documented) ----------------------------------------------------------------


@pytest.mark.parametrize("mod", ["map_", "unfold", "switch", "scan", "mix", "recurse", "mask", "vmap"])
def test_every_combinator_module_documents_its_addresses(mod):
    doc = importlib.import_module(f"genmlx.combinators.{mod}").__doc__
    assert "Addresses" in doc


def test_map_addresses_are_index_then_kernel_address():
    tr = MAP.simulate(([0.5, 1.5, -1.0],), key=mx.random.key(0))
    assert tr.get_choices().addresses() == [(i, a) for i in range(3) for a in ("z", "y")]
    assert [f(r) for r in tr.retval] == [f(tr[(i, "z")]) for i in range(3)]
    assert tr.get_subtrace(1).gen_fn is point


def test_map_of_a_distribution_puts_draw_i_at_address_i():
    m = gm.map_(dist.normal(0.0, 1.0))
    tr = m.simulate(([None] * 4,), key=mx.random.key(0))
    assert tr.get_choices().addresses() == [0, 1, 2, 3]
    close(tr.score, sum(stats.norm.logpdf(f(tr[i])) for i in range(4)))


def test_unfold_addresses_are_step_then_kernel_address_and_retval_is_states():
    tr = UNFOLD.simulate((3, 0.0, 0.5), key=mx.random.key(0))
    assert tr.get_choices().addresses() == [(t, a) for t in range(3) for a in ("s", "o")]
    assert [f(s) for s in tr.retval] == [f(tr[(t, "s")]) for t in range(3)]


def test_scan_retval_is_final_carry_and_outputs():
    tr = SCAN.simulate((0.0, [1.0, -1.0, 2.0]), key=mx.random.key(0))
    carry, ys = tr.retval
    assert tr.get_choices().addresses() == [(0, "n"), (1, "n"), (2, "n")]
    close(carry, tr[(2, "n")])
    assert [f(y) for y in ys] == [2 * f(tr[(t, "n")]) for t in range(3)]


def test_switch_branch_choices_are_not_nested():
    tr = SWITCH.simulate((1,), key=mx.random.key(0))
    assert tr.get_choices().addresses() == ["x"]
    close(tr.score, stats.norm.logpdf(f(tr["x"]), 3.0, 0.5))
    sw = gm.switch(dist.normal(0.0, 1.0), low)
    t0 = sw.simulate((0,), key=mx.random.key(1))
    assert t0.is_leaf()  # a distribution branch: its value is the switch's own

    @gm.gen
    def m():
        gm.trace("v", sw, 0)

    assert m.simulate((), key=mx.random.key(2)).get_choices().addresses() == ["v"]


def test_mix_addresses_are_component_and_the_component_choices():
    tr = MIX.simulate((), key=mx.random.key(0))
    assert tr.get_choices().addresses() == ["component", "x"]
    k = int(f(tr["component"]))
    logits = np.array([0.3, -0.2])
    lw = logits[k] - np.logaddexp.reduce(logits)
    mu, sd = [(-2.0, 1.0), (3.0, 0.5)][k]
    close(tr.score, lw + stats.norm.logpdf(f(tr["x"]), mu, sd))
    md = gm.mix([dist.normal(0.0, 1.0), dist.normal(5.0, 1.0)], [0.0, 0.0])
    assert md.simulate((), key=mx.random.key(1)).get_choices().addresses() == ["component", "value"]


@gm.gen
def low1(_):
    return gm.trace("x", dist.normal(-2.0, 1.0))


@gm.gen
def high1(_):
    return gm.trace("x", dist.normal(3.0, 0.5))


def test_mix_logits_may_be_a_function_of_the_args():
    m = gm.mix([low1, high1], lambda w: mx.array([0.0, w]))
    tr, _ = m.generate((2.0,), {"component": 1, "x": 3.0})
    close(tr.score, (2.0 - np.logaddexp(0.0, 2.0)) + stats.norm.logpdf(3.0, 3.0, 0.5))


def test_mask_choices_are_not_nested_and_off_is_empty():
    on = MASK.simulate((True, 1.0), key=mx.random.key(0))
    assert on.get_choices().addresses() == ["z", "y"]
    off = MASK.simulate((False, 1.0), key=mx.random.key(0))
    assert len(off.get_choices()) == 0 and f(off.score) == 0.0 and off.retval is None
    assert MASK.simulate((mx.array(True), 1.0), key=mx.random.key(0)).get_choices() == on.get_choices()


def test_recurse_addresses_nest_children_by_index():
    @gm.gen
    def node(depth):
        v = gm.trace("v", dist.normal(float(depth), 1.0))
        return v, ([(depth + 1,), (depth + 1,)] if depth < 2 else [])

    rec = gm.recurse(node, combine=lambda v, rs: v + sum(rs))
    tr = rec.simulate((0,), key=mx.random.key(0))
    addrs = tr.get_choices().addresses()
    assert addrs[0] == "v" and (0, "v") in addrs and (1, 1, "v") in addrs and len(addrs) == 7
    close(tr.retval, sum(f(v) for v in tr.get_choices().values()))
    expected = sum(stats.norm.logpdf(f(tr[a]), len(a) - 1 if isinstance(a, tuple) else 0, 1.0) for a in addrs)
    close(tr.score, expected)


def test_recurse_deeper_than_max_depth_is_an_error():
    @gm.gen
    def forever(d):
        gm.trace("v", dist.normal(0.0, 1.0))
        return d, [(d + 1,)]

    with pytest.raises(RecursionError, match="max_depth=5"):
        gm.recurse(forever, max_depth=5).simulate((0,))


def test_vmap_addresses_hold_all_elements_batched():
    xs = mx.array([0.5, 1.5, -1.0])
    key = mx.random.key(0)
    tr = VMAP.simulate((xs,), key=key)
    assert tr.get_choices().addresses() == ["z", "y"]
    assert tr["z"].shape == (3,) and tr.retval.shape == (3,)
    lane_keys = mx.random.split(KeyStream(key)(), 3)  # the combinator draws one key, split per element
    for i in range(3):
        alone = point.simulate((xs[i],), key=lane_keys[i])
        assert mx.array_equal(tr["z"][i], alone["z"]).item() and mx.array_equal(tr["y"][i], alone["y"]).item()


def test_combinators_nest_inside_dynamic_models_under_their_address():
    tr = composite.simulate(([1.0, 2.0],), key=mx.random.key(0))
    addrs = tr.get_choices().addresses()
    assert ("pts", 1, "z") in addrs and ("chain", 2, "o") in addrs and "drift" in addrs


# -- scores decompose into element log densities -----------------------------------------------


def test_map_score_is_sum_of_element_log_densities():
    xs = [0.5, 1.5, -1.0]
    tr = MAP.simulate((xs,), key=mx.random.key(1))
    close(tr.score, sum(point_logpdf(x, f(tr[(i, "z")]), f(tr[(i, "y")])) for i, x in enumerate(xs)))


def test_unfold_score_is_sum_of_step_log_densities():
    tr = UNFOLD.simulate((4, 0.0, 0.5), key=mx.random.key(2))
    s, total = 0.0, 0.0
    for t in range(4):
        st, o = f(tr[(t, "s")]), f(tr[(t, "o")])
        total += stats.norm.logpdf(st, s + 0.5, 1.0) + stats.norm.logpdf(o, st, 0.3)
        s = st
    close(tr.score, total)


def test_scan_score_is_sum_of_step_log_densities():
    xs = [1.0, -1.0, 2.0]
    tr = SCAN.simulate((0.0, xs), key=mx.random.key(3))
    c, total = 0.0, 0.0
    for t, x in enumerate(xs):
        n = f(tr[(t, "n")])
        total += stats.norm.logpdf(n, c + x, 1.0)
        c = n
    close(tr.score, total)


def test_vmap_score_is_sum_of_element_log_densities():
    xs = [0.5, 1.5, -1.0]
    tr = VMAP.simulate((mx.array(xs),), key=mx.random.key(4))
    close(tr.score, sum(point_logpdf(x, f(tr["z"][i]), f(tr["y"][i])) for i, x in enumerate(xs)))


def test_vmap_generate_takes_constraints_for_all_elements():
    xs = mx.array([0.5, 1.5, -1.0])
    ys = mx.array([1.0, 2.0, 3.0])
    tr, w = VMAP.generate((xs,), {"y": ys}, key=mx.random.key(5))
    assert mx.array_equal(tr["y"], ys).item()
    close(w, sum(stats.norm.logpdf(f(ys[i]), f(tr["z"][i]), 0.5) for i in range(3)))
    with pytest.raises(gm.AddressError, match="all 3 elements"):
        VMAP.generate((xs,), {"y": 1.0})


# -- update: what is kept, what re-runs ------------------------------------------------------------


def test_unfold_extension_runs_only_the_new_step_and_extends_the_score():
    c = Counting()
    u = gm.unfold(c.kernel)
    tr = u.simulate((5, 0.0, 0.1), key=mx.random.key(0))
    c.calls.clear()
    new, w, discard = u.update(tr, {(5, "o"): 0.7}, args=(6, 0.0, 0.1), key=mx.random.key(1))
    assert c.calls == [5]
    assert all(new.sites[(t,)] is tr.sites[(t,)] for t in range(5))
    close(w, stats.norm.logpdf(0.7, f(new[(5, "s")]), 0.3))
    close(new.score, f(tr.score) + f(new.sites[(5,)].score))
    assert len(discard) == 0


def test_unfold_update_reruns_from_the_first_constrained_step():
    c = Counting()
    u = gm.unfold(c.kernel)
    tr = u.simulate((5, 0.0, 0.1), key=mx.random.key(0))
    c.calls.clear()
    new, w, discard = u.update(tr, {(2, "s"): 0.0}, key=mx.random.key(1))
    assert c.calls == [2, 3, 4]
    assert new.sites[(0,)] is tr.sites[(0,)] and new.sites[(1,)] is tr.sites[(1,)]
    close(w, f(new.score) - f(tr.score))
    assert discard.addresses() == [(2, "s")]


def test_unfold_update_with_a_new_init_reruns_every_step():
    c = Counting()
    u = gm.unfold(c.kernel)
    tr = u.simulate((3, 0.0, 0.1), key=mx.random.key(0))
    c.calls.clear()
    new, w, _ = u.update(tr, None, args=(3, 1.0, 0.1))
    assert c.calls == [0, 1, 2]
    close(w, f(new.score) - f(tr.score))


def test_unfold_shrinking_removes_steps_into_the_discard():
    tr = UNFOLD.simulate((4, 0.0, 0.5), key=mx.random.key(0))
    new, w, discard = UNFOLD.update(tr, None, args=(2, 0.0, 0.5))
    assert len(new.sites) == 2 and len(new.retval) == 2
    assert discard.addresses() == [(t, a) for t in (2, 3) for a in ("s", "o")]
    close(w, f(new.score) - f(tr.score))


def test_map_update_keeps_untouched_elements_and_generates_new_ones():
    xs = [0.5, 1.5, -1.0]
    tr = MAP.simulate((xs,), key=mx.random.key(0))
    new, w, d = MAP.update(tr, {(1, "y"): 0.0})
    assert new.sites[(0,)] is tr.sites[(0,)] and new.sites[(2,)] is tr.sites[(2,)]
    close(w, f(new.score) - f(tr.score))
    grown, w2, _ = MAP.update(tr, {(3, "y"): 1.0}, args=(xs + [2.0],))
    assert len(grown.sites) == 4 and all(grown.sites[(i,)] is tr.sites[(i,)] for i in range(3))
    close(w2, stats.norm.logpdf(1.0, f(grown[(3, "z")]), 0.5))


def test_scan_update_reruns_from_the_first_changed_input():
    tr = SCAN.simulate((0.0, [1.0, -1.0, 2.0]), key=mx.random.key(0))
    new, w, _ = SCAN.update(tr, None, args=(0.0, [1.0, -1.0, 5.0]))
    assert new.sites[(0,)] is tr.sites[(0,)] and new.sites[(1,)] is tr.sites[(1,)]
    assert new.sites[(2,)] is not tr.sites[(2,)]
    close(w, f(new.score) - f(tr.score))


def test_switch_update_to_another_branch_keeps_shared_addresses():
    tr = SWITCH.simulate((0,), key=mx.random.key(0))
    new, w, d = SWITCH.update(tr, None, args=(1,))
    assert mx.array_equal(new["x"], tr["x"]).item() and len(d) == 0
    close(w, stats.norm.logpdf(f(tr["x"]), 3.0, 0.5) - stats.norm.logpdf(f(tr["x"]), -2.0, 1.0))
    assert new.aux[0] == 1


def test_switch_update_to_a_different_kind_of_branch_regenerates_it():
    sw = gm.switch(low1, gm.map_(point))
    tr = sw.simulate((0, [1.0]), key=mx.random.key(0))
    new, w, d = sw.update(tr, {(0, "y"): 0.5}, args=(1, [1.0]), key=mx.random.key(1))
    assert d.addresses() == ["x"] and new.get_choices().addresses() == [(0, "z"), (0, "y")]
    close(w, stats.norm.logpdf(0.5, f(new[(0, "z")]), 0.5) - f(tr.score))


def test_mix_update_of_the_component_rescores_the_kept_choices():
    tr, _ = MIX.generate((), {"component": 0, "x": 0.5})
    new, w, d = MIX.update(tr, {"component": 1})
    assert d.addresses() == ["component"] and f(d["component"]) == 0
    close(w, f(new.score) - f(tr.score))
    close(new.score, (-0.2 - np.logaddexp(0.3, -0.2)) + stats.norm.logpdf(0.5, 3.0, 0.5))


def test_mask_flag_changes_remove_or_generate_the_choices():
    on = MASK.simulate((True, 1.0), key=mx.random.key(0))
    off, w, d = MASK.update(on, None, args=(False, 1.0))
    assert len(off.get_choices()) == 0 and d.addresses() == ["z", "y"]
    close(w, -f(on.score))
    back, w2, d2 = MASK.update(off, {"y": 0.2}, args=(True, 1.0), key=mx.random.key(1))
    assert back.get_choices().addresses() == ["z", "y"] and len(d2) == 0
    close(w2, stats.norm.logpdf(0.2, f(back["z"]), 0.5))


def test_recurse_update_below_one_child_keeps_its_sibling():
    @gm.gen
    def node(depth):
        v = gm.trace("v", dist.normal(0.0, 1.0))
        return v, ([(depth + 1,), (depth + 1,)] if depth < 1 else [])

    rec = gm.recurse(node)
    tr = rec.simulate((0,), key=mx.random.key(0))
    new, w, d = rec.update(tr, {(1, "v"): 0.25})
    assert new.sites[(0,)] is tr.sites[(0,)] and f(new[(1, "v")]) == 0.25
    assert d.addresses() == [(1, "v")]
    close(w, f(new.score) - f(tr.score))


def test_combinators_built_from_equal_parts_are_equal():
    assert gm.switch(low, high) == gm.switch(low, high) and gm.switch(low, high) != gm.switch(high, low)
    assert gm.map_(point) == gm.map_(point) and gm.unfold(step) == gm.unfold(step)
    assert gm.mix([low, high], [0.0, 1.0]) == gm.mix([low, high], [0.0, 1.0])
    assert gm.mix([low, high], [0.0, 1.0]) != gm.mix([low, high], [0.0, 2.0])
