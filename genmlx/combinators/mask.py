"""`mask(gen_fn)`: run a generative function only when a flag is true.

Args: `(flag, *args)`; when `flag` is true, `gen_fn(*args)` runs; when false,
nothing runs: the trace is empty (no choices, score 0, return value `None`).

The flag is a Python bool (or int), or a scalar array which is read with
`.item()` (one host sync). Inside vectorized execution an array flag cannot
be read (the lanes would need different trace structures), so it raises a
`VectorizationError`; pass a Python bool there, or express the choice with
`gm.switch` between branches of the same structure.

Addresses: not nested: `gen_fn`'s choices sit at the mask's own level (its
value at the mask's address when `gen_fn` is a distribution).

update/regenerate may switch the flag: on -> off removes every choice (the
old score leaves the weight, the choices go to the discard); off -> on
generates `gen_fn` (weight = its generate weight). `Trace.aux` is
`(flag, inner aux)`.
"""

from __future__ import annotations

import mlx.core as mx

from ..address import AddressError
from ..choicemap import EMPTY, ChoiceMap
from ..evaluation import item
from ..gfi import GenerativeFunction, check_args
from ..selection import Selection
from ..trace import Trace
from .. import vectorize as _vec
from . import _util as u

__all__ = ["Mask", "mask"]


class Mask(u.Structural, GenerativeFunction):
    """The Mask combinator (see the module docstring for addresses)."""

    def _key(self) -> tuple:
        return (self.inner,)

    def __init__(self, gen_fn):
        if not hasattr(gen_fn, "_simulate"):
            raise TypeError(f"mask: expected a generative function or distribution, got {type(gen_fn).__name__}")
        self.inner = gen_fn
        self.name = f"mask({u.name_of(gen_fn)})"

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        if not args:
            raise TypeError(f"{self.name} expects at least 1 argument (flag, *args), got 0")
        if not u.is_dist(self.inner):
            u.check_arity(self.inner, len(args) - 1, self, "the masked function")
        elif len(args) > 1:
            raise TypeError(f"{self.name}: a distribution takes no args; expected (flag,), got {len(args)} arguments")
        return args

    def _flag(self, f) -> bool:
        if isinstance(f, mx.array):
            if f.size != 1:
                raise TypeError(f"{self.name}: flag must be a scalar, got an array of shape {tuple(f.shape)}")
            if _vec.batching():
                raise _vec.VectorizationError(
                    f"{self.name}: an array flag cannot be read inside vectorized execution (each lane would "
                    "have a different trace structure). Pass a Python bool, or use gm.switch between branches "
                    "of the same structure."
                )
            return bool(item(f))  # a host sync
        if isinstance(f, (bool, int)):
            return bool(f)
        raise TypeError(f"{self.name}: flag must be a bool or a scalar array, got {type(f).__name__}")

    def _iargs(self, args) -> tuple:
        return args[1:]

    def _on(self, args, t: Trace) -> Trace:
        return Trace(self, args, t.retval, t.score, t.sites, t.checks, None, (True, t.aux))

    def _off(self, args) -> Trace:
        return Trace(self, args, None, u.zero(), {}, (), None, (False, None))

    def _inner_trace(self, tr: Trace) -> Trace:
        return Trace(self.inner, self._iargs(tr.args), tr.retval, tr.score, tr.sites, tr.checks, None, tr.aux[1])

    def _empty_only(self, c: ChoiceMap) -> None:
        if c:
            raise AddressError(
                f"constraint at address {c.addresses()[0]!r} names no random choice of {self.name} "
                "(its flag is false: it makes no choices)"
            )

    # -- GFI -----------------------------------------------------------------------------
    def _simulate(self, args, keys):
        if not self._flag(args[0]):
            return self._off(args)
        return self._on(args, self.inner._simulate(self._iargs(args), keys.child()))

    def _generate(self, args, constraints, keys):
        if not self._flag(args[0]):
            self._empty_only(constraints)
            return self._off(args), u.zero()
        t, w = self.inner._generate(self._iargs(args), constraints, keys.child())
        return self._on(args, t), w

    def _update(self, trace, constraints, args, keys):
        was, now = trace.aux[0], self._flag(args[0])
        if not now:
            self._empty_only(constraints)
            if not was:
                return self._off(args), u.zero(), EMPTY
            out: dict = {}
            u.discard_all(out, (), trace)
            return self._off(args), -trace.score, ChoiceMap._from_leaves(out)
        if was:
            t, w, d = self.inner._update(self._inner_trace(trace), constraints, self._iargs(args), keys.child())
            return self._on(args, t), w, d
        t, w = self.inner._generate(self._iargs(args), constraints, keys.child())
        return self._on(args, t), (w if constraints else u.zero()), EMPTY

    def _regenerate(self, trace, selection: Selection, args, keys):
        was, now = trace.aux[0], self._flag(args[0])
        if not now:
            return self._off(args), u.zero()
        if was:
            t, w = self.inner._regenerate(self._inner_trace(trace), selection, self._iargs(args), keys.child())
            return self._on(args, t), w
        return self._on(args, self.inner._simulate(self._iargs(args), keys.child())), u.zero()

    def _assess(self, args, choices):
        if not self._flag(args[0]):
            self._empty_only(choices)
            return u.zero(), None
        return self.inner._assess(self._iargs(args), choices)

    def _project(self, trace, selection):
        if not trace.aux[0]:
            return u.zero()
        return self.inner._project(self._inner_trace(trace), selection)


def mask(gen_fn) -> Mask:
    """Run `gen_fn` only when the flag (first arg) is true; choices not nested."""
    return Mask(gen_fn)
