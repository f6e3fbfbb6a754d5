"""Compiled multi-iteration MH: K iterations fused by `mx.compile` into one driver step.

The trace's array leaves (`genmlx.tree.flatten`) go into a compiled function
that runs K selection-MH iterations (`mh_step`, the lazy `mx.where` accept)
and returns the new leaves, the `[K]` accept statistics and the leaves of
every `thin`-th iteration stacked along a new axis. The randomness is drawn up
front: the step's K keys are an input. One driver step = K iterations
(`iterations_per_step=K` in the driver's events), one `mx.eval`, no sync.

Requirements: a static-structure model — the same sites with the same shapes
every iteration, and no Python decision on a random value (MLX cannot
evaluate while compiling). The function is traced once per (model, selection,
K, thin, leaf shapes); later steps reuse it.

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
from collections.abc import Sequence

import mlx.core as mx

from ..checks import DeferredCheck
from ..trace import Trace
from ..tree import flatten
from ..vectorize import _pack_top, _unpack
from . import driver
from ._common import check_count, finish_stats, init_trace, resolve_selection, run_name, scalar_paths, split_key
from .mh import mh_step, summarize_mcmc
from .result import InferenceResult

__all__ = ["compiled_mh", "CompiledMH", "StackedTraces"]


class CompiledMH:
    """K fused MH iterations on traces shaped like `template` (a static-structure model).

    `kernel(keys [K, 2], trace) -> (trace, samples, stats)`: `samples` is a
    trace whose changed leaves are stacked `[K // thin, ...]` (the states after
    iterations 0, thin, 2 thin, ... of the block), `stats` holds `accepted` and
    `accept_prob` of shape `[K]`.
    """

    def __init__(self, template: Trace, selection, k: int, thin: int = 1):
        self.k = check_count("compiled_mh", "iterations_per_step", k, 1)
        self.thin = check_count("compiled_mh", "thin", thin, 1)
        self.selection = selection
        self.args = template.args
        leaves, self._rebuild_node = flatten(_pack_top(template))
        self.n_leaves = len(leaves)
        self.stacked_mask: list | None = None
        self._check_error = None
        self._fn = mx.compile(self._body)

    def _body(self, keys, *leaves):
        tr = self._rebuild(leaves)
        accs, probs, oks, kept = [], [], [], []
        for j in range(self.k):
            tr, st = mh_step(keys[j], tr, self.selection)
            accs.append(st["accepted"])
            probs.append(st["accept_prob"])
            for c in tr.checks:
                oks.append(c.ok)
                if self._check_error is None:
                    self._check_error = c.error
            if j % self.thin == 0:  # the state after iterations 0, thin, 2 thin, ... of the block
                kept.append(tr)
        out = self._flatten(tr)
        if len(out) != self.n_leaves:
            raise ValueError("compiled_mh: the trace changed structure during an iteration (needs a static-structure model)")
        ins = set(map(id, leaves))
        mask = [id(x) not in ins for x in out]
        self.stacked_mask = mask
        stacked = []
        if kept:
            cols = [self._flatten(t) for t in kept]
            stacked = [mx.stack([c[i] for c in cols]) for i, m in enumerate(mask) if m]
        ok = mx.all(mx.stack(oks)) if oks else mx.array(True)
        return [*out, mx.stack(accs), mx.stack(probs), ok, *stacked]

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
        samples = None
        if len(outs) > n + 3:
            it = iter(outs[n + 3:])
            samples = self._rebuild([next(it) if m else x for x, m in zip(outs[:n], self.stacked_mask)])
        return new, samples, {"accepted": acc, "accept_prob": prob}

    def view(self, samples: Trace, i: int) -> Trace:
        """Iteration `i` of a stacked `samples` trace, as an ordinary trace."""
        leaves = self._flatten(samples)
        return self._rebuild([x[i] if m else x for x, m in zip(leaves, self.stacked_mask)])


class StackedTraces(Sequence):
    """Kept traces of a compiled run: views into per-step stacked traces, made on access."""

    def __init__(self, kernel: CompiledMH, blocks: list, per_block: int, n: int):
        self.kernel, self.blocks, self.per_block, self.n = kernel, blocks, per_block, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"sample index {i} out of range for {self.n} samples")
        b, j = divmod(i, self.per_block)
        return self.kernel.view(self.blocks[b], j)

    def values(self, path):
        """All kept values at `path` as a list (one batched copy, no per-trace views)."""
        from ..address import to_path

        p = to_path(path)
        vals = [blk._find(p).retval for blk in self.blocks]
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
    kernel = CompiledMH(tr, sel, k, thin)
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
