"""`switch(*branches)`: run one of several generative functions, chosen by an index.

Args: `(index, *branch_args)`; branch `index` (0-based) is called with
`branch_args` (a distribution branch takes none and ignores them).

Addresses: the chosen branch's choices are not nested: they sit at the
switch's own level (at the switch's address itself when the branch is a
distribution), as in Gen's Switch. Return value and score: the branch's.

The index may be a Python int, or an integer array (e.g. a random choice):
* outside vectorized execution an array index is read with `.item()` (one
  host sync per call);
* inside vectorized execution (`vsimulate`, `vgenerate`, `gm.vmap`, ...) it
  cannot be read, so every branch runs and each lane keeps its own branch's
  values (`mx.where`); that needs branches of the same structure (same
  addresses, distribution shapes, return structure), else a
  `VectorizationError`. An index out of range is reported by a deferred check.

Keys: the switch draws one key and splits it into one key per branch, so
branch j sees the same randomness whether it runs alone or beside the others:
lane i of a vectorized run equals the scalar run, bit for bit.

update with a new index (Gen's Switch): the new branch is generated from the
old choices merged with the constraints. Every old choice at an address the
new branch visits is kept and rescored, whatever callee reaches it (a nested
generative function that differs between the branches included); new
addresses are sampled or taken from the constraints; old choices the new
branch does not visit are removed. weight = that generate's weight - the old
score (= new score - old score - log density of the fresh choices); the
discard holds the removed and the overwritten old choices.

regenerate with a new index: when both branches are `@gen` functions or both
distributions, the new branch is regenerated from the old branch's trace
(shared addresses reached through the same callees are kept); otherwise the
new branch is simulated from scratch (weight 0).

`Trace.aux` is `(index, branch aux)`, index `None` for a lane-merged trace.
"""

from __future__ import annotations

import mlx.core as mx

from ..checks import DeferredCheck
from ..choicemap import ChoiceMap
from ..dynamic import DynamicGenFn
from ..evaluation import item
from ..gfi import GenerativeFunction, check_args
from ..handler import optional_values
from ..rng import KeyStream
from ..selection import Selection
from ..trace import Trace
from .. import vectorize as _vec
from . import _util as u
from ._merge import merge_traces, select

__all__ = ["Switch", "switch"]


