"""Compiled multi-iteration MH: K iterations of selection MH as one compiled MLX program per driver step.

Selection MH on a static-structure model (the same sites with the same
shapes every iteration, no Python decision on a random value) is an
independence sampler: `regenerate` redraws the selected choices from their
prior given the unselected ones, and those never change along the chain. So
a block of K iterations draws its K proposals at once, one `mx.vmap` of
`regenerate` over the K iteration keys from a fixed reference trace (the
run's first state), scores them as a `[K]` batch, and resolves the K accept
decisions with `accept_scan.resolve` in O(log K) array operations (one kernel on a CUDA GPU)
instead of K dependent scalar steps. The kept states are gathered from the
proposals by index. One driver step = K iterations (`iterations_per_step=K`
in the driver's events), one evaluation (pipelined), no sync; the graph's size grows with
log K, so a larger block never costs more per iteration.

The chain's state between blocks (`ChainState`) is the values of the choices
the proposals change and the state's log density `L`: for a model that is a
`@gm.gen` function of distribution sites (nested ones included), the log
density of the retained (unselected) sites, so the acceptance ratio of
proposal j from state c is `L_j - L_c` (the regenerate weight, with the
prior terms of the resampled sites cancelled); for other models (opaque
generative functions, combinators), the regenerate weight from the
reference trace. Traces are rebuilt from choices only where asked for
(`StackedTraces` views, the run's final state).

Same chain: with the same keys, the block makes the same proposals and the
same accept decisions as K calls of `mh_step`, and `compiled_mh(..., key=k)`
keeps the same traces as `mh(..., key=k)` when `burn` and `n_samples * thin`
are multiples of K (iteration i uses the i-th key of the same split;
tests/inference/test_compiled.py checks both). The lean density differs from
`mh_step`'s regenerate weight in its last bits; a proposal whose acceptance
probability sits exactly on its uniform's value could then decide
differently, and the chains would part from there.

The function is traced once per (model, selection, K, thin, args and trace
structure); later steps and later calls reuse it (`kernel_for` keeps the
last 16 kernels).

`CompiledMH.step` is `mh(compile=True)`'s one iteration for the same models,
one program of the changed values and `L` (the same chain, with the same
caveat about the last bits of the density); its states are `ChainTrace`s.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from .. import boundary, flat_density
from ..address import to_path
from ..checks import DeferredCheck, GuardedCheck
from ..choicemap import ChoiceMap
from ..deferred import Deferred
from ..distributions.base import Distribution
from ..dynamic import DynamicGenFn
from ..evaluation import evaluate
from ..memory import materialize
from ..rng import KeyStream, lane_layout, row
from ..sums import signed_sum
from ..trace import Trace, TraceViews
from ..tree import flatten, mark_ready
from ..vectorize import VectorizationError, _pack_top, _unpack, vmap_tree
from . import driver
from ._common import (
    check_count, finish_stats, init_trace, resolve_selection, run_name, scalar_paths, split_key,
)
from .accept_scan import resolve
from .kernel_keys import KernelCache, args_key, structure_key
from .mh import summarize_mcmc
from .result import InferenceResult

__all__ = ["compiled_mh", "CompiledMH", "ChainState", "ChainTrace", "StackedTraces", "kernel_for", "KEY_LAYOUTS"]

KEY_LAYOUTS = ("block", "per_iteration")


class ChainState:
    """A compiled chain between blocks: the changed choices' values, the log density `ll` the accept
    rule compares, and the block's deferred parameter checks (evaluated by the driver)."""

    __slots__ = ("values", "ll", "checks")

    def __init__(self, values: tuple, ll, checks: tuple = ()):
        self.values, self.ll, self.checks = values, ll, checks

    def _genmlx_arrays(self):
        yield from self.values
        yield self.ll


