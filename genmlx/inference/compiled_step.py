"""One MH iteration compiled over the trace's leaves: `mh`'s proposal for static-structure models.

GenJAX runs MH as a Python loop over a jitted step; this is genmlx's form of
it. For a model whose trace has the same structure after every proposal (the
same sites with the same shapes, no Python decision on a random value), the
whole proposal — `regenerate` of the selection, its weight and the accept
test — is one `mx.compile`d function of the current trace's array leaves
(values, scores, parameters). Its graph is traced once per model structure;
each iteration then costs one call of the compiled function instead of the
GFI's Python, and the new trace is rebuilt from the returned leaves only when
it is accepted (`Pending.build`, called by the driver).

Same chain: the compiled function runs the same operations on the same keys
as the eager proposal (`mh._propose`), so `mh` keeps the same traces whether a
model compiles or not (tests/inference/test_compiled_step.py). A model that
cannot be compiled (a branch on a random choice, `.item()`, a proposal that
changes the trace's structure) runs the eager proposal, decided once per
model structure.
"""

from __future__ import annotations

import mlx.core as mx

from ..trace import Trace
from ..tree import _spec, flatten
from ..vectorize import _pack_top, _unpack
from .kernel_keys import args_key, structure_key

__all__ = ["CompiledProposal", "Pending", "Leaves", "proposal_for"]


class Pending:
    """A proposed trace as the compiled function returned it: its leaves and checks, built on accept."""

    __slots__ = ("leaves", "made", "checks", "_kernel", "_memo")

    def __init__(self, kernel: "CompiledProposal", leaves: list, made: list, checks: tuple, memo: "Leaves"):
        self._kernel, self.leaves, self.made, self.checks, self._memo = kernel, leaves, made, checks, memo

    def _genmlx_arrays(self):
        return self.made  # the other leaves are the current trace's, already evaluated

    def _genmlx_build(self) -> Trace:
        k = self._kernel
        tr = _unpack(k.rebuild(self.leaves), k.args)
        tr = Trace(tr.gen_fn, tr.args, tr.retval, tr.score, tr.sites, self.checks, None, tr.aux)
        self._memo.trace, self._memo.leaves = tr, self.leaves
        return tr


class Leaves:
    """One run's memo of its current trace's leaves (flattening a trace is Python work per step)."""

    __slots__ = ("trace", "leaves")

    def __init__(self):
        self.trace = self.leaves = None

    def of(self, trace: Trace) -> list:
        if trace is not self.trace:
            self.trace, self.leaves = trace, flatten(_pack_top(trace))[0]
        return self.leaves


class CompiledProposal:
    """`propose(key, trace) -> (accept, Pending, stats)` for traces shaped like `template`, or None
    from `propose` when the model cannot run compiled (the caller then proposes eagerly)."""

    def __init__(self, template: Trace, selection, propose):
        self.selection, self.args, self._propose = selection, template.args, propose
        self.gen_fn = template.gen_fn
        leaves, self.rebuild = flatten(_pack_top(template))
        self.spec = _spec(_pack_top(template), [])
        self.n_leaves = len(leaves)
        self.ok = True  # False once the model proved not compilable
        self.traced = False  # True once a call succeeded
        self._checks: list = []  # (check type, its error) of the proposed trace, learned when traced
        self._where: list = []  # per leaf of the proposed trace: its output (m >= 0) or input (~j)
        self._fn = mx.compile(self._step)

    def _step(self, key, *leaves):
        tr = _unpack(self.rebuild(list(leaves)), self.args)
        accept, new, stats = self._propose(key, tr, self.selection)
        packed = _pack_top(new)
        if _spec(packed, []) != self.spec or new.batch is not None:
            raise _Uncompilable("the proposal changes the trace's structure")
        self._checks = [(type(c), getattr(c.error, "static", c.error)) for c in new.checks]
        # Only the leaves the proposal made are returned, each once: the others are the inputs'
        # (a retained site's value) or repeat an earlier one (a parameter that is also a value).
        inputs = {id(x): j for j, x in enumerate(leaves)}
        made: dict = {}
        outs, where = [], []
        for x in flatten(packed)[0]:
            j = inputs.get(id(x))
            if j is not None:
                where.append(~j)
                continue
            m = made.get(id(x))
            if m is None:
                m = made[id(x)] = len(outs)
                outs.append(x)
            where.append(m)
        self._where = where
        return [accept, stats["accept_prob"], *[c.ok for c in new.checks], *outs]

    def propose(self, key, trace: Trace, memo: Leaves):
        if not self.ok:
            return None
        leaves = memo.of(trace)
        if self.traced:
            outs = self._fn(key, *leaves)
        else:
            try:
                outs = self._fn(key, *leaves)
            except Exception:  # not compilable (a Python decision on a value, `.item()`, a structure
                self.ok = False  # change, an operation compile lacks): the GFI's proposal runs instead,
                return None  # and raises whatever is the model's own error
            self.traced = True
        nc = len(self._checks)
        checks = tuple(kind(ok, err) for (kind, err), ok in zip(self._checks, outs[2:2 + nc]))
        made = outs[2 + nc:]
        new = Pending(self, [made[m] if m >= 0 else leaves[~m] for m in self._where], made, checks, memo)
        return outs[0], new, {"accepted": outs[0], "accept_prob": outs[1]}


class _Uncompilable(Exception):
    pass


_cache: dict = {}
_CACHE_SIZE = 16


def proposal_for(template: Trace, selection, propose) -> CompiledProposal | None:
    """The compiled proposal for traces shaped like `template` (reused across runs), or None."""
    if template.batch is not None:
        return None
    try:
        key = (id(template.gen_fn), id(propose), selection._paths, selection._all, selection._neg,
               args_key(template.args), structure_key(template))
        hash(key)
    except TypeError:
        return None
    hit = _cache.get(key)
    if hit is not None and hit.gen_fn is template.gen_fn:
        _cache[key] = _cache.pop(key)
        return hit if hit.ok else None
    kern = CompiledProposal(template, selection, propose)
    _cache[key] = kern
    while len(_cache) > _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    return kern
