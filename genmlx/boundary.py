"""Parameter checks at the user boundary: an invalid array parameter never reaches the user as a silent NaN.

An `mx.array` parameter's check is deferred (`genmlx.checks`): inside an inference
loop the driver evaluates it in the step's one `mx.eval`, with the step's arrays,
so valid parameters cost no eval. A result handed to the user is different: the
user reads it with `float(w)`, `print(score)` or `np.asarray`, and MLX has no hook
on such reads, so a deferred check would never run and an invalid parameter would
show as a silent NaN score. Hence, for a public call made by user code:

* a call whose result includes a bare array computed from checked parameters (the
  weight of `generate` / `update` / `regenerate` / `project` / `propose` /
  `vgenerate` / ..., the score of `assess`, a distribution's `log_prob` or draws)
  evaluates those checks before it returns: the checks alone, in one `mx.eval`
  (the result's own graph stays lazy), and raises the first failure's
  `ValueError` (distribution, parameter, address). A call with only Python-number
  parameters has no deferred check and evaluates nothing;
* a call that returns only a Trace (`simulate`, `vsimulate`, `get_trace`) evaluates
  nothing: the trace carries its checks, which `gm.memory.materialize` and the
  trace's getters (`get_score`, `get_retval`, `get_choices`, `trace[addr]`)
  evaluate on first read, once (`Trace.score` and the other fields are the raw
  record, for genmlx's own code, unchecked);
* inside a model body the checks join the executing model's own (they travel
  with its trace to the driver's materialization), and genmlx's own calls
  (inference algorithms, combinators) are not user calls: nothing changes there;
* under `mx.compile` or `mx.vmap` tracing nothing can be evaluated: the checks keep
  travelling with the traces (a bare score made under tracing has none to travel
  with: it is unchecked);
* `with gm.defer_checks():` turns the evaluation at return off, for user code that
  materializes its results itself (`gm.memory.materialize`, which checks them).

The values a user passes to score (constraints of `generate` / `update`, the choices of
`assess`) are checked the same way: a NaN value is refused naming its address. One given as
a Python number, list or NumPy array is checked on the host (free); one given as an
`mx.array` joins the call's check evaluation (the one eval a call with only Python-number
parameters then makes). A distribution's `log_prob` refuses a NaN given as host data; an
`mx.array` value is elementwise NaN in, NaN out (see `given_value`).

A user call is one whose caller's module is not in the `genmlx` package.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import mlx.core as mx

from . import evaluation as _evaluation
from .thread_state import PerThread, Value, handler_stack

__all__ = ["defer_checks", "user_call", "evaluate", "enforce", "unchecked", "read", "collecting", "collect",
           "given_values", "given_value"]

_EVAL_MSG = "Attempting to eval an array during function transformations"
_deferred = Value(0)  # > 0 inside `defer_checks()` in this thread
_sinks = PerThread(list)  # lists collecting the checks of a user's `assess` (it returns no trace to carry them)

SKIP, ATTACH, EVALUATE = 0, 1, 2


@contextmanager
def defer_checks():
    """Public calls in this block return without evaluating their parameter checks.

    Their traces still carry the checks: materialize what you read with
    `gm.memory.materialize` (it evaluates them with the result, in one `mx.eval`),
    or a silent NaN from an invalid array parameter is possible again.
    """
    _deferred.v += 1
    try:
        yield
    finally:
        _deferred.v -= 1


def user_call(depth: int = 1) -> int:
    """What a public method does with its result's checks: SKIP (genmlx's own call, or in `defer_checks`),
    ATTACH (a user call inside a model body) or EVALUATE. `depth` counts frames from the public method."""
    if _deferred.v:
        return SKIP
    g = sys._getframe(depth + 1).f_globals
    internal = _modules.get(id(g))
    if internal is None:  # a module's globals live as long as the module: its id is a stable key
        name = g.get("__name__", "")
        internal = _modules[id(g)] = name == "genmlx" or name.startswith("genmlx.")
    if internal:
        return SKIP
    return ATTACH if handler_stack.v else EVALUATE


_modules: dict = {}  # id(module globals) -> whether the module is genmlx's own


def evaluate(checks) -> bool:
    """Evaluate `checks` in one `mx.eval` and raise the first failure; False (nothing done) under tracing."""
    oks = [c.ok for c in checks if type(c.ok) is mx.array]
    if oks:
        try:
            _evaluation.evaluate(oks)
        except ValueError as e:
            if _EVAL_MSG in str(e):
                return False  # mx.compile / mx.vmap tracing: the checks keep travelling
            raise
    for c in checks:
        ok = c.ok
        if not (ok.item() if type(ok) is mx.array else ok):
            raise c.error()
    return True


def enforce(mode: int, checks, traces=()) -> None:
    """Apply `mode` (from `user_call`) to `checks`; on success mark `traces` checked."""
    if mode == SKIP or not checks:
        return
    if mode == ATTACH:
        handler_stack[-1].checks.extend(checks)
        return
    if evaluate(checks):
        for t in traces:
            object.__setattr__(t, "_checked", True)


def unchecked(trace) -> tuple:
    """The checks of `trace` not yet known to hold (none once materialized or checked)."""
    return () if trace._ready or trace._checked else trace.checks


def read(trace, depth: int = 1) -> None:
    """A Trace getter's check: the trace's checks, evaluated once, on a user's first read."""
    if user_call(depth + 1) == EVALUATE:
        enforce(EVALUATE, trace.checks, (trace,))


@contextmanager
def collecting(active: bool = True):
    """Collect the checks of the `assess` calls made in this block (yields the list; None when not active)."""
    if not active:
        yield None
        return
    sink: list = []
    _sinks.append(sink)
    try:
        yield sink
    finally:
        _sinks.pop()


def collect(checks) -> None:
    """Hand an `assess` execution's checks to the innermost `collecting` block, if any."""
    if _sinks and checks:
        _sinks[-1].extend(checks)


# -- the values a user gives ------------------------------------------------------------------------

def _not_nan(v):
    return ~mx.isnan(v)


def _nan_message(op: str, path):
    from .address import from_path

    where = f" at address {from_path(path)!r}" if path else ""
    return lambda: f"{op}: the value{where} is NaN (a value to score must be a number)"


def given_values(op: str, cm) -> list:
    """The checks of a user's constraint values: a NaN given as host data raises now; values given as
    arrays (or of unknown origin) get one collapsed check, evaluated with the call's other checks."""
    given = getattr(cm, "_given", None)
    if given is not None:
        if given[0] is not None:
            raise ValueError(_nan_message(op, given[0])())
        paths = given[1]
    else:
        paths = cm._leaves
    leaves = cm._leaves
    items = []
    for p in paths:
        v = leaves.get(p)
        if type(v) is mx.array and mx.issubdtype(v.dtype, mx.inexact):
            items.append((v, _not_nan, _nan_message(op, p)))
    if not items:
        return []
    from .checks import collapse

    return [collapse(items)]


def given_value(op: str, v) -> None:
    """A distribution's `log_prob` value given as host data: a NaN raises (no evaluation). An `mx.array`
    value is not scanned: `log_prob` is elementwise, and a NaN element gives NaN at that element, as in
    NumPy and SciPy (the NaN is the caller's own, where it was put; scanning every scored array would
    cost a pass over the data and an eval per call)."""
    if type(v) is not mx.array:
        from .choicemap import _host_nan

        if _host_nan(v):
            raise ValueError(_nan_message(op, ())())
