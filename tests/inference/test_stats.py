"""`Stats`: a result's chain summaries are made once, on the first read that can see them, and a
read of any other entry never makes them."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest

import mlx.core as mx

from benchmarks import models as M
from genmlx import inference as infer
from genmlx.inference.diagnostics import chain_summaries
from genmlx.inference.result import Stats

SUMMARIES = {"ess_bulk": {"p": 10.0}, "ess_tail": {"p": 9.0}, "r_hat": {"p": 1.01}}

READS = {
    "getitem": lambda s: s["ess_bulk"], "get": lambda s: s.get("r_hat"), "in": lambda s: "ess_tail" in s,
    "keys": lambda s: list(s.keys()), "items": lambda s: list(s.items()), "values": lambda s: list(s.values()),
    "iter": list, "len": len, "dict": dict, "splat": lambda s: {**s}, "kwargs": lambda s: (lambda **kw: kw)(**s),
    "json": json.dumps, "pickle": lambda s: pickle.loads(pickle.dumps(s)), "copy": copy.copy,
    "deepcopy": copy.deepcopy, "method copy": lambda s: s.copy(), "eq": lambda s: s == {}, "repr": repr,
    "or": lambda s: s | {}, "pop": lambda s: s.pop("ess_bulk"), "del": lambda s: s.__delitem__("r_hat"),
    "setdefault": lambda s: s.setdefault("ess_tail", 0), "popitem": lambda s: s.popitem(),
}


def _counting():
    made = []

    def summaries():
        made.append(1)
        return dict(SUMMARIES)

    return made, summaries


@pytest.mark.parametrize("read", sorted(READS))
def test_each_read_that_can_see_the_summaries_makes_them_once(read):
    made, summaries = _counting()
    s = Stats({"acceptance_rate": 0.5}, summaries)
    READS[read](s)
    s.get("ess_tail"), len(s)  # later reads make nothing more
    assert made == [1]
    assert dict.__len__(s) >= 3  # the summaries, less the one a pop, del or popitem took


def test_reads_and_writes_of_other_entries_make_nothing_and_an_earlier_entry_wins():
    made, summaries = _counting()
    s = Stats({"acceptance_rate": 0.5, "r_hat": "mine"}, summaries)
    assert s["acceptance_rate"] == 0.5 and s.get("missing") is None and "other" not in s
    s["n_chains"] = 4  # what chains.py and compiled_mh add after finish_stats
    s.update(iterations_per_step=50)
    s |= {"keys": "block"}
    assert s.pop("n_chains") == 4 and s.setdefault("x", 1) == 1
    del s["x"]
    assert made == [] and type(s) is Stats
    assert s["r_hat"] == "mine" and s["ess_bulk"] == SUMMARIES["ess_bulk"] and made == [1]
    assert json.loads(json.dumps(s))["ess_tail"] == SUMMARIES["ess_tail"]
    s.clear()
    assert len(s) == 0 and made == [1]


def test_two_pending_stats_compare_with_their_summaries():
    a = Stats({"acceptance_rate": 0.5}, _counting()[1])
    b = Stats({"acceptance_rate": 0.5}, _counting()[1])
    assert a == b and not (a != b) and b == {"acceptance_rate": 0.5, **SUMMARIES}
    assert Stats({"x": 1}, _counting()[1]) != Stats({"x": 1})


def test_results_carry_the_same_summaries_as_computed_at_once():
    """compiled_mh's summaries, made on first read, equal `chain_summaries` of its kept draws."""
    res = infer.compiled_mh(M.linreg, (M.LR5_XS,), M.obs_of(M.LR5_YS), n_samples=400, iterations_per_step=50,
                            key=mx.random.key(4))
    assert type(res.stats) is Stats and dict.get(res.stats, "ess_bulk") is None  # not made yet
    want = chain_summaries({a: res.traces.array((a,)).astype(np.float64)[None] for a in ("slope", "intercept")})
    for name in ("ess_bulk", "ess_tail", "r_hat"):
        assert res.stats[name] == want[name]