class CompiledMH:
    """K fused MH iterations on traces shaped like `template` (a static-structure model).

    `block(keys, state, reference leaves) -> (state, kept, stats)` (keys: the step's
    one key for keys="block", the K iteration keys `[K, 2]` for "per_iteration"): `kept`
    holds the values of the changed choices stacked `[K // thin, ...]` (the
    states after iterations 0, thin, 2 thin, ... of the block), `stats` the
    `[K]` arrays `accepted` and `accept_prob`. `kernel(keys, trace)` runs one
    block from a trace and returns `(trace, kept, stats)`.
    """

    def __init__(self, template: Trace, selection, k: int, thin: int = 1, keys: str = "block"):
        self.k = check_count("compiled_mh", "iterations_per_step", k, 1)
        self.thin = check_count("compiled_mh", "thin", thin, 1)
        if keys not in KEY_LAYOUTS:
            raise ValueError(f"compiled_mh: keys must be one of {KEY_LAYOUTS}, got {keys!r}")
        self.selection = selection
        self.args = template.args
        self.gen_fn = template.gen_fn
        self.paths = list(template.get_choices().paths()) if template.sites is not None else []
        # Which choices a proposal changes: one regenerate outside the compiled function (lazy, never evaluated).
        trial, _ = self.gen_fn._regenerate(template, selection, self.args, KeyStream(_VIEW_KEY))
        self.changed = [p for p in self.paths if _value(trial, p) is not _value(template, p)]
        self.retained = [p for p in self.paths if p not in set(self.changed)]
        self.changed_index = {p: j for j, p in enumerate(self.changed)}
        self.lean = _sums_its_sites(template)
        self.flat = None
        if keys == "block" and self.lean and self.changed:
            flat = flat_density.build(self.gen_fn, self.args, template.get_choices(), self.changed)
            if flat is not None and not flat.checked():  # unguarded checks: the lanes report them by name
                self.flat = flat
        self.keys = "block" if self.flat is not None else "per_iteration"
        self.constants = _constants(template, self.retained)
        self._order = [st.path for st in self.flat.sites if st.path in set(self.changed)] if self.flat else []
        self._rebuild_node = flatten(_pack_top(template))[1]
        self._check_errors: list = []
        self._fn = mx.compile(self._block)
        if k == 1 and keys == "per_iteration" and self.lean and self.changed:  # `step`'s: mh(compile=True)
            self._template_leaves = tuple(flatten(_pack_top(template))[0])
            evaluate(self._template_leaves)  # constants of the program: never a pending graph
            self._one_fn = mx.compile(self._one)

    # -- the compiled block ------------------------------------------------------------------
    def _block(self, keys, ll, *ins):
        nc = len(self.changed)
        if self.flat is not None:
            props, lln, logu, oks = self._flat_proposals(keys, ins[:nc])
        else:
            props, lln, logu, oks = self._lane_proposals(keys, ins[nc:])
        lln = lln.astype(mx.float32)
        # c [K + 1]: the state after each iteration (0: the block's start, j: proposal j); ll_last: its density
        c, accepted, prob, ll_last = resolve(lln, logu, ll)
        rejected = mx.logical_not(accepted)
        ok = [mx.all(mx.logical_or(o, rejected)) for o in oks]  # only accepted proposals' checks matter
        kept_rows = c[1::self.thin]
        new_values, kept = [], []
        for v, p in zip(ins[:nc], props):
            every = mx.concatenate([v[None], p])
            rows = every[kept_rows]
            kept.append(rows)
            # thin = 1: the last kept row is the last state, a view (a gather is a kernel launch on a GPU)
            new_values.append(mx.squeeze(rows[-1:], 0) if self.thin == 1 else every[c[-1]])
        return [*new_values, ll_last, accepted, prob, *ok, *kept]

    def _flat_proposals(self, key, values):
        """keys="block": the K proposals drawn site by site as `[K]` batches from the block's one key,
        scored by the flattened density of the retained sites (`genmlx.flat_density`)."""
        flat, k = self.flat, self.k
        ks = list(mx.random.split(key, len(self.changed) + 1))  # views (ks[j] would be a gather: a launch)
        index = {p: j for j, p in enumerate(self.changed)}
        props: list = [None] * len(self.changed)
        for p in self._order:  # visit order: a site's parameters read only earlier proposals
            j = index[p]
            if not flat.depends(p):
                props[j] = flat.site_dist(p, None)._sample(ks[j], (k,))
                continue
            done = [i for i, x in enumerate(props) if x is not None]

            def draw(kk, *xs, p=p, done=done):
                v = list(values)
                for i, x in zip(done, xs):
                    v[i] = x
                return flat.site_dist(p, v)._sample(kk, ())

            props[j] = mx.vmap(draw)(mx.random.split(ks[j], k), *[props[i] for i in done])
        if self.retained:
            lln = flat.log_density(props, include=self.retained, batch=1)
        else:
            lln = mx.zeros((k,))
        logu = mx.log(mx.random.uniform(shape=(k,), key=ks[-1]))
        self._check_errors = []
        return props, lln, logu, []

    def _lane_proposals(self, keys, ref_leaves):
        """keys="per_iteration": iteration j's proposal is `regenerate` with the j-th key, as `mh_step` draws it."""
        ref = _unpack(self._rebuild_node(list(ref_leaves)), self.args)
        errors: list = []
        props, lln, logu, oks = vmap_tree(lambda key: self._lane(key, ref, errors), (keys,),
                                          run_name(self.gen_fn), "compiled_mh")
        self._check_errors = errors
        return props, lln, logu, oks

    def _lane(self, key, ref: Trace, errors: list, nan_guard: bool = False):
        """The proposal `mh_step` makes with `key` from `ref`: the changed choices' new values, the
        density the accept rule compares, the accept test's log uniform and the checks' flags (their
        errors appended to `errors`). `nan_guard`: a NaN or infinite score of a resampled site (an
        invalid parameter) makes the lean density NaN, as it makes `mh_step`'s weight NaN (never
        accepted)."""
        with lane_layout(None):
            ks = KeyStream(key)
            new, w = self.gen_fn._regenerate(ref, self.selection, self.args, ks)
            lln = _log_density(new, self.retained) if self.lean else w
            if nan_guard:
                lln = lln + 0.0 * _log_density(new, self.changed)
            logu = mx.log(mx.random.uniform(key=ks()))
        oks = []
        for c in new.checks:
            if isinstance(c, GuardedCheck):  # failed, it makes the density NaN or -inf: never accepted
                continue
            oks.append(c.ok if c.ok.ndim == 0 else mx.all(c.ok))
            errors.append(getattr(c.error, "static", c.error))
        return [_value(new, p) for p in self.changed], lln, logu, oks

    # -- one iteration (mh(compile=True) on a model whose score sums its sites) ----------------
    def _one(self, key, ll, *values):
        """One MH iteration from the state (`values` of the changed choices, `ll` its retained sites'
        log density) as one program: `mh_step`'s proposal drawn with `key` from the kernel's template
        (its leaves are constants of the program: the retained choices are every run's, which
        `kernel_for` checks), accepted when log u < L_new - L.

        Only the new values, `L`, the decision, its probability and the proposal's checks leave the
        program: a trace keeps a score per site, and each output costs the call and the evaluation
        (13 more scalar outputs: about 30 us an iteration on the 2-core CPU).
        """
        ref = _unpack(self._rebuild_node(list(self._template_leaves)), self.args)
        errors: list = []
        props, lln, logu, oks = self._lane(key, ref, errors, nan_guard=True)
        self._check_errors = errors
        lln = lln.astype(mx.float32)
        log_alpha = lln - ll
        accept = logu < log_alpha  # NaN never accepts
        prob = mx.exp(mx.minimum(log_alpha, 0.0))
        rejected = mx.logical_not(accept)
        new = [mx.where(accept, p, v) for p, v in zip(props, values)]
        return [*new, mx.where(accept, lln, ll), accept, prob,
                *[mx.logical_or(o, rejected) for o in oks]]  # an accepted proposal's failed check is raised

    def step(self, key, trace: Trace) -> tuple["ChainTrace", dict]:
        """One iteration from `trace` (a `ChainTrace` of this kernel, or any trace of the run): the new
        state as a `ChainTrace` and the iteration's `accepted` and `accept_prob`."""
        if type(trace) is ChainTrace and trace._kernel is self:
            ref, ll, values = trace._ref, trace.ll, trace.values
        else:
            ref, ll = trace, _log_density(trace, self.retained).astype(mx.float32)
            values = [_value(trace, p) for p in self.changed]
        outs = self._one_fn(key, ll, *values)
        nc = len(self.changed)
        checks = tuple(DeferredCheck(ok, err) for ok, err in zip(outs[nc + 3:], self._check_errors))
        new = ChainTrace(self, ref, tuple(outs[:nc]), outs[nc], checks)
        return new, {"accepted": outs[nc + 1], "accept_prob": outs[nc + 2]}

    def block(self, keys, state: ChainState, ref_leaves: list):
        """One block of K iterations from `state`; proposals are drawn from the reference trace."""
        try:
            outs = self._fn(keys, state.ll, *state.values, *ref_leaves)
        except (ValueError, VectorizationError) as e:
            if isinstance(e, VectorizationError) or ("eval" in str(e) and "transform" in str(e)):
                raise ValueError(
                    f"compiled_mh: {run_name(self.gen_fn)} cannot be compiled: its Python code needs the value of "
                    "an array (a branch on a random choice, .item(), or a proposal that changes the trace's "
                    "structure); use infer.mh instead") from None
            raise
        nc, nk = len(self.changed), len(self._check_errors)
        values, ll = tuple(outs[:nc]), outs[nc]
        accepted, prob = outs[nc + 1], outs[nc + 2]
        checks = tuple(DeferredCheck(ok, err) for ok, err in zip(outs[nc + 3: nc + 3 + nk], self._check_errors))
        kept = _Block(dict(zip(self.changed, outs[nc + 3 + nk:])))
        return ChainState(values, ll, checks), kept, {"accepted": accepted, "accept_prob": prob}

    # -- states and traces -------------------------------------------------------------------
    def reference(self, trace: Trace) -> list:
        """The leaves of `trace` as the blocks' reference (flattened once per run; none for keys="block")."""
        return [] if self.flat is not None else flatten(_pack_top(trace))[0]

    def initial_state(self, trace: Trace) -> ChainState:
        """`trace` as a chain state (with `trace` as the reference of the blocks that follow)."""
        ll = _log_density(trace, self.retained) if self.lean else mx.array(0.0)
        return ChainState(tuple(_value(trace, p) for p in self.changed), ll)

    def trace_of(self, ref: Trace, values) -> Trace:
        """The trace whose changed choices are `values` and whose other choices are `ref`'s, scored anew."""
        return trace_with(self, ref, values)

    def __call__(self, keys, trace: Trace):
        """One block from `trace`: `(new trace, kept values, stats)`; the new trace carries the block's checks."""
        state, kept, stats = self.block(keys, self.initial_state(trace), self.reference(trace))
        new = self.trace_of(trace, state.values)
        new = Trace(new.gen_fn, new.args, new.retval, new.score, new.sites, (*new.checks, *state.checks),
                    new.batch, new.aux)
        return new, kept, stats


