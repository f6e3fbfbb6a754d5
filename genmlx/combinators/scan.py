"""`scan(kernel)`: a chain that consumes inputs and emits outputs (GenJAX's Scan).

Args: `(init, xs)`: the initial carry and a sequence of inputs (a list/tuple,
or an array read along its first axis). Step t (0-based) calls
`kernel(carry, xs[t])`, which must return a pair `(new_carry, y)`.

Addresses: step t's choices sit under `(t, addr)`.
Return value: `(final_carry, ys)` with `ys` the list of the steps' outputs
(`final_carry` is `init` when xs is empty).
Score: the sum of the steps' scores.

update/regenerate may change xs and its length: steps before the first
changed input (list elements compared by identity, or equality for Python
numbers; an array input is unchanged only as the same object) and before the
first constrained step are kept; later steps run again; new steps are
generated, removed ones go to the discard with their score leaving the weight.
"""

from __future__ import annotations

from ..gfi import check_args
from . import _util as u
from ._chain import Chain

__all__ = ["Scan", "scan"]


class Scan(Chain):
    """The Scan combinator (see the module docstring for addresses)."""

    def __init__(self, kernel):
        if not hasattr(kernel, "_simulate") or u.is_dist(kernel):
            raise TypeError(f"scan: kernel must be a generative function taking (carry, x), got {kernel!r}")
        self.kernel = kernel
        self.name = f"scan({u.name_of(kernel)})"

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        if len(args) != 2:
            raise TypeError(f"{self.name} expects 2 arguments (init, xs), got {len(args)}: args={args!r}")
        self._length(args)
        self._step_check(args)
        return args

    def _karity(self, args) -> int:
        return 2

    def _length(self, args) -> int:
        return u.seq_len(args[1], "xs", self)

    def _carry0(self, args):
        return args[0]

    def _kargs(self, args, t, carry) -> tuple:
        return (carry, args[1][t])

    def _next(self, kret):
        if not isinstance(kret, (tuple, list)) or len(kret) != 2:
            raise TypeError(f"{self.name}: the kernel must return a pair (carry, y), got {type(kret).__name__}")
        return kret[0]

    def _retval(self, args, krets):
        return (self._next(krets[-1]) if krets else args[0], [r[1] for r in krets])

    def _changed_from(self, old_args, args, m) -> int:
        if not u.same(old_args[0], args[0]):
            return 0
        old, new = old_args[1], args[1]
        for t in range(m):
            if not u.elem_same(old, new, t):
                return t
        return m


def scan(kernel) -> Scan:
    """Scan `kernel(carry, x) -> (carry, y)` over xs; step t's choices at `(t, addr)`."""
    return Scan(kernel)
