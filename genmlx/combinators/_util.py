"""Small helpers shared by the combinators (not public)."""

from __future__ import annotations

from contextlib import contextmanager

import mlx.core as mx

from .. import handler as _handler
from ..address import AddressError, Path, from_path
from ..choicemap import EMPTY, ChoiceMap
from ..trace import Trace


def zero() -> mx.array:
    return mx.array(0.0)


def add(acc, x):
    """Left fold of scores/weights; `None` is the empty sum."""
    if x is None:
        return acc
    return x if acc is None else acc + x


def total(acc) -> mx.array:
    return acc if acc is not None else zero()


def full(path: Path) -> Path:
    return _handler._prefix[-1] + path


@contextmanager
def at(path: Path):
    """Name errors and site events inside a combinator element by their full address."""
    _handler._prefix.append(_handler._prefix[-1] + path)
    try:
        yield
    finally:
        _handler._prefix.pop()


def check_arity(kernel, n: int, gf, role: str = "kernel") -> None:
    """A clear TypeError when `kernel` (a @gen function) cannot take `n` args; no values needed."""
    ar = getattr(kernel, "_arity", None)
    if ar is None or not hasattr(kernel, "_argnames"):
        return
    lo, hi = ar
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        raise TypeError(
            f"{gf.name}: {role} {kernel.name} expects {want} argument(s) ({', '.join(kernel._argnames)}), "
            f"but {gf.name} calls it with {n}"
        )


def same_callable(f, g) -> bool:
    """The same function, or the same code with the same defaults and closure (a lambda re-made per run)."""
    if f is g:
        return True
    cf, cg = getattr(f, "__code__", None), getattr(g, "__code__", None)
    if cf is None or cf is not cg or f.__defaults__ != g.__defaults__:
        return False
    a, b = f.__closure__ or (), g.__closure__ or ()
    return len(a) == len(b) and all(x.cell_contents is y.cell_contents for x, y in zip(a, b))


class Structural:
    """Equality by construction: two combinators built from equal parts are equal.

    A model that builds a combinator inside its body makes a new object on each
    run; the dynamic handler compares the callee at an address with `==`, so an
    equal combinator still updates (rather than regenerates) its old trace.
    """

    def _key(self) -> tuple:  # pragma: no cover - each combinator defines it
        raise NotImplementedError

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        ka, kb = self._key(), other._key()
        return len(ka) == len(kb) and all(_part_eq(x, y) for x, y in zip(ka, kb))

    def __hash__(self):
        return hash((type(self), len(self._key())))


def _part_eq(x, y) -> bool:
    if x is y:
        return True
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(_part_eq(a, b) for a, b in zip(x, y))
    if callable(x) and hasattr(x, "__code__"):
        return same_callable(x, y)
    if isinstance(x, (int, float, str, bool)) or x is None:
        return type(x) is type(y) and x == y
    if isinstance(x, Structural):
        return x == y
    return False


def is_dist(g) -> bool:
    return getattr(g, "_is_distribution", False)


def name_of(g) -> str:
    return getattr(g, "name", None) or type(g).__name__


def same(a, b) -> bool:
    """Unchanged argument: the same object, or an equal Python number/string."""
    if a is b:
        return True
    if isinstance(a, (int, float, str, bool)) and type(a) is type(b):
        return a == b
    return False


def same_args(a: tuple, b: tuple) -> bool:
    return a is b or (len(a) == len(b) and all(same(x, y) for x, y in zip(a, b)))


def index_keys(constraints: ChoiceMap, n: int, gf) -> dict:
    """Group constraint leaves by their first atom, an element index in range(n).

    Any other first atom is an address the combinator never visits: an
    `AddressError` naming it.
    """
    groups: dict = {}
    for p in constraints.paths():
        i = p[0] if p else None
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            if _handler.is_optional(constraints._leaves[p]):
                continue  # an old choice a switch's new branch does not visit
            raise AddressError(
                f"constraint at address {from_path(full(p)) if p else '()'!r} names no random choice of "
                f"{gf.name} (its addresses are (i, ...) with i in range({n}))"
            )
        groups.setdefault(i, {})[p[1:]] = constraints._leaves[p]
    return {i: ChoiceMap._from_leaves(d) for i, d in groups.items()}


def sub(groups: dict, i) -> ChoiceMap:
    return groups.get(i, EMPTY)


def add_discard(out: dict, path: Path, d: ChoiceMap) -> None:
    for q, v in d._leaves.items():
        out[path + q] = v


def discard_all(out: dict, path: Path, tr: Trace) -> None:
    """Every choice of `tr` (a removed element) into the discard, under `path`."""
    if tr.sites is None:
        out[path] = tr.retval
    else:
        for q, v in tr.get_choices()._leaves.items():
            out[path + q] = v


def checks_of(traces) -> tuple:
    out: list = []
    for t in traces:
        if t.checks:
            out.extend(t.checks)
    return tuple(out)


def as_int(v, what: str, gf) -> int:
    """A static (Python) integer argument; arrays are refused (the structure must be static)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{gf.name}: {what} must be a Python int (it fixes the trace's structure), got {type(v).__name__} {v!r}")
    if v < 0:
        raise ValueError(f"{gf.name}: {what} must be >= 0, got {v}")
    return v


def seq_len(a, what: str, gf) -> int:
    if isinstance(a, mx.array):
        if a.ndim == 0:
            raise TypeError(f"{gf.name}: {what} must be a sequence or an array with a leading axis, got a 0-d array")
        return a.shape[0]
    try:
        return len(a)
    except TypeError:
        raise TypeError(f"{gf.name}: {what} must be a sequence (list, tuple or array), got {type(a).__name__}") from None


def elem(a, i: int):
    return a[i]


def elem_same(old, new, i: int) -> bool:
    """Is element i of sequence argument `new` unchanged from `old`?"""
    if old is new:
        return True
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and i < len(old) and i < len(new):
        return same(old[i], new[i])
    return False