_VIEW_KEY = mx.random.key(0)  # generate with every choice constrained draws nothing


def _value(tr: Trace, p):
    return tr._find(p).retval


def model_scores(kernel, ref: Trace, states: list) -> list:
    """The model's own log density (`assess`, unevaluated) at each of `states` (values of the kernel's
    `.changed` choices), every other choice at `ref`'s value: what a compiled kernel's flattened
    density is checked against before use (compiled Gibbs, elliptical slice)."""
    changed = set(kernel.changed)
    others = {p: _value(ref, p) for p in kernel.paths if p not in changed}
    out = []
    for values in states:
        choices = dict(others)
        choices.update(zip(kernel.changed, values))
        out.append(kernel.gen_fn.assess(kernel.args, ChoiceMap._from_leaves(choices))[0])
    return out


def trace_with(kernel, ref: Trace, values) -> Trace:
    """The trace of a compiled kernel's model (`.gen_fn`, `.args`, `.paths`) whose `.changed` choices
    are `values` and whose other choices are `ref`'s, scored anew (compiled MH, Gibbs, elliptical)."""
    choices = {p: _value(ref, p) for p in kernel.paths}
    choices.update(zip(kernel.changed, values))
    tr, _ = kernel.gen_fn.generate(kernel.args, ChoiceMap._from_leaves(choices), key=_VIEW_KEY)
    return tr


