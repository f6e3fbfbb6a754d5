"""The two leak classes of the seed, measured with both quantities, and caught by the budget.

* a lazily accumulated score: wrappers flat, pending graph nodes grow linearly;
* a list that keeps arrays: wrappers grow linearly, pending nodes flat.

Their fixed versions are flat in both and run under the same budget.
"""

from __future__ import annotations

import gc

import mlx.core as mx
import pytest

from genmlx.memory import ResourceLimitExceeded, budget, check_budget, live_arrays, pending_nodes

STEPS = 150


@pytest.fixture
def x():
    gc.collect()
    v = mx.array(0.5)
    mx.eval(v)
    return v


def measure(step, steps=STEPS):
    """Run `step(i)` and record (live arrays, pending nodes) after each iteration."""
    live, pend = [], []
    for i in range(steps):
        step(i)
        live.append(live_arrays())
        pend.append(pending_nodes())
    return live, pend


def baseline_used() -> int:
    gc.collect()
    return live_arrays() + pending_nodes()


def test_lazy_score_keeps_wrappers_flat_while_pending_nodes_grow_linearly(x):
    box = {"s": mx.array(0.0)}

    def step(i):
        box["s"] = box["s"] + x * 2.0  # Multiply + Add: 2 nodes per iteration, never evaluated

    live, pend = measure(step)
    assert max(live) == min(live)  # the same number of wrappers every iteration
    assert [p - pend[0] for p in pend] == [2 * i for i in range(STEPS)]  # exactly linear
    mx.eval(box["s"])
    assert box["s"].item() == pytest.approx(STEPS * 1.0)


def test_lazy_score_is_caught_by_the_budget(x):
    limit = baseline_used() + 100
    s = mx.array(0.0)
    with budget(limit=limit):
        with pytest.raises(ResourceLimitExceeded) as err:
            for i in range(STEPS):
                s = s + x * 2.0
                check_budget(f"lazy loop {i}")
    e = err.value
    assert e.limit == limit and e.live + e.pending > limit
    assert e.pending > 90 and e.where.startswith("lazy loop ")
    assert int(e.where.split()[-1]) <= 60  # caught within a few iterations of the limit
    assert "pending graph nodes" in str(e) and "mx.eval" in str(e)


def test_the_error_names_what_grew_not_what_was_already_held(x):
    """A process already holding a lazy graph (pending nodes from before the budget) that then
    leaks arrays into a list: the error blames the growing container, not the old graph."""
    gc.collect()
    held = mx.array(0.0)
    # pending nodes held from before the budget block: more than the live arrays will be when the
    # budget trips (what the worker already holds from other tests, plus the 150 the loop adds)
    for _ in range(live_arrays() + 300):
        held = held + x
    kept = []
    limit = baseline_used() + 150
    with budget(limit=limit):
        with pytest.raises(ResourceLimitExceeded) as err:
            for i in range(STEPS * 4):
                kept.append(mx.array(float(i)))
                check_budget(f"list loop {i}")
    e = err.value
    assert e.pending >= e.live  # by the absolute counts the old graph would look like the cause
    assert e.grew[0] >= 100 and e.grew[1] == 0  # but the arrays are what grew
    assert "growing container" in str(e) and "lazily accumulated" not in str(e)
    mx.eval(held)


def test_fixed_lazy_score_is_flat_and_stays_under_budget(x):
    box = {"s": mx.array(0.0)}

    def step(i):
        box["s"] = box["s"] + x * 2.0
        mx.eval(box["s"])  # the fix: evaluate the accumulator each iteration

    live, pend = measure(step)
    assert max(live) == min(live)
    assert max(pend) == min(pend)  # flat (an absolute 0 would depend on what other tests in the worker hold)
    with budget(limit=baseline_used() + 100):
        for i in range(STEPS):
            step(i)
            check_budget(f"fixed lazy loop {i}")


def test_kept_list_grows_wrappers_linearly_with_pending_nodes_flat(x):
    kept = []

    def step(i):
        y = x * float(i)
        mx.eval(y)
        kept.append(y)  # the leak: one array per iteration, forever

    live, pend = measure(step)
    assert [n - live[0] for n in live] == list(range(STEPS))  # exactly one wrapper per iteration
    assert max(pend) == min(pend)  # flat (an absolute 0 would depend on what other tests in the worker hold)


def test_kept_list_is_caught_by_the_budget(x):
    limit = baseline_used() + 100
    kept = []
    with budget(limit=limit):
        with pytest.raises(ResourceLimitExceeded) as err:
            for i in range(STEPS):
                y = x * float(i)
                mx.eval(y)
                kept.append(y)
                check_budget(f"kept loop {i}")
    e = err.value
    assert e.live > e.pending and e.live + e.pending > limit
    assert 95 <= int(e.where.split()[-1]) <= 105  # wrappers are counted at every check
    assert "live array objects" in str(e)


def test_fixed_kept_list_is_flat_and_stays_under_budget(x):
    kept = []

    def step(i):
        y = x * float(i)
        kept.append(y.item())  # the fix: keep a Python number, not the array

    live, pend = measure(step)
    assert max(live) == min(live)
    assert max(pend) == min(pend)  # flat (an absolute 0 would depend on what other tests in the worker hold)
    with budget(limit=baseline_used() + 100):
        for i in range(STEPS):
            step(i)
            check_budget(f"fixed kept loop {i}")
    assert kept[3] == pytest.approx(1.5)
