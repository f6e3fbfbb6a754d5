"""Selection: addresses, hierarchy, all/none, complement, from a choicemap."""

from __future__ import annotations

import genmlx as gm


def test_selected_addresses_and_everything_below_them():
    s = gm.select("a", ("sub", "x"))
    assert "a" in s and ("a", "deep") in s and ("sub", "x") in s and ("sub", "x", 0) in s
    assert "b" not in s and ("sub", "y") not in s and "sub" not in s
    assert s.addresses() == ["a", ("sub", "x")]


def test_subselection_strips_the_prefix():
    s = gm.select(("sub", "x"), ("sub", 2, "y"))
    sub = s.get_subselection("sub")
    assert "x" in sub and (2, "y") in sub and "y" not in sub
    assert gm.select("sub").get_subselection("sub").is_all()
    assert s.get_subselection("other").is_empty()


def test_all_and_none():
    assert "anything" in gm.select_all() and ("a", 1) in gm.select_all()
    assert "anything" not in gm.select_none()
    assert gm.select_all().is_all() and gm.select_none().is_empty()
    assert not gm.select("a").is_all() and not gm.select("a").is_empty()


def test_complement_inverts_membership_at_every_level():
    s = gm.select("a", ("sub", "x"))
    c = s.complement()
    assert "a" not in c and ("sub", "x") not in c and "b" in c and ("sub", "y") in c
    assert c.get_subselection("sub").contains_path(("y",)) and not c.get_subselection("a").contains_path(("z",))
    assert c.complement() == s
    assert gm.select_all().complement().is_empty() and gm.select_none().complement().is_all()


def test_selection_from_a_choicemap_selects_its_leaves():
    cm = gm.choicemap({"a": 1.0, "sub": {"x": 2.0}})
    s = gm.Selection.from_choicemap(cm)
    assert "a" in s and ("sub", "x") in s and ("sub", "y") not in s


def test_union_and_equality():
    u = gm.select("a") | gm.select(("b", "c"))
    assert "a" in u and ("b", "c") in u and u == gm.select("a", ("b", "c"))
    assert hash(u) == hash(gm.select("a", ("b", "c")))
