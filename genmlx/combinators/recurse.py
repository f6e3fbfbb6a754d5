"""`recurse(kernel, combine=None, max_depth=64)`: a tree of generative-function calls.

A simpler relative of Gen's Recurse (production + aggregation): `kernel` is a
generative function returning a pair `(value, children)`, where `children` is
a list of argument tuples, one per child node; each child is again a call of
the kernel (with those args), and so on until every node returns no children.
The number of children is decided in Python, so it may depend on a random
choice only outside vectorized execution.

Addresses: a node's kernel choices are not nested, and child j's subtree sits
under `j`: the root's choices at `addr`, its child j's at `(j, addr)`, that
node's child k's at `(j, k, addr)`. The kernel's own top-level addresses must
therefore not be ints.

Return value: `combine(value, child_results)` when `combine` (a plain Python
function) is given, else `(value, [child results])`.
Score: the sum of every node's kernel score.

update/regenerate walk the tree: a node whose args are unchanged (the same
objects, or equal Python numbers) and that has no constraint (no selected
address) below it is kept as it is; new children are generated, removed
children leave the weight with their score and go to the discard. A tree
deeper than `max_depth` raises a `RecursionError` naming the combinator.
"""

from __future__ import annotations

from ..address import AddressError, from_path
from ..choicemap import EMPTY, ChoiceMap
from ..gfi import GenerativeFunction, check_args
from ..selection import Selection
from ..trace import Trace
from . import _util as u

__all__ = ["Recurse", "recurse"]

_K = ()  # site key of a node's own kernel trace (its choices are not nested)


def _split(c: ChoiceMap):
    """(the kernel's constraints, {child j: constraints})."""
    if not c:
        return EMPTY, {}
    own, kids = {}, {}
    for p, v in c._leaves.items():
        if isinstance(p[0], int) and not isinstance(p[0], bool):
            kids.setdefault(p[0], {})[p[1:]] = v
        else:
            own[p] = v
    return ChoiceMap._from_leaves(own), {j: ChoiceMap._from_leaves(d) for j, d in kids.items()}


