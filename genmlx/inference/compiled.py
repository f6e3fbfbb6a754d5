"""Compiled multi-iteration MH: K iterations fused by `mx.compile` into one driver step.

The trace's array leaves (`genmlx.tree.flatten`) go into a compiled function
that runs K selection-MH iterations (`mh_step`, the lazy `mx.where` accept)
and returns the new leaves, the `[K]` accept statistics and the values of the
changed choices of every `thin`-th iteration stacked along a new axis (a kept
trace is rebuilt from its choices on access). The randomness is drawn up
front: the step's K keys are an input. One driver step = K iterations
(`iterations_per_step=K` in the driver's events), one `mx.eval`, no sync.

Requirements: a static-structure model — the same sites with the same shapes
every iteration, and no Python decision on a random value (MLX cannot
evaluate while compiling). The function is traced once per (model, selection,
K, thin, args, trace structure and leaf shapes); later steps and later calls reuse
it (`kernel_for` keeps the last 16 kernels).

The weight of each iteration is computed the way the floor computes it when
the model is a `@gm.gen` function (nested ones included) of distribution
sites: the change in log density of the retained sites, with the old one
carried through the K iterations as one scalar. The resampled sites' prior log
densities cancel in the regenerate weight and the intermediate states' scores
are never read, so `mx.compile` drops both from the graph; the block's last
state is re-scored once from its choices (`generate`). Other models (opaque
generative functions, combinators) run the regenerate weight as `mh_step`
does.

Same chain: with the same keys, the compiled kernel makes the same
proposals and the same accept decisions as K calls of `mh_step`, and
`compiled_mh(..., key=k)` keeps the same traces as `mh(..., key=k)` when
`burn` and `n_samples * thin` are multiples of K (iteration i uses the i-th key
of the same split; tests/inference/test_compiled.py checks both). The compiled graph fuses
elementwise operations, which may change a floating-point result in its last
bits; a proposal whose acceptance probability sits exactly on the uniform's
value could then decide differently, and the chains would part from there.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..checks import DeferredCheck, GuardedCheck
from ..choicemap import ChoiceMap
from ..distributions.base import Distribution
from ..dynamic import DynamicGenFn
from ..rng import KeyStream
from ..sums import signed_sum
from ..trace import Trace, TraceViews
from ..tree import flatten
from ..vectorize import _pack_top, _unpack
from . import driver
from ._common import (
    check_count, finish_stats, init_trace, mh_accept, resolve_selection, run_name, scalar_paths, select_trace, split_key,
)
from .mh import mh_step, summarize_mcmc
from .result import InferenceResult

__all__ = ["compiled_mh", "CompiledMH", "StackedTraces", "kernel_for"]


class CompiledMH:
    """K fused MH iterations on traces shaped like `template` (a static-structure model).

    `kernel(keys [K, 2], trace) -> (trace, samples, stats)`: `samples` is the
    new trace with the values of its changed choices stacked `[K // thin, ...]`
    (the states after iterations 0, thin, 2 thin, ... of the block; scores and
    parameters are those of the last state: `view` rebuilds a whole trace),
    `stats` holds `accepted` and `accept_prob` of shape `[K]`. Only what the
    result needs leaves the compiled function: the new state's leaves, the
    stacked choice values, the statistics and one check flag.
    """

    def __init__(self, template: Trace, selection, k: int, thin: int = 1):
        self.k = check_count("compiled_mh", "iterations_per_step", k, 1)
        self.thin = check_count("compiled_mh", "thin", thin, 1)
        self.selection = selection
        self.args = template.args
        self.gen_fn = template.gen_fn
        leaves, self._rebuild_node = flatten(_pack_top(template))
        self.n_leaves = len(leaves)
        self.paths = list(template.get_choices().paths()) if template.sites is not None else []
        self.stacked_paths: list | None = None  # the choices whose values change (set when traced)
        self._check_error = None
        self.lean = _sums_its_sites(template)
        self._fn = mx.compile(self._body)

    def _body(self, keys, *leaves):
        tr = self._rebuild(leaves)
        ins = set(map(id, leaves))
        accs, probs, oks, kept = [], [], [], []
        step = _LeanStep(self.selection, self.paths) if self.lean else None
        for j in range(self.k):
            tr, st = step(keys[j], tr) if step else mh_step(keys[j], tr, self.selection)
            accs.append(st["accepted"])
            probs.append(st["accept_prob"])
            for c in tr.checks:
                if isinstance(c, GuardedCheck):  # failed, it made the weight NaN or -inf: rejected
                    continue
                oks.append(c.ok if c.ok.ndim == 0 else mx.all(c.ok))
                if self._check_error is None:  # (never one that holds the body's tracer arrays)
                    self._check_error = getattr(c.error, "static", c.error)
            if j % self.thin == 0:  # the state after iterations 0, thin, 2 thin, ... of the block
                kept.append(tr)
        out = self._flatten(self._rescored(tr) if step else tr)
        if len(out) != self.n_leaves:
            raise ValueError("compiled_mh: the trace changed structure during an iteration (needs a static-structure model)")
        paths = [p for p in self.paths if id(tr._find(p).retval) not in ins]
        self.stacked_paths = paths
        stacked = [mx.stack([t._find(p).retval for t in kept]) for p in paths] if kept else []
        ok = _all_of(oks) if oks else mx.array(True)
        return [*out, mx.stack(accs), mx.stack(probs), ok, *stacked]

    def _rescored(self, tr: Trace) -> Trace:
        """`tr` scored anew from its choices: its scores are lean steps' unread, unmerged ones."""
        choices = {p: tr._find(p).retval for p in self.paths}
        fresh, _ = self.gen_fn._generate(self.args, ChoiceMap._from_leaves(choices), KeyStream(_VIEW_KEY))
        return fresh

    # Traces cross mx.compile as plain trees that include each site's distribution
    # parameters (vectorize's packing), so rebuilt traces hold current parameters.
    def _flatten(self, tr: Trace) -> list:
        return flatten(_pack_top(tr))[0]

    def _rebuild(self, leaves: list, checks: tuple = ()) -> Trace:
        return _unpack(self._rebuild_node(list(leaves)), self.args, None, checks)

    def __call__(self, keys, trace: Trace):
        leaves = self._flatten(trace)
        try:
            outs = self._fn(keys, *leaves)
        except ValueError as e:
            if "eval" in str(e) and "transform" in str(e):
                raise ValueError(
                    f"compiled_mh: {run_name(trace.gen_fn)} cannot be compiled: its Python code needs the value of "
                    "an array (a branch on a random choice, .item(), or a proposal that changes the trace's "
                    "structure); use infer.mh instead") from None
            raise
        n = self.n_leaves
        acc, prob, ok = outs[n], outs[n + 1], outs[n + 2]
        checks = (DeferredCheck(ok, self._check_error),) if self._check_error is not None else ()
        new = self._rebuild(outs[:n], checks)
        samples = _Block(new, dict(zip(self.stacked_paths, outs[n + 3:])))
        return new, samples, {"accepted": acc, "accept_prob": prob}

    def view(self, samples: "_Block", i: int) -> Trace:
        """Iteration `i` of a block of kept states, as an ordinary trace (re-scored from its choices)."""
        choices = {p: samples.values[p][i] if p in samples.values else samples.last._find(p).retval
                   for p in self.paths}
        tr, _ = self.gen_fn.generate(self.args, ChoiceMap._from_leaves(choices), key=_VIEW_KEY)
        return tr


