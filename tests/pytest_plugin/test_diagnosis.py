"""The leak gate names what holds a leak: a corpus of leak patterns and clean ones.

Each leak pattern is a real inner pytest run (`pytester`) whose gate must
fail the test and name, in the report section and the JSON artifact, the
holder of the surviving arrays (and where there is one, the source line that
created them, marked ``# SITE`` in the pattern, and the trace site). Each
clean pattern must pass without being watched or diagnosed.
"""

from __future__ import annotations

import pytest

import genmlx  # noqa: F401  (imported before the inner runs, so they share it)

pytest_plugins = ("pytester",)
pytestmark = pytest.mark.no_leak_gate

MODEL = """
import mlx.core as mx
import genmlx as gm
from genmlx import dist
from genmlx import inference as infer
import loops

def run_mh(model, **kw):
    return infer.mh(model, (), {"y": 0.3}, selection=gm.select("p"), n_samples=300, key=mx.random.key(0), **kw)
"""

# name -> (source, holder text the first holder must contain, whether a SITE line must be named)
LEAKS = {
    "module_list": (MODEL + """
LEAK = []

@gm.gen
def model():
    p = gm.trace("p", dist.normal(0.0, 1.0))
    LEAK.append(p * 2.0)  # SITE
    gm.trace("y", dist.normal(p, 1.0))
    return p

def test_leak():
    run_mh(model)
""", "list `test_probe.LEAK`"),
    "trace_value": (MODEL + """
SEEN = []

@gm.gen
def model():
    p = gm.trace("p", dist.normal(0.0, 1.0))  # SITE
    SEEN.append(p)
    gm.trace("y", dist.normal(p, 0.05))  # a sharp likelihood: most proposals are rejected, not kept
    return p

def test_leak():
    run_mh(model)
""", "list `test_probe.SEEN`"),
    "dict_by_step": (MODEL + """
BY_STEP = {}

def step(key, s):
    out = loops.clean(key, s)
    BY_STEP[len(BY_STEP)] = out.state[1] + 0.0  # SITE
    return out

def test_leak():
    loops.run(step, n=300)
""", "dict `test_probe.BY_STEP`"),
    "closure_cell": (MODEL + """
def keeping_step():
    kept = []

    def step(key, s):
        out = loops.clean(key, s)
        kept.append(out.state[0] + 1.0)  # SITE
        return out

    return step

def test_leak():
    loops.run(keeping_step(), n=300)
""", "list local `step` of run (driver.py:"),
    "object_attribute": (MODEL + """
class Model:
    def __init__(self):
        self.cache = []

    def step(self, key, s):
        out = loops.clean(key, s)
        self.cache.append(out.state[0] + 1.0)  # SITE
        return out

M = Model()

def test_leak():
    loops.run(M.step, n=300)
""", "list `test_probe.M` -> attribute `Model.cache`"),
    "lru_cache": (MODEL + """
import functools

@functools.lru_cache(maxsize=None)
def scaled(x):
    return x * 2.0  # SITE

def step(key, s):
    out = loops.clean(key, s)
    scaled(out.state[1])
    return out

def test_leak():
    loops.run(step, n=300)
""", "dict `test_probe.scaled` -> functools.lru_cache of `test_probe.scaled`"),
    "callback_keeps_traces": (MODEL + """
KEPT = []

@gm.gen
def model():
    p = gm.trace("p", dist.normal(0.0, 1.0))
    gm.trace("y", dist.normal(p, 1.0))
    return p

def test_leak():
    run_mh(model, burn=300, callback=lambda i, tr, stats: KEPT.append(tr))  # burn-in traces are not kept
""", "list `test_probe.KEPT`"),
    "traceback_in_list": (MODEL + """
ERRORS = []

def check(x):
    doubled = x * 2.0  # SITE
    raise ValueError("rejected")

def step(key, s):
    out = loops.clean(key, s)
    try:
        check(out.state[0])
    except ValueError as e:
        ERRORS.append(e)
    return out

def test_leak():
    loops.run(step, n=300)
""", "list `test_probe.ERRORS`"),
    "lazy_accumulator": (MODEL + """
TOTAL = mx.array(0.0)

def step(key, s):
    global TOTAL
    out = loops.clean(key, s)
    TOTAL = TOTAL + out.state[1]  # SITE
    return out

def test_leak():
    loops.run(step, n=400)
""", "`test_probe.TOTAL`"),
    "scores_in_model": (MODEL + """
SCORES = []

@gm.gen
def model():
    p = gm.trace("p", dist.normal(0.0, 1.0))
    SCORES.append(dist.normal(0.0, 1.0).log_prob(p))  # SITE
    gm.trace("y", dist.normal(p, 1.0))
    return p

def test_leak():
    run_mh(model)
""", "list `test_probe.SCORES`"),
    "generator_keeps_yields": (MODEL + """
def noise():
    kept = []
    while True:
        x = mx.random.normal((), key=mx.random.key(len(kept)))  # SITE
        kept.append(x)
        yield x

NOISE = noise()

def step(key, s):
    out = loops.clean(key, s)
    next(NOISE)
    return out

def test_leak():
    loops.run(step, n=300)
""", "list `test_probe.NOISE` -> local `kept` of suspended generator noise (test_probe.py:"),
    "frame_local": (MODEL + """
def test_leak():
    kept = []
    loops.run(loops.clean, n=300, callback=lambda i, s, stats: kept.append(s[0] + 1.0))  # SITE
""", "list local `kept` of test_leak (test_probe.py:"),
}


