"""Cache policy: how many freed buffers MLX may keep for reuse.

MLX recycles freed buffers through a cache instead of returning them to the
system. On Metal every cached buffer is still a Metal resource and counts
toward the 499,000 limit; by default the cache may grow to the memory limit
(gigabytes). The seed capped it at 256 MiB, and so do we:

`DEFAULT_CACHE_LIMIT` = 256 MiB. Why: it is large enough that a steady
inference loop reuses its per-step buffers (a step allocates kilobytes to a
few megabytes) and never pays for fresh allocations, and small enough to bound
the bytes held idle. MLX's Metal allocator also releases cached buffers before
it would fail on the resource limit, so the cache alone cannot kill a run; the
cap keeps it from filling memory and from inflating the count other processes
and tools see. The policy never raises a limit: where MLX's default is already
lower (MLX's CPU backend on our 2-core Linux machines starts at 32 MiB), that
is kept.

Override with the environment variable `GENMLX_CACHE_LIMIT` (bytes, e.g.
``268435456``; ``0`` disables caching), or call `set_cache_limit` yourself:
an explicit call wins over the policy.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

from .api import _nbytes, _set_cache_limit, clear_cache

__all__ = [
    "DEFAULT_CACHE_LIMIT",
    "apply_default_cache_policy",
    "no_cache",
    "cache_limit",
]

DEFAULT_CACHE_LIMIT = 256 * 1024 * 1024

_lock = threading.Lock()
_applied: int | None = None  # the limit the policy set, once applied
_user_set = False  # set by api.set_cache_limit: the policy then stays out of the way


def _env_cache_limit() -> int | None:
    raw = os.environ.get("GENMLX_CACHE_LIMIT", "").strip()
    if not raw:
        return None
    try:
        return _nbytes("GENMLX_CACHE_LIMIT", int(raw))
    except (TypeError, ValueError):
        raise ValueError(
            f"GENMLX_CACHE_LIMIT must be a number of bytes (an int >= 0), got {raw!r}"
        ) from None


def apply_default_cache_policy() -> int | None:
    """Apply the cache policy once per process (later calls do nothing).

    Sets the cache limit to `GENMLX_CACHE_LIMIT` when given, else to
    ``min(DEFAULT_CACHE_LIMIT, MLX's current limit)``, unless the program
    already chose a limit through `set_cache_limit`.

    Returns:
        The limit the policy set, or None when it left the limit alone.
    """
    global _applied
    with _lock:
        if _applied is not None or _user_set:
            return _applied
        env = _env_cache_limit()
        if env is not None:
            _set_cache_limit(env)
            _applied = env
        else:
            prev = _set_cache_limit(DEFAULT_CACHE_LIMIT)
            if prev < DEFAULT_CACHE_LIMIT:
                _set_cache_limit(prev)  # never raise a lower limit
            _applied = min(prev, DEFAULT_CACHE_LIMIT)
        return _applied


@contextmanager
def cache_limit(n: int) -> Iterator[int]:
    """Use cache limit `n` (bytes) inside the block; restore the previous one on exit.

    Yields the previous limit. Restores it also when the block raises.
    """
    prev = _set_cache_limit(_nbytes("cache_limit", n))
    try:
        yield prev
    finally:
        _set_cache_limit(prev)


@contextmanager
def no_cache(clear: bool = True) -> Iterator[int]:
    """Disable MLX's buffer cache inside the block (the seed's resource guard).

    Freed buffers go straight back to the system instead of the cache. With
    `clear` (the default) what was cached is released on entry too. The
    previous limit is restored on exit, also when the block raises.
    Yields the previous limit.
    """
    with cache_limit(0) as prev:
        if clear:
            clear_cache()
        yield prev
