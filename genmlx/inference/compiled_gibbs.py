"""Compiled Gibbs: K sweeps over finite discrete sites as one compiled MLX program per driver step.

`gibbs` draws each address from its full conditional by calling the model's
`update` once per support value: a sweep over 100 assignment sites is hundreds
of model executions through the GFI. On a static-structure model the full
conditional of a site s needs far less. Up to a constant it is the density of
s's *Markov blanket*: s's own site and every site whose distribution
parameters read s (`FlatDensity.readers`), all other sites being the same for
every value of s. So:

1. Flatten once. `genmlx.flat_density.build` traces the model with the
   addresses as variables and every other choice (observations, latent
   choices Gibbs does not touch) at its value. A model it cannot flatten (a
   Python branch on a random value: its structure changes with the values)
   runs `gibbs` instead, decided once at the start (`stats["compiled"]`).
2. Split each blanket. A blanket site that reads no variable but s (and is not
   itself another address) scores the same at a given value of s for the whole
   run: its log density at the m support values is a constant `[m]` table,
   evaluated once when the kernel is built (a mixture's prior and likelihood
   terms with fixed component means are all of this kind). The other blanket
   sites are scored in the program: `log_density(values, include=those,
   batch=1)` with s's value the `[m]` candidates and the other variables
   broadcast to `[m]` views.
3. Draw. `mx.random.categorical` on table + scored terms picks the index; the
   new value is lo + index for a contiguous integer support (every built-in
   finite distribution), else `mx.take` of the candidates. Both keep the
   trace's dtype, so the program's input and output shapes never change.
4. Block. K sweeps (K x S updates) are one `mx.compile`d function of (the
   step's key, the current values): the K x S keys are split once up front and
   taken as views (slices; an int index is a gather), and the block returns the
   new values and the values after sweeps 0, thin, 2 thin, ... stacked
   `[K // thin]`. One driver step = one block = one evaluation (pipelined), no
   host sync. The kept values become traces only on access (`StackedTraces`).

Checked before the first block (once per kernel): the flattened density
equals the model's `assess` at the initial values and at CHECK_STATES random
joint values of the addresses (a safety net: a dependence the flattening run
cannot see, such as a Python decision made outside MLX on a value it was
given, would otherwise go unnoticed; the comparison sees it), and the block
traces and compiles. Either failing runs `gibbs`, with the reason in
`stats["fallback"]`.

Invalid parameters. A scored blanket with unguarded parameter checks (an
observation's rate computed from the addresses, say) is NaN at a value whose
parameters fail; `mx.random.categorical` then draws that value (MLX's argmax
prefers NaN), and the block reports it as a failed check naming the address,
raised at the driver's materialization. A constant table with a NaN entry
makes the run dynamic.

Same transition as `gibbs_step` (one sweep in address order, each address from
its full conditional given the current values of all other choices), not the
same random stream. Kernels are cached per model, addresses, K, thin, args,
trace structure and the values of the choices the chain does not change
(`KernelCache`): a second call of the same run does not retrace.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import mlx.core as mx
import numpy as np

from .. import flat_density
from ..address import from_path
from ..checks import DeferredCheck
from ..evaluation import evaluate
from ..selection import Selection
from ..rng import row
from ..trace import Trace
from . import driver
from ._common import check_count, scalar_paths, start_site_chain
from .compiled import (_VIEW_KEY, _Block, _constants, _value, block_size, default_block, model_scores, run_blocks,
                       trace_with)
from .gibbs import _site, enumerate_support, gibbs_kernel
from .kernel_keys import KernelCache, args_key, structure_key
from .mh import run_chain
from .result import InferenceResult

__all__ = ["compiled_gibbs", "CompiledGibbs", "GibbsState", "kernel_for", "DEFAULT_SITE_UPDATES"]

# Site updates per block by default. A block's evaluation has a fixed cost (the call, the
# evaluation, the driver's step), so a block of a few hundred updates pays it rarely; the
# program's tracing time and graph grow with K x S, so much longer blocks buy little.
DEFAULT_SITE_UPDATES = 500
CHECK_STATES = 16  # random joint states at which the flattened density is checked against the model



class GibbsState:
    """A compiled Gibbs chain between blocks: the addresses' values and the block's checks."""

    __slots__ = ("values", "checks")

    def __init__(self, values: tuple, checks: tuple = ()):
        self.values, self.checks = values, checks

    def _genmlx_arrays(self):
        yield from self.values


class _Update(NamedTuple):
    """One site update of a sweep."""

    var: int  # the address's position among the kernel's variables
    candidates: mx.array  # [m] support values, in the trace's dtype
    offset: int | None  # lo of a contiguous integer support (value = lo + index); None: take
    table: mx.array | None  # [m] log density of the blanket sites fixed for the run
    scored: list  # blanket sites scored in the program (they read other variables)
    checked: bool  # the scored sites have unguarded parameter checks: report a NaN draw


class CompiledGibbs:
    """K fused Gibbs sweeps over `paths` on traces shaped like `template`.

    `compiled` says whether the model can run compiled; when it cannot, `reason` says why
    (and `compiled_gibbs` runs `gibbs`). `block(key, state) -> (state, kept)`: one block of K
    sweeps, `kept` the variables' values stacked `[K // thin]`.
    """

    def __init__(self, template: Trace, paths: list, k: int, thin: int):
        self.k = check_count("compiled_gibbs", "iterations_per_step", k, 1)
        self.thin = check_count("compiled_gibbs", "thin", thin, 1)
        self.gen_fn, self.args = template.gen_fn, template.args
        self.paths = list(template.get_choices().paths())
        self.changed = list(dict.fromkeys(paths))  # the variables (an address may recur in a sweep)
        fixed = set(self.changed)
        self.constant_paths = [p for p in self.paths if p not in fixed]
        self.constants = _constants(template, self.constant_paths)
        self.flat = flat_density.build(self.gen_fn, self.args, template.get_choices(), self.changed)
        self._fn = None
        self.reason = self._why_dynamic(template, paths) or self._why_disagrees(template)
        if self.reason is None:
            values = [_value(template, p) for p in self.changed]
            self.updates = [self._update(template, p, values) for p in paths]
            self._check_errors = [_nan_error(u, self.changed) for u in self.updates if u.checked]  # the block's flags
            self.reason = self._why_tables_fail(paths) or self._why_no_program(values)
        self.compiled = self.reason is None

    # -- can it compile? ------------------------------------------------------------------
    def _why_dynamic(self, template: Trace, paths: list) -> str | None:
        if self.flat is None:
            return ("genmlx.flat_density cannot flatten the model (a Python decision on a random value, "
                    "a combinator or a function it does not know)")
        for p in self.changed:
            v = _value(template, p)
            if not isinstance(v, mx.array) or v.ndim != 0:
                return f"address {from_path(p)!r} is not a scalar choice"
            d = _site(template, p).gen_fn
            # a support the distribution computes itself may follow its parameters' values
            if getattr(d, "enumerate_support", None) is not None and self.flat.depends(p):
                return f"the support of address {from_path(p)!r} may depend on other choices' values"
        return None

    def _why_disagrees(self, template: Trace) -> str | None:
        """The flattened density against the model's `assess` at the template's values and at
        CHECK_STATES random joint values of the addresses (each uniform over its support).

        A dependence the flattening run cannot see would make the flattened density wrong without
        failing; the model's own density at other states shows it.
        """
        supports = [enumerate_support(_site(template, p).gen_fn, from_path(p)) for p in self.changed]
        rng = np.random.default_rng(0)
        base = [_value(template, p) for p in self.changed]
        cols = [mx.concatenate([v[None], mx.array(rng.choice(np.asarray(sup), CHECK_STATES), dtype=v.dtype)])
                for v, sup in zip(base, supports)]
        try:
            flat = self.flat.log_density(cols, batch=1)
            model = model_scores(self, template, [[c[i] for c in cols] for i in range(CHECK_STATES + 1)])
            evaluate(flat, model)
        except Exception as e:  # the GFI will meet (and report) the same problem, if it is one
            return f"the model could not be scored at other values of the addresses ({type(e).__name__}: {e})"
        flat, model = np.asarray(flat, dtype=np.float64), np.asarray(mx.stack(model), dtype=np.float64)
        if not np.allclose(flat, model, rtol=1e-4, atol=1e-3, equal_nan=True):
            return "the flattened density disagrees with the model's at other values of the addresses"
        return None

    def _why_tables_fail(self, paths: list) -> str | None:
        """A table is a constant of the program (evaluated now); one with a NaN entry (a value at which
        a fixed site's parameters are invalid) is left to `gibbs`, which raises if it draws it."""
        nan = [mx.any(mx.isnan(u.table)) if u.table is not None else mx.array(False) for u in self.updates]
        evaluate([u.table for u in self.updates if u.table is not None], nan)
        for p, bad in zip(paths, nan):
            if bad.item():
                return f"the conditional of address {from_path(p)!r} is NaN at some support value (invalid parameters)"
        return None

    def _why_no_program(self, values: list) -> str | None:
        """Trace and compile the block once now (MLX keeps it for the run's first call): a model
        whose density MLX cannot compile runs `gibbs` instead of failing mid-run."""
        fn = mx.compile(self._block)
        try:
            fn(_VIEW_KEY, *values)  # built, never evaluated
        except Exception as e:
            return f"MLX cannot compile the block ({type(e).__name__}: {e})"
        self._fn = fn
        return None

    # -- one site's update, prepared ----------------------------------------------------------
    def _update(self, template: Trace, path, values: list) -> _Update:
        flat, var = self.flat, self.changed.index(path)
        support = enumerate_support(_site(template, path).gen_fn, from_path(path))
        dtype = values[var].dtype
        candidates = mx.array(support, dtype=dtype)
        lo = support[0]
        contiguous = (dtype != mx.bool_ and all(isinstance(v, int) for v in support)
                      and support == list(range(lo, lo + len(support))))
        reads, variables = self._reads(), set(self.changed)
        blanket = [path] + [q for q in flat.readers(path) if q != path]
        # fixed for the run: a site that reads no other variable and whose value is not another address
        fixed = [q for q in blanket if reads[q] <= {var} and (q == path or q not in variables)]
        scored = [q for q in blanket if q not in fixed]
        table = None
        if fixed:
            table = flat.log_density(_views(values, var, candidates), include=fixed, batch=1)
        return _Update(var, candidates, lo if contiguous else None, table, scored,
                       bool(scored) and flat.checked(scored))

    def _reads(self) -> dict:
        """For each site's path, the variables (positions in `changed`) its distribution reads."""
        r = self.__dict__.get("_site_reads")
        if r is None:
            r = self._site_reads = {s.path: set() for s in self.flat.sites}
            for k, p in enumerate(self.changed):
                for q in self.flat.readers(p):
                    r[q].add(k)
        return r

    # -- the compiled block -------------------------------------------------------------------
    def _block(self, key, *values):
        values = list(values)
        n = len(self.updates)
        keys = mx.random.split(key, self.k * n)
        kept = [[] for _ in values]
        oks = [[] for _ in self.updates]
        i = 0
        for sweep in range(self.k):
            for j, u in enumerate(self.updates):
                values[u.var], ok = self._draw(u, values, row(keys, i))
                if ok is not None:
                    oks[j].append(ok)
                i += 1
            if sweep % self.thin == 0:
                for rows, v in zip(kept, values):
                    rows.append(v)
        flags = [mx.all(mx.stack(o)) for o in oks if o]
        return [*values, *flags, *(mx.stack(rows) for rows in kept)]

    def _draw(self, u: _Update, values: list, key):
        """s's new value drawn from its full conditional, and (for a checked blanket) whether it was not NaN."""
        lp = u.table
        if u.scored:
            d = self.flat.log_density(_views(values, u.var, u.candidates), include=u.scored, batch=1)
            lp = d if lp is None else lp + d
        idx = mx.random.categorical(lp, key=key)  # a NaN value wins: MLX's argmax prefers NaN
        ok = mx.logical_not(mx.any(mx.isnan(lp))) if u.checked else None
        dtype = u.candidates.dtype
        if u.offset is None:
            return mx.take(u.candidates, idx), ok
        new = idx.astype(dtype)
        return (new + u.offset if u.offset else new), ok

    def block(self, key, state: GibbsState):
        """One block of K sweeps from `state`: (the new state, the kept values)."""
        outs = self._fn(key, *state.values)
        nv, nc = len(self.changed), len(self._check_errors)
        checks = tuple(DeferredCheck(ok, err) for ok, err in zip(outs[nv:nv + nc], self._check_errors))
        kept = _Block(dict(zip(self.changed, outs[nv + nc:])))
        return GibbsState(tuple(outs[:nv]), checks), kept

    # -- states and traces --------------------------------------------------------------------
    def initial_state(self, trace: Trace) -> GibbsState:
        return GibbsState(tuple(_value(trace, p) for p in self.changed))

    def trace_of(self, ref: Trace, values) -> Trace:
        """The trace whose addresses hold `values` and whose other choices are `ref`'s, scored anew."""
        return trace_with(self, ref, values)


def _views(values: list, var: int, candidates: mx.array) -> list:
    """The variables as a batch of m states: `var` at each candidate, the others broadcast (views)."""
    m = candidates.shape[0]
    out = [mx.broadcast_to(v, (m, *v.shape)) for v in values]
    out[var] = candidates
    return out


def _nan_error(u: _Update, changed: list):
    addr = from_path(changed[u.var])

    def error() -> Exception:
        return ValueError(
            f"compiled_gibbs: the full conditional of address {addr!r} is NaN at one of its values: a "
            f"distribution that reads it has invalid parameters there (FlatDensity.readers lists those sites)")

    return error


_cache = KernelCache()


def kernel_for(template: Trace, paths: list, k: int, thin: int) -> CompiledGibbs:
    """A `CompiledGibbs` for traces shaped like `template`, reused across calls: its program is traced
    once per model, addresses, K, thin, args, trace structure and values of the choices the chain
    does not change (the flattened density bakes them in)."""
    return _cache.lookup(template, lambda: (id(template.gen_fn), tuple(paths), k, thin, args_key(template.args),
                                            structure_key(template)),
                         lambda: CompiledGibbs(template, paths, k, thin),
                         lambda h: _constants(template, h.constant_paths))


def _default_block(n_samples: int, burn: int, thin: int, n_updates: int) -> int:
    """About DEFAULT_SITE_UPDATES site updates a block, a multiple of thin, cut to the run's length."""
    return default_block(n_samples, burn, thin, max(1, round(DEFAULT_SITE_UPDATES / n_updates)))


def compiled_gibbs(model, args: tuple, observations=None, *, addresses: Sequence, n_samples: int, burn: int = 0,
                   thin: int = 1, iterations_per_step: int | None = None, key=None, init: Trace | None = None,
                   callback=None, progress=None) -> InferenceResult:
    """Gibbs over finite discrete `addresses` with K sweeps per driver step, compiled and sync-free.

    One iteration is one sweep over `addresses` in order, each drawn from its full
    conditional (the transition of `gibbs_step`). A model that `genmlx.flat_density`
    cannot flatten (its structure follows the values), a non-scalar address, or a
    support that may follow other choices' values runs `gibbs` instead
    (`stats["compiled"]` False, `stats["fallback"]` why).

    Args:
        iterations_per_step: K sweeps per block (default: about 500 site updates,
            `round(500 / len(addresses))`, rounded to a multiple of `thin` and cut to
            the run's sampling sweeps); must be a multiple of `thin`. `burn` is
            rounded up to a multiple of K.
        callback: `callback(step, state, stats)` after each block, with the block's
            `GibbsState` (the addresses' values).

    Returns:
        Like `gibbs`: `.traces` (views made on access; `.traces.values(addr)` for all
        values at once), `.state` (the last trace), `syncs` (0 when compiled),
        `ess_bulk`, `ess_tail`, `r_hat`, `iterations_per_step`, `compiled`.

    Raises:
        ValueError: as `gibbs` (an address that is not an unobserved random choice, a
            support that is not finite, n_samples < 0, burn < 0, thin < 1), and an
            `iterations_per_step` < 1 or not a multiple of `thin`.
    """
    tr, obs, addresses, paths, k_run = start_site_chain("compiled_gibbs", model, args, observations, addresses, init,
                                                        key, n_samples=n_samples, burn=burn, thin=thin)
    for p in paths:
        enumerate_support(_site(tr, p).gen_fn, from_path(p))
    k = block_size("compiled_gibbs", iterations_per_step, _default_block(n_samples, burn, thin, len(paths)), thin)
    params = {"addresses": [repr(a) for a in addresses]}
    kernel = kernel_for(tr, paths, k, thin)
    if not kernel.compiled:
        res = run_chain("gibbs", gibbs_kernel(addresses), tr, n_samples, burn=burn, thin=thin, key=k_run,
                        callback=callback, progress=progress, params=params, summary_paths=paths)
        res.stats.update(compiled=False, fallback=kernel.reason, iterations_per_step=1)
        return res

    def step(key_, state):
        return driver.Step(*kernel.block(key_, state))

    _, out = run_blocks("compiled_gibbs", kernel, tr, kernel.initial_state(tr), step, n_samples=n_samples, burn=burn,
                        thin=thin, k=k, key=k_run, model=model, params=params, callback=callback, progress=progress,
                        paths=scalar_paths(tr, Selection(kernel.changed), obs))
    out.stats["compiled"] = True
    return out