def _log_density(tr: Trace, paths: list):
    return signed_sum([tr._find(p).score for p in paths]) if paths else mx.array(0.0)


def _sums_its_sites(tr: Trace) -> bool:
    """The trace's score is the sum of its distribution sites' scores (`@gm.gen` functions all the way)."""
    if tr.sites is None:
        return isinstance(tr.gen_fn, Distribution)
    return type(tr.gen_fn) is DynamicGenFn and all(_sums_its_sites(st) for st in tr.sites.values())


class _Block:
    """One driver step's kept states: the stacked values of the changed choices."""

    __slots__ = ("values",)

    def __init__(self, values: dict):
        self.values = values

    def _genmlx_arrays(self):
        yield from self.values.values()


_cache = KernelCache()


def kernel_for(template: Trace, selection, k: int, thin: int, keys: str = "block") -> CompiledMH:
    """A `CompiledMH` for traces shaped like `template`, reused across calls (its compiled function
    is traced once per model, selection, K, thin, key layout, args, trace structure and values of
    the choices the chain does not change: keys="block" bakes them into the program)."""
    return _cache.lookup(template, lambda: (id(template.gen_fn), selection._paths, selection._all, selection._neg,
                                            k, thin, keys, args_key(template.args), structure_key(template)),
                         lambda: CompiledMH(template, selection, k, thin, keys),
                         lambda h: _constants(template, h.retained))