def _site_line(gate) -> int | None:
    text = (gate.pytester.path / "test_probe.py").read_text().splitlines()
    return next((i + 1 for i, line in enumerate(text) if line.rstrip().endswith("# SITE")), None)


def _leaking_loop(gate) -> dict:
    (entry,) = gate.json()["tests"]
    assert entry["leaked"], entry["message"]
    return next(r for r in entry["loops"] if r["verdict"] == "leak")


def _holder_line(h: dict) -> str:
    return f"{h['container']} {h['holder']}"


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_leak_pattern_names_its_holder_and_site(gate, name):
    source, holder = LEAKS[name]
    gate.pytester.makepyfile(test_probe=source)
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(failed=1)
    loop = _leaking_loop(gate)
    d = loop["diagnosis"]
    assert d is not None and "error" not in d, d
    out = result.stdout.str()
    assert f"what holds the growth of loop {loop['run_id']}" in out
    site = _site_line(gate)
    if name == "lazy_accumulator":
        g = d["graph"]
        assert g["holder"] == holder
        assert g["per_iteration"]["ops"] == {"Add": 1.0} and g["per_iteration"]["depth"] == 1.0
        assert g["created_at"]["line"] == site
        assert "growing graph: `Add` x1.00 per iteration, graph depth" in out
        assert f"created at test_probe.py:{site} in step: TOTAL = TOTAL + out.state[1]" in out
        return
    first = d["holders"][0]
    assert holder in _holder_line(first), d["holders"]
    assert first["per_iteration"] > 0.1 and not first["by_design"]  # MH keeps accepted values: fewer leak
    assert f"held by {_holder_line(first)}" in out
    lines = {h["created_at"]["line"] for h in d["holders"] if h["created_at"]
             and h["created_at"]["file"].endswith("test_probe.py")}
    if site is not None:
        assert site in lines, d["holders"]
        assert f"created at test_probe.py:{site} " in out
    if name == "trace_value":
        assert first["site"] == {"address": ["p"], "gen_fn": "normal", "model": "model", "part": "value"}
        assert "trace site 'p' (normal) of `model`: its value" in out
    if name == "callback_keeps_traces":
        assert any("site 'p' (normal) of a trace of `model`" in h["path"] for h in d["holders"]), d["holders"]
    if name == "traceback_in_list":
        assert "ValueError.__traceback__" in first["path"]


CLEAN = {
    "samples_kept_in_result": """
@gm.gen
def model():
    p = gm.trace("p", dist.normal(0.0, 1.0))
    gm.trace("y", dist.normal(p, 1.0))
    return p

def test_clean():
    res = run_mh(model)
    assert len(res.traces) == 300
""",
    "bounded_cache": """
import functools

@functools.lru_cache(maxsize=8)
def scaled(x):
    return x * 2.0

def step(key, s):
    out = loops.clean(key, s)
    mx.eval(scaled(out.state[1]))
    return out

def test_clean():
    loops.run(step, n=300)
""",
    "ring_buffer": """
import collections

RING = collections.deque(maxlen=16)

def step(key, s):
    out = loops.clean(key, s)
    RING.append(mx.array(1.0))
    return out

def test_clean():
    loops.run(step, n=300)
""",
    "evaluated_accumulator": """
TOTAL = [mx.array(0.0)]

def step(key, s):
    out = loops.clean(key, s)
    TOTAL[0] = TOTAL[0] + 1.0
    mx.eval(TOTAL[0])
    return out

def test_clean():
    loops.run(step, n=300)
""",
    "traces_discarded": """
@gm.gen
def model():
    p = gm.trace("p", dist.normal(0.0, 1.0))
    gm.trace("y", dist.normal(p, 1.0))
    return p

def step(key, s):
    out = loops.clean(key, s)
    tr = model.simulate((), key=key)
    float(tr.get_score())
    return out

def test_clean():
    loops.run(step, n=300)
""",
}


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_pattern_passes_unwatched(gate, name):
    gate.pytester.makepyfile(test_probe=MODEL + CLEAN[name])
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(passed=1)
    (entry,) = gate.json()["tests"]
    judged = [r for r in entry["loops"] if r["verdict"] != "too short"]
    assert judged and all(r["verdict"] == "ok" for r in judged)
    assert all(r["watched"] is None and r["diagnosis"] is None for r in entry["loops"])


