"""The particles of an `unfold` model in a vectorized particle filter, kept step by step.

Held as one batched trace of the whole chain (vsmc's general path), step t
costs O(t): `vupdate` walks the whole trace and every resampling gathers every
leaf of the history, O(T^2) for a run. But step t of an unfold model needs only
the chain's state after step t - 1. Here the particles are:

* `steps`: each step's batched kernel trace, in the particle order of its own step;
* `moves`: the resampling indices applied after each step (None: none);
* `carry`: the chain state the next step starts from, in the current order.

A step runs the kernel once for all particles, exactly as `vupdate` runs a
one-step extension of the chain (the same lane keys, so the same draws and
weights); a resampling gathers the carried state alone. `trace()` follows the
ancestry back once (O(T N)) and assembles the batched unfold trace that the
general path would have built.
"""

from __future__ import annotations

import mlx.core as mx

from ..choicemap import ChoiceMap
from ..combinators import _util as u
from ..combinators.unfold import Unfold
from ..trace import Trace
from ..tree import map_arrays
from ..vectorize import _Lanes, _checks_out, _pack, _reduce_checks, _unpack, vmap_tree

__all__ = ["ChainParticles", "steps_one_at_a_time"]


def steps_one_at_a_time(model, args_seq: list, observations: list) -> bool:
    """True when every filter step after the first extends an `unfold` chain by one step, with the
    same initial state and extra args, observing only the new step: then `ChainParticles` applies."""
    if type(model) is not Unfold:
        return False
    for t in range(1, len(args_seq)):
        old, new = args_seq[t - 1], args_seq[t]
        if len(old) < 2 or len(new) != len(old) or not u.same_args(old[1:], new[1:]):
            return False
        if not (isinstance(new[0], int) and isinstance(old[0], int) and new[0] == old[0] + 1):
            return False
        if any(not p or p[0] != old[0] for p in observations[t].paths()):
            return False
    return True


class ChainParticles:
    """N particles of an unfold chain as per-step batched traces (see the module docstring)."""

    __slots__ = ("model", "args", "n", "steps", "moves", "carry")

    def __init__(self, model, args: tuple, n: int, steps: list, moves: list, carry):
        self.model, self.args, self.n = model, args, n
        self.steps, self.moves, self.carry = steps, moves, carry

    @classmethod
    def of_trace(cls, trace: Trace, n: int) -> "ChainParticles":
        """From a batched unfold trace (`vgenerate`'s)."""
        model = trace.gen_fn
        steps = [trace.sites[(s,)] for s in range(len(trace.sites))]
        if trace.checks and steps:  # the first step carries the generate's checks to the driver's evaluation
            steps[0] = _with_checks(steps[0], (*steps[0].checks, *trace.checks))
        carry = model._carry_before(trace.args, steps, len(steps))
        return cls(model, trace.args, n, steps, [None] * len(steps), carry)

    def _genmlx_arrays(self):
        yield self.steps
        yield self.moves
        yield self.carry

    def latest(self) -> tuple:
        """The history's newest parts (the last step's batched trace, the moves up to it): kept by design."""
        return (self.steps[-1], *[m for m in self.moves[-2:] if m is not None])

    def reindex(self, idx: mx.array) -> "ChainParticles":
        """Particle j continues particle `idx[j]`: the state is gathered, the history only in `trace()`."""
        moves = list(self.moves)
        last = moves[-1]
        moves[-1] = idx if last is None else last[idx]
        return ChainParticles(self.model, self.args, self.n, self.steps, moves, _gather(self.carry, idx, self.n))

    def extend(self, key, args: tuple, constraints: ChoiceMap) -> tuple["ChainParticles", mx.array]:
        """One more step for every particle (`args` = the chain's args with the length grown by one)."""
        model, n, t = self.model, self.n, len(self.steps)
        groups = u.index_keys(constraints, t + 1, model)
        obs = u.sub(groups, t)
        lanes = _Lanes(key, n, "per_lane")
        kernel = model.kernel

        def lane_fn(x, carry):
            # as `Unfold._update` extends a chain: the new step's kernel gets the lane stream's first child
            with u.at((t,)):
                st, w = lanes.run(x, lambda ks: kernel._generate(model._kargs(args, t, carry), obs, ks.child()))
            return _pack(st), w, _checks_out(st)

        node, w, cs = vmap_tree(lane_fn, (lanes.xs, self.carry), model.name, "vupdate")
        st = _unpack(node, None, None, _reduce_checks(cs))
        new = ChainParticles(model, args, n, [*self.steps, st], [*self.moves, None], model._next(st.retval))
        return new, (w if obs else mx.zeros((n,)))

    def trace(self) -> Trace:
        """The batched unfold trace of the current particles (each step gathered along its ancestry)."""
        idx = None
        sts = [None] * len(self.steps)
        for s in range(len(self.steps) - 1, -1, -1):
            m = self.moves[s]
            if m is not None:
                idx = m if idx is None else m[idx]
            sts[s] = self.steps[s] if idx is None else _gather_trace(self.steps[s], idx, self.n)
        score = None
        for st in sts:  # the left fold `Unfold` builds, step by step
            score = u.add(score, st.score)
        checks = tuple(c for st in sts for c in st.checks)
        sites = {(s,): _with_checks(st, ()) for s, st in enumerate(sts)}
        return Trace(self.model, self.args, self.model._retval(self.args, [st.retval for st in sts]), u.total(score),
                     sites, checks, self.n)


def _with_checks(st: Trace, checks: tuple) -> Trace:
    return Trace(st.gen_fn, st.args, st.retval, st.score, st.sites, checks, st.batch, st.aux)


def _gather(tree, idx, n: int):
    """Every array leaf with the particle axis (leading dimension n) at `idx`."""
    return map_arrays(lambda x: x[idx] if x.ndim >= 1 and x.shape[0] == n else x, tree)


def _gather_trace(st: Trace, idx, n: int) -> Trace:
    """A step's batched kernel trace (args included: the carried state it started from) at `idx`."""
    return _unpack(_gather(_pack(st), idx, n), None, None, st.checks)
