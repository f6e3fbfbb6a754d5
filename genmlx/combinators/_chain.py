"""The engine shared by `unfold` and `scan`: a kernel applied step after step to a carried state.

Step t's choices sit under `(t, addr)`. The trace's sites are `{(t,): step trace}`.

Cost of update/regenerate: steps before the first step that must change are
kept as they are (not re-run, no graph nodes); that step and every later one
are re-run (a step's input state depends on the previous step). The first
step that must change is the earliest of: the first constrained (selected)
step, the first step whose inputs changed (for `unfold`: any change of `init`
or the extra args means step 0), and the old length (new steps). So extending
a chain by one step with constraints on the new step only, as a particle
filter does, runs one kernel call, and its score is the old score plus the
new step's score (the same left fold simulate computes).
"""

from __future__ import annotations

from ..choicemap import ChoiceMap
from ..gfi import GenerativeFunction
from ..rng import KeyStream
from ..selection import Selection
from ..trace import Trace
from . import _util as u


def first_selected(selection: Selection, m: int) -> int:
    """The first step t < m that `selection` touches (m when none)."""
    if not selection._all and not selection._neg:
        ts = [p[0] for p in selection._paths if isinstance(p[0], int) and not isinstance(p[0], bool) and 0 <= p[0] < m]
        return min(ts, default=m)
    for t in range(m):
        if not selection.get_subselection(t).is_empty():
            return t
    return m


class Chain(u.Structural, GenerativeFunction):
    """Base class of Unfold and Scan (subclasses say how args map to steps)."""

    def _key(self) -> tuple:
        return (self.kernel,)

    kernel: GenerativeFunction

    # -- what subclasses define ------------------------------------------------------
    def _karity(self, args) -> int: ...
    def _length(self, args) -> int: ...
    def _carry0(self, args): ...
    def _kargs(self, args, t: int, carry) -> tuple: ...
    def _next(self, kret): ...
    def _retval(self, args, krets: list): ...
    def _changed_from(self, old_args, args, m: int) -> int: ...

    # -- helpers -----------------------------------------------------------------------
    def _make(self, args, sts: list, score=None, start: int = 0) -> Trace:
        for st in sts[start:]:
            score = u.add(score, st.score)
        sites = {(t,): st for t, st in enumerate(sts)}
        return Trace(self, args, self._retval(args, [st.retval for st in sts]), u.total(score), sites, u.checks_of(sts))

    def _carry_before(self, args, sts: list, t: int):
        return self._carry0(args) if t == 0 else self._next(sts[t - 1].retval)

    def _step_check(self, args) -> None:
        u.check_arity(self.kernel, self._karity(args), self)

    # -- GFI ---------------------------------------------------------------------------
    def _simulate(self, args, keys: KeyStream):
        carry, sts = self._carry0(args), []
        for t in range(self._length(args)):
            with u.at((t,)):
                st = self.kernel._simulate(self._kargs(args, t, carry), keys.child())
            carry = self._next(st.retval)
            sts.append(st)
        return self._make(args, sts)

    def _generate(self, args, constraints: ChoiceMap, keys):
        n = self._length(args)
        groups = u.index_keys(constraints, n, self)
        carry, sts, w = self._carry0(args), [], None
        for t in range(n):
            c = u.sub(groups, t)
            with u.at((t,)):
                st, wt = self.kernel._generate(self._kargs(args, t, carry), c, keys.child())
            if c:
                w = u.add(w, wt)
            carry = self._next(st.retval)
            sts.append(st)
        return self._make(args, sts), u.total(w)

    def _rerun(self, trace, args, t0, n):
        n_old = len(trace.sites)
        kept = [trace.sites[(t,)] for t in range(min(t0, n))]
        carry = self._carry_before(args, kept, min(t0, n)) if min(t0, n) < n else None
        return n_old, kept, carry

    def _finish(self, trace, args, sts, t0, n):
        n_old = len(trace.sites)
        if t0 >= n_old and n >= n_old:  # only new steps: extend the old fold
            return self._make(args, sts, trace.score, n_old)
        return self._make(args, sts)

    def _update(self, trace: Trace, constraints, args, keys):
        n = self._length(args)
        groups = u.index_keys(constraints, n, self)
        n_old = len(trace.sites)
        t0 = min(self._changed_from(trace.args, args, min(n_old, n)), min(groups, default=n_old), n_old)
        n_old, sts, carry = self._rerun(trace, args, t0, n)
        w, discard = None, {}
        for t in range(min(t0, n), n):
            c = u.sub(groups, t)
            kargs = self._kargs(args, t, carry)
            with u.at((t,)):
                if t < n_old:
                    st, wt, d = self.kernel._update(trace.sites[(t,)], c, kargs, keys.child())
                    w = u.add(w, wt)
                    u.add_discard(discard, (t,), d)
                else:
                    st, wt = self.kernel._generate(kargs, c, keys.child())
                    if c:
                        w = u.add(w, wt)
            carry = self._next(st.retval)
            sts.append(st)
        for t in range(n, n_old):
            old = trace.sites[(t,)]
            w = u.add(w, -old.score)
            u.discard_all(discard, (t,), old)
        return self._finish(trace, args, sts, t0, n), u.total(w), ChoiceMap._from_leaves(discard)

    def _regenerate(self, trace: Trace, selection: Selection, args, keys):
        n, n_old = self._length(args), len(trace.sites)
        m = min(n_old, n)
        t0 = min(self._changed_from(trace.args, args, m), first_selected(selection, m), n_old)
        n_old, sts, carry = self._rerun(trace, args, t0, n)
        w = None
        for t in range(min(t0, n), n):
            kargs = self._kargs(args, t, carry)
            with u.at((t,)):
                if t < n_old:
                    st, wt = self.kernel._regenerate(trace.sites[(t,)], selection.get_subselection(t), kargs, keys.child())
                    w = u.add(w, wt)
                else:
                    st = self.kernel._simulate(kargs, keys.child())
            carry = self._next(st.retval)
            sts.append(st)
        return self._finish(trace, args, sts, t0, n), u.total(w)

    def _assess(self, args, choices: ChoiceMap):
        n = self._length(args)
        groups = u.index_keys(choices, n, self)
        carry, score, rets = self._carry0(args), None, []
        for t in range(n):
            with u.at((t,)):
                s, r = self.kernel._assess(self._kargs(args, t, carry), u.sub(groups, t))
            score = u.add(score, s)
            carry = self._next(r)
            rets.append(r)
        return u.total(score), self._retval(args, rets)

    def _project(self, trace: Trace, selection: Selection):
        w = None
        for (t,), st in trace.sites.items():
            s = selection.get_subselection(t)
            if not s.is_empty():
                w = u.add(w, st.gen_fn._project(st, s))
        return u.total(w)
