"""Vectorized execution: N particles in one pass over `[N]`-shaped arrays.

`vsimulate(gf, args, n, key)` splits `key` into `n` lane keys
(`mx.random.split(key, n)`) and runs the scalar internal `gf._simulate` once
under `mx.vmap`: every array in the resulting trace gains a leading axis of
size `n`, and the MLX graph has the same number of nodes for n = 10 and
n = 10,000. Lane `i` equals the scalar run `gf.simulate(args, key=keys[i])`,
bit for bit (MLX random functions under `vmap` draw what they draw for each
key alone). `vgenerate`, `vupdate` and `vregenerate` work the same way
(constraints and new args are shared by all lanes; `vupdate`/`vregenerate`
take a batched trace and map over its leaves).

Lane layouts (`layout=` on each of them; see `genmlx.rng`): the above is
`"per_lane"`, the default here. `"shared"` maps over the lane index
`arange(n)` instead and gives every lane's KeyStream the ONE unbatched key;
the samplers draw `(n,) + shape` from it and take row `lane`
(`rng.lanewise`), so key splits happen once and random bits cost what N
values drawn from one key cost. Shared-key guarantees: the same key gives the
same pass bit for bit, lanes are independent draws of the model, nested
`gm.vmap` / `gm.switch` / `gm.mix` work; lane i is not the scalar run of any
key. Vectorized importance sampling uses it, through `genmlx.compiled_pass`:
one `mx.compile` of the whole pass, cached per (gen fn, args structure,
constraint addresses and shapes, n, layout), with the arrays of args and the
constraint values as inputs.

What cannot be batched: Python deciding something from the value of an array
(an `if`/`while` on a random choice, `.item()`, `int()`/`float()`/`bool()` of an
array, a NumPy conversion). MLX refuses to evaluate during a transformation;
we turn that into a `VectorizationError` naming the generative function.
`gm.switch` (and `gm.mix`) with an array index do batch: they run every
branch and select per lane.

How a trace crosses `mx.vmap`: `_pack` turns it into plain tuples/dicts
(`genmlx.tree.flatten` gives the array leaves). A distribution object made
inside the body (`dist.normal(mu, 1.0)` with `mu` a traced array) is carried as
its class and attribute dict, so the batched trace holds distributions with
`[N]` parameters, never transformation-time arrays that could not be
evaluated afterwards. Deferred parameter checks come back as one check each
over all lanes. The top-level args are shared, so they are not batched: the
batched trace keeps the caller's args object.

Where it sits: this module runs any object that has the GFI's internals
(`_simulate`, `_generate`, ...) and imports nothing of the GFI or the handler,
so `genmlx.gfi` imports it at module level for `GenerativeFunction.vsimulate`
and its siblings; passes that need the handler (`compiled_pass`) sit above
both (tests/core/test_imports.py keeps the import graph acyclic).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import mlx.core as mx

from .choicemap import ChoiceMap
from . import deferred
from .thread_state import Value
from .rng import KeyStream, lane_layout, resolve
from .selection import Selection
from .trace import Trace, TraceViews
from .tree import flatten

__all__ = [
    "BatchedTraces",
    "VectorizationError", "vsimulate", "vgenerate", "vupdate", "vregenerate",
    "lane", "batching", "vmap_tree",
]

_EVAL_MSG = "Attempting to eval an array during function transformations"
_depth = Value(0)  # > 0 while a function runs under mx.vmap in this thread (switch/mask consult it)


class VectorizationError(TypeError):
    """A generative function cannot run as one batched pass (see the message)."""


def batching() -> bool:
    """True while genmlx code runs under `mx.vmap` (vsimulate, `gm.vmap`, ...)."""
    return _depth.v > 0


def _explain(name: str, op: str) -> str:
    return (
        f"{name} cannot be vectorized ({op}): its Python code needs the value of an array "
        "while all particles run as one batched pass. Typical causes: an `if`/`while` on a "
        "random choice, `.item()`, `int()`/`float()`/`bool()` of an array, a NumPy conversion, "
        "or `gm.mask` with an array flag. Branch between generative functions with `gm.switch` "
        "(the index may be a random choice), select values with `mx.where`, or run the scalar "
        "GFI once per particle instead."
    )


# -- traces as plain trees ------------------------------------------------------------


class _Node(NamedTuple):
    gen: Any
    args: Any
    retval: Any
    score: Any
    sites: Any
    aux: Any


class _Dist(NamedTuple):
    cls: Any
    attrs: dict


def _pack(tr: Trace, keep_args: bool = True) -> _Node:
    """A trace as plain containers (checks dropped; distributions as class + attributes)."""
    g = tr.gen_fn
    gen = g
    if getattr(g, "_is_distribution", False):
        d = getattr(g, "__dict__", None)
        if d is not None:
            gen = _Dist(type(g), dict(d))
    sites = None if tr.sites is None else {p: _pack(st) for p, st in tr.sites.items()}
    return _Node(gen, tr.args if keep_args else None, tr.retval, tr.score, sites, tr.aux)


def _unpack(node: _Node, args=None, batch=None, checks=()) -> Trace:
    gen = node.gen
    if isinstance(gen, _Dist):
        d = gen.cls.__new__(gen.cls)
        d.__dict__.update(gen.attrs)
        gen = d
    sites = None if node.sites is None else {p: _unpack(s) for p, s in node.sites.items()}
    return Trace(gen, node.args if args is None else args, node.retval, node.score, sites, checks, batch, node.aux)


def _pack_top(tr: Trace) -> _Node:
    # the top-level gen_fn and args stay as they are (shared, not batched)
    n = _pack(tr, keep_args=False)
    return n._replace(gen=tr.gen_fn)


def _checks_out(tr: Trace) -> list:
    return [type(c)(c.ok, c.error) for c in tr.checks]


def _reduce_checks(cs) -> tuple:
    return tuple(type(c)(mx.all(c.ok), c.error) for c in cs)


def _cm_pack(cm: ChoiceMap) -> dict:
    return dict(cm._leaves)


# -- the one-pass engine -----------------------------------------------------------------


def vmap_tree(fn: Callable[..., Any], batched: tuple, name: str, op: str):
    """Run `fn(*lanes)` once under `mx.vmap` over axis 0 of every array in `batched`.

    `batched` is a tuple of trees (plain containers of arrays); `fn` returns a
    plain tree. Returns that tree with `[N]`-shaped leaves. A Python decision on
    an array value inside `fn` raises `VectorizationError` naming `name`.
    """
    leaves, rebuild_in = flatten(batched)
    leaves, pos_in = _dedupe(leaves)
    box: dict = {}

    def body(*xs):
        out = fn(*rebuild_in([xs[j] for j in pos_in]))
        ls, rb = flatten(out)
        ls, box["pos"] = _dedupe(ls)
        box["rebuild"] = rb
        return ls

    _depth.v += 1
    try:
        outs = mx.vmap(body)(*leaves)
    except ValueError as e:
        if _EVAL_MSG in str(e):
            raise VectorizationError(_explain(name, op)) from None
        raise
    finally:
        _depth.v -= 1
    return box["rebuild"]([outs[j] for j in box["pos"]])


def _dedupe(leaves: list) -> tuple[list, list]:
    """Distinct arrays and, per leaf, its index among them.

    An array a trace holds twice (a step's return value is the next step's
    argument and a site's value) crosses `mx.vmap` once and stays one object.
    """
    seen: dict = {}
    uniq: list = []
    pos: list = []
    for x in leaves:
        j = seen.get(id(x))
        if j is None:
            j = seen[id(x)] = len(uniq)
            uniq.append(x)
        pos.append(j)
    return uniq, pos


LAYOUTS = ("per_lane", "shared")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of particles) must be a positive int, got {n!r}")
    return n


def _keys(key, n: int) -> mx.array:
    return mx.random.split(resolve(key), _check_n(n))


class _Lanes:
    """What the vmapped body of one pass maps over, and the KeyStream of each lane.

    per_lane: the N split keys (lane i's stream starts from key i). shared: the lane
    index `arange(N)`; every lane's stream starts from the one unbatched key and the
    samplers draw (N,) + shape and take their row (`rng.lanewise`).
    """

    __slots__ = ("layout", "n", "key", "xs")

    def __init__(self, key, n, layout):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout, self.n = layout, _check_n(n)
        if layout == "shared":
            self.key = resolve(key)
            self.xs = mx.arange(n, dtype=mx.int32)
        else:
            self.key = None
            self.xs = _keys(key, n)

    def run(self, x, fn, *a):
        """`fn(KeyStream, *a)` for the lane whose mapped input is `x`, under its layout."""
        if self.key is None:
            with lane_layout(None):
                return fn(KeyStream(x), *a)
        with lane_layout((self.n, x)):
            return fn(KeyStream(self.key), *a)


def vsimulate(gf, args: tuple, n: int, key=None, layout: str = "per_lane") -> Trace:
    """N traces in one pass; per_lane: lane i equals `gf.simulate(args, key=split(key, n)[i])`."""
    lanes = _Lanes(key, n, layout)

    def lane_fn(x):
        tr = lanes.run(x, lambda ks: gf._simulate(args, ks))
        return _pack_top(tr), _checks_out(tr)

    node, cs = vmap_tree(lane_fn, (lanes.xs,), gf.name, "vsimulate")
    return _unpack(node, args, n, _reduce_checks(cs))


def vgenerate(gf, args: tuple, constraints: ChoiceMap, n: int, key=None, layout: str = "per_lane"):
    """N constrained traces in one pass; returns (trace with [N] leaves, weights [N]).

    `genmlx.compiled_pass.compiled_vgenerate` is the same pass `mx.compile`d once per
    (gf, structure of args, constraint addresses and shapes, n, layout) and reused.
    """
    lanes = _Lanes(key, n, layout)

    def lane_fn(x):
        tr, w = lanes.run(x, lambda ks: gf._generate(args, constraints, ks))
        return _pack_top(tr), w, _checks_out(tr)

    node, w, cs = vmap_tree(lane_fn, (lanes.xs,), gf.name, "vgenerate")
    return _unpack(node, args, n, _reduce_checks(cs)), w


def _check_batched(gf, trace, op) -> int:
    if not isinstance(trace, Trace):
        raise TypeError(f"{gf.name}.{op}: expected a Trace, got {type(trace).__name__}")
    if trace.gen_fn is not gf:
        raise ValueError(f"{gf.name}.{op}: this trace was made by {getattr(trace.gen_fn, 'name', trace.gen_fn)!r}")
    if trace.batch is None:
        raise ValueError(f"{gf.name}.{op}: expected a vectorized trace (from vsimulate/vgenerate), got a scalar one")
    return trace.batch


def vupdate(gf, trace: Trace, constraints: ChoiceMap, args=None, key=None, layout: str = "per_lane"):
    """Batched update: per_lane, lane i equals `gf.update(lane(trace, i), constraints, args=args, key=keys[i])`.

    Returns (trace, weights [N], discard with [N] leaves).
    """
    n = _check_batched(gf, trace, "vupdate")
    old_args = trace.args
    new_args = old_args if args is None else gf._check_args(args)
    lanes = _Lanes(key, n, layout)

    def lane_fn(x, node):
        old = _unpack(node, old_args)
        tr, w, d = lanes.run(x, lambda ks: gf._update(old, constraints, new_args, ks))
        return _pack_top(tr), w, _cm_pack(d), _checks_out(tr)

    node, w, d, cs = vmap_tree(lane_fn, (lanes.xs, _pack_top(trace)), gf.name, "vupdate")
    return _unpack(node, new_args, n, _reduce_checks(cs)), w, ChoiceMap._from_leaves(d)


def vregenerate(gf, trace: Trace, selection: Selection, args=None, key=None, layout: str = "per_lane"):
    """Batched regenerate; returns (trace, weights [N]); per_lane: lane i equals the scalar call with keys[i]."""
    n = _check_batched(gf, trace, "vregenerate")
    if not isinstance(selection, Selection):
        raise TypeError(f"{gf.name}.vregenerate: selection must be a Selection (gm.select(...)), got {type(selection).__name__}")
    old_args = trace.args
    new_args = old_args if args is None else gf._check_args(args)
    lanes = _Lanes(key, n, layout)

    def lane_fn(x, node):
        old = _unpack(node, old_args)
        tr, w = lanes.run(x, lambda ks: gf._regenerate(old, selection, new_args, ks))
        return _pack_top(tr), w, _checks_out(tr)

    node, w, cs = vmap_tree(lane_fn, (lanes.xs, _pack_top(trace)), gf.name, "vregenerate")
    return _unpack(node, new_args, n, _reduce_checks(cs)), w


def lane(trace: Trace, i: int) -> Trace:
    """Particle `i` of a vectorized trace, as an ordinary (scalar) trace."""
    if trace.batch is None:
        raise ValueError("lane: expected a vectorized trace (batch is None)")
    if not -trace.batch <= i < trace.batch:
        raise IndexError(f"lane {i} out of range for a batch of {trace.batch}")
    leaves, rebuild = flatten(_pack_top(trace))
    node = rebuild([x[i] for x in leaves])
    return _unpack(node, trace.args, None, trace.checks)


class BatchedTraces(TraceViews):
    """The N particles of one vectorized trace, as scalar `Trace` views made on access (`lane`).

    `batched` may be given as a `Deferred`: it is made on first use.
    """

    noun = "particle"

    def __init__(self, batched, n: int):
        super().__init__(n)
        self._batched = batched

    @property
    def batched(self) -> Trace:
        self._batched = deferred.resolve(self._batched)
        return self._batched

    def _view(self, i: int) -> Trace:
        return lane(self.batched, i)

    def values(self, addr) -> mx.array:
        """The batched value `[N, ...]` at `addr` (no unbatching)."""
        return self.batched[addr]

    def __repr__(self) -> str:
        return f"BatchedTraces({self.n} particles of {getattr(self.batched.gen_fn, 'name', '?')})"
