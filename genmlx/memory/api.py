"""MLX's memory API, in one place (the seed's Phase 1).

Thin wrappers over `mx.get_active_memory`, `mx.get_cache_memory`,
`mx.get_peak_memory`, `mx.reset_peak_memory`, `mx.set_memory_limit`,
`mx.set_cache_limit`, `mx.set_wired_limit`, `mx.clear_cache` and
`mx.device_info` (never the deprecated `mx.metal.*` spellings). Every setter
returns the previous value, so callers can restore it.

Bytes are counted by MLX's allocator for the default backend: on the CPU
backend of Linux these are heap bytes of array buffers; on Apple silicon they
are Metal buffers (CPU arrays included: macOS shares one allocator).
"""

from __future__ import annotations

import operator
import os
from typing import Any

import mlx.core as mx

__all__ = [
    "active_bytes",
    "cache_bytes",
    "peak_bytes",
    "reset_peak",
    "set_memory_limit",
    "set_cache_limit",
    "set_wired_limit",
    "clear_cache",
    "device_info",
]


def active_bytes() -> int:
    """Bytes held by live (not cached) array buffers."""
    return int(mx.get_active_memory())


def cache_bytes() -> int:
    """Bytes of freed buffers MLX keeps for reuse (its buffer cache)."""
    return int(mx.get_cache_memory())


def peak_bytes() -> int:
    """High-water mark of `active_bytes()` since start or the last `reset_peak()`."""
    return int(mx.get_peak_memory())


def reset_peak() -> None:
    """Reset the high-water mark behind `peak_bytes()`."""
    mx.reset_peak_memory()


def _nbytes(name: str, n: Any) -> int:
    if isinstance(n, bool):
        raise TypeError(f"{name}: expected a number of bytes (int >= 0), got {n!r}")
    try:
        v = operator.index(n)  # ints and numpy integers, not floats
    except TypeError:
        raise TypeError(f"{name}: expected a number of bytes (int >= 0), got {type(n).__name__} {n!r}") from None
    if v < 0:
        raise ValueError(f"{name}: a number of bytes must be >= 0, got {v}")
    return v


def set_memory_limit(n: int) -> int:
    """Set the memory limit (bytes) MLX tries to stay under during evaluation.

    It is a guideline: when it would be exceeded MLX waits for running work and
    frees cached buffers before allocating more. Returns the previous limit.
    """
    return int(mx.set_memory_limit(_nbytes("set_memory_limit", n)))


def set_cache_limit(n: int) -> int:
    """Set the buffer cache limit in bytes; 0 disables caching. Returns the previous limit.

    Whether lowering the limit frees what is already cached depends on the
    backend (the CPU allocator trims at once); `clear_cache()` always does.
    An explicit call here takes precedence over `apply_default_cache_policy`.
    """
    from . import cache  # the policy must not override an explicit user choice

    cache._user_set = True
    return _set_cache_limit(_nbytes("set_cache_limit", n))


def _set_cache_limit(n: int) -> int:
    return int(mx.set_cache_limit(n))


def set_wired_limit(n: int) -> int | None:
    """Set the wired (pinned in physical memory) limit in bytes; returns the previous one.

    Wired memory exists only on Metal with macOS 15 or later. Elsewhere the
    limit has no effect: MLX's CPU backend accepts the call and returns 0
    (measured on MLX 0.32); where a build lacks the function or a non-Metal
    backend rejects the call with a `RuntimeError`, this returns None. On Metal
    a limit above the device's recommended working-set size raises MLX's
    `ValueError`, unchanged.
    """
    n = _nbytes("set_wired_limit", n)
    fn = getattr(mx, "set_wired_limit", None)
    if fn is None:
        return None
    try:
        prev = fn(n)
    except RuntimeError:
        if _metal_available():
            raise
        return None
    return None if prev is None else int(prev)


def clear_cache() -> None:
    """Release every cached buffer now (on Metal: lowers the buffer count too)."""
    mx.clear_cache()


def _metal_available() -> bool:
    metal = getattr(mx, "metal", None)
    try:
        return bool(metal is not None and metal.is_available())
    except Exception:  # a build whose metal module cannot answer has no Metal
        return False


def _cuda_available() -> bool:
    cuda = getattr(mx, "cuda", None)
    try:
        return bool(cuda is not None and cuda.is_available())
    except Exception:
        return False


def _system_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def _raw_info(device=None) -> dict:
    fn = getattr(mx, "device_info", None)
    if fn is None:
        return {}
    try:
        return dict(fn() if device is None else fn(device))
    except Exception:  # no such device on this build
        return {}


def device_info() -> dict[str, Any]:
    """Describe the device MLX computes on.

    Returns:
        A dict with
        `backend`: ``"cpu"``, ``"gpu-metal"``, ``"gpu-cuda"`` (or ``"gpu"``);
        `device`: the device's name;
        `memory_size`: its memory in bytes (system RAM on the CPU backend), or None;
        `resource_limit`: Metal's cap on simultaneous buffers (499,000 unless
        the `iogpu.rsrc_limit` sysctl says otherwise) whenever Metal is
        available, since on macOS even CPU arrays use Metal buffers; None
        elsewhere;
        `raw`: everything `mx.device_info()` returned for the default device.
    """
    dev = mx.default_device()
    metal = _metal_available()
    if dev.type == mx.DeviceType.cpu:
        backend = "cpu"
    elif metal:
        backend = "gpu-metal"
    elif _cuda_available():
        backend = "gpu-cuda"
    else:
        backend = "gpu"
    raw = _raw_info()
    gpu_raw = raw if backend != "cpu" or not metal else _raw_info(mx.gpu)
    name = raw.get("device_name") or raw.get("architecture") or str(dev)
    memory = raw.get("memory_size", raw.get("total_memory"))
    if memory is None and backend == "cpu":
        memory = _system_memory()
    limit = gpu_raw.get("resource_limit") if metal else None
    return {
        "backend": backend,
        "device": str(name),
        "memory_size": None if memory is None else int(memory),
        "resource_limit": None if limit is None else int(limit),
        "raw": raw,
    }
