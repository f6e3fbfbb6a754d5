"""The catalog: one definition per metric, both dialect names derived by the conventions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import genmlx_observe as go
from genmlx_observe import catalog
from genmlx_observe.catalog import CATALOG, Metric

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
BOUNDED = {"algorithm", "model", "chain", "phase", "outcome", "site", "op", "signal"}


def test_keys_and_names_are_unique():
    for attr in ("key", "otel_name", "prometheus_base", "prometheus_name"):
        names = [getattr(m, attr) for m in CATALOG]
        assert len(names) == len(set(names)), attr


@pytest.mark.parametrize("m", CATALOG, ids=lambda m: m.key)
def test_dialect_names_follow_the_conventions(m: Metric):
    assert m.kind in ("counter", "updowncounter", "gauge", "histogram")
    assert m.otel_name == "genmlx." + m.key
    assert re.fullmatch(r"genmlx(\.[a-z_]+)+", m.otel_name) and "_total" not in m.otel_name
    assert re.fullmatch(r"By|s|1|\{[a-z]+\}(/\{[a-z]+\})?", m.unit), m.unit  # UCUM
    p = m.prometheus_name
    assert re.fullmatch(r"genmlx_[a-z_]+", p)
    assert p.endswith("_total") == (m.kind == "counter")
    unit_suffix = {"By": "_bytes", "s": "_seconds", "1": "_ratio"}.get(m.unit)
    if unit_suffix:
        assert m.prometheus_base.endswith(unit_suffix)
    assert set(m.attributes) <= BOUNDED
    assert m.description.endswith(".") or m.description.endswith(")")
    assert bool(m.buckets) == (m.kind == "histogram")


def test_examples_from_the_design():
    assert catalog.metric("inference.iterations").otel_name == "genmlx.inference.iterations"
    assert catalog.metric("inference.iterations").prometheus_name == "genmlx_inference_iterations_total"
    assert catalog.metric("memory.cache").prometheus_name == "genmlx_memory_cache_bytes"
    assert catalog.metric("inference.iteration.duration").prometheus_name == \
        "genmlx_inference_iteration_duration_seconds"
    assert catalog.metric("process.cpu.time").prometheus_name == "genmlx_process_cpu_time_seconds_total"
    with pytest.raises(KeyError, match="no metric 'nope'.*inference.iterations"):
        catalog.metric("nope")


def test_the_design_minimum_set_is_covered():
    keys = {m.key for m in CATALOG}
    assert {
        "inference.iterations", "inference.steps", "inference.syncs", "inference.iteration.duration",
        "memory.active", "memory.cache", "memory.peak", "memory.live_arrays", "memory.pending_nodes",
        "memory.live_arrays.growth", "memory.pending_nodes.growth", "site.buffers", "memory.budget.limit",
        "memory.budget.used", "process.memory.rss", "process.cpu.time", "inference.acceptance.ratio",
        "inference.particle.ess", "inference.divergences",
    } <= keys
    assert catalog.metric("site.buffers").opt_in


def test_docs_embed_the_generated_catalog_table():
    assert catalog.markdown_table() in DOCS.read_text()


def test_public_names_import():
    for name in go.__all__:
        obj = getattr(go, name)  # AttributeError names a missing one
        mod = getattr(obj, "__module__", None)
        assert mod is None or mod.split(".")[0] in ("genmlx_observe", "genmlx"), (name, mod)