class Switch(u.Structural, GenerativeFunction):
    """The Switch combinator (see the module docstring for addresses)."""

    def _key(self) -> tuple:
        return (self.branches,)

    def __init__(self, *branches):
        if not branches:
            raise TypeError("switch needs at least one branch")
        for j, b in enumerate(branches):
            if not hasattr(b, "_simulate"):
                raise TypeError(f"switch: branch {j} must be a generative function or distribution, got {type(b).__name__}")
        self.branches = tuple(branches)
        self.name = f"switch({', '.join(u.name_of(b) for b in branches)})"

    # -- args and index ------------------------------------------------------------------
    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        if not args:
            raise TypeError(f"{self.name} expects at least 1 argument (index, *branch_args), got 0")
        idx = args[0]
        if not isinstance(idx, mx.array):
            self._index(idx)  # a static index is checked now; an array one when it is read
        for j, b in enumerate(self.branches):
            if not u.is_dist(b):
                u.check_arity(b, len(args) - 1, self, f"branch {j}")
        return args

    def _index(self, idx):
        """(k, None) for a readable index, (None, array) for a lane-wise one."""
        K = len(self.branches)
        if isinstance(idx, mx.array):
            if idx.size != 1:
                raise TypeError(f"{self.name}: index must be a scalar, got an array of shape {tuple(idx.shape)}")
            if _vec.batching():
                return None, idx.reshape(())
            idx = item(idx)  # a host sync: Python picks the branch
        if isinstance(idx, bool):
            idx = int(idx)
        if isinstance(idx, float) and idx.is_integer():
            idx = int(idx)
        if not isinstance(idx, int):
            try:
                idx = int(idx.__index__())
            except AttributeError:
                raise TypeError(f"{self.name}: index must be an int or an integer array, got {type(idx).__name__}") from None
        if not 0 <= idx < K:
            raise IndexError(f"{self.name}: branch index {idx} out of range (it has {K} branches)")
        return idx, None

    def _bargs(self, j, args) -> tuple:
        return () if u.is_dist(self.branches[j]) else args[1:]

    def _keys(self, keys: KeyStream):
        return mx.random.split(keys(), len(self.branches))

    # -- traces ---------------------------------------------------------------------------
    def _wrap(self, args, k, bt: Trace) -> Trace:
        return Trace(self, args, bt.retval, bt.score, bt.sites, bt.checks, None, (k, bt.aux))

    def _branch_trace(self, tr: Trace, j: int) -> Trace:
        """`tr` read as a trace of branch j (with the old args)."""
        return Trace(self.branches[j], self._bargs(j, tr.args), tr.retval, tr.score, tr.sites, tr.checks, None, tr.aux[1])

    def _merged(self, args, idx, bts: list) -> Trace:
        retval, score, sites, aux = merge_traces(idx, bts, self.name)
        K = len(self.branches)
        checks = [DeferredCheck((idx >= 0) & (idx < K), _range_error(self.name, K))]
        for j, bt in enumerate(bts):
            checks.extend(DeferredCheck(mx.where(idx == j, c.ok, True), c.error) for c in bt.checks)
        return Trace(self, args, retval, score, sites, tuple(checks), None, (None, aux))

    def _relabel_ok(self, a: int | None, b: int) -> bool:
        if a is None or a == b:
            return True
        x, y = self.branches[a], self.branches[b]
        if x == y:  # equal generative functions read each other's traces
            return True
        return (u.is_dist(x) and u.is_dist(y)) or (isinstance(x, DynamicGenFn) and isinstance(y, DynamicGenFn))

    def _all_relabel_ok(self) -> None:
        K = len(self.branches)
        if not all(self._relabel_ok(0, j) for j in range(K)):
            raise _vec.VectorizationError(
                f"{self.name}: updating with an array index (vectorized execution) needs branches that can take "
                "each other's traces: all @gen functions, all distributions, or one generative function"
            )

    # -- GFI -------------------------------------------------------------------------------
    def _simulate(self, args, keys):
        k, idx = self._index(args[0])
        ks = self._keys(keys)
        if k is not None:
            return self._wrap(args, k, self.branches[k]._simulate(self._bargs(k, args), KeyStream(ks[k])))
        bts = [b._simulate(self._bargs(j, args), KeyStream(ks[j])) for j, b in enumerate(self.branches)]
        return self._merged(args, idx, bts)

    def _generate(self, args, constraints: ChoiceMap, keys):
        k, idx = self._index(args[0])
        ks = self._keys(keys)
        if k is not None:
            bt, w = self.branches[k]._generate(self._bargs(k, args), constraints, KeyStream(ks[k]))
            return self._wrap(args, k, bt), w
        res = [b._generate(self._bargs(j, args), constraints, KeyStream(ks[j])) for j, b in enumerate(self.branches)]
        w = select(idx, [r[1] for r in res], self.name, "weight")
        return self._merged(args, idx, [r[0] for r in res]), w

    def _update(self, trace: Trace, constraints, args, keys):
        k, idx = self._index(args[0])
        old_k = trace.aux[0]
        ks = self._keys(keys)
        if k is not None:
            if old_k is None or old_k == k:
                bt, w, d = self.branches[k]._update(self._branch_trace(trace, k), constraints, self._bargs(k, args),
                                                     KeyStream(ks[k]))
            else:
                bt, w, d = self._change_branch(trace, k, constraints, args, KeyStream(ks[k]))
            return self._wrap(args, k, bt), w, d
        self._all_relabel_ok()
        res = [b._update(self._branch_trace(trace, j), constraints, self._bargs(j, args), KeyStream(ks[j]))
               for j, b in enumerate(self.branches)]
        w = select(idx, [r[1] for r in res], self.name, "weight")
        d = select(idx, [dict(r[2]._leaves) for r in res], self.name, "discard")
        return self._merged(args, idx, [r[0] for r in res]), w, ChoiceMap._from_leaves(d)

    def _change_branch(self, trace: Trace, k: int, constraints: ChoiceMap, args, keys: KeyStream):
        """update to another branch, as Gen's Switch: generate branch k from the old choices merged with
        the constraints. Old choices at addresses the new branch visits are kept and rescored (whatever
        callee reaches them), the others are removed. weight = generate weight - old score
        = new score - old score - log density of the freshly sampled choices."""
        b = self.branches[k]
        cons = constraints._leaves
        old = {(): trace.retval} if trace.sites is None else dict(trace.get_choices()._leaves)
        kept = {p: v for p, v in old.items() if not any(_overlap(p, q) for q in cons)}
        if u.is_dist(b):
            kept = {(): kept[()]} if () in kept else {}
        taken = {id(v) for v in cons.values()}
        with optional_values([v for v in kept.values() if id(v) not in taken]):
            bt, w = b._generate(self._bargs(k, args), ChoiceMap._from_leaves({**kept, **cons}), keys)
        new_paths = {()} if bt.sites is None else set(bt.get_choices()._leaves)
        discard = {p: v for p, v in old.items() if p not in kept or p not in new_paths}
        return bt, w - trace.score, ChoiceMap._from_leaves(discard)

    def _regenerate(self, trace: Trace, selection: Selection, args, keys):
        k, idx = self._index(args[0])
        old_k = trace.aux[0]
        ks = self._keys(keys)
        if k is not None:
            b = self.branches[k]
            if self._relabel_ok(old_k, k):
                bt, w = b._regenerate(self._branch_trace(trace, k), selection, self._bargs(k, args), KeyStream(ks[k]))
            else:
                bt, w = b._simulate(self._bargs(k, args), KeyStream(ks[k])), u.zero()
            return self._wrap(args, k, bt), w
        self._all_relabel_ok()
        res = [b._regenerate(self._branch_trace(trace, j), selection, self._bargs(j, args), KeyStream(ks[j]))
               for j, b in enumerate(self.branches)]
        w = select(idx, [r[1] for r in res], self.name, "weight")
        return self._merged(args, idx, [r[0] for r in res]), w

    def _assess(self, args, choices: ChoiceMap):
        k, idx = self._index(args[0])
        if k is not None:
            return self.branches[k]._assess(self._bargs(k, args), choices)
        res = [b._assess(self._bargs(j, args), choices) for j, b in enumerate(self.branches)]
        return select(idx, [r[0] for r in res], self.name, "score"), select(idx, [r[1] for r in res], self.name, "retval")

    def _project(self, trace: Trace, selection: Selection):
        k = trace.aux[0]
        # project reads only the stored site scores, so any branch reads a merged trace correctly
        j = 0 if k is None else k
        return self.branches[j]._project(self._branch_trace(trace, j), selection)


def _overlap(p: tuple, q: tuple) -> bool:
    """One path is a prefix of the other (a constraint at q replaces the old choice at p)."""
    n = min(len(p), len(q))
    return p[:n] == q[:n]


def _range_error(name, K):
    return lambda: IndexError(f"{name}: a branch index is out of range (it has {K} branches)")


def switch(*branches) -> Switch:
    """Choose a branch by index: args `(index, *branch_args)`; branch choices are not nested."""
    return Switch(*branches)