_VIEW_KEY = mx.random.key(0)  # generate with every choice constrained draws nothing


class _LeanStep:
    """`mh_step` with the weight as the change in log density of the retained sites.

    The same proposal (`regenerate`, with the keys `mh_step` uses) and the same
    accept rule; the regenerate weight itself is left unread. The retained
    sites (a value the proposal kept, by identity) are found on the first
    iteration; their old log density is carried as one scalar.
    """

    def __init__(self, selection, paths: list):
        self.selection, self.paths = selection, paths  # paths: every choice's address
        self.retained: list | None = None
        self.ll = None

    def __call__(self, key, tr: Trace):
        ks = KeyStream(key)
        new, _ = tr.gen_fn._regenerate(tr, self.selection, tr.args, ks)
        if self.retained is None:
            self.retained = [p for p in self.paths if new._find(p).retval is tr._find(p).retval]
            self.ll = _log_density(tr, self.retained)
        lln = _log_density(new, self.retained)
        accept, stats = mh_accept(ks(), lln - self.ll)
        self.ll = mx.where(accept, lln, self.ll)
        return select_trace(accept, new, tr), stats


def _log_density(tr: Trace, paths: list):
    return signed_sum([tr._find(p).score for p in paths]) if paths else mx.array(0.0)


def _sums_its_sites(tr: Trace) -> bool:
    """The trace's score is the sum of its distribution sites' scores (`@gm.gen` functions all the way)."""
    if tr.sites is None:
        return isinstance(tr.gen_fn, Distribution)
    return type(tr.gen_fn) is DynamicGenFn and all(_sums_its_sites(st) for st in tr.sites.values())


