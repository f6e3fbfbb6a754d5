"""Vectorized passes compiled once and cached: `mx.compile` of a whole `vgenerate`.

`compiled_vgenerate` is `vectorize.vgenerate` compiled: it compiles the
whole vectorized pass once per (gen fn, structure of args, constraint
addresses and shapes, n, layout) and keeps the last 32. The compiled function
takes the key, the arrays of args and the constraint values as inputs and
returns every array of the packed trace, the weights and the checks'
predicates; the Python structure around them (distributions, addresses, check
messages) is the one recorded when it was traced. So a cache hit runs no Python
model code: the model must build the same trace structure for the same
signature (no Python state read from outside its args), as `mx.compile`
requires.

Vectorized importance sampling runs three passes of this kind
(genmlx.inference.importance): the lean pass (`vgenerate_values`: particle
values and weights only, so MLX fuses across sites), the checks pass
(`checks_of_values`: the parameter checks the weights do not guard) and the
batched trace of the same particles (`trace_of_values`, every choice given:
`vgenerate_given`, the plain pass it compiles, lives here because it needs the
handler's `given_latents`, and `genmlx.vectorize` sits below the handler).
The lean pass of a model that `genmlx.flat_density` flattens, observed at
scalar sites, scores the observations with the flattened density instead
(`_flat_values`): the observations arrive as one vector and sites of one form
are one `[N, G]` batch, so 100 scalar observations cost what one vector site
costs instead of 100 inputs and 100 chains of kernels.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import mlx.core as mx

from . import flat_density
from .checks import DeferredCheck, GuardedCheck
from .choicemap import ChoiceMap
from .evaluation import evaluate
from .handler import given_latents
from .rng import resolve
from .trace import Trace
from .tree import _spec
from .vectorize import (
    VectorizationError, _checks_out, _Lanes, _pack_top, _reduce_checks, _unpack, vgenerate, vmap_tree,
)

__all__ = ["compiled_vgenerate", "vgenerate_given", "vgenerate_values", "checks_of_values", "trace_of_values"]

_COMPILED: "OrderedDict[tuple, Any]" = OrderedDict()  # (also the flattened lean passes: `_flat_values`)
_COMPILED_MAX = 32  # cached compiled passes (least recently used dropped)
_UNCOMPILABLE = object()


class _NoSig(Exception):
    pass


def _sig(o, arrays: list):
    """A hashable signature of `o`'s structure (array shapes and dtypes, Python values); arrays collected."""
    t = type(o)
    if t is mx.array:
        arrays.append(o)
        return ("A", tuple(o.shape), o.dtype)
    if t is float:
        return (t, o.hex())  # exact: -0.0 and 0.0 differ, a NaN equals itself
    if o is None or t in (int, str, bool):
        return (t, o)
    if t in (list, tuple):
        if all(type(x) is float for x in o):  # data as a list of numbers (the xs of 100 sites): one pass
            return (t, float, tuple(map(float.hex, o)))
        return (t, tuple(_sig(x, arrays) for x in o))
    if t is dict:
        return (t, tuple((k, _sig(v, arrays)) for k, v in o.items()))
    try:
        hash(o)
    except TypeError:
        raise _NoSig from None
    return ("obj", o)


class CallKey(NamedTuple):
    """What a compiled pass's cache key takes from one call: its args' signature (`_sig`), the
    args' arrays in that order, and the observed leaves' signature. Made once per call by
    `call_key`: a vectorized IS call keys two passes with it (100 float args: ~60 us each time)."""

    args: tuple
    arrays: tuple
    leaves: tuple


def call_key(args, constraints: ChoiceMap) -> CallKey | None:
    """The call's part of the cache keys, or None when its args or observations have no signature."""
    arrays: list = []
    try:
        ck = CallKey(_sig(args, arrays), tuple(arrays), _leaf_sig(constraints._leaves))
        hash(ck)
    except (_NoSig, TypeError):
        return None
    return ck


_HOLE = object()  # where an array was, in a cached pass's skeleton of its args (which holds no arrays)


def _fill(o, it):
    """`o` with its arrays (or `_HOLE`s) replaced, in `_sig` order, by the next items of `it`."""
    t = type(o)
    if t is mx.array or o is _HOLE:
        return next(it)
    if t in (list, tuple):
        return t(_fill(x, it) for x in o)
    if t is dict:
        return {k: _fill(v, it) for k, v in o.items()}
    return o


def compiled_vgenerate(gf, args, constraints: ChoiceMap, n: int, key=None, layout: str = "per_lane"):
    """`vectorize.vgenerate` through a cached `mx.compile` of the whole vectorized pass (see the
    module docstring); the plain `vgenerate` when the pass cannot be compiled and cached."""
    got = _cached_pass("trace", gf, args, constraints, n, key, layout)
    if got is not None:
        return got
    return vgenerate(gf, args, constraints, n, key, layout)