# -- the function `genmlx-observe profile` calls, used directly ------------------------------------

HELD: dict = {}


def test_diagnose_names_an_attribute_holder_from_code():
    import mlx.core as mx

    from genmlx_observe.pytest_plugin.diagnose import diagnose, lines, snapshot, survivors

    class Cache:
        def __init__(self):
            self.entries = []

    HELD["cache"] = Cache()
    base = snapshot()
    for i in range(40):
        HELD["cache"].entries.append(mx.array(float(i)))
    d = diagnose(survivors(base), iterations=40)
    (first, *_) = d["holders"]
    assert first["container"] == "list" and first["count"] == 40 and first["per_iteration"] == 1.0
    assert first["holder"] == (f"`{__name__}.HELD` -> ['cache'] -> attribute "
                               "`test_diagnose_names_an_attribute_holder_from_code.<locals>.Cache.entries`")
    assert lines(d)[0].startswith("1.00 arrays/iteration held by list `")
    HELD.clear()


def test_diagnose_finds_an_old_array_grown_in_place():
    import mlx.core as mx

    from genmlx_observe.pytest_plugin.diagnose import diagnose, snapshot, survivors

    HELD["acc"] = acc = mx.array(0.0)
    mx.eval(acc)
    base = snapshot()
    x = mx.array(1.0)
    for _ in range(30):
        acc += x  # in place: the wrapper is old, its graph new
    assert HELD["acc"] is acc
    new = survivors(base)
    everything = new + [acc]
    d = diagnose(new, iterations=30, wrappers=False, pending=new, pending_fallback=everything, min_nodes=15)
    g = d["graph"]
    assert g["nodes"] == 30 and g["depth"] == 30 and g["ops"] == {"Add": 30}
    assert g["holder"].startswith("local `acc` of test_diagnose_finds_an_old_array_grown_in_place (")
    HELD.clear()


def test_diagnose_says_the_result_store_keeps_by_design():
    import mlx.core as mx

    from genmlx_observe.pytest_plugin.diagnose import diagnose, lines

    store = [mx.array(float(i)) for i in range(10)]
    d = diagnose(list(store), store=store, iterations=10)
    (first,) = d["holders"]
    assert first["by_design"] and first["root"] == "store" and first["count"] == 10
    assert lines(d)[0] == "1.00 arrays/iteration kept by design in the run's result store: not a leak"


def test_a_script_measured_outside_pytest_names_its_global(tmp_path):
    """What `genmlx-observe profile` can do: a `TestRecorder` around a script's loops."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(MODEL.replace("import loops\n", "") + """
from genmlx_observe.pytest_plugin.diagnose import lines
from genmlx_observe.pytest_plugin.growth import TestRecorder
from genmlx_observe.pytest_plugin.marks import Settings

LEAK = []

@gm.gen
def model():
    p = gm.trace("p", dist.normal(0.0, 1.0))
    LEAK.append(p * 2.0)  # SITE
    gm.trace("y", dist.normal(p, 1.0))
    return p

rec = TestRecorder(Settings(enabled=True, limit=0.1, pending_limit=0.1, warmup=None, census_every=0, site_budget=None))
rec.start()
run_mh(model)
rec.stop()
(loop,) = rec.loops
print("\\n".join(lines(loop.diagnosis)))
""")
    site = next(i + 1 for i, line in enumerate(script.read_text().splitlines()) if line.endswith("# SITE"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "1.00 arrays/iteration held by list `__main__.LEAK`" in out.stdout
    assert f"created at script.py:{site} in model: LEAK.append(p * 2.0)" in out.stdout