def _all_of(oks: list):
    return oks[0] if len(oks) == 1 else mx.all(mx.stack(oks))


class _Block:
    """One driver step's kept states: the last state and the stacked values of the changed choices."""

    __slots__ = ("last", "values")

    def __init__(self, last: Trace, values: dict):
        self.last, self.values = last, values

    def _genmlx_arrays(self):
        yield self.last
        yield from self.values.values()

    def _find(self, p):
        v = self.values.get(p)
        st = self.last._find(p)
        return st if v is None else Trace(st.gen_fn, st.args, v, st.score)

    @property
    def sites(self):
        return {p: self._find(p) for p in self.last.sites}


_cache: dict = {}
_CACHE_SIZE = 16


def _static_key(x):
    """A hashable stand-in for a static part of a trace's structure (arrays: shape and dtype)."""
    if isinstance(x, mx.array):
        return ("a", tuple(x.shape), x.dtype)
    if isinstance(x, (list, tuple)):
        return (type(x), tuple(_static_key(y) for y in x))
    if isinstance(x, dict):
        return (type(x), tuple((k, _static_key(v)) for k, v in x.items()))
    try:
        hash(x)
        return (type(x), x)
    except TypeError:
        return ("id", id(x))


def _args_key(x):
    # args are baked into the compiled function: arrays by identity (the entry keeps them alive)
    if isinstance(x, mx.array):
        return ("a", id(x))
    if isinstance(x, (list, tuple)):
        return (type(x), tuple(_args_key(y) for y in x))
    if isinstance(x, dict):
        return (type(x), tuple((k, _args_key(v)) for k, v in x.items()))
    try:
        hash(x)
        return (type(x), x)
    except TypeError:
        return ("id", id(x))


def _structure_key(tr: Trace):
    g = tr.gen_fn
    if tr.sites is None:
        d = getattr(g, "__dict__", {})
        return (type(g), _static_key(tr.retval), tuple((k, _static_key(v)) for k, v in d.items() if k[0] != "_"
                                                        or isinstance(v, mx.array)))
    return (id(g), _static_key(tr.retval) if isinstance(tr.retval, mx.array) else None, tr.aux if _hashable(tr.aux) else id(tr.aux),
            tuple((p, _structure_key(st)) for p, st in tr.sites.items()))


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


def kernel_for(template: Trace, selection, k: int, thin: int) -> CompiledMH:
    """A `CompiledMH` for traces shaped like `template`, reused across calls (its compiled function
    is traced once per model, selection, K, thin, args and trace structure)."""
    try:
        key = (id(template.gen_fn), selection._paths, selection._all, selection._neg, k, thin,
               _args_key(template.args), _structure_key(template))
        hash(key)
    except TypeError:
        return CompiledMH(template, selection, k, thin)
    hit = _cache.get(key)
    if hit is not None and hit.gen_fn is template.gen_fn:
        _cache[key] = _cache.pop(key)  # most recently used last
        return hit
    kern = CompiledMH(template, selection, k, thin)
    _cache[key] = kern
    while len(_cache) > _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    return kern


