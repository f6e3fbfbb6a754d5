"""Site accounting counted once per model structure: a cached site event equals a fresh graph walk.

`genmlx.site_counts.verifying()` walks every site and, wherever a trusted cached
event would have been used, records (address, cached, walked). The models are
those where a cached count could plausibly differ from a walk: Python-number
against array parameters, vector against scalar sites, parameters that change
shape between calls, nested calls, every combinator, branches on random
values, pending arguments, a run's first step (its key is an unevaluated
split), and each GFI operation.
"""

from __future__ import annotations

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist, events, site_counts
from genmlx.inference import mh
from genmlx.tree import arrays_and_checks, mark_ready

from .models import CASES, beta_bernoulli


class Keep:
    def __init__(self):
        self.events = []

    def on_site(self, e):
        self.events.append(e)


def _ready(tr):
    """Evaluate and mark a trace as the loop driver does (its sites may then be looked up)."""
    traces: list = []
    arrays, _ = arrays_and_checks(tr, traces)
    mx.eval(arrays)
    mark_ready(traces)
    return tr


def every_op(gf, args, seed: int) -> None:
    """simulate, generate (fully and partly constrained), assess, update and regenerate, from one key."""
    ks = mx.random.split(mx.random.key(seed), 5)
    mx.eval(ks)
    tr = _ready(gf.simulate(args, key=ks[0]))
    choices = tr.get_choices()
    paths = sorted(choices.paths(), key=repr)
    first = {paths[0]: choices[paths[0]]}
    gf.generate(args, choices, key=ks[1])
    gf.generate(args, gm.choicemap(first), key=ks[0])  # the same key: the same branches as `tr`
    gf.assess(args, choices)
    gf.update(tr, gm.choicemap(first), key=ks[3])
    gf.regenerate(tr, gm.select(paths[-1]), key=ks[4])


def check_cached_equals_walked(workload, rounds: int = 4, verify_rounds: int = 3, cached: bool = True):
    """Run `workload(i)` to fill the cache, then under `verifying`: every would-be hit equals its walk.

    `cached=False`: the workload must never be answered from the cache (vectorized executions).
    """
    site_counts.clear()
    keep = Keep()
    with events.subscribed(keep):
        hits0 = site_counts.counts["hits"]
        for i in range(rounds):
            workload(i)
        hits = site_counts.counts["hits"] - hits0
        with site_counts.verifying() as v:
            for i in range(rounds, rounds + verify_rounds):
                workload(i)
    assert keep.events, "no site was handled"
    if not cached:
        assert hits == 0 and not v.checks
        return []
    assert hits > 0 and v.checks, "the cache was never used: nothing was compared"
    wrong = [(a, c, w) for a, c, w in v.checks if c != w]
    assert not wrong, f"cached events differ from fresh walks: {wrong[:3]}"
    return v.checks


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cached_site_events_equal_fresh_walks_for_every_model_and_op(case):
    # gm.vmap runs its kernel under mx.vmap: vectorized executions are always walked
    check_cached_equals_walked(lambda i: every_op(case.gf, case.args, i), rounds=8, verify_rounds=4,
                               cached=case.name != "vmap")


@gm.gen
def flexible(mu, n):
    """`mu` a Python number or an array; `v` changes shape with `n`; `s` a scalar from a vector;
    `g`'s shape parameter a Python number or an array by a random branch (its sampler differs)."""
    x = gm.trace("x", dist.normal(mu, 1.0))
    v = gm.trace("v", dist.normal(mx.zeros(n) + x, 1.0))
    shape = 0.5 if x.item() > 0 else mx.array(0.5)
    gm.trace("g", dist.gamma(shape, 1.0))
    return gm.trace("s", dist.normal(v.sum(), 1.0))


def _flexible_args(i: int):
    n = (1, 3, 5)[i % 3]
    kinds = [0.5, mx.array(0.5), mx.array(0.25) * 2.0]  # a number, an evaluated array, a pending array
    return kinds[i % 3 if i % 2 else (i + 1) % 3], n


def test_number_array_and_pending_parameters_and_changing_shapes():
    checks = check_cached_equals_walked(lambda i: every_op(flexible, _flexible_args(i), i), rounds=9, verify_rounds=9)
    assert {c.nodes for _, c, _ in checks if c.address == ("v",)} != {0}
    assert len({c.nodes for _, c, _ in checks if c.address == ("g",)}) > 1  # both gamma samplers were compared


@gm.gen
def inner(mu, scale):
    a = gm.trace("a", dist.normal(mu * scale, 1.0))
    return gm.trace("b", dist.gamma(scale, 1.0)) + a  # the gamma sampler branches on shape < 1


@gm.gen
def outer(k):
    z = gm.trace("z", dist.normal(0.0, 1.0))
    scale = 0.5 if z.item() > 0 else 2.0  # a nested call's Python-number argument read from a random value
    r = gm.trace("in", inner, z, scale)
    return gm.trace(("deep", k), inner, r if k else z * 2.0, 0.7)


def test_nested_calls_with_changing_arguments():
    check_cached_equals_walked(lambda i: every_op(outer, (i % 2,), i), rounds=8, verify_rounds=6)


LAZY = [mx.array(1.0) + 1.0]  # a pending global a model reads from outside its arguments


@gm.gen
def reads_global():
    return gm.trace("x", dist.normal(LAZY[0], 1.0))


def test_a_pending_global_evaluated_after_the_first_call_is_walked_until_stable():
    def work(i):
        if i == 1:
            mx.eval(LAZY[0])  # evaluated, as the driver's first materialization would
        every_op(reads_global, (), i)

    check_cached_equals_walked(work, rounds=4, verify_rounds=2)


def test_mh_runs_step_zero_and_later_steps_equal_walks():
    """A run's first step draws from an unevaluated key split; later steps from evaluated keys."""
    case = next(c for c in CASES if c.name == "nested")

    def work(i):
        mh(case.gf, case.args, {"c": 1.0}, n_samples=4, key=mx.random.key(i))

    checks = check_cached_equals_walked(work, rounds=3, verify_rounds=2)
    assert len(checks) > 10


def test_the_cache_answers_a_steady_mh_chain_and_holds_no_arrays():
    bb = beta_bernoulli
    site_counts.clear()
    obs = {("y", i): float(i % 2) for i in range(5)}
    with events.subscribed(Keep()):
        mh(bb, (5,), obs, n_samples=3, key=mx.random.key(0))
        before = dict(site_counts.counts)
        mh(bb, (5,), obs, n_samples=20, key=mx.random.key(1))
    hits = site_counts.counts["hits"] - before["hits"]
    walks = site_counts.counts["walks"] - before["walks"]
    assert hits >= 19 * 6 and walks <= 2 * 6  # at most the run's first step and its initial trace are walked
    held = [x for e in site_counts._entries.values() for x in (e.event or ())]
    assert not any(isinstance(x, mx.array) for x in held)
