"""Unit tests of the leak gate's pure helpers: slope, k selection, number
formatting, marker validation, store reachability, and the plugin's imports."""

from __future__ import annotations

import ast
import math
import pathlib
import sys
from types import SimpleNamespace

import pytest

from genmlx_observe.pytest_plugin import marks, report
from genmlx_observe.pytest_plugin.growth import census_interval, kept_array_ids, slope

pytestmark = pytest.mark.no_leak_gate

PLUGIN_DIR = pathlib.Path(marks.__file__).parent


def test_slope_is_exact_for_integer_lines():
    xs = [20, 37, 90, 150, 400]
    assert slope(xs, [3 * x + 7 for x in xs]) == 3.0
    assert slope(xs, [5] * 5) == 0.0
    assert slope(xs, [x // 2 for x in [20, 38, 90, 150, 400]]) == pytest.approx(0.5, abs=1e-3)
    assert slope([0, 1, 2, 3], [0, 1, 1, 2]) == 0.6  # (n Sxy - Sx Sy) / (n Sxx - Sx^2) = 12 / 20


def test_slope_needs_two_distinct_x():
    assert math.isnan(slope([5, 5, 5], [1, 2, 3]))
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        slope([1, 2, 3], [1, 2])


def test_slope_of_one_off_jump_is_about_1_5_a_over_n():
    """The basis of the default limit: a one-off of `a` arrays mid-window moves the slope by ~1.5 a / N."""
    n, a = 1000, 10
    xs = list(range(0, n + 1, 10))
    ys = [100 + (a if x > n / 2 else 0) for x in xs]
    assert slope(xs, ys) == pytest.approx(1.5 * a / n, rel=0.03)


def test_census_interval_keeps_census_under_ten_percent():
    # 2 ms census, 0.5 ms steps: a census every 40 steps costs 10%
    assert census_interval(2e-3, 5e-4) == 40
    assert census_interval(2e-3, 5e-4, share=0.05) == 80
    # slow steps: a census every step is already cheap
    assert census_interval(1e-3, 1.0) == 1


def test_census_interval_guarantees_points_when_the_loop_is_long_enough():
    # 7 points still missing, 350 steps left: at most every 50th step, however costly
    assert census_interval(2e-3, 1e-5, steps_left=350, points_missing=7) == 50
    # enough points already: cost alone decides
    assert census_interval(2e-3, 1e-5, steps_left=350, points_missing=0) == 2000
    # fewer steps left than points missing: every step
    assert census_interval(2e-3, 1e-5, steps_left=3, points_missing=7) == 1


def test_census_interval_degenerate_inputs():
    assert census_interval(0.0, 0.0) == 1
    assert census_interval(1e-3, 0.0) == 1


@pytest.mark.parametrize(
    "x, near, text",
    [(2.03, None, "2.03"), (1.0, 0.99, "1.00"), (0.1000004, 0.1, "0.100000"), (0.105, 0.1, "0.105"),
     (1234.5, None, "1,234.50"), (None, None, "-"), (float("nan"), None, "-")],
)
def test_number_shows_enough_digits_to_differ_from_the_limit(x, near, text):
    assert report.number(x, near) == text


def test_marker_functions_validate_and_name_the_argument():
    assert marks.limit_wrapper_growth(0.5, warmup=50) == {
        "explicit": True, "enabled": True, "limit": 0.5, "warmup": 50}
    assert marks.limit_wrapper_growth(enabled=False)["enabled"] is False
    assert marks.no_leak_gate() == {"enabled": False, "site_budget": None}
    assert marks.limit_buffers_per_site(40)["site_budget"] == 40
    with pytest.raises(ValueError, match=r"limit_wrapper_growth: per_iteration must be a number >= 0, got -1"):
        marks.limit_wrapper_growth(-1)
    with pytest.raises(ValueError, match=r"warmup must be an int >= 0, got 2.5"):
        marks.limit_wrapper_growth(warmup=2.5)
    with pytest.raises(ValueError, match=r"limit_buffers_per_site: max_nodes must be an int >= 0, got True"):
        marks.limit_buffers_per_site(True)


def test_resolve_applies_closest_marker_last():
    defaults = marks.Settings(enabled=True, limit=0.1, pending_limit=0.1, warmup=None, census_every=0,
                              site_budget=None)
    mod = SimpleNamespace(name="no_leak_gate", args=(), kwargs={})
    fn = SimpleNamespace(name="limit_wrapper_growth", args=(), kwargs={"per_iteration": 2})
    s = marks.resolve([mod, fn], defaults)
    assert s.enabled and s.limit == 2.0 and s.explicit
    assert not marks.resolve([fn, mod], defaults).enabled
    assert marks.resolve([SimpleNamespace(name="parametrize", args=(), kwargs={})], defaults) == defaults
    with pytest.raises(TypeError, match=r"@pytest.mark.limit_buffers_per_site: .*expected limit_buffers_per_site\("):
        marks.resolve([SimpleNamespace(name="limit_buffers_per_site", args=(), kwargs={})], defaults)


def test_kept_array_ids_follow_python_reachability_but_not_shared_code():
    import mlx.core as mx

    import genmlx as gm
    from genmlx import dist

    cache = [mx.array(9.0)]

    @gm.gen
    def model():
        cache.append(mx.array(1.0))  # a memo-cache-like leak inside the model's closure
        mu = gm.trace("mu", dist.normal(0.0, 1.0))
        gm.trace("y", dist.normal(mu * 2.0, 1.0))
        return mu

    tr = model.simulate(())
    ids: set[int] = set()
    kept_array_ids([tr], ids)
    walked = {id(a) for a in gm.memory.arrays_in(tr)}
    assert walked <= ids  # everything the walk protocol knows
    y_dist = tr.get_subtrace("y").gen_fn
    assert id(y_dist.mu) in ids  # and what the trace keeps beyond it: a site's distribution parameters
    assert not {id(a) for a in cache} & ids  # never what shared code (the model) keeps


def test_plugin_modules_import_only_stdlib_and_pytest_at_top_level():
    """The entry point loads in every suite: startup must not pull in genmlx, mlx or OpenTelemetry."""
    allowed = set(sys.stdlib_module_names) | {"pytest", "__future__"}
    for name in ("plugin.py", "marks.py", "report.py"):
        tree = ast.parse((PLUGIN_DIR / name).read_text())
        for node in tree.body:  # module level only: function bodies import lazily
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = set() if node.level else {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{name} imports {roots - allowed} at module level"


def test_incremental_census_equals_a_full_scan_at_every_step():
    """Young-generation scans plus weak references give the same counts as scanning everything."""
    import gc
    import random

    import mlx.core as mx

    from genmlx.memory import count_nodes
    from genmlx_observe.pytest_plugin.census import Census, postpone_old_collections, restore_collections

    rng = random.Random(0)
    kept: dict[int, mx.array] = {}
    acc = mx.array(0.0)
    mx.eval(acc)
    store: list = []
    census = Census(store)
    postpone_old_collections()
    try:
        for step in range(60):
            for _ in range(rng.randrange(5)):  # new arrays, some kept for later steps
                kept[rng.randrange(40)] = mx.array(float(step))
            for k in rng.sample(sorted(kept), min(len(kept), rng.randrange(3))):  # old ones die
                del kept[k]
            cycle = {"a": [mx.array(1.0), mx.array(2.0)]}  # young cyclic garbage
            cycle["self"] = cycle
            del cycle
            store.append({"x": mx.array(float(step))})  # kept for the caller: never counted
            if step % 7 == 3:
                acc += 1.0  # in place, on an old array: one more pending node
            live, pending, _ = census.take(None)
            if step == 0:
                pending0 = pending  # whatever earlier tests left lazy
            everything = [a for a in gc.get_objects() if type(a) is mx.array]
            outside = [a for a in everything if id(a) not in census.store_ids]
            assert live == len(outside), step
            assert pending == count_nodes(*outside), step
            del everything, outside
        assert census.full_censuses == 1  # only the first census scanned the heap
        assert pending - pending0 == 9  # the in-place accumulator's graph, seen although the array is old
    finally:
        restore_collections()
        census.close()


def test_collections_are_restored_and_foreign_collections_force_a_full_scan():
    import gc

    import mlx.core as mx

    from genmlx.inference import driver
    from genmlx.inference.driver import Step
    from genmlx_observe.pytest_plugin.growth import TestRecorder

    def step(key, s):
        if s[1] % 50 == 0:
            gc.collect()  # the code under test collects: the next census must not trust generations
        return Step((s[0] + mx.random.normal(key=key), s[1] + 1))

    gc.collect()  # earlier tests' garbage: freed now, not by the loop's own collections
    before = gc.get_threshold()
    rec = TestRecorder(marks.Settings(True, 0.1, 0.1, 10, 5, None))
    rec.start()
    try:
        driver.run(step, (mx.array(0.0), 1), 300, algorithm="test")
    finally:
        rec.stop()
    assert gc.get_threshold() == before
    (loop,) = rec.loops
    assert loop.wrapper_growth == 0.0 and loop.pending_growth == 0.0
    assert 6 <= loop.full_censuses <= 8  # the first census, and one after each gc.collect() in the loop


def test_loading_the_entry_point_imports_no_exporter_and_not_genmlx(tmp_path):
    import subprocess

    code = (
        "import sys, genmlx_observe.pytest_plugin.plugin\n"
        "heavy = {'opentelemetry', 'prometheus_client', 'psutil', 'genmlx', 'mlx'} & "
        "{m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, sorted(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
