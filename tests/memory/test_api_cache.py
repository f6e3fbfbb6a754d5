"""MLX memory API wrappers and the cache policy: setters return the previous value and restore state."""

from __future__ import annotations

import importlib

import mlx.core as mx
import numpy as np
import pytest

from genmlx.memory import (
    DEFAULT_CACHE_LIMIT,
    active_bytes,
    apply_default_cache_policy,
    cache_bytes,
    cache_limit,
    clear_cache,
    device_info,
    no_cache,
    peak_bytes,
    reset_peak,
    set_cache_limit,
    set_memory_limit,
    set_wired_limit,
)

cache_mod = importlib.import_module("genmlx.memory.cache")
MiB = 1 << 20


def current_cache_limit() -> int:
    prev = mx.set_cache_limit(0)
    mx.set_cache_limit(prev)
    return prev


def free_a_buffer(n_floats: int = 1 << 18) -> None:
    """Allocate, evaluate and drop a 1 MiB buffer: the allocator may cache it."""
    a = mx.ones((n_floats,))
    mx.eval(a)
    del a


def test_byte_counters_follow_an_allocation():
    clear_cache()
    reset_peak()
    before = active_bytes()
    a = mx.ones((1 << 18,))
    mx.eval(a)
    assert active_bytes() - before >= 4 * (1 << 18)
    assert peak_bytes() >= active_bytes()
    del a
    reset_peak()
    assert peak_bytes() <= active_bytes() + 4 * (1 << 18)


def test_set_memory_limit_returns_previous_and_restores():
    original = set_memory_limit(512 * MiB)
    assert set_memory_limit(256 * MiB) == 512 * MiB
    assert set_memory_limit(original) == 256 * MiB


def test_set_cache_limit_returns_previous_and_restores():
    original = set_cache_limit(64 * MiB)
    assert current_cache_limit() == 64 * MiB
    assert set_cache_limit(np.int64(32 * MiB)) == 64 * MiB  # numpy integers are fine
    assert set_cache_limit(original) == 32 * MiB
    assert current_cache_limit() == original


def test_set_wired_limit_returns_previous_or_degrades_gracefully():
    prev = set_wired_limit(0)
    if device_info()["backend"] == "gpu-metal":
        assert isinstance(prev, int)
        assert set_wired_limit(prev) == 0
    else:  # no wired memory off Metal: MLX accepts the call and reports 0
        assert prev in (0, None)
        assert set_wired_limit(1 << 30) in (0, None)


@pytest.mark.parametrize("setter", [set_memory_limit, set_cache_limit, set_wired_limit])
@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)])
def test_limit_setters_reject_bad_values_naming_them(setter, bad, exc):
    with pytest.raises(exc, match=setter.__name__):
        setter(bad)


def test_clear_cache_empties_the_cache():
    with cache_limit(64 * MiB):
        free_a_buffer()
        assert cache_bytes() >= MiB
        clear_cache()
        assert cache_bytes() == 0


def test_cache_limit_context_sets_and_restores():
    original = current_cache_limit()
    with cache_limit(3 * MiB) as prev:
        assert prev == original
        assert current_cache_limit() == 3 * MiB
    assert current_cache_limit() == original


def test_no_cache_disables_caching_inside_and_restores():
    original = set_cache_limit(64 * MiB)
    try:
        free_a_buffer()
        assert cache_bytes() >= MiB  # outside: freed buffers are cached
        with no_cache() as prev:
            assert prev == 64 * MiB
            assert cache_bytes() == 0  # cleared on entry
            free_a_buffer()
            assert cache_bytes() == 0  # freed buffers go straight back
            assert current_cache_limit() == 0
        assert current_cache_limit() == 64 * MiB
    finally:
        set_cache_limit(original)


def test_no_cache_restores_the_limit_after_an_exception():
    original = current_cache_limit()
    with pytest.raises(KeyError):
        with no_cache():
            assert current_cache_limit() == 0
            raise KeyError("boom")
    assert current_cache_limit() == original
    with pytest.raises(RuntimeError):
        with cache_limit(5 * MiB):
            raise RuntimeError("boom")
    assert current_cache_limit() == original


def test_default_cache_policy_is_applied_once_and_never_raises_a_limit(monkeypatch):
    monkeypatch.setattr(cache_mod, "_applied", None)
    monkeypatch.setattr(cache_mod, "_user_set", False)
    monkeypatch.delenv("GENMLX_CACHE_LIMIT", raising=False)
    mx.set_cache_limit(1 << 40)  # a large MLX default, as on Metal
    assert apply_default_cache_policy() == DEFAULT_CACHE_LIMIT == 256 * MiB
    assert current_cache_limit() == DEFAULT_CACHE_LIMIT
    mx.set_cache_limit(7 * MiB)
    assert apply_default_cache_policy() == DEFAULT_CACHE_LIMIT  # idempotent: nothing touched
    assert current_cache_limit() == 7 * MiB

    monkeypatch.setattr(cache_mod, "_applied", None)
    mx.set_cache_limit(32 * MiB)  # a lower MLX default is kept
    assert apply_default_cache_policy() == 32 * MiB
    assert current_cache_limit() == 32 * MiB


def test_env_var_overrides_the_default_cache_limit(monkeypatch):
    monkeypatch.setattr(cache_mod, "_applied", None)
    monkeypatch.setattr(cache_mod, "_user_set", False)
    monkeypatch.setenv("GENMLX_CACHE_LIMIT", str(3 * MiB))
    assert apply_default_cache_policy() == 3 * MiB
    assert current_cache_limit() == 3 * MiB


def test_bad_env_cache_limit_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cache_mod, "_applied", None)
    monkeypatch.setattr(cache_mod, "_user_set", False)
    monkeypatch.setenv("GENMLX_CACHE_LIMIT", "lots")
    with pytest.raises(ValueError, match="GENMLX_CACHE_LIMIT.*'lots'"):
        apply_default_cache_policy()


def test_an_explicit_set_cache_limit_wins_over_the_policy(monkeypatch):
    monkeypatch.setattr(cache_mod, "_applied", None)
    monkeypatch.setattr(cache_mod, "_user_set", False)
    set_cache_limit(9 * MiB)
    assert apply_default_cache_policy() is None
    assert current_cache_limit() == 9 * MiB


def test_device_info_describes_the_backend():
    info = device_info()
    assert {"backend", "device", "memory_size", "resource_limit", "raw"} <= set(info)
    assert info["raw"] == dict(mx.device_info())
    assert info["backend"] in ("cpu", "gpu-metal", "gpu-cuda", "gpu")
    assert isinstance(info["device"], str) and info["device"]
    if mx.default_device().type == mx.DeviceType.cpu:
        assert info["backend"] == "cpu"
    if mx.metal.is_available():
        assert isinstance(info["resource_limit"], int) and info["resource_limit"] > 0
    else:
        assert info["resource_limit"] is None
    assert info["memory_size"] is None or info["memory_size"] > 0
