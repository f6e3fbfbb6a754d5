"""`map_(kernel)`: apply a generative function to each element of sequence arguments.

Args: `(xs, ys, ...)`, sequences of equal length n (lists, tuples, or arrays
split along their first axis); element i calls `kernel(xs[i], ys[i], ...)`.

Addresses: element i's choices sit under `(i, addr)` (0-based), as in Gen's
Map; when the kernel is a distribution, element i's value is at address `i`.
Return value: the list of the kernel's return values.
Score: the sum of the elements' scores.

update/regenerate: an element whose arguments are unchanged (the same object,
or an equal Python number, for list arguments; the same array object for array
arguments) and that has no constraint (no selected address) is kept as it is
and costs nothing; the others are updated (regenerated). A larger n generates
the new elements (their weight is that of their constraints), a smaller n
removes the last ones (their score leaves the weight, their choices go to the
discard).
"""

from __future__ import annotations

from ..choicemap import ChoiceMap
from ..gfi import GenerativeFunction, check_args
from ..rng import KeyStream
from ..selection import Selection
from ..trace import Trace
from . import _util as u

__all__ = ["Map", "map_"]


class Map(u.Structural, GenerativeFunction):
    """The Map combinator (see the module docstring for addresses)."""

    def _key(self) -> tuple:
        return (self.kernel,)

    def __init__(self, kernel):
        if not hasattr(kernel, "_simulate"):
            raise TypeError(f"map_: kernel must be a generative function or distribution, got {type(kernel).__name__}")
        self.kernel = kernel
        self.name = f"map_({u.name_of(kernel)})"

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        if u.is_dist(self.kernel):
            if len(args) != 1:
                raise TypeError(f"{self.name} expects 1 argument (a sequence whose length is the number of draws), got {len(args)}")
        elif not args:
            raise TypeError(f"{self.name} expects at least 1 argument (sequences of equal length), got 0")
        lens = [u.seq_len(a, f"argument {j}", self) for j, a in enumerate(args)]
        if len(set(lens)) > 1:
            raise ValueError(f"{self.name}: the sequence arguments have different lengths {lens}")
        if not u.is_dist(self.kernel):
            u.check_arity(self.kernel, len(args), self)
        return args

    # -- helpers -------------------------------------------------------------------
    def _n(self, args) -> int:
        return u.seq_len(args[0], "argument 0", self)

    def _eargs(self, args, i) -> tuple:
        return () if u.is_dist(self.kernel) else tuple(a[i] for a in args)

    def _unchanged(self, old_args, args, i) -> bool:
        if u.is_dist(self.kernel):
            return True
        return old_args is args or all(u.elem_same(a, b, i) for a, b in zip(old_args, args))

    def _make(self, args, sts: list) -> Trace:
        score = None
        for st in sts:
            score = u.add(score, st.score)
        sites = {(i,): st for i, st in enumerate(sts)}
        return Trace(self, args, [st.retval for st in sts], u.total(score), sites, u.checks_of(sts))

    # -- GFI -------------------------------------------------------------------------
    def _simulate(self, args, keys: KeyStream):
        k = self.kernel
        sts = []
        for i in range(self._n(args)):
            with u.at((i,)):
                sts.append(k._simulate(self._eargs(args, i), keys.child()))
        return self._make(args, sts)

    def _generate(self, args, constraints: ChoiceMap, keys):
        n = self._n(args)
        groups = u.index_keys(constraints, n, self)
        k, w, sts = self.kernel, None, []
        for i in range(n):
            c = u.sub(groups, i)
            with u.at((i,)):
                st, wi = k._generate(self._eargs(args, i), c, keys.child())
            if c:
                w = u.add(w, wi)
            sts.append(st)
        return self._make(args, sts), u.total(w)

    def _update(self, trace: Trace, constraints, args, keys):
        n_old, n = len(trace.sites), self._n(args)
        groups = u.index_keys(constraints, n, self)
        k, w, sts, discard = self.kernel, None, [], {}
        for i in range(n):
            c = u.sub(groups, i)
            old = trace.sites.get((i,)) if i < n_old else None
            if old is not None and not c and self._unchanged(trace.args, args, i):
                sts.append(old)
                continue
            with u.at((i,)):
                if old is not None:
                    st, wi, d = k._update(old, c, self._eargs(args, i), keys.child())
                    w = u.add(w, wi)
                    u.add_discard(discard, (i,), d)
                else:
                    st, wi = k._generate(self._eargs(args, i), c, keys.child())
                    if c:
                        w = u.add(w, wi)
            sts.append(st)
        for i in range(n, n_old):
            old = trace.sites[(i,)]
            w = u.add(w, -old.score)
            u.discard_all(discard, (i,), old)
        return self._make(args, sts), u.total(w), ChoiceMap._from_leaves(discard)

    def _regenerate(self, trace: Trace, selection: Selection, args, keys):
        n_old, n = len(trace.sites), self._n(args)
        k, w, sts = self.kernel, None, []
        for i in range(n):
            old = trace.sites.get((i,)) if i < n_old else None
            s = selection.get_subselection(i)
            if old is not None and s.is_empty() and self._unchanged(trace.args, args, i):
                sts.append(old)
                continue
            with u.at((i,)):
                if old is not None:
                    st, wi = k._regenerate(old, s, self._eargs(args, i), keys.child())
                    w = u.add(w, wi)
                else:
                    st = k._simulate(self._eargs(args, i), keys.child())
            sts.append(st)
        return self._make(args, sts), u.total(w)

    def _assess(self, args, choices: ChoiceMap):
        n = self._n(args)
        groups = u.index_keys(choices, n, self)
        score, rets = None, []
        for i in range(n):
            with u.at((i,)):
                s, r = self.kernel._assess(self._eargs(args, i), u.sub(groups, i))
            score = u.add(score, s)
            rets.append(r)
        return u.total(score), rets

    def _project(self, trace: Trace, selection: Selection):
        w = None
        for (i,), st in trace.sites.items():
            s = selection.get_subselection(i)
            if not s.is_empty():
                w = u.add(w, st.gen_fn._project(st, s))
        return u.total(w)


def map_(kernel) -> Map:
    """Map `kernel` over sequence arguments; element i's choices at `(i, addr)`."""
    return Map(kernel)

