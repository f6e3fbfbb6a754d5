"""`vmap(kernel, in_axes=0)`: run a kernel over batched args in one pass (`mx.vmap`).

Args: the kernel's args, batched along axis 0 (`in_axes` is 0 for every arg,
or a tuple with 0 or None per arg; None args are shared by all elements).
The number of elements n is the length of the first batched axis.

Addresses (decision): the choices are stored *and addressed* batched, as in
GenJAX: each kernel address `addr` holds one array whose axis 0 runs over the
elements, so element i's choice is `trace[addr][i]` (what `map_` calls
`(i, addr)`). Constraints give the n values of an address as one array of
leading size n; selections select an address for all elements. This keeps
every GFI operation one pass whatever n is; use `map_` to constrain or
select individual elements.

Return value: the kernel's return value with the element axis first.
Score: the sum of the elements' scores (`sum` over axis 0).
Zero elements (n = 0): a trace of zero elements, score 0 and weights 0, as
`map_` gives; its choices and return value are arrays of leading size 0 with
the kernel's shapes (MLX itself dies with SIGFPE when a vmapped sampler runs
over zero keys, so the kernel is traced over one placeholder element and only
the shapes of its lazy results are kept; nothing of it is evaluated).
The element keys are `mx.random.split(key, n)`, so element i equals the
kernel run alone with key i, bit for bit. A kernel that cannot be batched
raises `VectorizationError`.
"""

from __future__ import annotations

import mlx.core as mx

from .. import boundary as _boundary
from ..address import AddressError, from_path
from ..tree import flatten
from ..choicemap import ChoiceMap
from ..gfi import GenerativeFunction, check_args
from ..rng import KeyStream
from ..selection import Selection
from ..trace import Trace
from .. import vectorize as _v
from . import _util as u

__all__ = ["Vmap", "vmap"]

_K = ()  # site key of the batched kernel trace (its choices are not nested)


