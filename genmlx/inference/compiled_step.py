"""One MH iteration compiled over the trace's leaves: `mh(compile=True)`'s proposal for static-structure
models whose score is not the sum of their sites (combinators). A model whose score sums its sites runs the
leaner `CompiledMH.step` (genmlx/inference/compiled.py: the program takes and returns only the changed
choices' values); `mh._selection_kernel` picks the form.

GenJAX runs MH as a Python loop over a jitted step; this is genmlx's form of
it. For a model whose trace has the same structure after every proposal (the
same sites with the same shapes, no Python decision on a random value), the
whole proposal — `regenerate` of the selection, its weight and the accept
test — is one `mx.compile`d function of the current trace's array leaves
(values, scores, parameters). Its graph is traced once per model structure;
each iteration then costs one call of the compiled function instead of the
GFI's Python, and the new trace is rebuilt from the returned leaves only when
it is accepted (`Pending._genmlx_build`, called by the driver; `trace_builder`).

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
from ..vectorize import _Dist, _Node, _pack_top, _unpack
from .kernel_keys import KernelCache, args_key, structure_key

__all__ = ["CompiledProposal", "Pending", "Leaves", "proposal_for"]


class Pending:
    """A proposed trace as the compiled function returned it: its new leaves and checks, built on accept."""

    __slots__ = ("inputs", "made", "checks", "_kernel", "_memo")

    def __init__(self, kernel: "CompiledProposal", inputs: list, made: list, checks: tuple, memo: "Leaves"):
        self._kernel, self.inputs, self.made, self.checks, self._memo = kernel, inputs, made, checks, memo

    def _genmlx_arrays(self):
        return self.made  # the other leaves are the current trace's, already evaluated

    def _genmlx_build(self) -> Trace:
        made, inputs = self.made, self.inputs
        leaves = [made[m] if m >= 0 else inputs[~m] for m in self._kernel._where]
        tr = self._kernel.build(leaves, self.checks)
        self._memo.trace, self._memo.leaves = tr, leaves
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
        self.build = trace_builder(self.spec, template.args)
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
        new = Pending(self, leaves, outs[2 + nc:], checks, memo)
        return outs[0], new, {"accepted": outs[0], "accept_prob": outs[1]}


class _Uncompilable(Exception):
    pass


def trace_builder(spec, args):
    """`build(leaves, checks) -> Trace` for traces of structure `spec` (a packed trace's, `tree._spec`):
    `_unpack(rebuild(leaves), args)` written out once as one Python expression, since the generic
    walk over the structure is most of the Python an accepted proposal costs."""
    consts: list = []

    def const(x) -> str:
        consts.append(x)
        return f"K[{len(consts) - 1}]"

    pos = [0]

    def expr(sp) -> str:
        kind = sp[0]
        if kind == "leaf":
            pos[0] += 1
            return f"L[{pos[0] - 1}]"
        if kind == "static":
            return const(sp[1])
        if kind == "named":
            parts = [expr(x) for x in sp[2]]
            if sp[1] is _Node:  # a packed trace: made into a Trace, as _unpack does
                gen, a, retval, score, sites, aux = parts
                return f"T({gen}, {a}, {retval}, {score}, {sites}, (), None, {aux})"
            if sp[1] is _Dist:  # a packed distribution: an instance with these attributes
                return f"D({parts[0]}, {parts[1]})"
            return f"{const(sp[1])}({', '.join(parts)})"
        if kind == "seq":
            parts = [expr(x) for x in sp[2]]
            if sp[1] is list:
                return f"[{', '.join(parts)}]"
            if sp[1] is tuple:
                return f"({''.join(p + ', ' for p in parts)})"
            return f"{const(sp[1])}([{', '.join(parts)}])"
        if kind == "dict":
            body = ", ".join(f"{const(k)}: {expr(v)}" for k, v in sp[2])
            return f"{{{body}}}" if sp[1] is dict else f"{const(sp[1])}({{{body}}})"
        if kind == "obj":
            return f"{const(sp[1])}({expr(sp[2])})"
        raise ValueError(f"unknown structure node {kind!r}")

    if spec[0] != "named" or spec[1] is not _Node:
        raise ValueError("not a packed trace")
    gen, _, retval, score, sites, aux = [expr(x) for x in spec[2]]
    src = f"lambda L, C: T({gen}, A, {retval}, {score}, {sites}, C, None, {aux})"
    return eval(src, {"T": Trace, "D": _make_dist, "K": consts, "A": args})  # noqa: S307 (our own source)


def _make_dist(cls, attrs: dict):
    d = cls.__new__(cls)
    d.__dict__.update(attrs)
    return d


_cache = KernelCache()


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
    hit = _cache.get(key, lambda h: h.gen_fn is template.gen_fn)
    if hit is not None:
        return hit if hit.ok else None
    return _cache.put(key, CompiledProposal(template, selection, propose))
