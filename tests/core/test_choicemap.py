"""ChoiceMap: nested and hierarchical addresses, dict round trips, merge, submaps, iteration."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm


def val(x) -> float:
    return float(np.asarray(x))


def test_nested_dicts_and_tuple_paths_build_the_same_map():
    a = gm.choicemap({"x": 1.0, "sub": {"y": 2.0, "deeper": {"z": 3.0}}})
    b = gm.choicemap({"x": 1.0, ("sub", "y"): 2.0, ("sub", "deeper", "z"): 3.0})
    assert a == b
    assert a[("sub", "deeper", "z")].item() == 3.0
    assert a.addresses() == ["x", ("sub", "y"), ("sub", "deeper", "z")]


def test_int_addresses_and_index_paths():
    cm = gm.choicemap({(0, "y"): 1.0, (1, "y"): 2.0, 3: 4.0})
    assert cm[(1, "y")].item() == 2.0 and cm[3].item() == 4.0
    assert cm.get_submap(1)["y"].item() == 2.0


def test_to_dict_and_from_dict_round_trip():
    d = {"x": 1.0, "sub": {"y": 2.0, "z": {"w": 3.0}}}
    cm = gm.ChoiceMap.from_dict(d)
    back = cm.to_dict()
    assert set(back) == {"x", "sub"} and set(back["sub"]) == {"y", "z"}
    assert val(back["sub"]["z"]["w"]) == 3.0
    assert gm.ChoiceMap.from_dict(back) == cm


def test_merge_is_the_union_and_a_shared_address_is_an_error_naming_it():
    a = gm.choicemap({"x": 1.0, ("s", "y"): 2.0})
    m = a.merge({("s", "z"): 3.0})
    assert m.addresses() == ["x", ("s", "y"), ("s", "z")]
    assert a.addresses() == ["x", ("s", "y")]  # immutable: merge makes a new map
    with pytest.raises(gm.AddressError, match=r"\('s', 'y'\)"):
        a.merge({"s": {"y": 5.0}})


def test_get_submap_strips_the_prefix_and_is_empty_when_absent():
    cm = gm.choicemap({("a", "b", "c"): 1.0, ("a", "d"): 2.0, "e": 3.0})
    sub = cm.get_submap("a")
    assert sub.addresses() == [("b", "c"), "d"]
    assert cm.get_submap(("a", "b"))["c"].item() == 1.0
    assert cm.get_submap("zzz").is_empty() and len(cm.get_submap("zzz")) == 0
    assert cm.get_submap("e").value().item() == 3.0  # the submap at a leaf is a value map
    assert cm.has_submap("a") and not cm.has_submap("e")


def test_iteration_visits_leaf_addresses_in_insertion_order():
    cm = gm.choicemap({"b": 1.0, "a": {"x": 2.0, "y": 3.0}})
    assert list(cm) == ["b", ("a", "x"), ("a", "y")]
    assert [a for a, _ in cm.items()] == list(cm) and len(cm.values()) == 3 and len(cm) == 3
    assert "b" in cm and ("a", "x") in cm and "a" not in cm


def test_duplicate_address_in_the_data_is_an_error_naming_it():
    with pytest.raises(gm.AddressError, match=r"\('a', 'b'\)"):
        gm.choicemap({"a": {"b": 1.0}, ("a", "b"): 2.0})


def test_missing_address_is_an_address_error_listing_what_exists():
    cm = gm.choicemap({"x": 1.0})
    with pytest.raises(gm.AddressError, match="'y'.*'x'"):
        cm["y"]
    assert isinstance(gm.AddressError("m"), KeyError)
    assert cm.get("y") is None


def test_values_are_arrays_and_inputs_may_be_numpy_or_lists():
    cm = gm.choicemap({"i": 3, "b": True, "n": np.float32(1.5), "l": [1.0, 2.0], "a": mx.array([1, 2])})
    assert all(isinstance(v, mx.array) for v in cm.values())
    assert cm["l"].shape == (2,) and cm["b"].item() == 1


def test_set_and_prefixed_return_new_maps():
    cm = gm.choicemap({"x": 1.0})
    cm2 = cm.set(("s", "y"), 2.0)
    assert "y" not in cm and cm2[("s", "y")].item() == 2.0
    assert cm.prefixed("top").addresses() == [("top", "x")]


def test_arrays_and_empty_paths_are_not_addresses():
    with pytest.raises(TypeError, match="not an address"):
        gm.choicemap({mx.array(1): 1.0})
    with pytest.raises(TypeError, match="empty"):
        gm.choicemap({(): 1.0})
    with pytest.raises(TypeError):
        gm.choicemap([("x", 1.0)])


def test_choices_of_a_trace_are_a_choicemap():
    @gm.gen
    def m():
        gm.trace("a", gm.dist.normal(0.0, 1.0))
        gm.trace("b", gm.dist.bernoulli(0.5))

    tr = m.simulate((), key=mx.random.key(0))
    cm = tr.get_choices()
    assert isinstance(cm, gm.ChoiceMap) and cm.addresses() == ["a", "b"]
    assert tr.get_choices() is cm  # cached: traces are values
