"""The driver's per-iteration statistics: compact while the run lasts, the values' own types after."""

import gc
import random
import tracemalloc

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer
from genmlx.inference.history import History


def test_floats_and_bools_come_back_as_themselves():
    h = History()
    vals = [random.random() for _ in range(100)]
    for i, v in enumerate(vals):
        h.add({"p": v, "ok": i % 3 == 0}, 1)
    out = h.lists()
    assert out["p"] == vals and all(type(x) is float for x in out["p"])
    assert out["ok"] == [i % 3 == 0 for i in range(100)] and all(type(x) is bool for x in out["ok"])


@pytest.mark.parametrize("later", [None, 3, True, [1.0, 2.0], "x"])
def test_a_value_of_another_type_turns_the_series_into_a_list(later):
    h = History()
    h.append("v", 0.5)
    h.append("v", later)
    h.append("v", 0.25)
    assert h.lists() == {"v": [0.5, later, 0.25]}
    assert type(h.lists()["v"][0]) is float


def test_ints_keep_their_type():
    h = History()
    for d in (3, 4, 10):
        h.append("depth", d)
    assert h.lists()["depth"] == [3, 4, 10] and all(type(x) is int for x in h.lists()["depth"])


def test_a_multi_iteration_step_adds_one_entry_per_iteration():
    h = History()
    h.add({"accepted": [True, False, True], "k": 7}, 3)
    h.add({"accepted": [False, False, True], "k": 7}, 3)
    assert h.lists() == {"accepted": [True, False, True, False, False, True], "k": [7, 7]}
    h1 = History()
    h1.add({"chains": [0.1, 0.2]}, 1)  # one step of one iteration: the list is the entry
    assert h1.lists() == {"chains": [[0.1, 0.2]]}


def test_a_blocks_list_is_stored_compactly_unless_it_mixes_types():
    """A fused block's `[K]` statistics extend the compact series in one call; a list with another
    type in it (or a series already of another type) goes value by value, converting nothing."""
    h = History()
    h.add({"accepted": [True, False] * 25, "accept_prob": [0.25] * 50}, 50)
    assert h._series["accepted"].typecode == "b" and h._series["accept_prob"].typecode == "d"
    h.add({"accepted": [True] * 50, "accept_prob": [0.5] * 49 + [1]}, 50)  # an int among the floats
    assert h._series["accepted"].typecode == "b" and type(h._series["accept_prob"]) is list
    out = h.lists()
    assert out["accepted"] == [True, False] * 25 + [True] * 50
    assert out["accept_prob"] == [0.25] * 50 + [0.5] * 49 + [1] and type(out["accept_prob"][-1]) is int
    h.add({"accepted": [1.0, 0.0]}, 2)  # floats into a bool series: the series turns into a list
    assert h.lists()["accepted"][-2:] == [1.0, 0.0] and type(h.lists()["accepted"][0]) is bool


def test_since_gives_a_checkpoint_its_increment():
    h = History({"a": [1.0, 2.0], "b": [True]})
    n = h.lengths()
    h.add({"a": 3.0, "b": False, "c": None}, 1)
    assert h.since(n) == {"a": [3.0], "b": [False], "c": [None]}
    assert h.lengths() == {"a": 3, "b": 2, "c": 1}


def test_a_float_and_a_bool_per_iteration_cost_about_nine_bytes():
    """Why it exists: a list keeps 40 bytes per float (slot and object) and 8 per bool."""
    n = 200_000
    vals = [random.random() for _ in range(n)]  # the floats exist before: only the storage is measured
    gc.collect()
    tracemalloc.start()
    h = History()
    for i in range(n):
        h.add({"p": vals[i], "ok": i % 2 == 0}, 1)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert current / n < 10.5, current / n
    assert len(h.lists()["p"]) == n


@gm.gen
def _bb():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(5):
        gm.trace(("y", i), dist.bernoulli(p))


def test_a_run_returns_plain_lists():
    res = infer.mh(_bb, (), {("y", i): 1.0 for i in range(5)}, n_samples=30, key=mx.random.key(0))
    acc, prob = res.stats["accepted"], res.stats["accept_prob"]
    assert type(acc) is list and len(acc) == 30 and all(type(x) is bool for x in acc)
    assert type(prob) is list and all(type(x) is float for x in prob)