def _constants(tr: Trace, paths: list) -> tuple:
    """The values of the choices at `paths` (bytes, shape and dtype), to tell two runs' constants apart."""
    import numpy as np

    out = []
    for p in paths:
        v = _value(tr, p)
        out.append((p, np.asarray(v).tobytes(), tuple(v.shape), str(v.dtype)) if isinstance(v, mx.array) else (p, v))
    return tuple(out)


class StackedTraces(TraceViews):
    """Kept traces of a compiled run: the changed choices' values stacked per block; traces made on access."""

    noun = "sample"

    def __init__(self, kernel: CompiledMH, ref: Trace, blocks: list, per_block: int, n: int):
        super().__init__(n)
        self.kernel, self.ref, self.blocks, self.per_block = kernel, ref, blocks, per_block

    def _view(self, i: int) -> Trace:
        b, j = divmod(i, self.per_block)
        blk = self.blocks[b].values
        return self.kernel.trace_of(self.ref, [blk[p][j] for p in self.kernel.changed])

    def values(self, path):
        """All kept values at `path` as a list (one batched copy, no per-trace views)."""
        return self.array(path).tolist()

    def array(self, path) -> np.ndarray:
        """All kept values at `path` as one NumPy array `[n, ...]`."""
        from ..address import to_path

        p = to_path(path)
        if p not in self.kernel.changed:  # a value no iteration changes
            v = np.asarray(_value(self.ref, p))
            return np.broadcast_to(v, (self.n, *v.shape))
        vals = [blk.values[p] for blk in self.blocks]
        if not vals:
            return np.zeros((0,))
        return np.asarray(mx.concatenate(vals)[: self.n])