class StackedTraces(TraceViews):
    """Kept traces of a compiled run: views into per-step stacked traces, made on access."""

    noun = "sample"

    def __init__(self, kernel: CompiledMH, blocks: list, per_block: int, n: int):
        super().__init__(n)
        self.kernel, self.blocks, self.per_block = kernel, blocks, per_block

    def _view(self, i: int) -> Trace:
        b, j = divmod(i, self.per_block)
        return self.kernel.view(self.blocks[b], j)

    def values(self, path):
        """All kept values at `path` as a list (one batched copy, no per-trace views)."""
        from ..address import to_path

        p = to_path(path)
        vals = [blk._find(p).retval for blk in self.blocks]
        if vals and vals[0].ndim == self.blocks[0].last._find(p).retval.ndim:  # a value no iteration changes
            vals = [mx.broadcast_to(v, (self.per_block, *v.shape)) for v in vals]
        return mx.concatenate(vals)[: self.n].tolist() if vals else []


def compiled_mh(model, args: tuple, observations=None, *, selection=None, n_samples: int, burn: int = 0,
                thin: int = 1, iterations_per_step: int | None = None, key=None, callback=None,
                progress=None) -> InferenceResult:
    """Selection MH with K iterations per driver step, compiled (`mx.compile`) and sync-free.

    Args:
        iterations_per_step: K (default: the multiple of `thin` nearest 50);
            must be a multiple of `thin`. `burn` is rounded up to a multiple of K.

    Returns:
        Like `mh`: `.traces` (a sequence of views, one per kept iteration,
        `.traces.values(addr)` for all values at once), per-iteration
        `accepted` / `accept_prob`, `acceptance_rate`, `ess_bulk`, `ess_tail`,
        `r_hat`, `syncs` (0 for a static model), `iterations_per_step`.
    """
    n_samples = check_count("compiled_mh", "n_samples", n_samples, 0)
    burn = check_count("compiled_mh", "burn", burn, 0)
    thin = check_count("compiled_mh", "thin", thin, 1)
    k = iterations_per_step if iterations_per_step is not None else thin * max(1, round(50 / thin))
    k = check_count("compiled_mh", "iterations_per_step", k, 1)
    if k % thin:
        raise ValueError(f"compiled_mh: iterations_per_step ({k}) must be a multiple of thin ({thin})")
    k_init, k_run = split_key(key)
    tr, obs = init_trace("compiled_mh", model, args, observations, k_init)
    sel = resolve_selection("compiled_mh", tr, obs, selection)
    kernel = kernel_for(tr, sel, k, thin)
    per_block = k // thin
    burn_steps = math.ceil(burn / k)
    n_steps = burn_steps + math.ceil(n_samples / per_block)

    # Iteration i uses the i-th of split(k_run, iterations): the keys `mh` gives its driver
    # steps, so mh and compiled_mh with the same key run the same chain.
    all_keys = mx.random.split(k_run, n_steps * k).reshape(n_steps, k, 2)
    mx.eval(all_keys)
    counter = [0]

    def step(key_, state):
        keys = all_keys[counter[0]]
        counter[0] += 1
        new, samples, stats = kernel(keys, state)
        return driver.Step(new, samples, stats)

    res = driver.run(step, tr, n_steps, algorithm="compiled_mh", model=run_name(model), key=k_run,
                     params={"n_samples": n_samples, "burn": burn, "thin": thin, "iterations_per_step": k},
                     burn=burn_steps, iterations_per_step=k, callback=callback, progress=progress,
                     summarize=summarize_mcmc)
    traces = StackedTraces(kernel, res.samples, per_block, min(n_samples, len(res.samples) * per_block))
    stats = finish_stats(res)
    stats["iterations_per_step"] = k
    paths = scalar_paths(tr, sel, obs)
    if len(traces) >= 4 and paths:
        from .diagnostics import chain_summaries

        import numpy as np

        stats.update(chain_summaries({p[0] if len(p) == 1 else p:
                                      np.asarray(traces.values(p), dtype=np.float64)[None] for p in paths}))
    return InferenceResult(traces, stats, state=res.state)
