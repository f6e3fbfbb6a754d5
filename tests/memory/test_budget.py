"""The resource budget: settings, nesting, confirmation before raising, in-place growth, the error."""

from __future__ import annotations

import gc
import importlib
import os
import pickle
import subprocess
import sys
import time

import mlx.core as mx
import pytest

import genmlx
from genmlx.memory import (
    METAL_RESOURCE_LIMIT,
    ResourceLimitExceeded,
    budget,
    budget_status,
    check_budget,
    get_budget,
    live_arrays,
    pending_nodes,
    set_budget,
    young_pending_nodes,
)

budget_mod = importlib.import_module("genmlx.memory.budget")
checker = importlib.import_module("genmlx.memory.checker")


def used_now() -> int:
    return live_arrays() + pending_nodes()


def test_no_budget_means_check_budget_returns_none():
    assert get_budget() is None
    assert check_budget("anything") is None
    assert budget_status()["limit"] is None and budget_status()["used"] is None


def test_set_budget_returns_previous_and_validates():
    assert set_budget(1000) is None
    assert get_budget() == 1000
    assert set_budget(None) == 1000
    for bad, exc in [(0, ValueError), (-5, ValueError), (2.5, TypeError), (True, TypeError), ("10", TypeError)]:
        with pytest.raises(exc, match="limit"):
            set_budget(bad)
    assert get_budget() is None


def test_budget_context_defaults_to_metal_limit_nests_and_restores():
    assert METAL_RESOURCE_LIMIT == 499_000
    with budget() as outer:
        assert outer == get_budget() == 499_000
        with budget(limit=10_000) as inner:
            assert inner == get_budget() == 10_000
            with budget(limit=None):
                assert get_budget() is None
                assert check_budget() is None
            assert get_budget() == 10_000
        assert get_budget() == 499_000
    assert get_budget() is None


def test_budget_is_restored_when_the_block_raises():
    set_budget(123_456)
    keep = [mx.array(1.0), mx.array(2.0)]
    with pytest.raises(ResourceLimitExceeded):
        with budget(limit=1):
            check_budget("tiny")
    assert get_budget() == 123_456
    del keep
    with pytest.raises(KeyError):
        with budget(limit=50):
            raise KeyError("x")
    assert get_budget() == 123_456


def test_check_budget_returns_exact_counts_and_status_reports_them():
    gc.collect()
    with budget(limit=10**9):
        live, pending = check_budget("first")  # the first check is a full sweep: exact
        assert (live, pending) == (live_arrays(), pending_nodes())
        status = budget_status()
        assert status["limit"] == 10**9 and status["used"] == live + pending
        assert status["live"] == live and status["pending"] == pending
        assert status["checks"] == 1 and status["sweeps"] == 1