class ChainTrace(Trace):
    """A state of a chain run by `CompiledMH.step` (mh(compile=True)), as a Trace.

    It holds what the chain needs, the changed choices' values and the log density
    `ll` of the other sites (the accept rule compares it), and the run's first trace
    (`_ref`), whose other choices are this state's too. Choices are read from
    those without building anything (`trace[addr]`, `get_choices()`); a read of a
    score, the return value, the sites or a site's own trace builds the full trace
    (`full()`: the model's `generate` with every choice constrained), so a chain that
    nobody reads per site never pays for it.
    """

    __slots__ = ("_kernel", "_ref", "values", "ll")

    def __init__(self, kernel: CompiledMH, ref: Trace, values: tuple, ll, checks: tuple = ()):
        s = object.__setattr__
        s(self, "_kernel", kernel)
        s(self, "_ref", ref)
        s(self, "values", values)
        s(self, "ll", ll)
        s(self, "gen_fn", ref.gen_fn)
        s(self, "args", ref.args)
        s(self, "checks", checks)
        s(self, "batch", None)
        s(self, "_choices", None)
        s(self, "_ready", False)
        s(self, "_checked", False)

    def __getattr__(self, name):  # retval, score, sites, aux: the full trace's (slots left unset)
        if name not in _BUILT:
            raise AttributeError(f"'ChainTrace' object has no attribute {name!r}")
        return getattr(self.full(), name)

    def full(self) -> Trace:
        """This state as a plain, evaluated Trace: every site's value and score (one `generate`).

        Built anew on each call and kept by nobody: a stored sample never grows after the run
        stored it (the leak gate and the budget walk a result store once). Read several fields of
        one state from one `full()`.
        """
        full = materialize(self._kernel.trace_of(self._ref, self.values))  # no lazy graph outlives the read
        mark_ready([full])
        return full

    def _genmlx_arrays(self):  # the chain's arrays
        yield from self.values
        yield self.ll

    def _find(self, p):
        return self.full()._find(p)

    def _choice_value(self, p):
        j = self._kernel.changed_index.get(p)
        return self.values[j] if j is not None else self._ref._choice_value(p)

    def __getitem__(self, addr):
        if self.checks and not (self._ready or self._checked):
            boundary.read(self)
        j = self._kernel.changed_index.get(to_path(addr))
        return self.values[j] if j is not None else self._ref[addr]

    def get_choices(self) -> ChoiceMap:
        c = self._choices
        if c is None:
            if self.checks and not (self._ready or self._checked):
                boundary.read(self)
            leaves = dict(self._ref.get_choices()._leaves)
            leaves.update(zip(self._kernel.changed, self.values))
            c = ChoiceMap._from_leaves(leaves)
            object.__setattr__(self, "_choices", c)
        return c


_BUILT = ("retval", "score", "sites", "aux")


# A block's evaluation has a fixed cost that grows far slower than K (on the H100 about 30 kernel
# launches two stops ago, 21 now, counted there by benchmarks/gpu/launch_count.py; the
# plain-MLX floor's block took ~0.3 ms at K = 50; on the 2-core CPU a K = 500
# iteration costs 0.3-0.35x a K = 50 one), so long blocks are the fast default; observers and
# callbacks then see every 500th iteration, and a short run's block is cut to its length
# (benchmarks/analysis.md, issue 14).
DEFAULT_BLOCK = 500


def default_block(n_samples: int, burn: int, thin: int, target: int) -> int:
    """The multiple of `thin` nearest `target` iterations, cut to the run's (its sampling iterations
    rounded up to a multiple of thin, or the burn-in when it samples nothing)."""
    k = thin * max(1, round(target / thin))
    needed = n_samples * thin or burn  # a block past the run's iterations is work thrown away
    return max(thin, min(k, thin * math.ceil(needed / thin)))


def block_size(algorithm: str, iterations_per_step: int | None, default: int, thin: int) -> int:
    """K: `iterations_per_step` (checked: >= 1, a multiple of `thin`) or `default`."""
    k = check_count(algorithm, "iterations_per_step", default if iterations_per_step is None else iterations_per_step,
                    1)
    if k % thin:
        raise ValueError(f"{algorithm}: iterations_per_step ({k}) must be a multiple of thin ({thin})")
    return k


