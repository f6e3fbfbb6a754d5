"""`materialize`: evaluate everything an object holds in one `mx.eval`.

Evaluating an array cuts its lazy graph: the inputs it kept alive are freed
and its pending graph nodes drop to 0. One batched call is the cheap way to do
it (each `mx.eval` costs about 55-85 us on the CPU backend, on top of the
primitives it runs), and the loop driver does exactly this once per step.
"""

from __future__ import annotations

from typing import TypeVar

import mlx.core as mx

from genmlx.checks import raise_failed
from genmlx.evaluation import evaluate

from .walk import walk

__all__ = ["materialize"]

T = TypeVar("T")


def materialize(obj: T) -> T:
    """Evaluate every array reachable from `obj` in one `mx.eval`, then run its deferred checks.

    `obj` may be a Trace, a list of Traces, a ChoiceMap, nested dicts / lists /
    tuples / NamedTuples / dataclasses, or any object implementing
    `_genmlx_arrays()` (yielding its arrays or containers of them). A Trace's
    `checks` attribute and any object's `_genmlx_checks()` contribute
    `genmlx.checks.DeferredCheck`s: their lazy `ok` flags are evaluated in the
    same `mx.eval`, and the first failing check raises its error (a
    `ValueError` naming the distribution, parameter and address). Non-array
    leaves (numbers, strings, None, other objects) are ignored.

    Returns:
        `obj` itself, its arrays now evaluated.
    """
    arrays, checks = walk(obj)
    if arrays:
        evaluate(*arrays.values())
    if checks:
        if all(type(c.ok) is mx.array for c in checks):
            raise_failed(checks)
        else:  # some `ok` is already a Python bool
            for c in checks:
                ok = c.ok
                if not (ok.item() if type(ok) is mx.array else ok):
                    raise c.error()
        _mark_checked(obj)
    return obj


def _mark_checked(obj) -> None:
    """The traces `obj` is or holds at its top level passed their checks: their getters need not
    evaluate them again (genmlx.boundary)."""
    from genmlx.trace import Trace

    for t in (obj,) if isinstance(obj, Trace) else obj if isinstance(obj, (tuple, list)) else ():
        if isinstance(t, Trace):
            object.__setattr__(t, "_checked", True)
