"""Fixtures for the memory tests: every test leaves MLX limits and the budget as it found them."""

from __future__ import annotations

import gc
import importlib

import mlx.core as mx
import pytest

# `genmlx.memory.budget` the attribute is the context manager; the modules live in sys.modules.
budget_mod = importlib.import_module("genmlx.memory.budget")
cache_mod = importlib.import_module("genmlx.memory.cache")


@pytest.fixture(autouse=True)
def _restore_memory_state():
    cache_limit = mx.set_cache_limit(0)
    mx.set_cache_limit(cache_limit)
    memory_limit = mx.set_memory_limit(0)
    mx.set_memory_limit(memory_limit)
    applied, user_set = cache_mod._applied, cache_mod._user_set
    prev_budget = budget_mod.set_budget(None)
    try:
        yield
    finally:
        budget_mod.set_budget(prev_budget)
        cache_mod._applied, cache_mod._user_set = applied, user_set
        mx.set_cache_limit(cache_limit)
        mx.set_memory_limit(memory_limit)


@pytest.fixture
def settled():
    """A heap with no garbage waiting: counts taken after this are stable."""
    gc.collect()
    return None

