"""Live-array counts against an independent method: weak references to the arrays we made."""

from __future__ import annotations

import gc
import random
import weakref
from typing import NamedTuple

import mlx.core as mx
import pytest

from genmlx.memory import Census, live_array_objects, live_arrays, young_array_objects


class Alive:
    """An identity-based record of arrays a test created (weak: it keeps nothing alive)."""

    def __init__(self):
        self.refs: dict[int, weakref.ref] = {}

    def add(self, *arrays):
        for a in arrays:
            self.refs[id(a)] = weakref.ref(a)
        return arrays

    def count(self) -> int:
        return sum(1 for r in self.refs.values() if r() is not None)


class Pair(NamedTuple):
    a: mx.array
    b: mx.array


class FakeTrace:
    def __init__(self, *arrays):
        self.arrays = arrays

    def _genmlx_arrays(self):
        return iter(self.arrays)


def test_live_arrays_counts_exactly_the_arrays_created_and_deleted(settled):
    mine = Alive()
    base = live_arrays()
    held = list(mine.add(*[mx.array(float(i)) for i in range(500)]))
    held += mine.add(*[a + 1 for a in held[:100]])  # lazy results are wrappers too
    held += mine.add(*mx.split(mx.arange(12.0), 4))  # multi-output op: 4 wrappers
    assert mine.count() == 604
    assert live_arrays() - base == mine.count()
    del held[::2]
    assert live_arrays() - base == mine.count() == 302
    held.clear()
    assert live_arrays() - base == mine.count() == 0


def test_live_array_objects_are_the_live_arrays(settled):
    keep = [mx.array(1.0), mx.ones((2, 2))]
    objs = live_array_objects()
    assert len(objs) == live_arrays()
    ids = set(map(id, objs))
    assert all(id(a) in ids for a in keep)
    assert all(type(a) is mx.array for a in objs)


def test_exclude_subtracts_reachable_arrays_once_each(settled):
    a, b, c = mx.array(1.0), mx.array(2.0), mx.array(3.0)
    store = [FakeTrace(a, b), {"x": a, "y": (c, 1.5, "s", None)}, Pair(b, c), [a, [a]]]
    total = live_arrays()
    assert live_arrays(exclude=store) == total - 3
    assert live_arrays(exclude=[]) == total
    assert live_arrays(exclude=FakeTrace(a)) == total - 1


def test_young_array_objects_sees_new_arrays_until_promoted(settled):
    x = mx.array(5.0)
    assert any(o is x for o in young_array_objects())
    gc.collect()  # survivors move to the oldest generation
    assert not any(o is x for o in young_array_objects())


def test_census_equals_live_arrays_through_allocation_deletion_and_collections(settled):
    census = Census()
    mine = Alive()
    base = live_arrays()
    assert census.count() == base and census.exact  # the first count is a full census
    held = list(mine.add(*[mx.array(float(i)) for i in range(300)]))
    assert census.count() == live_arrays() == base + 300  # young: counted exactly
    del held[:100]
    assert census.count() == live_arrays() == base + 200  # young deaths: exact
    gc.collect(0)  # young stay young (generation 0 -> 1): still exact
    assert census.count() == live_arrays() == base + mine.count()
    gc.collect(1)  # promotion into generation 2: the hook forces a full census
    assert census.count() == live_arrays() and census.exact
    del held[:100]  # deaths in generation 2: an over-count by exactly those
    assert census.count() == live_arrays() + 100
    assert not census.exact
    assert census.full() == live_arrays() == base + mine.count() == base + 100
    assert census.count() == live_arrays()


def test_census_never_undercounts_under_random_operations(settled):
    rng = random.Random(1234)
    census = Census()
    pool: list = []
    for step in range(300):
        op = rng.random()
        if op < 0.45:
            pool.extend(mx.array(float(i)) for i in range(rng.randint(1, 40)))
        elif op < 0.75 and pool:
            del pool[: rng.randint(1, len(pool))]
        elif op < 0.85:
            gc.collect(rng.choice([0, 1, 2]))
        elif op < 0.92:
            junk = [[] for _ in range(rng.randint(100, 2000))]  # triggers automatic collections
            del junk
        estimate = census.count()
        exact = live_arrays()
        assert estimate >= exact, step
        if census.exact:
            assert estimate == exact, step
    assert census.full() == live_arrays()


def test_census_exclude_follows_an_append_only_store(settled):
    census = Census()
    store: list = []
    for i in range(50):
        store.append(FakeTrace(mx.array(float(i)), mx.array(-float(i))))
        scratch = [mx.array(0.0) for _ in range(3)]  # three extra live arrays
        assert census.count(exclude=store) == live_arrays(exclude=store)
        del scratch
    gc.collect()
    assert census.count(exclude=store) == live_arrays(exclude=store)
    store.pop()  # the list shrank: walked again; the popped trace died in generation 2
    assert census.count(exclude=store) == live_arrays(exclude=store) + 2
    assert census.full(exclude=store) == live_arrays(exclude=store)
    other = [FakeTrace(store[0].arrays[0])]
    assert census.count(exclude=other) == live_arrays(exclude=other)


def test_census_exclusion_keeps_no_array_alive(settled):
    census = Census()
    store = [FakeTrace(mx.array(1.0))]
    ref = weakref.ref(store[0].arrays[0])
    census.count(exclude=store)
    census.full(exclude=store)
    store.clear()
    assert ref() is None


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_live_arrays_is_exact_for_held_lists(settled, n):
    base = live_arrays()
    held = [mx.zeros((3,)) for _ in range(n)]
    assert live_arrays() - base == n
    del held


def test_census_rewalk_is_exact_after_items_are_replaced_in_place(settled):
    census = Census()
    store = [FakeTrace(mx.array(float(i))) for i in range(10)]
    assert census.full(exclude=store) == live_arrays(exclude=store)
    store[3] = FakeTrace(mx.array(-1.0), mx.array(-2.0))  # same length, different arrays
    assert census.full(exclude=store, rewalk=True) == live_arrays(exclude=store)
