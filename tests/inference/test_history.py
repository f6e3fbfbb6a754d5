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


def _reads(monkeypatch) -> list:
    """Count the history's read-backs of waiting arrays (and let them wait, as on a GPU)."""
    import genmlx.inference.history as H

    monkeypatch.setattr(H, "defers_by_default", lambda: True)
    calls = []
    real = H.History._read

    def counted(self, key):
        calls.append(key)
        return real(self, key)

    monkeypatch.setattr(H.History, "_read", counted)
    return calls


def test_array_statistics_wait_and_are_read_back_together(monkeypatch):
    """On a GPU a step's statistics given as arrays (a fused block's `[K]` rows, a step's scalars) are
    read back `DEFER` steps at a time, as one array per series, with the values `.tolist()` gives one
    by one."""
    from genmlx.inference.history import DEFER

    reads = _reads(monkeypatch)
    h, expect_acc, expect_p = History(), [], []
    for i in range(DEFER + 3):
        acc = mx.array([True, False, i % 2 == 0])
        prob = mx.array(0.125 * (i % 8), dtype=mx.float32)
        mx.eval(acc, prob)
        h.add({"accepted": acc, "p": prob}, 3)
        expect_acc += acc.tolist()
        expect_p.append(prob.item())
    assert reads == ["accepted", "p"]  # once each after DEFER steps; three steps still wait
    assert len(list(h._genmlx_arrays())) == 6
    out = h.lists()
    assert out["accepted"] == expect_acc and all(type(x) is bool for x in out["accepted"])
    assert out["p"] == expect_p and all(type(x) is float for x in out["p"])
    assert h._series["accepted"].typecode == "b" and not list(h._genmlx_arrays())


def test_on_the_cpu_arrays_are_read_at_once():
    h = History(defer=False)
    h.add({"accepted": mx.array([True, False]), "p": mx.array(0.5)}, 2)
    assert not list(h._genmlx_arrays()) and h._series["accepted"].typecode == "b"
    assert h.lists() == {"accepted": [True, False], "p": [0.5]}


def test_waiting_arrays_keep_their_order_among_plain_values():
    h = History(defer=True)
    h.add({"x": mx.array(1.0)}, 1)
    h.add({"x": 2.0}, 1)  # a plain value: the waiting arrays go first
    h.add({"x": mx.array([3.0, 4.0])}, 1)  # another shape: a one-iteration step's list entry
    h.add({"x": mx.array(5.0)}, 1)
    assert h.lists() == {"x": [1.0, 2.0, [3.0, 4.0], 5.0]}


def test_a_checkpoint_increment_includes_the_waiting_arrays():
    h = History({"a": [1.0]}, defer=True)
    n = h.lengths()
    h.add({"a": mx.array([2.0, 3.0])}, 2)
    assert h.since(n) == {"a": [2.0, 3.0]} and h.lengths() == {"a": 3}


@pytest.mark.no_leak_gate  # (the gate observes each step: its runs read their statistics per step)
def test_a_run_reads_its_statistics_back_in_batches_unless_someone_reads_them_per_step(monkeypatch):
    """Without a callback or step observer the driver hands the history the step's arrays (a
    device-to-host copy per step is what a GPU block cannot afford); with one, plain values per step.
    Both give the same statistics."""
    from genmlx.inference.history import DEFER

    reads = _reads(monkeypatch)
    run = lambda **kw: infer.compiled_mh(_bb, (), {("y", i): 1.0 for i in range(5)}, n_samples=50 * (DEFER + 2),
                                         iterations_per_step=50, key=mx.random.key(3), **kw)
    quiet = run()
    assert reads.count("accepted") == 2  # DEFER blocks, then the last two at the end
    seen = []
    watched = run(callback=lambda i, state, stats: seen.append(type(stats["accepted"])))
    assert set(seen) == {list}
    for k in ("accepted", "accept_prob"):
        assert quiet.stats[k] == watched.stats[k]


@gm.gen
def _normal():
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    s = gm.trace("s", dist.beta(2.0, 2.0))
    for i in range(3):
        gm.trace(("y", i), dist.normal(mu, 1.0 + s))


_OBS = {("y", i): 0.5 * i for i in range(3)}
_RUNS = {
    "mh": lambda **kw: infer.mh(_normal, (), _OBS, n_samples=80, **kw),
    "mh_compiled": lambda **kw: infer.mh(_normal, (), _OBS, n_samples=80, compile=True, **kw),
    "compiled_mh": lambda **kw: infer.compiled_mh(_normal, (), _OBS, n_samples=400, iterations_per_step=10, **kw),
    "hmc": lambda **kw: infer.hmc(_normal, (), _OBS, addresses=["mu", "s"], n_samples=40, burn=10, **kw),
    "nuts": lambda **kw: infer.nuts(_normal, (), _OBS, addresses=["mu", "s"], n_samples=40, burn=40, **kw),
    "mala": lambda **kw: infer.mala(_normal, (), _OBS, addresses=["mu", "s"], n_samples=40, **kw),
    "elliptical_slice": lambda **kw: infer.elliptical_slice(_normal, (), _OBS, addresses=["mu"], n_samples=40, **kw),
    "vi": lambda **kw: infer.vi(_normal, (), _OBS, addresses=["mu", "s"], iterations=40, **kw),
}


@pytest.mark.no_leak_gate
@pytest.mark.parametrize("name", list(_RUNS))
def test_statistics_read_in_batches_are_those_read_per_step(name, monkeypatch):
    reads = _reads(monkeypatch)
    quiet = _RUNS[name](key=mx.random.key(5))
    # the quiet run's array statistics waited and were read back in batches (NUTS and elliptical
    # slice decide on the host: theirs are plain Python already)
    assert bool(reads) == (name not in ("nuts", "elliptical_slice")), reads
    watched = _RUNS[name](key=mx.random.key(5), callback=lambda *a: None)
    a = {k: v for k, v in quiet.stats.items() if k != "duration_s"}
    b = {k: v for k, v in watched.stats.items() if k != "duration_s"}
    assert list(a) == list(b)
    assert repr(a) == repr(b)  # the same values of the same types (NaN included)


@pytest.mark.no_leak_gate
def test_a_step_observer_that_reads_no_statistics_leaves_them_batched(monkeypatch):
    from genmlx import events

    _reads(monkeypatch)
    class Timer:
        reads_stats = False

        def __init__(self):
            self.kinds = set()

        def on_step(self, e):
            self.kinds.add(type(e.stats["accepted"]))

    class Reader(Timer):
        reads_stats = True

    for obs, kind in ((Timer(), mx.array), (Reader(), list)):
        with events.subscribed(obs):
            infer.compiled_mh(_bb, (), {("y", i): 1.0 for i in range(5)}, n_samples=100, iterations_per_step=50,
                              key=mx.random.key(3))
        assert obs.kinds == {kind}
