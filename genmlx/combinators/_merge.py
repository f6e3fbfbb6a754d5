"""Per-lane selection between branch results (batched `switch`).

Under `mx.vmap` a branch index is an array, so Python cannot pick one branch:
every branch runs and each array of the result is `mx.where(index == j, ...)`
of the branches' arrays. This needs the branches to give results of the same
structure: the same addresses, the same nested generative functions, the same
array shapes and dtypes, equal Python values. Distribution objects inside the
merged trace are parameterless shells (their class when all branches agree,
else the base `Distribution`): the GFI never reads an old site's distribution,
and the per-lane parameters exist only in the branch that was chosen.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

from ..distributions.base import Distribution
from ..trace import Trace
from ..tree import _spec, flatten
from ..vectorize import VectorizationError
from ._util import Structural


class _Shell(NamedTuple):
    cls: Any


def pack(tr: Trace):
    """A trace as plain containers with distributions reduced to their classes."""
    g = tr.gen_fn
    gen = _Shell(type(g)) if getattr(g, "_is_distribution", False) else g
    sites = None if tr.sites is None else {p: pack(st) for p, st in tr.sites.items()}
    return (gen, tr.args, tr.retval, tr.score, sites, tr.aux)


def unpack(node, gen_fn=None, checks=()) -> Trace:
    gen, args, retval, score, sites, aux = node
    if isinstance(gen, _Shell):
        gen = gen.cls.__new__(gen.cls)
    sites = None if sites is None else {p: unpack(s) for p, s in sites.items()}
    return Trace(gen_fn if gen_fn is not None else gen, args, retval, score, sites, checks, None, aux)


def _static_eq(a, b) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, (int, float, str, bool, bytes)):
        return a == b
    return isinstance(a, Structural) and a == b  # equal combinators built anew in each branch


def _why(a, b, path) -> str | None:
    """Where two specs (genmlx.tree) differ, or None when they match."""
    if a[0] != b[0]:
        return f"{path}: {a[0]} vs {b[0]}"
    kind = a[0]
    if kind == "leaf":
        return None
    if kind == "static":
        return None if _static_eq(a[1], b[1]) else f"{path}: {a[1]!r} vs {b[1]!r}"
    if kind in ("named", "seq"):
        if a[1] is not b[1] or len(a[2]) != len(b[2]):
            return f"{path}: {a[1].__name__} of {len(a[2])} vs {b[1].__name__} of {len(b[2])}"
        if a[1] is _Shell:
            return None
        for i, (x, y) in enumerate(zip(a[2], b[2])):
            r = _why(x, y, f"{path}[{i}]")
            if r:
                return r
        return None
    if kind == "dict":
        ka, kb = [k for k, _ in a[2]], [k for k, _ in b[2]]
        if ka != kb:
            return f"{path}: keys {ka} vs {kb}"
        for (k, x), (_, y) in zip(a[2], b[2]):
            r = _why(x, y, f"{path}[{k!r}]")
            if r:
                return r
        return None
    if kind == "obj":
        return _why(a[2], b[2], path)
    return None


def select(index: mx.array, items: list, name: str, what: str):
    """`items[index]` per lane: each array leaf is where-selected across the items."""
    specs, leaves = [], []
    for it in items:
        ls: list = []
        specs.append(_spec(it, ls))
        leaves.append(ls)
    for j in range(1, len(items)):
        why = _why(specs[0], specs[j], what)
        if why is None and len(leaves[j]) != len(leaves[0]):
            why = f"{what}: {len(leaves[0])} vs {len(leaves[j])} arrays"
        if why is None:
            for a, b in zip(leaves[0], leaves[j]):
                if a.shape != b.shape or a.dtype != b.dtype:
                    why = f"{what}: array {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}"
                    break
        if why is not None:
            raise VectorizationError(
                f"{name}: with an array index (vectorized execution) every branch runs and each lane keeps "
                f"its own; that needs branches with the same structure, but branch 0 and branch {j} differ "
                f"({why}). Give the branches the same addresses, distribution shapes and return structure, "
                "or use a Python int index."
            )
    out = []
    for pos in range(len(leaves[0])):
        col = [ls[pos] for ls in leaves]
        acc = col[-1]
        if all(x is acc for x in col):
            out.append(acc)
            continue
        for j in range(len(col) - 2, -1, -1):
            acc = mx.where(index == j, col[j], acc)
        out.append(acc)
    _, rebuild = flatten(items[0])
    merged = rebuild(out)
    return merged


def merge_traces(index, traces: list, name: str):
    """The body of one trace whose lanes are `traces[index]` (structure checked).

    Returns `(retval, score, sites, aux)`; the branches' own generative
    functions and args are left to the caller.
    """
    nodes = [(None, None) + pack(t)[2:] for t in traces]
    merged = select(index, nodes, name, "trace")
    # distribution shells: the common class, else the base class
    _, _, retval, score, sites, aux = _fix_shells(merged, nodes)
    sites = None if sites is None else {p: unpack(n) for p, n in sites.items()}
    return retval, score, sites, aux


def _fix_shells(m, nodes):
    gen, args, retval, score, sites, aux = m
    if isinstance(gen, _Shell):
        classes = {n[0].cls for n in nodes}
        gen = _Shell(classes.pop() if len(classes) == 1 else Distribution)
    if sites is not None:
        sites = {p: _fix_shells(s, [n[4][p] for n in nodes]) for p, s in sites.items()}
    return (gen, args, retval, score, sites, aux)
