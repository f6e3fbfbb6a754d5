"""`unfold(kernel)`: a state-space chain, Gen's Unfold.

Args: `(n, init, *extra)`: `n` steps (a Python int: it fixes the trace's
structure), initial state `init`, extra args passed to every step. Step t
(0-based) calls `kernel(t, state, *extra)` and its return value is the next
state.

Addresses: step t's choices sit under `(t, addr)`.
Return value: the list of the n states after each step (`[s_1, ..., s_n]`).
Score: the sum of the steps' scores.

update/regenerate may change `n`: new steps are generated (their weight is that
of their constraints), removed steps leave the weight with their score and go
to the discard. Cost: only the first changed step and the steps after it run
again; a change of `init` or of an extra arg (not the same object, or an
unequal Python number) re-runs from step 0. Growing by one step with
observations on the new step (a particle filter's move) runs one kernel call.
"""

from __future__ import annotations

from ..gfi import check_args
from . import _util as u
from ._chain import Chain

__all__ = ["Unfold", "unfold"]


class Unfold(Chain):
    """The Unfold combinator (see the module docstring for addresses)."""

    def __init__(self, kernel):
        if not hasattr(kernel, "_simulate") or u.is_dist(kernel):
            raise TypeError(f"unfold: kernel must be a generative function taking (t, state, *extra), got {kernel!r}")
        self.kernel = kernel
        self.name = f"unfold({u.name_of(kernel)})"

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        if len(args) < 2:
            raise TypeError(f"{self.name} expects at least 2 arguments (n, init, *extra), got {len(args)}: args={args!r}")
        u.as_int(args[0], "n (the number of steps)", self)
        self._step_check(args)
        return args

    def _karity(self, args) -> int:
        return len(args)  # (t, state, *extra)

    def _length(self, args) -> int:
        return u.as_int(args[0], "n (the number of steps)", self)

    def _carry0(self, args):
        return args[1]

    def _kargs(self, args, t, carry) -> tuple:
        return (t, carry, *args[2:])

    def _next(self, kret):
        return kret

    def _retval(self, args, krets):
        return krets

    def _changed_from(self, old_args, args, m) -> int:
        return m if u.same_args(old_args[1:], args[1:]) else 0


def unfold(kernel) -> Unfold:
    """Chain `kernel(t, state, *extra)` for n steps; step t's choices at `(t, addr)`."""
    return Unfold(kernel)
