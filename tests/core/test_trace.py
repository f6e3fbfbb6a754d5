"""Trace: an immutable record with Gen's getters; duplicate addresses and splice."""

from __future__ import annotations

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist

from .models import linreg, nested, noisy


def test_getters_return_what_the_execution_made():
    tr = linreg.simulate(([1.0, 2.0],), key=mx.random.key(0))
    assert tr.get_args() == ([1.0, 2.0],) and tr.get_gen_fn() is linreg
    assert mx.array_equal(tr.get_retval(), tr["slope"]).item()
    total = sum(st.score for st in tr.sites.values())
    assert abs((tr.get_score() - total).item()) < 1e-5
    assert tr.get_choices().addresses() == ["slope", "intercept", ("y", 0), ("y", 1)]
    assert "linreg" in repr(tr) and "4 choices" in repr(tr)


def test_trace_attributes_cannot_be_set():
    tr = linreg.simulate(([1.0],))
    for name in ("score", "retval", "args", "sites", "new"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(tr, name, None)


def test_update_returns_a_new_trace_and_leaves_the_old_one():
    tr = linreg.simulate(([1.0],), key=mx.random.key(1))
    old_slope, old_score = tr["slope"], tr.score
    new, _, _ = linreg.update(tr, {"slope": 5.0})
    assert new is not tr and new["slope"].item() == 5.0
    assert tr["slope"] is old_slope and tr.score is old_score


def test_subtraces_and_nested_addresses():
    tr = nested.simulate((), key=mx.random.key(2))
    sub = tr.get_subtrace("sub")
    assert sub.gen_fn is noisy and sub.get_choices().addresses() == ["z", "obs"]
    assert mx.array_equal(tr[("sub", "z")], sub["z"]).item()
    assert tr.get_subtrace(("sub", "z")).is_leaf()
    with pytest.raises(gm.AddressError, match="'nope'"):
        tr.get_subtrace("nope")
    leaf = tr.get_subtrace("a")
    with pytest.raises(gm.AddressError, match="single value"):
        leaf["x"]


def test_duplicate_address_raises_an_error_naming_it():
    @gm.gen
    def dup():
        gm.trace("x", dist.normal(0.0, 1.0))
        gm.trace("x", dist.normal(0.0, 1.0))

    with pytest.raises(gm.AddressError, match="'x' is traced twice"):
        dup.simulate(())
    with pytest.raises(gm.AddressError, match="'x'"):
        dup.generate((), {"x": 0.0})


def test_splice_inlines_choices_at_the_callers_level():
    tr = nested.simulate((), key=mx.random.key(3))
    assert "s" in tr.get_choices().addresses()  # `shared` was spliced: no prefix
    assert ("shared", "s") not in tr.get_choices().addresses()


def test_splice_clashing_with_a_caller_address_is_an_error_naming_it():
    @gm.gen
    def inner():
        gm.trace("x", dist.normal(0.0, 1.0))

    @gm.gen
    def outer():
        gm.trace("x", dist.normal(0.0, 1.0))
        gm.splice(inner)

    with pytest.raises(gm.AddressError, match="'x'"):
        outer.simulate(())
    with pytest.raises(TypeError, match="@gen"):
        gm.splice(dist.normal(0.0, 1.0))


def test_a_distribution_trace_is_a_leaf():
    tr = dist.normal(0.0, 1.0).simulate((), key=mx.random.key(0))
    assert tr.is_leaf() and tr.sites is None
    with pytest.raises(gm.AddressError):
        tr["x"]