def vgenerate_given(gf, args, constraints: ChoiceMap, given: dict, n: int, key, layout: str) -> Trace:
    """`vgenerate` with every unconstrained choice given per lane (`given`: {path: [N, ...]}); nothing is drawn."""
    lanes = _Lanes(key, n, layout)
    paths = tuple(given)
    base = dict(constraints._leaves)

    def lane_fn(x, vs):
        cm = ChoiceMap._from_leaves({**base, **dict(zip(paths, vs))})
        with given_latents(vs):  # the given latents' checks are not guarded by this pass's weight
            tr, _ = lanes.run(x, lambda ks: gf._generate(args, cm, ks))
        return _pack_top(tr), _checks_out(tr)

    node, cs = vmap_tree(lane_fn, (lanes.xs, list(given.values())), gf.name, "vgenerate")
    return _unpack(node, args, n, _reduce_checks(cs))


def vgenerate_values(gf, args: tuple, constraints: ChoiceMap, n: int, key, layout: str = "shared",
                     summarize: Callable | None = None, call: CallKey | None = None):
    """The lean compiled pass: (values of the unconstrained choices {path: [N]}, weights [N]).

    With `summarize` (a module-level function of the weights, part of the cache key):
    (values, weights, summarize(weights)), the summary computed in the same compiled pass.

    The same pass as `compiled_vgenerate` returning only what importance
    sampling needs (the floor's outputs: particles and weights): the per-site scores,
    distribution parameters and parameter checks are not outputs, so the compiled graph
    fuses across sites (an array parameter that is also checked would be materialized
    for its two consumers). The caller must evaluate `checks_of_values` (the checks of
    the same particles, a separate compiled pass) before trusting the weights;
    `trace_of_values` makes the full batched trace of these particles. None when the
    pass cannot be compiled and cached (then use `vgenerate`). `call`: `call_key(args,
    constraints)` if the caller has made it.
    """
    call = call if call is not None else call_key(args, constraints)
    if call is None:
        return None
    got = _flat_values(gf, args, constraints, n, key, layout, summarize, call)
    if got is not None:
        return got
    return _cached_pass("values", gf, args, constraints, n, key, layout, summarize=summarize, call=call)


# With few observed sites there is little to save (2-core CPU: Beta-Bernoulli's 10 observations took
# 1.4 ms flattened against 1.1 ms site by site at N = 3,000; on a GPU its site-by-site pass met its
# target, and the flattened one is not measured there yet). On the CPU the flattened weights also
# make an [N, G] intermediate that the site-by-site pass (whose per-site terms fuse into one [N] sum)
# does not: past a few million elements that costs more than the inputs and kernels it saves
# (100-point regression: 0.44 against 0.95 ms at N = 1,000, 3.9 against 6.6 ms at N = 20,000, 32
# against 23 ms at N = 100,000). A GPU reads such a batch at TB/s.
FLAT_MIN_SITES = 32
FLAT_CPU_MAX_ELEMENTS = 1 << 22


def _flat_values(gf, args, constraints: ChoiceMap, n: int, key, layout: str, summarize, call: CallKey):
    """`vgenerate_values` with the weights from the flattened density of the observed sites, or None
    (a model it cannot flatten, array args, fewer than `FLAT_MIN_SITES` observations or ones that
    are not scalars of one dtype, or an [N, G] batch too large for the CPU).

    The particles are the same draws as the site-by-site pass's (the same `vgenerate`, whose own
    weights the compiled program drops); the weights agree to float32 rounding (tests).
    """
    obs = constraints._leaves
    vals = list(obs.values())
    if not vals or any(type(v) is not mx.array or v.ndim for v in vals) or len({v.dtype for v in vals}) > 1:
        return None
    cpu = mx.default_device().type == mx.DeviceType.cpu
    if len(vals) < FLAT_MIN_SITES or (cpu and n * len(vals) > FLAT_CPU_MAX_ELEMENTS):
        return None
    if call.arrays:  # the flattened density keeps the args' values: only args that are part of the signature
        return None
    sig = ("flat", gf, call.args, call.leaves, n, layout, summarize)
    try:
        hash(sig)
    except TypeError:
        return None
    entry = _COMPILED.get(sig)
    if entry is _UNCOMPILABLE:
        return None
    host_data = _given_as_host_data(constraints)
    if cpu and not host_data:
        evaluate(vals)  # MLX-array observations may be lazy: one evaluation, not one per value read
    data = _observation_vector(vals, on_host=cpu or host_data)
    key = resolve(key)
    if entry is None:
        entry = _flat_entry(gf, args, constraints, n, layout, summarize)
        outs = _first_call(entry[0], key, data) if entry is not None else None
        _remember(sig, entry if outs is not None else _UNCOMPILABLE)
        if outs is None:  # the site-by-site pass does what the flattened one cannot
            return None
    else:
        _COMPILED.move_to_end(sig)
        outs = entry[0](key, data)
    paths = entry[1]["paths"]
    values = dict(zip(paths, outs[:len(paths)]))
    w = outs[len(paths)]
    return (values, w) if summarize is None else (values, w, outs[len(paths) + 1])