class Recurse(u.Structural, GenerativeFunction):
    """The recursion combinator (see the module docstring for addresses)."""

    def _key(self) -> tuple:
        return (self.kernel, self.combine, self.max_depth)

    def __init__(self, kernel, combine=None, max_depth: int = 64):
        if not hasattr(kernel, "_simulate") or u.is_dist(kernel):
            raise TypeError(f"recurse: kernel must be a generative function returning (value, children), got {kernel!r}")
        self.kernel = kernel
        self.combine = combine
        self.max_depth = max_depth
        self.name = f"recurse({u.name_of(kernel)})"

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        u.check_arity(self.kernel, len(args), self)
        return args

    # -- helpers ------------------------------------------------------------------------
    def _children(self, kret) -> list:
        if not isinstance(kret, (tuple, list)) or len(kret) != 2 or not isinstance(kret[1], (list, tuple)):
            raise TypeError(f"{self.name}: the kernel must return (value, children) with children a list of arg tuples, got {kret!r}")
        kids = list(kret[1])
        for a in kids:
            if not isinstance(a, tuple):
                raise TypeError(f"{self.name}: each child must be an args tuple, got {type(a).__name__} {a!r}")
        return kids

    def _node(self, args, kt: Trace, kids: list) -> Trace:
        if kt.sites:
            bad = [p for p in kt.sites if isinstance(p[0], int) and not isinstance(p[0], bool)]
            if bad:
                raise AddressError(f"{self.name}: the kernel traces the int address {from_path(u.full(bad[0]))!r}, which names a child node")
        score = kt.score
        sites = {_K: kt}
        for j, ct in enumerate(kids):
            sites[(j,)] = ct
            score = score + ct.score
        value = kt.retval[0]
        rets = [ct.retval for ct in kids]
        retval = self.combine(value, rets) if self.combine is not None else (value, rets)
        return Trace(self, args, retval, score, sites, u.checks_of([kt, *kids]))

    def _depth(self, depth: int) -> None:
        if depth > self.max_depth:
            raise RecursionError(f"{self.name}: the tree is deeper than max_depth={self.max_depth}")

    # -- GFI (each recursive over nodes) ---------------------------------------------------
    def _simulate(self, args, keys, depth=0):
        self._depth(depth)
        kt = self.kernel._simulate(args, keys.child())
        kids = []
        for j, a in enumerate(self._children(kt.retval)):
            with u.at((j,)):
                kids.append(self._simulate(a, keys.child(), depth + 1))
        return self._node(args, kt, kids)

    def _generate(self, args, constraints, keys, depth=0):
        self._depth(depth)
        own, sub = _split(constraints)
        kt, w = self.kernel._generate(args, own, keys.child())
        w = w if own else None
        cargs = self._children(kt.retval)
        _stray(sub, len(cargs), self)
        kids = []
        for j, a in enumerate(cargs):
            c = sub.get(j, EMPTY)
            with u.at((j,)):
                ct, wj = self._generate(a, c, keys.child(), depth + 1)
            if c:
                w = u.add(w, wj)
            kids.append(ct)
        return self._node(args, kt, kids), u.total(w)

    def _update(self, trace, constraints, args, keys, depth=0):
        self._depth(depth)
        own, sub = _split(constraints)
        old_kt = trace.sites[_K]
        w, discard = None, {}
        if not own and u.same_args(trace.args, args):
            kt = old_kt
        else:
            kt, w, d = self.kernel._update(old_kt, own, args, keys.child())
            u.add_discard(discard, (), d)
        cargs = self._children(kt.retval)
        _stray(sub, len(cargs), self)
        kids = []
        for j, a in enumerate(cargs):
            c = sub.get(j, EMPTY)
            old = trace.sites.get((j,))
            with u.at((j,)):
                if old is not None and not c and u.same_args(old.args, a):
                    ct = old
                elif old is not None:
                    ct, wj, d = self._update(old, c, a, keys.child(), depth + 1)
                    w = u.add(w, wj)
                    u.add_discard(discard, (j,), d)
                else:
                    ct, wj = self._generate(a, c, keys.child(), depth + 1)
                    if c:
                        w = u.add(w, wj)
            kids.append(ct)
        for j in range(len(cargs), _n_kids(trace)):
            old = trace.sites[(j,)]
            w = u.add(w, -old.score)
            u.discard_all(discard, (j,), old)
        return self._node(args, kt, kids), u.total(w), ChoiceMap._from_leaves(discard)

    def _regenerate(self, trace, selection: Selection, args, keys, depth=0):
        self._depth(depth)
        old_kt = trace.sites[_K]
        w = None
        if _own_empty(selection) and u.same_args(trace.args, args):
            kt = old_kt
        else:
            kt, w = self.kernel._regenerate(old_kt, selection, args, keys.child())
        kids = []
        for j, a in enumerate(self._children(kt.retval)):
            old = trace.sites.get((j,))
            s = selection.get_subselection(j)
            with u.at((j,)):
                if old is not None and s.is_empty() and u.same_args(old.args, a):
                    ct = old
                elif old is not None:
                    ct, wj = self._regenerate(old, s, a, keys.child(), depth + 1)
                    w = u.add(w, wj)
                else:
                    ct = self._simulate(a, keys.child(), depth + 1)
            kids.append(ct)
        return self._node(args, kt, kids), u.total(w)

    def _assess(self, args, choices, depth=0):
        self._depth(depth)
        own, sub = _split(choices)
        s, kret = self.kernel._assess(args, own)
        cargs = self._children(kret)
        _stray(sub, len(cargs), self)
        rets = []
        for j, a in enumerate(cargs):
            with u.at((j,)):
                sj, rj = self._assess(a, sub.get(j, EMPTY), depth + 1)
            s = s + sj
            rets.append(rj)
        return s, (self.combine(kret[0], rets) if self.combine is not None else (kret[0], rets))

    def _project(self, trace, selection):
        kt = trace.sites[_K]
        w = kt.gen_fn._project(kt, selection)
        for p, ct in trace.sites.items():
            if p != _K:
                s = selection.get_subselection(p[0])
                if not s.is_empty():
                    w = w + self._project(ct, s)
        return w


def _n_kids(tr: Trace) -> int:
    return len(tr.sites) - 1


def _own_empty(selection: Selection) -> bool:
    """Does `selection` leave a node's own (non-int) addresses alone?"""
    if selection._all or selection._neg:
        return False
    return all(isinstance(p[0], int) and not isinstance(p[0], bool) for p in selection._paths)


def _stray(sub: dict, n: int, gf) -> None:
    for j in sub:
        if not 0 <= j < n:
            p = next(iter(sub[j].paths()), ())
            raise AddressError(
                f"constraint at address {from_path(u.full((j,) + p))!r} names no random choice of {gf.name} "
                f"(this node has {n} children)"
            )


def recurse(kernel, combine=None, max_depth: int = 64) -> Recurse:
    """Tree recursion: `kernel(*args) -> (value, [child args...])`; child j's choices under `j`."""
    return Recurse(kernel, combine, max_depth)
