"""Graph nodes (buffers) per log-prob, per trace site and per driver step; growth per iteration (issue 8).

Run: python -m pytest benchmarks/test_bench_nodes.py --benchmark-only

A graph node is an unevaluated MLX primitive (`genmlx.memory.count_nodes`);
each becomes one buffer when evaluated (on Metal, one of the 499,000 it may
hold at once). Nothing here asserts a time; the growth test asserts the
memory target (below 0.01 arrays and pending nodes per iteration).

* `test_nodes_per_log_prob`: every built-in distribution's log-prob, with
  evaluated array parameters (the usual case inside a model) and with Python
  numbers, next to the seed's table (`SEED_BUFFERS`; the target, at most half
  of it, is judged in test_bench_distributions.py).
* `test_nodes_per_site`: nodes each trace site adds under each GFI operation
  of the standard models (the handler's own accounting, `SiteHandled` events:
  sampling, log-prob, score and weight accumulation), with the plain-MLX
  floor's graph for the same computation where there is one.
* `test_growth`: every algorithm run with `probe.LoopProbe`: live arrays and
  pending nodes at intervals (samples excluded), their slope per iteration,
  the nodes each driver step evaluates, syncs per iteration.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import mlx.core as mx
import pytest

import genmlx as gm
from benchmarks import floors as F
from benchmarks import models as M
from benchmarks.common import size
from benchmarks.distribution_cases import CASES, SEED_BUFFERS
from benchmarks.probe import LoopProbe
from genmlx import dist, events
from genmlx import inference as infer

GROWTH_LIMIT = 0.01


def _evaluated(x):
    a = mx.array(x)
    mx.eval(a)
    return a


def _count_log_prob(make, value, params) -> int:
    d = make(params)
    x = _evaluated(value)
    lp = d.log_prob(x)
    n = gm.memory.count_nodes(lp)
    mx.eval(lp)
    return n


def test_nodes_per_log_prob(benchmark, record):
    """The in-model view: parameters as evaluated arrays (as when they come from other choices).

    test_bench_distributions.py judges the target (at most half the seed's
    buffers) on Python-number parameters; this table adds array parameters,
    where a kernel cannot specialize on the parameter values, next to the seed.
    """
    table = {}

    def sweep():
        for name, (make, value) in CASES.items():
            table[name] = {"array_params": _count_log_prob(make, value, _evaluated),
                           "number_params": _count_log_prob(make, value, lambda v: v),
                           "seed": SEED_BUFFERS.get(name)}
        return table

    benchmark.pedantic(sweep, rounds=1)
    missing = set(n for n in dist.__all__ if n[0].islower()) - {"support", "batch_shape", "shape_of"} - set(CASES)
    record(group="nodes", kind="log_prob", nodes_per_log_prob=table, distributions_not_covered=sorted(missing))


# -- per trace site ---------------------------------------------------------------------------

class _SiteTap:
    def __init__(self):
        self.events = []

    def on_site(self, ev):
        self.events.append(ev)


def _ops(case):
    """name -> fn(key) running one GFI operation of the case's model (unevaluated results)."""
    model, args, obs = case.model, case.args, gm.choicemap(case.obs)
    base, _ = model.generate(args, obs, key=mx.random.key(0))
    mx.eval(base.score)
    latent = gm.select(*case.addresses)
    first = case.addresses[0]
    ops = {
        "simulate": lambda k: model.simulate(args, key=k),
        "generate": lambda k: model.generate(args, obs, key=k),
        "regenerate": lambda k: model.regenerate(base, latent, key=k),
        "update": lambda k: model.update(base, gm.choicemap({first: 0.25}), key=k),
        "assess": lambda k: model.assess(args, base.get_choices()),
    }
    return ops


def _floor_nodes(case, op: str) -> int | None:
    """Nodes of the same computation in plain MLX (eager), where the floor has it."""
    key = mx.random.key(0)
    if op == "generate" and case.name in ("beta_bernoulli", "regression5", "regression100"):
        parts, lw = F.is_particle(case.floor)(key)
        return gm.memory.count_nodes(*parts, lw)
    if op == "regenerate" and case.name in ("beta_bernoulli", "regression5", "regression100"):
        st, ll = F.mh_init(case.floor, key)
        out = F.mh_step(case.floor)(key, st, ll)
        return gm.memory.count_nodes(*out[0], out[1], out[2])
    return None


SITE_MODELS = ["beta_bernoulli", "regression5", "regression100", "funnel"]


@pytest.mark.parametrize("model", SITE_MODELS)
def test_nodes_per_site(benchmark, record, cases, model):
    case = cases[model]
    ops = _ops(case)
    rows = {}
    for op, fn in ops.items():
        tap = _SiteTap()
        with events.subscribed(tap):
            out = fn(mx.random.key(1))
        total_graph = gm.memory.count_nodes(*gm.memory.arrays_in(out))
        mx.eval(gm.memory.arrays_in(out))
        by_dist = defaultdict(list)
        for e in tap.events:
            by_dist[e.gen_fn].append(e.nodes)
        rows[op] = {
            "sites": len(tap.events),
            "site_nodes_total": sum(e.nodes for e in tap.events),
            "graph_nodes": total_graph,  # everything the operation's results hold (checks, weights included)
            "per_site": {d: {"sites": len(v), "mean": statistics.fmean(v), "max": max(v)} for d, v in by_dist.items()},
            "floor_nodes": _floor_nodes(case, op),
        }
    key = mx.random.key(2)
    generate = ops["generate"]
    benchmark.pedantic(lambda: mx.eval(gm.memory.arrays_in(generate(key))), rounds=20, warmup_rounds=2)
    record(group="nodes", kind="per_site", model=model, unit="generate call", per=1, nodes_per_site=rows)