def _observation_vector(vals: list, on_host: bool) -> mx.array:
    """The scalar observations as one vector input: read on the host (~0.3 us each; an MLX stack of
    100 scalars costs ~300 us on the CPU and a copy kernel per scalar on a GPU), or stacked by MLX
    (no read back of arrays a GPU may hold)."""
    return mx.array([v.item() for v in vals], vals[0].dtype) if on_host else mx.stack(vals)


def _given_as_host_data(constraints: ChoiceMap) -> bool:
    """Whether every observation was given as a Python number or NumPy data (`ChoiceMap._given`
    lists the ones given as MLX arrays): their arrays were made on the host this call, in memory the
    host reads without waiting for a device (MLX's CUDA backend keeps scalars in managed memory)."""
    given = getattr(constraints, "_given", None)
    return given is not None and not given[1]


def _flat_entry(gf, args, constraints: ChoiceMap, n: int, layout: str, summarize):
    """(compiled lean pass of one observation vector, box with the latent paths), or None when the
    model does not flatten."""
    obs_paths = tuple(constraints._leaves)
    try:  # a representative trace: the latent choices' paths and shapes (a fixed key: no global draw)
        tr, _ = gf.generate(args, constraints, key=mx.random.key(0))
    except Exception:  # noqa: BLE001 - whatever fails here, the site-by-site pass reports
        return None
    latent = [p for p in tr.get_choices()._leaves if p not in constraints._leaves]
    flat = flat_density.build(gf, args, tr.get_choices(), latent, data=obs_paths)
    if flat is None:
        return None
    box: dict = {}

    def fn(k, data):
        # the constraints as slices of the vector: they feed only vgenerate's own weights, which
        # nothing returned reads (the compiled program leaves them out)
        cm = ChoiceMap._from_leaves({p: data[i] for i, p in enumerate(obs_paths)})
        tr, _ = vgenerate(gf, args, cm, n, k, layout)
        lat = {p: v for p, v in tr.get_choices()._leaves.items() if p not in cm._leaves}
        box["paths"] = tuple(lat)
        w = flat.log_density([lat[q] for q in flat.variables], include=obs_paths, batch=1, data=data)
        return [*lat.values(), w, *([summarize(w)] if summarize is not None else [])]

    return mx.compile(fn), box


def checks_of_values(gf, args: tuple, constraints: ChoiceMap, values: dict, n: int, key=None,
                     layout: str = "shared", call: CallKey | None = None) -> tuple:
    """The unguarded parameter checks (one DeferredCheck over all lanes, or none) of the trace
    `trace_of_values` makes.

    A compiled pass returning only the check predicates, so their evaluation costs one
    fused pass over the parameters, not the whole trace. The checks the weights guard
    (`checks.GuardedCheck`) are left out: they hold while every weight is finite; when one
    is not, evaluate the full trace's checks. None if it cannot be compiled. `call` as in
    `vgenerate_values`.
    """
    return _cached_pass("checks", gf, args, constraints, n, key, layout, values, call=call)


def trace_of_values(gf, args: tuple, constraints: ChoiceMap, values: dict, n: int, key=None,
                    layout: str = "shared") -> Trace:
    """The batched trace with `constraints` and the per-lane choice `values` ({path: [N, ...]}).

    Every choice is given, so nothing is drawn: lane i is `generate(args, constraints
    + values[i])`'s trace, its choices exactly `values[i]`. Compiled and cached like
    `compiled_vgenerate`; the arrays are left unevaluated (lazy).
    """
    got = _cached_pass("given", gf, args, constraints, n, key, layout, values)
    if got is not None:
        return got
    return vgenerate_given(gf, args, constraints, values, n, key, layout)


def _leaf_sig(leaves: dict) -> tuple:
    out = []
    for p, v in leaves.items():
        if type(v) is not mx.array:
            raise _NoSig
        out.append((p, tuple(v.shape), v.dtype))
    return tuple(out)


