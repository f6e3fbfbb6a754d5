"""Deferred parameter checks: validate array parameters without an extra eval.

A distribution built from Python numbers validates them at construction. One
built from MLX arrays cannot look at their values without forcing an
evaluation (a host sync) on the hot path, so it records a `DeferredCheck`: a
lazy boolean array and a function building the error. The checks travel with
the trace (`Trace.checks`) and `genmlx.memory.materialize` evaluates them in the
same `mx.eval` as the trace's arrays, raising the first failure.

One execution of a model collapses all its sites' parameter checks into one
`DeferredCheck` (`collapse`): its `ok` is a single fused node (the
predicates and their conjunction compiled together), and its error finds the
failing parameter by re-checking each one (the arrays are evaluated by then)
and names it with its address.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import mlx.core as mx

from .special.fuse import compiled
from .sums import CHUNK as _CHUNK

__all__ = ["DeferredCheck", "GuardedCheck", "raise_failed", "collapse", "ok_or_rejected"]


class DeferredCheck(NamedTuple):
    ok: mx.array  # lazy scalar bool: True when the parameter is valid
    error: Callable[[], Exception]  # builds the ValueError naming distribution, parameter, address


class GuardedCheck(DeferredCheck):
    """A check its execution's weight guards: the parameters of a site whose log density is in the
    weight (a constrained site of `generate`, a retained one of `regenerate`) and whose failure
    leaves that log density NaN or -inf at every value (`Distribution._score_guards`).

    While the weight is finite, its guarded checks hold. A pass that computes weights may leave
    them unevaluated and evaluate them only when a weight is not finite (vectorized importance
    sampling's lean pass does); an MH proposal that fails one has a NaN or -inf acceptance
    weight, so it is never accepted (the fused MH kernel does not evaluate them).
    """

    __slots__ = ()


def raise_failed(checks) -> None:
    """Raise the error of the first check whose (already evaluated) `ok` is False."""
    for c in checks:
        if not bool(c.ok.item()):
            raise c.error()


# -- fused helpers (one graph node each) ------------------------------------------------------

@compiled
def _ok_or_rejected(ok, accept):
    return mx.logical_or(ok, mx.logical_not(accept))


def ok_or_rejected(ok, accept):
    """`ok or not accept` as one node: a proposal's checks matter only if it is accepted."""
    return _ok_or_rejected(ok, accept)


# -- collapsing one execution's parameter checks ----------------------------------------------

_pred_fns: dict = {}  # code object -> a representative predicate
_conj_fns: dict = {}  # tuple of predicates (None: an already-evaluated bool) -> compiled conjunction
_eager_sigs: set = set()  # signatures whose predicates cannot be compiled


def _pred_key(ok):
    # A predicate without a closure depends only on its code (and module globals): lambdas
    # written inside a distribution's __init__ are new objects per call but share their code.
    if getattr(ok, "__closure__", 0) is None and getattr(ok, "__defaults__", 0) is None:
        return ok.__code__
    return None


def _conj(preds: tuple):
    f = _conj_fns.get(preds)
    if f is None:
        def body(*vs):
            ps = []
            for pred, v in zip(preds, vs):
                p = v if pred is None else pred(v)
                if not isinstance(p, mx.array):
                    p = mx.array(bool(p))
                if p.ndim:
                    p = mx.all(p)
                ps.append(p)
            while len(ps) > 1:
                nxt = [mx.logical_and(ps[i], ps[i + 1]) for i in range(0, len(ps) - 1, 2)]
                if len(ps) % 2:
                    nxt.append(ps[-1])
                ps = nxt
            return ps[0]

        f = _conj_fns[preds] = compiled(body)
    return f


def _eager(ok, v):
    p = ok(v)
    return mx.all(p) if isinstance(p, mx.array) else mx.array(bool(p))


def collapse(items: list, kind: type = DeferredCheck) -> DeferredCheck:
    """One check (of class `kind`) for `items` = [(value, predicate, message), ...]: a fused conjunction."""
    oks = []
    for i in range(0, len(items), _CHUNK):
        chunk = items[i:i + _CHUNK]
        keys = []
        vals = []
        for v, ok, _ in chunk:
            k = _pred_key(ok)
            if k is not None:
                f = _pred_fns.get(k)
                if f is None:
                    f = _pred_fns[k] = ok
                keys.append(f)
                vals.append(v)
            else:
                keys.append(None)
                vals.append(_eager(ok, v))
        sig = tuple(keys)
        if sig in _eager_sigs:
            oks.append(_conj(tuple(None for _ in sig))(*[_eager(ok, v) for v, ok, _ in chunk]))
            continue
        try:
            oks.append(_conj(sig)(*vals))
        except Exception:  # a predicate that needs a value in Python: check it eagerly
            _eager_sigs.add(sig)
            oks.append(_conj(tuple(None for _ in sig))(*[_eager(ok, v) for v, ok, _ in chunk]))
    ok = oks[0] if len(oks) == 1 else _conj((None,) * len(oks))(*oks)
    return kind(ok, _collapsed_error(items))


def _listing(msgs: list) -> Exception:
    texts = [m() for m in msgs]
    if len(texts) == 1:
        return ValueError(texts[0])
    return ValueError("a parameter check failed; one of: " + "; ".join(texts))


def _collapsed_error(items: list):
    msgs = [m for _, _, m in items]

    def error() -> Exception:
        for v, ok, msg in items:
            try:
                good = bool(_eager(ok, v).item())
            except Exception:  # a value from inside a transformation (vmap, compile): not recomputable
                break
            if not good:
                return ValueError(msg())
        else:
            if len(items) == 1:
                return ValueError(items[0][2]())
        return _listing(msgs)

    # The same error without the checked arrays (for a check whose arrays are transformation
    # tracers, e.g. inside mx.compile: keeping them would keep their graph alive).
    error.static = lambda: _listing(msgs)
    return error
