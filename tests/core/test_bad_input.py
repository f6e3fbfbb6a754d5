"""Bad input: a clear error naming what was wrong, and nothing half-updated."""

from __future__ import annotations

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist

from .models import MAP, MIX, MASK, RECURSE, SWITCH, UNFOLD, VMAP, linreg, nested, point

ARGS = ([1.0, 2.0],)


def snapshot(tr: gm.Trace):
    return (dict(tr.get_choices().items()), tr.score, tr.args, tr.retval, dict(tr.sites))


def assert_unchanged(tr: gm.Trace, snap):
    choices, score, args, retval, sites = snap
    assert tr.get_choices().addresses() == list(choices)
    for a, v in choices.items():
        assert tr[a] is v
    assert tr.score is score and tr.args is args and tr.retval is retval
    assert dict(tr.sites) == sites


# -- constraining an address the model never visits -------------------------------------------


def test_generate_with_unknown_address_raises_address_error_naming_it():
    with pytest.raises(gm.AddressError, match="'slpoe'"):
        linreg.generate(ARGS, {"slpoe": 1.0})
    with pytest.raises(gm.AddressError, match=r"\('y', 7\)"):
        linreg.generate(ARGS, {("y", 7): 1.0})


def test_update_with_unknown_address_raises_and_leaves_the_trace_unchanged():
    tr = linreg.simulate(ARGS, key=mx.random.key(0))
    snap = snapshot(tr)
    with pytest.raises(gm.AddressError, match="'nope'"):
        linreg.update(tr, {"slope": 1.0, "nope": 2.0})
    assert_unchanged(tr, snap)
    new, _, _ = linreg.update(tr, {"slope": 1.0})  # the trace still works
    assert float(new["slope"]) == 1.0


def test_nested_unknown_address_is_named():
    with pytest.raises(gm.AddressError, match="'nope'"):
        nested.generate((), {("sub", "nope"): 1.0})


@pytest.mark.parametrize("gf,args,cm,named", [
    (MAP, ([1.0, 2.0],), {(5, "z"): 0.0}, r"\(5, 'z'\)"),
    (MAP, ([1.0, 2.0],), {"z": 0.0}, "'z'"),
    (MAP, ([1.0, 2.0],), {(1, "nope"): 0.0}, r"\(1, 'nope'\)"),
    (UNFOLD, (3, 0.0, 0.5), {(3, "s"): 0.0}, r"\(3, 's'\)"),
    (SWITCH, (0,), {"y": 0.0}, "'y'"),
    (MIX, (), {("component", "x"): 0.0}, "component"),
    (MASK, (False, 1.0), {"z": 0.0}, "'z'"),
    (RECURSE, (2,), {(0, "v"): 0.0}, r"\(0, 'v'\)"),
], ids=["map-index", "map-atom", "map-kernel", "unfold", "switch", "mix", "mask-off", "recurse"])
def test_combinators_name_an_unknown_constraint_address(gf, args, cm, named):
    with pytest.raises(gm.AddressError, match=named):
        gf.generate(args, cm)


def test_combinator_update_with_unknown_address_leaves_the_trace_unchanged():
    tr = UNFOLD.simulate((3, 0.0, 0.5), key=mx.random.key(0))
    snap = snapshot(tr)
    with pytest.raises(gm.AddressError, match=r"\(1, 'bad'\)"):
        UNFOLD.update(tr, {(0, "s"): 0.0, (1, "bad"): 0.0})
    assert_unchanged(tr, snap)


def test_vupdate_with_unknown_address_leaves_the_batched_trace_unchanged():
    vt = linreg.vsimulate(ARGS, n=4, key=mx.random.key(0))
    snap = snapshot(vt)
    with pytest.raises(gm.AddressError, match="'nope'"):
        linreg.vupdate(vt, {"nope": 1.0})
    assert_unchanged(vt, snap)


def test_assess_names_an_unconstrained_address():
    tr = MAP.simulate(([1.0, 2.0],), key=mx.random.key(0))
    partial = {a: v for a, v in tr.get_choices().items() if a != (1, "y")}
    with pytest.raises(gm.AddressError, match=r"\(1, 'y'\)"):
        MAP.assess(([1.0, 2.0],), partial)