def block_steps(n_samples: int, burn: int, thin: int, k: int) -> tuple[int, int]:
    """(burn-in steps, all steps) of a run of K-iteration blocks: burn rounded up to whole blocks."""
    burn_steps = math.ceil(burn / k)
    return burn_steps, burn_steps + math.ceil(n_samples / (k // thin))


def run_blocks(algorithm: str, kernel, template: Trace, state, step, *, n_samples: int, burn: int, thin: int,
               k: int, key, model, params: dict, callback, progress, paths) -> tuple:
    """Run a compiled sampler's blocks through the driver (pipelined: a block reads nothing on the
    host); `(run result, InferenceResult)`: its traces are views of the kept blocks, its state the
    last trace (made when read), its summaries over `paths`."""
    burn_steps, n_steps = block_steps(n_samples, burn, thin, k)
    res = driver.run(step, state, n_steps, algorithm=algorithm, model=run_name(model), key=key,
                     params={"n_samples": n_samples, "burn": burn, "thin": thin, "iterations_per_step": k, **params},
                     burn=burn_steps, iterations_per_step=k, callback=callback, progress=progress,
                     summarize=summarize_mcmc, pipeline=True)
    per_block = k // thin
    traces = StackedTraces(kernel, template, res.samples, per_block, min(n_samples, len(res.samples) * per_block))
    stats = finish_stats(res, traces, paths)  # (its summaries are made on first read)
    stats["iterations_per_step"] = k
    final = res.state.values
    return res, InferenceResult(traces, stats, state=Deferred(lambda: kernel.trace_of(template, final)))


def compiled_mh(model, args: tuple, observations=None, *, selection=None, n_samples: int, burn: int = 0,
                thin: int = 1, iterations_per_step: int | None = None, keys: str = "block", key=None,
                callback=None, progress=None) -> InferenceResult:
    """Selection MH with K iterations per driver step, compiled (`mx.compile`) and sync-free.

    Args:
        iterations_per_step: K (default: the multiple of `thin` nearest
            `DEFAULT_BLOCK` = 500, at most the sampling iterations rounded up to
            a multiple of `thin`); must be a multiple of `thin`. `burn` is rounded
            up to a multiple of K.
        keys: "block" (default): each block draws its K proposals as one batch
            from one key, for a model that `genmlx.flat_density` flattens (others
            run as "per_iteration"). "per_iteration": iteration i draws with the
            i-th key of the split `mh` uses, so `compiled_mh` and `mh` with the
            same `key` run the same chain.
        callback: `callback(step, state, stats)` after each block, with the
            block's `ChainState` (the changed choices' values).

    Returns:
        Like `mh`: `.traces` (a sequence of views, one per kept iteration,
        `.traces.values(addr)` for all values at once), `.state` (the last
        trace), per-iteration `accepted` / `accept_prob`, `acceptance_rate`,
        `ess_bulk`, `ess_tail`, `r_hat`, `syncs` (0 for a static model),
        `iterations_per_step`.
    """
    n_samples = check_count("compiled_mh", "n_samples", n_samples, 0)
    burn = check_count("compiled_mh", "burn", burn, 0)
    thin = check_count("compiled_mh", "thin", thin, 1)
    if keys not in KEY_LAYOUTS:
        raise ValueError(f"compiled_mh: keys must be one of {KEY_LAYOUTS}, got {keys!r}")
    k = block_size("compiled_mh", iterations_per_step, default_block(n_samples, burn, thin, DEFAULT_BLOCK), thin)
    k_init, k_run = split_key(key)
    tr, obs = init_trace("compiled_mh", model, args, observations, k_init)
    sel = resolve_selection("compiled_mh", tr, obs, selection)
    kernel = kernel_for(tr, sel, k, thin, keys)
    ref = kernel.reference(tr)

    if kernel.keys == "block":
        def step(key_, state):  # the driver's key of the step
            return driver.Step(*kernel.block(key_, state, ref))
    else:
        # Iteration i uses the i-th of split(k_run, iterations): the keys `mh` gives its driver
        # steps, so mh and compiled_mh with the same key run the same chain.
        n_steps = block_steps(n_samples, burn, thin, k)[1]
        all_keys = mx.random.split(k_run, n_steps * k).reshape(n_steps, k, 2)
        evaluate(all_keys)
        counter = [0]

        def step(key_, state):
            keys_ = row(all_keys, counter[0])  # a view, not a gather
            counter[0] += 1
            return driver.Step(*kernel.block(keys_, state, ref))

    _, out = run_blocks("compiled_mh", kernel, tr, kernel.initial_state(tr), step, n_samples=n_samples, burn=burn,
                        thin=thin, k=k, key=k_run, model=model, params={}, callback=callback, progress=progress,
                        paths=scalar_paths(tr, sel, obs))
    out.stats["keys"] = kernel.keys
    return out
