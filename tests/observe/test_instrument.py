"""The Instrumentor: idempotent, restores exactly what it replaced; the core never needs the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry

import genmlx_observe as go
from genmlx import events
from genmlx_observe.prometheus import GenmlxCollector

from .helpers import otel_value, prometheus_value, run_mh


def _collectors(registry) -> list:
    return list(registry._collector_to_names)


def test_instrument_twice_is_one_instrumentation(meter, registry):
    mp, reader = meter
    inst = go.GenmlxInstrumentor()
    before_obs, before_col = events.observers(), _collectors(registry)
    first = inst.instrument(meter_provider=mp, registry=registry)
    assert inst.instrument(meter_provider=mp, registry=registry) is first
    assert [o for o in events.observers() if o is first] == [first]
    run_mh(6)
    assert otel_value(reader, "genmlx.inference.steps", model="gauss") == 6  # not 12
    assert prometheus_value(registry, "genmlx_inference_steps_total", model="gauss") == 6
    inst.uninstrument()
    assert events.observers() == before_obs
    assert _collectors(registry) == before_col
    inst.uninstrument()  # harmless when nothing is instrumented
    run_mh(2)
    assert otel_value(reader, "genmlx.inference.steps", model="gauss") is None


def test_uninstrument_leaves_other_observers_and_collectors_alone(registry):
    class Other:
        seen = 0

        def on_step(self, e):
            Other.seen += 1

    other = Other()
    foreign = GenmlxCollector({}, include_opt_in=False)  # any collector registered by someone else
    foreign.describe = lambda: []
    registry.register(foreign)
    events.subscribe(other)
    try:
        inst = go.GenmlxInstrumentor()
        inst.instrument(registry=registry)
        inst.uninstrument()
        assert other in events.observers()
        assert foreign in _collectors(registry)
        run_mh(3)
        assert Other.seen == 3
    finally:
        events.unsubscribe(other)


def test_two_observations_are_independent():
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    with go.observe(registry=r1):
        run_mh(4)
        with go.observe(registry=r2):
            run_mh(5)
            assert prometheus_value(r2, "genmlx_inference_steps_total", model="gauss") == 5
        run_mh(1)
        assert prometheus_value(r1, "genmlx_inference_steps_total", model="gauss") == 10
    assert go.autostart() is None  # GENMLX_OBSERVE is not set in the test process


def test_catalog_has_a_reader_for_every_metric(registry):
    inst = go.GenmlxInstrumentor()
    inst.instrument(registry=registry, site_metrics=True)
    try:
        assert set(inst.readers) == {m.key for m in go.CATALOG}
    finally:
        inst.uninstrument()


_BLOCKED = ("opentelemetry", "prometheus_client", "psutil", "pytest", "genmlx_observe")


def test_core_runs_without_the_plugin_or_its_dependencies(tmp_path):
    script = tmp_path / "core_only.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        BLOCKED = {_BLOCKED!r}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not installed (blocked by the test)")
                return None

        sys.meta_path.insert(0, Block())
        import mlx.core as mx
        import genmlx as gm
        from genmlx import dist, inference as infer

        @gm.gen
        def model():
            p = gm.trace("p", dist.beta(2.0, 2.0))
            gm.trace("y", dist.bernoulli(p))

        res = infer.mh(model, (), {{"y": True}}, selection=gm.select("p"), n_samples=20, key=mx.random.key(0))
        assert len(res.traces) == 20, len(res.traces)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("ok", res.stats["acceptance_rate"])
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("GENMLX_OBSERVE", None)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok ")


@pytest.mark.parametrize("bad", [{"sample_every": 0}, {"census_overhead": -1}, {"prometheus_port": 70000},
                                 {"site_top_k": -1}, {"nonsense": 1}])
def test_bad_options_are_named(bad):
    name = next(iter(bad))
    with pytest.raises(go.ConfigError, match=name):
        go.observe(**bad)
