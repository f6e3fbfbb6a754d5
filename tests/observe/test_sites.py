"""Buffers per trace site: exact against an independent graph count, bounded labels, opt-in."""

from __future__ import annotations

import io
import re

import mlx.core as mx
import pytest

import genmlx as gm
import genmlx_observe as go
from genmlx import dist, events
from genmlx.events import SiteHandled
from genmlx.inference import driver
from genmlx.inference.driver import Step
from genmlx_observe.sites import OTHER, SiteObserver

from .helpers import prometheus_families

XS = [1.0, 2.0, 3.0]


@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    for i, x in enumerate(xs):
        gm.trace(f"y{i}", dist.normal(slope * x + intercept, 1.0))
    return slope


@gm.gen
def outer(xs):
    s = gm.trace("sub", linreg, xs)
    return gm.trace("z", dist.normal(s, 1.0))


_RECT = re.compile(r"^\{ (\d+) \[label =\"[^\"]*\", shape=rectangle\]; \}$", re.MULTILINE)


def dot_primitives(*arrays) -> int:
    """Independent count: primitive (rectangle) node lines in `mx.export_to_dot`'s output.

    Lines, not distinct ids: nodes that share a primitive object (every
    `RandomBits` of a key split, two calls of one compiled kernel) print the
    same id with different inputs and outputs.
    """
    buf = io.StringIO()
    mx.export_to_dot(buf, *arrays)
    return len(_RECT.findall(buf.getvalue()))


def independent_count(model, key) -> int:
    """Graph nodes of one unevaluated `simulate`, counted without site accounting."""
    with gm.defer_checks():  # the getters read the lazy graph (a user's first read evaluates the checks)
        tr = model.simulate((XS,), key=key)
        leaves = [tr[a] for a in _addresses(model)]
        return dot_primitives(tr.get_score(), tr.get_retval(), *leaves)


def _addresses(model):
    own = ["slope", "intercept"] + [f"y{i}" for i in range(len(XS))]
    return own if model is linreg else [("sub", a) for a in own] + ["z"]


def _sums(snapshot) -> dict:
    out = {}
    for attrs, h in snapshot["site.buffers"]:
        out[attrs["site"]] = out.get(attrs["site"], 0) + h.sum
    return out


@pytest.mark.parametrize("model", [linreg, outer], ids=["flat", "nested"])
def test_site_buffers_equal_an_independent_graph_count(model, registry):
    key = mx.random.key(3)
    with go.observe(site_metrics=True, registry=registry) as o:
        model.simulate((XS,), key=key)
        step_nodes = o.instrumentor.sites.take_step_nodes()
        sums = _sums(o.snapshot())
        fams = prometheus_families(registry)
    want = independent_count(model, key)
    top = [s for s in sums if "/" not in s]  # a nested call's site reports its sub-sites' nodes and its own
    assert sum(sums[s] for s in top) == step_nodes == want > 0
    if model is outer:
        assert sums["sub"] >= sum(v for s, v in sums.items() if s.startswith("sub/"))
    fam = fams["genmlx_site_buffers"]
    assert fam.type == "histogram"
    count = {s.labels["site"]: s.value for s in fam.samples if s.name == "genmlx_site_buffers_count"}
    assert set(count) == set(sums) and all(v == 1 for v in count.values())
    labels = {frozenset(s.labels) - {"le"} for s in fam.samples}
    assert labels == {frozenset({"site", "model", "algorithm", "op"})}


def test_step_span_carries_the_buffers_of_its_step(spans):
    tp, exporter = spans
    base_key = mx.random.key(11)

    def step(key, state):
        tr = linreg.simulate((XS,), key=key)
        return Step(tr.get_score(), None, {})

    with go.observe(tracer_provider=tp, site_metrics=True, sample_every=2):
        driver.run(step, mx.array(0.0), 4, algorithm="sim", model="linreg", key=base_key)
    steps = [s for s in exporter.get_finished_spans() if s.name == "sim step"]
    assert [s.attributes["genmlx.step.index"] for s in steps] == [0, 2]
    for s in steps:
        i = s.attributes["genmlx.step.index"]
        # as the driver does: the step keys are one lazy split, evaluated with the first step's
        # graph (so step 0 also counts the split's node); later steps slice the evaluated keys
        keys = mx.random.split(base_key, 4)
        if i > 0:
            mx.eval(keys)
        assert s.attributes["genmlx.step.buffers"] == independent_count(linreg, keys[i])


def test_site_accounting_is_opt_in(registry):
    def ours():
        return [cb for cb in events.site_listeners if isinstance(getattr(cb, "__self__", None), SiteObserver)]

    with go.observe(registry=registry) as o:
        assert o.instrumentor.sites is None and ours() == []
        linreg.simulate((XS,), key=mx.random.key(0))
        assert "genmlx_site_buffers" not in prometheus_families(registry)
    with go.observe(site_metrics=True) as o:
        assert ours() == [o.instrumentor.sites.on_site]
    assert ours() == []


