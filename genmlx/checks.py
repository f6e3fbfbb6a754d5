"""Deferred parameter checks: validate array parameters without an extra eval.

A distribution built from Python numbers validates them at construction. One
built from MLX arrays cannot look at their values without forcing an
evaluation (a host sync) on the hot path, so it records a `DeferredCheck`: a
lazy boolean array and a function building the error. The checks travel with
the trace (`Trace.checks`) and `genmlx.memory.materialize` evaluates them in the
same `mx.eval` as the trace's arrays, raising the first failure.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import mlx.core as mx

__all__ = ["DeferredCheck", "raise_failed"]


class DeferredCheck(NamedTuple):
    ok: mx.array  # lazy scalar bool: True when the parameter is valid
    error: Callable[[], Exception]  # builds the ValueError naming distribution, parameter, address


def raise_failed(checks) -> None:
    """Raise the error of the first check whose (already evaluated) `ok` is False."""
    for c in checks:
        if not bool(c.ok.item()):
            raise c.error()