def test_far_from_the_limit_checks_are_rate_limited_near_it_every_check_measures():
    x = mx.array(1.0)
    mx.eval(x)
    gc.collect()
    with budget(limit=10**9):
        results = []
        for i in range(3000):
            y = x + 1.0
            mx.eval(y)
            results.append(check_budget("far"))
        status = budget_status()
        measured = [r for r in results if r is not None]
        assert results[0] is not None  # the first check sweeps
        assert len(measured) == status["measures"] + status["sweeps"] < 3000
        # pending nodes stay what they were (other tests in the process may hold lazy arrays)
        assert all(r[0] >= 1 and r[1] == measured[0][1] for r in measured)
    held = [mx.array(float(i)) for i in range(200)]
    base = used_now()
    with budget(limit=base * 3 // 2):  # usage at two thirds of the limit
        assert all(check_budget("near") is not None for _ in range(200))
        status = budget_status()
        assert status["checks"] == status["measures"] + status["sweeps"] == 200
    del held


def test_growth_is_extrapolated_so_measurements_start_before_the_limit():
    x = mx.array(1.0)
    mx.eval(x)
    gc.collect()
    kept = []
    limit = used_now() + 400
    with budget(limit=limit):
        with pytest.raises(ResourceLimitExceeded) as err:
            for i in range(1000):
                y = x * float(i)
                mx.eval(y)
                kept.append(y)
                check_budget(f"step {i}")
    assert err.value.live <= limit + 1  # caught at the first check over the limit


def test_exactly_at_the_limit_passes_one_over_raises():
    gc.collect()
    x = mx.array(1.0)
    lazy = [x + float(i) for i in range(5)]  # 5 wrappers, 5 pending nodes
    used = used_now()
    assert used >= 11
    with budget(limit=used):
        assert sum(check_budget("at")) == used
    with budget(limit=used - 1):
        with pytest.raises(ResourceLimitExceeded) as err:
            check_budget("one over")
    e = err.value
    assert (e.live, e.pending, e.limit, e.where) == (live_arrays(), pending_nodes(), used - 1, "one over")


def test_an_overestimate_is_confirmed_before_raising(monkeypatch):
    monkeypatch.setattr(checker, "_SWEEP_DUTY", 1e-12)  # no time-based sweeps during the test
    gc.collect()
    base = used_now()
    with budget(limit=base + 250):
        check_budget("start")  # the first check sweeps
        held = [mx.array(float(i)) for i in range(200)]
        gc.collect()  # promote them: the census's generation-2 base now includes them
        assert check_budget("held")[0] == live_arrays()  # a collection happened: a full census
        del held  # deaths in generation 2: the incremental census over-counts by 200
        fresh = [mx.array(float(i)) for i in range(100)]
        assert checker.census.count() == live_arrays() + 200 > base + 250
        live, pending = check_budget("after deleting")  # over by estimate, under by exact recount
        assert live == live_arrays() and pending == pending_nodes()
        assert live + pending <= base + 250
    del fresh


def test_arrays_held_only_by_reference_cycles_are_not_a_leak():
    gc.collect()
    limit = used_now() + 50
    before = live_arrays()  # what earlier tests in this process still hold (caches, module data)
    gc.disable()
    try:
        for _ in range(100):
            node = {"a": mx.array(1.0)}
            node["self"] = node  # garbage that only the cyclic collector frees
        del node
        assert live_arrays() >= before + 100
        with budget(limit=limit):
            live, _ = check_budget("cycles")  # collects the garbage before deciding
        assert live < before + 50
    finally:
        gc.enable()


def test_excluded_results_are_not_counted(monkeypatch):
    monkeypatch.setattr(checker, "_DUTY", 1e9)  # measure at every check
    gc.collect()
    store = []
    with budget(limit=used_now() + 20):
        for i in range(100):
            y = mx.array(float(i))
            store.append({"value": y})
            del y
            live, _ = check_budget(f"step {i}", exclude=store)
            assert live == live_arrays(exclude=store)
    assert len(store) == 100


def test_in_place_accumulation_on_an_old_array_is_caught_by_the_sweep(monkeypatch):
    monkeypatch.setattr(checker, "_SWEEP_DUTY", 1e9)  # a sweep at every check
    x = mx.array(1.0)
    s = mx.array(0.0)
    mx.eval(x, s)
    gc.collect()  # s is old now: `s += x` keeps it old while its graph grows
    limit = used_now() + 100
    base_young = young_pending_nodes()
    with budget(limit=limit):
        with pytest.raises(ResourceLimitExceeded) as err:
            for i in range(300):
                s += x
                if i == 10:
                    assert young_pending_nodes() == base_young  # invisible to the cheap path
                check_budget(f"in place {i}")
    assert 95 <= int(err.value.where.split()[-1]) <= 105
    assert err.value.pending >= 100


def test_in_place_growth_is_found_without_forcing_sweeps():
    # Default duty cycle: sweeps are rate-limited in time (about 2% of it), so
    # detection takes some wall time; bounded here by a generous deadline.
    x = mx.array(1.0)
    s = mx.array(0.0)
    mx.eval(x, s)
    gc.collect()
    deadline = time.perf_counter() + 20.0
    with budget(limit=used_now() + 2_000):
        with pytest.raises(ResourceLimitExceeded) as err:
            while time.perf_counter() < deadline:
                s += x
                check_budget("in place")
    assert err.value.pending > 2_000 - 100


def test_error_message_and_pickling():
    e = ResourceLimitExceeded(live=12, pending=600_000, limit=499_000, where="mh step 7")
    assert isinstance(e, RuntimeError)
    msg = str(e)
    for part in ("mh step 7", "12 live arrays", "600,000 pending graph nodes", "499,000",
                 "mx.eval", "materialize", "gm.memory.budget(limit=...)", "GENMLX_BUDGET"):
        assert part in msg
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.live, e2.pending, e2.limit, e2.where) == (12, 600_000, 499_000, "mh step 7")
    wrappers = ResourceLimitExceeded(live=600_000, pending=0, limit=499_000)
    assert "growing container" in str(wrappers)
    # what grew names the cause, not what the process already held
    grown = ResourceLimitExceeded(live=400_000, pending=120_000, limit=499_000, grew=(3, 119_000))
    assert "pending graph nodes: a lazily accumulated" in str(grown) and "mx.eval" in str(grown)
    assert pickle.loads(pickle.dumps(grown)).grew == (3, 119_000)


def test_env_var_parsing(monkeypatch):
    for raw, want in [("", None), ("0", None), ("off", None), ("None", None), ("250000", 250_000), ("1_000", 1000)]:
        monkeypatch.setenv("GENMLX_BUDGET", raw)
        assert budget_mod._env_budget() == want
    for raw in ("lots", "-3", "1.5"):
        monkeypatch.setenv("GENMLX_BUDGET", raw)
        with pytest.raises(ValueError, match="GENMLX_BUDGET"):
            budget_mod._env_budget()


def test_env_var_sets_the_process_budget_at_import():
    root = os.path.dirname(os.path.dirname(genmlx.__file__))
    env = {**os.environ, "GENMLX_BUDGET": "250000", "PYTHONPATH": root}
    code = "import genmlx.memory as m; print(m.get_budget())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "250000"