def _ev(addr, nodes, op="simulate", breakdown=None):
    return SiteHandled(addr, "normal", op, nodes, breakdown or {"site": nodes})


def test_top_k_labels_keep_the_heaviest_sites_and_other_gets_the_rest():
    obs = SiteObserver(top_k=2, current_run=lambda: ("m", "mh"))
    for _ in range(3):  # one "step": a (10), b (100), c (50), d (1)
        for addr, n in [(("a",), 10), (("b",), 100), (("c",), 50), (("d",), 1)]:
            obs.on_site(_ev(addr, n))
    assert obs.labels is None  # undecided: events are buffered
    assert obs.take_step_nodes() == 3 * 161
    assert obs.labels == {("b",): "b", ("c",): "c"}
    obs.on_site(_ev(("e",), 7))  # first seen after the decision
    obs.on_site(_ev(("b",), 100))
    rows = {(a["site"], a["op"]): h for a, h in obs.read()}
    assert set(rows) == {("b", "simulate"), ("c", "simulate"), (OTHER, "simulate")}
    assert (rows[("b", "simulate")].count, rows[("b", "simulate")].sum) == (4, 400)
    assert (rows[(OTHER, "simulate")].count, rows[(OTHER, "simulate")].sum) == (7, 3 * 11 + 7)
    assert sum(h.count for h in rows.values()) == obs.events == 14


def test_top_k_zero_puts_everything_in_other():
    obs = SiteObserver(top_k=0, current_run=lambda: ("", ""))
    obs.on_site(_ev(("x",), 3))
    assert [(a["site"], h.sum) for a, h in obs.read()] == [(OTHER, 3)]


def test_nested_call_replaces_its_sub_sites_in_the_step_total():
    obs = SiteObserver(top_k=5, current_run=lambda: ("", ""))
    obs.on_site(_ev(("p",), 5))
    obs.on_site(_ev(("sub", "x"), 10))
    obs.on_site(_ev(("sub", "y"), 20))
    obs.on_site(_ev(("sub",), 33, breakdown={"x": 10, "y": 20}))  # its own total: 30 + 3 of glue
    assert obs.take_step_nodes() == 5 + 33


@gm.gen
def coin(n):
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(n):
        gm.trace(("y", i), dist.bernoulli(p))
    return p


def test_site_series_carry_the_model_and_algorithm_of_their_run(registry, meter):
    """Also the initial trace's sites, handled before the run starts; sites outside runs keep their model."""
    from genmlx.inference import mh

    from .helpers import metric_points

    mp, reader = meter
    obs = {("y", i): 1.0 for i in range(3)}
    with go.observe(site_metrics=True, registry=registry, meter_provider=mp, sample_every=5):
        mh(coin, (3,), obs, n_samples=10, key=mx.random.key(0))
        linreg.simulate((XS,), key=mx.random.key(1))  # no run
        fams = prometheus_families(registry)
        points = metric_points(reader, "genmlx.site.buffers")
    counts = {(s.labels["site"], s.labels["model"], s.labels["algorithm"], s.labels["op"]): s.value
              for s in fams["genmlx_site_buffers"].samples if s.name == "genmlx_site_buffers_count"}
    assert counts[("p", "coin", "mh", "generate")] == 1  # the initial trace, made before the run started
    assert counts[("p", "coin", "mh", "regenerate")] == 10
    assert counts[(OTHER, "linreg", "", "simulate")] == 5  # first seen after the labels were decided
    assert all(model for _, model, _, _ in counts)  # no empty model label
    assert {a for _, m, a, _ in counts if m == "coin"} == {"mh"}
    # OpenTelemetry gets the sites of sampled steps (0 and 5 of 10, as the iteration duration) and those
    # outside runs; the Prometheus histogram above counts every visit
    otel = {(p.attributes["site"], p.attributes["op"]): p.count for p in points if p.attributes["model"] == "coin"}
    assert otel[("p", "regenerate")] == 2 and otel[("p", "generate")] == 1
    assert [(p.attributes["site"], p.count) for p in points if p.attributes["model"] == "linreg"] == [(OTHER, 5)]


def test_site_handled_outside_runs_waits_for_a_run_of_its_model():
    run = [None]
    obs = SiteObserver(top_k=5, current_run=lambda: run[0])
    from genmlx import handler

    class H:
        gen_fn = coin

    handler._stack.append(H())
    try:
        obs.on_site(_ev(("p",), 98, op="generate"))
    finally:
        handler._stack.pop()
    run[0] = ("coin", "mh")
    obs.on_site(_ev(("p",), 98, op="regenerate"))
    handler._stack.append(H())
    try:
        run[0] = None
        obs.on_site(_ev(("q",), 3))  # never followed by a run of its model
    finally:
        handler._stack.pop()
    rows = {(a["site"], a["model"], a["algorithm"], a["op"]) for a, _ in obs.read()}
    assert rows == {("p", "coin", "mh", "generate"), ("p", "coin", "mh", "regenerate"), ("q", "coin", "", "simulate")}