# -- non-numeric constraints --------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", None, object(), ["a", "b"]], ids=["str", "None", "object", "strlist"])
def test_non_numeric_constraint_raises_type_error_naming_the_address(bad):
    with pytest.raises(TypeError, match="'slope'"):
        linreg.generate(ARGS, {"slope": bad})
    with pytest.raises(TypeError, match=r"\('sub', 'z'\)"):
        gm.choicemap({"sub": {"z": bad}})


def test_non_numeric_update_leaves_the_trace_unchanged():
    tr = linreg.simulate(ARGS, key=mx.random.key(0))
    snap = snapshot(tr)
    with pytest.raises(TypeError, match="'intercept'"):
        linreg.update(tr, {"intercept": "high"})
    assert_unchanged(tr, snap)


# -- wrong arguments ------------------------------------------------------------------------------


def test_wrong_argument_count_names_the_function_and_its_parameters():
    with pytest.raises(TypeError, match=r"linreg expects 1 argument\(s\) \(xs\), got 2"):
        linreg.simulate(([1.0], 2.0))
    with pytest.raises(TypeError, match="linreg expects 1"):
        linreg.generate((), {})
    with pytest.raises(TypeError, match="args must be a tuple"):
        linreg.simulate([1.0, 2.0])


def test_update_with_wrong_argument_count_leaves_the_trace_unchanged():
    tr = linreg.simulate(ARGS, key=mx.random.key(0))
    snap = snapshot(tr)
    with pytest.raises(TypeError, match="linreg expects 1"):
        linreg.update(tr, None, args=(1, 2))
    assert_unchanged(tr, snap)


def test_nested_call_with_wrong_argument_count_names_the_callee():
    @gm.gen
    def caller():
        return gm.trace("p", point, 1.0, 2.0)

    with pytest.raises(TypeError, match=r"point expects 1 argument\(s\) \(x\), got 2"):
        caller.simulate(())


@pytest.mark.parametrize("gf,args,err,msg", [
    (UNFOLD, (3,), TypeError, r"expects at least 2 arguments \(n, init, \*extra\)"),
    (UNFOLD, (3.0, 0.0, 0.5), TypeError, "n .* must be a Python int"),
    (UNFOLD, (3, 0.0), TypeError, r"kernel step expects 3 argument\(s\) \(t, s, drift\), but .* calls it with 2"),
    (MAP, ([1.0], [1.0, 2.0]), ValueError, "different lengths"),
    (MAP, ([1.0], [2.0]), TypeError, r"kernel point expects 1 argument\(s\)"),
    (SWITCH, (), TypeError, r"at least 1 argument \(index"),
    (SWITCH, (2,), IndexError, "branch index 2 out of range"),
    (VMAP, ([1.0, 2.0],), TypeError, "must be an array with a leading axis"),
    (MASK, (), TypeError, r"\(flag, \*args\)"),
], ids=["unfold-few", "unfold-n", "unfold-kernel", "map-lengths", "map-kernel", "switch-none",
        "switch-range", "vmap-list", "mask-none"])
def test_combinators_reject_bad_arguments_clearly(gf, args, err, msg):
    with pytest.raises(err, match=msg):
        gf.simulate(args)


def test_traces_are_immutable():
    tr = linreg.simulate(ARGS)
    with pytest.raises(AttributeError, match="immutable"):
        tr.score = mx.array(0.0)


def test_update_with_a_trace_of_another_function_is_refused():
    tr = point.simulate((1.0,))
    with pytest.raises(ValueError, match="made by"):
        linreg.update(tr, None)
    with pytest.raises(TypeError, match="Selection"):
        point.regenerate(tr, ["z"])


def test_invalid_distribution_parameter_inside_a_model_names_the_address():
    @gm.gen
    def m():
        gm.trace("bad", dist.normal(0.0, -1.0))

    with pytest.raises(ValueError, match="'bad'"):
        m.simulate(())