class Vmap(u.Structural, GenerativeFunction):
    """The vmap combinator (see the module docstring for addresses)."""

    def _key(self) -> tuple:
        return (self.kernel, self.in_axes)

    def __init__(self, kernel, in_axes=0):
        if not hasattr(kernel, "_simulate") or u.is_dist(kernel):
            raise TypeError(f"vmap: kernel must be a generative function (not a distribution), got {kernel!r}")
        if not (in_axes == 0 or (isinstance(in_axes, tuple) and all(a in (0, None) for a in in_axes))):
            raise ValueError(f"vmap: in_axes must be 0 or a tuple of 0/None per argument, got {in_axes!r}")
        self.kernel = kernel
        self.in_axes = in_axes
        self.name = f"vmap({u.name_of(kernel)})"

    def _axes(self, args) -> tuple:
        if self.in_axes == 0:
            return (0,) * len(args)
        if len(self.in_axes) != len(args):
            raise TypeError(f"{self.name}: in_axes has {len(self.in_axes)} entries for {len(args)} arguments")
        return self.in_axes

    def _n(self, args) -> int:
        ns = []
        for j, (a, ax) in enumerate(zip(args, self._axes(args))):
            if ax == 0:
                if not isinstance(a, mx.array) or a.ndim == 0:
                    raise TypeError(f"{self.name}: batched argument {j} must be an array with a leading axis, got {type(a).__name__}")
                ns.append(a.shape[0])
        if not ns:
            raise TypeError(f"{self.name}: at least one argument must be batched (in_axes 0)")
        if len(set(ns)) > 1:
            raise ValueError(f"{self.name}: batched arguments have different leading sizes {ns}")
        return ns[0]

    def _check_args(self, args: tuple) -> tuple:
        check_args(self, args)
        self._n(args)
        u.check_arity(self.kernel, len(args), self)
        return args

    def _split_args(self, args):
        ax = self._axes(args)
        batched = tuple(a for a, x in zip(args, ax) if x == 0)

        def lane_args(b):
            it = iter(b)
            return tuple(next(it) if x == 0 else a for a, x in zip(args, ax))

        return batched, lane_args

    def _run(self, fn, args, keys: KeyStream, extra=(), op="simulate"):
        n = self._n(args)
        batched, lane_args = self._split_args(args)
        lane_keys = mx.random.split(keys(), n)

        def lane(k, b, *ex):
            return fn(k, lane_args(b), *ex)

        return _vmap_tree(lane, (lane_keys, batched, *extra), self.name, op, n), n

    def _make(self, args, node, cs) -> Trace:
        kt = _v._unpack(node)
        checks = _v._reduce_checks(cs)
        return Trace(self, args, kt.retval, mx.sum(kt.score), {_K: kt}, checks)

    def _constraint_leaves(self, c: ChoiceMap, n: int):
        paths = list(c.paths())
        vals = []
        for p in paths:
            v = c._leaves[p]
            if v.ndim == 0 or v.shape[0] != n:
                raise AddressError(
                    f"{self.name}: the constraint at {from_path(u.full(p)) if p else '()'!r} must hold all {n} elements "
                    f"(an array of leading size {n}), got shape {tuple(v.shape)}; use map_ to constrain single elements"
                )
            vals.append(v)
        return paths, vals

    # -- GFI ----------------------------------------------------------------------------
    def _simulate(self, args, keys):
        kern = self.kernel

        def fn(k, a):
            t = kern._simulate(a, KeyStream(k))
            return _v._pack(t), _v._checks_out(t)

        (node, cs), _ = self._run(fn, args, keys)
        return self._make(args, node, cs)

    def _generate(self, args, constraints, keys):
        kern = self.kernel
        paths, vals = self._constraint_leaves(constraints, self._n(args))

        def fn(k, a, vs):
            t, w = kern._generate(a, ChoiceMap._from_leaves(dict(zip(paths, vs))), KeyStream(k))
            return _v._pack(t), w, _v._checks_out(t)

        (node, w, cs), _ = self._run(fn, args, keys, (vals,), "generate")
        return self._make(args, node, cs), mx.sum(w)

    def _update(self, trace, constraints, args, keys):
        kern = self.kernel
        n = self._n(args)
        old = trace.sites[_K]
        if old.score.shape[0] != n:
            raise ValueError(f"{self.name}: update cannot change the number of elements ({old.score.shape[0]} -> {n}); use map_")
        paths, vals = self._constraint_leaves(constraints, n)

        def fn(k, a, node, vs):
            t, w, d = kern._update(_v._unpack(node), ChoiceMap._from_leaves(dict(zip(paths, vs))), a, KeyStream(k))
            return _v._pack(t), w, dict(d._leaves), _v._checks_out(t)

        (node, w, d, cs), _ = self._run(fn, args, keys, (_v._pack(old), vals), "update")
        return self._make(args, node, cs), mx.sum(w), ChoiceMap._from_leaves(d)

    def _regenerate(self, trace, selection: Selection, args, keys):
        kern = self.kernel
        n = self._n(args)
        old = trace.sites[_K]
        if old.score.shape[0] != n:
            raise ValueError(f"{self.name}: regenerate cannot change the number of elements ({old.score.shape[0]} -> {n}); use map_")

        def fn(k, a, node):
            t, w = kern._regenerate(_v._unpack(node), selection, a, KeyStream(k))
            return _v._pack(t), w, _v._checks_out(t)

        (node, w, cs), _ = self._run(fn, args, keys, (_v._pack(old),), "regenerate")
        return self._make(args, node, cs), mx.sum(w)

    def _assess(self, args, choices):
        kern = self.kernel
        n = self._n(args)
        paths, vals = self._constraint_leaves(choices, n)
        batched, lane_args = self._split_args(args)

        collect = bool(_boundary._sinks)  # a user's assess collects the lanes' checks (genmlx.boundary)

        def fn(b, vs):
            with _boundary.collecting(collect) as sink:
                s, r = kern._assess(lane_args(b), ChoiceMap._from_leaves(dict(zip(paths, vs))))
            return s, r, [type(c)(c.ok, c.error) for c in sink or ()]

        s, r, cs = _vmap_tree(fn, (batched, vals), self.name, "assess", n)
        if cs:
            _boundary.collect(_v._reduce_checks(cs))
        return mx.sum(s), r

    def _project(self, trace, selection):
        kt = trace.sites[_K]
        kern = kt.gen_fn

        def fn(node):
            return kern._project(_v._unpack(node), selection)

        return mx.sum(_vmap_tree(fn, (_v._pack(kt),), self.name, "project", kt.score.shape[0]))


def _vmap_tree(fn, batched: tuple, name: str, op: str, n: int):
    """`vectorize.vmap_tree`, with zero elements made safe (see the module docstring).

    MLX's vmap of a sampler over a (0, 2) key array raises SIGFPE when evaluated;
    with zero elements the body runs over one zero placeholder element and every
    output leaf is replaced by a fresh empty array of the same trailing shape and dtype.
    """
    if n != 0:
        return _v.vmap_tree(fn, batched, name, op)
    leaves, rebuild = flatten(batched)
    pad = [mx.zeros((1,) + tuple(x.shape[1:]), x.dtype) for x in leaves]
    out = _v.vmap_tree(fn, rebuild(pad), name, op)
    outs, rebuild_out = flatten(out)
    return rebuild_out([mx.zeros((0,) + tuple(y.shape[1:]), y.dtype) for y in outs])


def vmap(kernel, in_axes=0) -> Vmap:
    """Run `kernel` over batched args in one pass; choices stored batched at the kernel's addresses."""
    return Vmap(kernel, in_axes)