# -- growth per iteration, nodes per driver step ----------------------------------------------

@gm.gen
def coin(mu):
    z = gm.trace("z", dist.bernoulli(0.3))
    gm.trace("y", dist.normal(mu * z, 1.0))
    return z


def _growth_runs(cases):
    bb, lr5 = cases["beta_bernoulli"], cases["regression5"]
    ys = M.ssm100()
    n = size(300, 1_000)

    def k(i):
        return mx.random.key(100 + i)

    return {
        # name: (run(callback), probe settings)
        "importance": (lambda cb: infer.importance_sampling(bb.model, bb.args, bb.obs, n_particles=n, key=k(0),
                                                            callback=cb), {"every": 10, "warmup": 30}),
        "mh": (lambda cb: infer.mh(bb.model, bb.args, bb.obs, n_samples=n, key=k(1), callback=cb),
               {"every": 10, "warmup": 30}),
        "compiled_mh": (lambda cb: infer.compiled_mh(lr5.model, lr5.args, lr5.obs, n_samples=10 * n,
                                                     iterations_per_step=25, key=k(2), callback=cb),
                        {"every": 4, "warmup": 200}),
        "mh_chains": (lambda cb: infer.mh_chains(lr5.model, lr5.args, lr5.obs, n_chains=4, n_samples=n, key=k(3),
                                                 callback=cb), {"every": 10, "warmup": 30}),
        "gibbs": (lambda cb: infer.gibbs(coin, (2.0,), {"y": 1.5}, addresses=["z"], n_samples=n, key=k(4),
                                         callback=cb), {"every": 10, "warmup": 30}),
        "elliptical_slice": (lambda cb: infer.elliptical_slice(lr5.model, lr5.args, lr5.obs, addresses=lr5.addresses,
                                                               n_samples=n, key=k(5), callback=cb),
                             {"every": 10, "warmup": 30}),
        "mala": (lambda cb: infer.mala(lr5.model, lr5.args, lr5.obs, addresses=lr5.addresses, n_samples=n, burn=50,
                                       key=k(6), callback=cb), {"every": 10, "warmup": 80}),
        "hmc": (lambda cb: infer.hmc(lr5.model, lr5.args, lr5.obs, addresses=lr5.addresses, n_samples=n, burn=50,
                                     key=k(7), callback=cb), {"every": 10, "warmup": 80}),
        "nuts": (lambda cb: infer.nuts(lr5.model, lr5.args, lr5.obs, addresses=lr5.addresses, n_samples=n, burn=50,
                                       key=k(8), callback=cb), {"every": 10, "warmup": 80}),
        "smc": (lambda cb: infer.smc(M.ssm, *M.ssm_sequence(ys[:50]), n_particles=10, vectorized=False, key=k(9),
                                     callback=cb), {"every": 2, "warmup": 10, "exclude_state": True}),
        "vsmc": (lambda cb: infer.smc(M.ssm_unfold, *M.ssm_unfold_sequence(ys), n_particles=200, key=k(10),
                                      callback=cb), {"every": 4, "warmup": 20, "exclude_state": True}),
        "vi": (lambda cb: infer.vi(lr5.model, lr5.args, lr5.obs, addresses=lr5.addresses, iterations=n, key=k(11),
                                   callback=cb), {"every": 10, "warmup": n // 2 + 20}),  # averaging starts at n/2
    }


GROWTH_ALGORITHMS = ["importance", "importance_vectorized", "mh", "compiled_mh", "mh_chains", "gibbs",
                     "elliptical_slice", "mala", "hmc", "nuts", "smc", "vsmc", "vi"]


@pytest.mark.parametrize("algorithm", GROWTH_ALGORITHMS)
def test_growth(benchmark, record, cases, algorithm):
    """Live arrays and pending nodes per iteration after warm-up (samples excluded): below 0.01."""
    if algorithm == "importance_vectorized":
        bb = cases["beta_bernoulli"]
        probe = LoopProbe(warmup=0, node_steps=1)

        def run():
            with probe.patched():
                for i in range(size(30, 100)):
                    infer.importance_sampling(bb.model, bb.args, bb.obs, n_particles=1_000, vectorized=True,
                                              key=mx.random.key(i))
                    probe.iterations = i + 1
                    if i >= 5:
                        probe.census()
            return None

        benchmark.pedantic(run, rounds=1)
        unit = "call (N = 1,000)"
        syncs = 0.0
    else:
        runs = _growth_runs(cases)
        fn, settings = runs[algorithm]
        probe = LoopProbe(**settings)
        out = {}

        def run():
            with probe.patched():
                out["res"] = fn(probe.callback)

        benchmark.pedantic(run, rounds=1)
        st = out["res"].stats
        unit = "iteration"
        syncs = st.get("syncs", 0) / max(st.get("iterations") or st.get("steps") or 1, 1)
    g = probe.growth()
    live, pending = g.get("live_arrays_per_iteration"), g.get("pending_nodes_per_iteration")
    record(group="growth", kind="growth", algorithm=algorithm, unit=unit, growth=g, census=probe.points,
           nodes_per_step=probe.step_nodes, syncs_per_iteration=syncs,
           targets=[{"name": f"zero growth of live arrays ({algorithm})", "value": live, "max": GROWTH_LIMIT},
                    {"name": f"zero growth of pending nodes ({algorithm})", "value": pending, "max": GROWTH_LIMIT}])
    assert live is not None and pending is not None, f"too few census points: {probe.points}"
    assert live < GROWTH_LIMIT, f"{algorithm}: live arrays grow {live:.4f}/{unit}: {probe.points}"
    assert pending < GROWTH_LIMIT, f"{algorithm}: pending nodes grow {pending:.4f}/{unit}: {probe.points}"