def _cached_pass(mode: str, gf, args, constraints: ChoiceMap, n: int, key, layout: str, given: dict | None = None,
                 summarize: Callable | None = None, call: CallKey | None = None):
    """One cached `mx.compile` of a vectorized pass (mode "trace", "values", "checks" or "given"), or None."""
    call = call if call is not None else call_key(args, constraints)
    if call is None:
        return None
    arrays, leaves = call.arrays, constraints._leaves
    given = given or {}
    try:
        sig = (mode, gf, call.args, call.leaves, _leaf_sig(given), n, layout, summarize)
        hash(sig)
    except (_NoSig, TypeError):
        return None
    entry = _COMPILED.get(sig)
    if entry is _UNCOMPILABLE:
        return None
    key = resolve(key)
    inputs = [key, *arrays, *leaves.values(), *given.values()]
    if entry is None:
        paths, gpaths = tuple(leaves), tuple(given)
        box: dict = {}
        na, nc = len(arrays), len(leaves)
        skeleton = _fill(args, iter([_HOLE] * na))  # the cache keeps no array of this call alive

        def fn(k, *xs):
            a = _fill(skeleton, iter(xs[:na]))
            cm = ChoiceMap._from_leaves(dict(zip(paths, xs[na:na + nc])))
            if mode in ("given", "checks"):
                tr, w = vgenerate_given(gf, a, cm, dict(zip(gpaths, xs[na + nc:])), n, k, layout), None
            else:
                tr, w = vgenerate(gf, a, cm, n, k, layout)
            # the checks leave as one predicate vector (one output, one check to read)
            cs = [c for c in tr.checks if not isinstance(c, GuardedCheck)] if mode == "checks" else tr.checks
            oks = [mx.stack([c.ok for c in cs])] if cs else []
            out: list = []
            if mode == "values":
                lat = {p: v for p, v in tr.get_choices()._leaves.items() if p not in cm._leaves}
                spec = _spec((list(lat.values()), [] if summarize is None else [summarize(w)], w), out)
                box["paths"] = tuple(lat)
            elif mode == "checks":
                spec = _spec(([], oks, None), out)
            else:
                spec = _spec((_pack_top(tr), oks, w), out)
            box["rebuild"], box["errors"] = _builder(spec), [c.error for c in cs]
            return out

        entry = (mx.compile(fn), box)
        outs = _first_call(entry[0], *inputs)
        _remember(sig, entry if outs is not None else _UNCOMPILABLE)
        if outs is None:  # the plain pass (which raises its own errors)
            return None
    else:
        _COMPILED.move_to_end(sig)
        if mode == "checks" and not entry[1]["errors"]:
            return ()  # this model's pass has no unguarded check: nothing to run
        outs = entry[0](*inputs)
    box = entry[1]
    first, mid, w = box["rebuild"](iter(outs))  # mid: the checks' predicates (the summary in "values")
    if mode == "values":
        vals = dict(zip(box["paths"], first))
        return (vals, w) if summarize is None else (vals, w, mid[0])
    checks = (DeferredCheck(mx.all(mid[0]), _first_error(mid[0], box["errors"])),) if mid else ()
    if mode == "checks":
        return checks
    tr = _unpack(first, args, n, checks)
    return tr if mode == "given" else (tr, w)


def _first_call(fn, *inputs):
    """The first call of a new compiled pass, or None when `mx.compile` cannot trace it."""
    try:
        return fn(*inputs)
    except VectorizationError:
        raise
    except Exception:  # noqa: BLE001 - something mx.compile cannot trace
        return None


def _remember(sig, entry) -> None:
    """Cache a compiled pass (or `_UNCOMPILABLE`) under its signature; the least recently used go."""
    _COMPILED[sig] = entry
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)


def _builder(spec) -> Callable:
    """`tree._build(spec, it)` as a tree of closures made once (no per-node dispatch on every rebuild)."""
    kind = spec[0]
    if kind == "leaf":
        return next
    if kind == "static":
        v = spec[1]
        return lambda it: v
    if kind == "obj":
        rb, f = spec[1], _builder(spec[2])
        return lambda it: rb(f(it))
    if kind == "dict":
        cls, items = spec[1], [(k, _builder(x)) for k, x in spec[2]]
        if cls is dict:
            return lambda it: {k: f(it) for k, f in items}
        return lambda it: cls((k, f(it)) for k, f in items)
    cls, fs = spec[1], [_builder(x) for x in spec[2]]
    if kind == "named":
        return lambda it: cls(*[f(it) for f in fs])
    if cls is list:
        return lambda it: [f(it) for f in fs]
    if cls is tuple:
        return lambda it: tuple([f(it) for f in fs])
    return lambda it: cls([f(it) for f in fs])


def _first_error(oks: mx.array, errors: list):
    """The error of the first False entry of the (evaluated) predicate vector `oks`."""

    def error():
        return errors[oks.tolist().index(False)]()

    return error
