"""Metropolis-Hastings: the prior as proposal over a selection, and custom proposals.

Both run through the one loop driver, one iteration per driver step. `mh`
and `mh_custom` hand the driver the proposal and its lazy accept flag
(`driver.Decide`): the driver evaluates them in its one `mx.eval` of the step
and then keeps the new or the old trace, so the choice costs no graph nodes
and no extra sync, whatever the proposal does to the trace's structure. The
kernels for composition (`mh_step`, `mh_kernel`, used inside kernel
combinators and the fused `compiled_mh`) keep the decision lazy instead:
`mx.where(accept, new, old)` leaf by leaf (`_common.select_trace`).

Math (selection MH, Gen's `mh(trace, selection)`): resample the selected
choices from their priors with `regenerate`, whose weight is the change in log
density of the unselected, retained choices; accept with probability
min(1, exp(weight)).

Math (custom proposal, Gen's `mh(trace, proposal, args)`): the proposal is a
generative function of `(trace, *proposal_args)`; with its choices `c`
(log density `fwd`), `update(trace, c)` gives the new trace, the weight
`w = log p(new) - log p(old)` and the discard `d` (the old values); `assess`
of the proposal on the new trace scores `d` (`bwd`). Accept with probability
min(1, exp(w - fwd + bwd)).
"""

from __future__ import annotations

from typing import Callable

from .. import events
from ..rng import KeyStream
from ..selection import Selection
from ..trace import Trace
from . import driver
from .compiled_step import Leaves, proposal_for
from ._common import (
    _flatten_numbers, check_count, finish_stats, init_trace, mh_accept, resolve_selection, run_name, scalar_paths, select_trace,
    split_key,
)
from .result import InferenceResult

__all__ = ["mh", "mh_step", "mh_kernel", "mh_custom", "custom_mh_step", "custom_mh_kernel", "run_chain"]


def mh_step(key, trace: Trace, selection: Selection) -> tuple[Trace, dict]:
    """One MH iteration resampling `selection` from its prior. A kernel: `(key, trace) -> (trace, stats)`."""
    accept, new, stats = _propose(key, trace, selection)
    return select_trace(accept, new, trace), stats


def _propose(key, trace: Trace, selection: Selection):
    ks = KeyStream(key)
    new, w = trace.gen_fn._regenerate(trace, selection, trace.args, ks)
    accept, stats = mh_accept(ks(), w)
    return accept, new, stats


def _driver_kernel(propose: Callable, *extra) -> Callable:
    """A kernel for `run_chain` alone: the driver picks `new` or the old trace after its one eval."""

    def kernel(key, trace):
        accept, new, stats = propose(key, trace, *extra)
        return driver.Decide(accept, new, trace), stats

    return kernel


def _selection_kernel(selection: Selection, template: Trace) -> Callable:
    """`mh(compile=True)`'s kernel for `run_chain`, the fastest form the model allows (the same chain):

    * a static model whose score sums its sites (`@gm.gen` functions of distributions): one compiled
      call per iteration of the changed choices' values and the state's log density (`CompiledMH.step`);
      the state is a `ChainTrace`, built into a full trace only when read;
    * another static-structure model: the proposal compiled over the trace's leaves (`compiled_step`);
    * else the GFI's proposal.

    Whether a model compiles is learned from the first call of each form.
    """
    from .compiled import ChainTrace  # (compiled imports this module at import time)

    chain = _chain_kernel(template, selection)
    chain_traced = False
    compiled = None
    memo = Leaves()

    def kernel(key, trace):
        nonlocal chain, chain_traced, compiled
        if chain is not None and (chain_traced or not events.site_listeners):
            if chain_traced:
                if events.site_listeners:  # site accounting measures the GFI's graph per site: the GFI's
                    _propose(key, trace.full() if isinstance(trace, ChainTrace) else trace, selection)
                    # proposal runs for its site events only, so observing never changes the chain
                return chain.step(key, trace)
            try:
                out = chain.step(key, trace)
            except Exception:  # not compilable (a Python decision on a value, `.item()`, ...): the
                chain = None  # leaves' compiled proposal, else the GFI's, raising the model's own error
            else:
                chain_traced = True
                return out
        # site accounting (an `on_site` observer) measures the GFI's graph per site: run the GFI's proposal
        if not events.site_listeners:
            if compiled is None:
                compiled = proposal_for(template, selection, _propose) or False
            out = compiled.propose(key, trace, memo) if compiled else None
            if out is not None:
                accept, new, stats = out
                return driver.Decide(accept, new, trace), stats
        if isinstance(trace, ChainTrace):  # the GFI proposes from a full trace
            trace = trace.full()
        accept, new, stats = _propose(key, trace, selection)
        return driver.Decide(accept, new, trace), stats

    return kernel


def _chain_kernel(template: Trace, selection: Selection):
    """The `CompiledMH` whose `step` runs the chain, for a model whose score sums its sites; else None."""
    from .compiled import kernel_for  # (compiled imports this module at import time)

    if template.batch is not None or template.sites is None:
        return None
    try:
        k = kernel_for(template, selection, 1, 1, "per_iteration")
    except Exception:  # the trial regenerate failed: the GFI's proposal reports the model's error
        return None
    return k if getattr(k, "_one_fn", None) is not None else None


def mh_kernel(selection: Selection) -> Callable:
    """`mh_step` with the selection bound, for the kernel combinators."""

    def kernel(key, trace):
        return mh_step(key, trace, selection)

    kernel.__name__ = "mh_kernel"
    return kernel


def custom_mh_step(key, trace: Trace, proposal, proposal_args: tuple = ()) -> tuple[Trace, dict]:
    """One MH iteration with a custom proposal generative function of `(trace, *proposal_args)`."""
    accept, new, stats = _propose_custom(key, trace, proposal, proposal_args)
    return select_trace(accept, new, trace), stats


def _propose_custom(key, trace: Trace, proposal, proposal_args: tuple):
    ks = KeyStream(key)
    ptr = proposal._simulate((trace, *proposal_args), ks.child())
    new, w, discard = trace.gen_fn._update(trace, ptr.get_choices(), trace.args, ks.child())
    bwd, _ = proposal._assess((new, *proposal_args), discard)
    accept, stats = mh_accept(ks(), w - ptr.score + bwd)
    return accept, new, stats


def custom_mh_kernel(proposal, proposal_args: tuple = ()) -> Callable:
    def kernel(key, trace):
        return custom_mh_step(key, trace, proposal, proposal_args)

    kernel.__name__ = "custom_mh_kernel"
    return kernel


def run_chain(algorithm: str, kernel: Callable, trace: Trace, n_samples: int, *, burn: int = 0, thin: int = 1,
              key=None, callback=None, progress=None, params: dict | None = None, summary_paths=None) -> InferenceResult:
    """Drive `kernel` from `trace` through the loop driver; keep every `thin`-th trace after `burn`."""
    n_samples = check_count(algorithm, "n_samples", n_samples, 0)
    burn = check_count(algorithm, "burn", burn, 0)
    thin = check_count(algorithm, "thin", thin, 1)

    def step(k, state):
        t, st = kernel(k, state)
        return driver.Step(t, t, st)

    res = driver.run(
        step, trace, burn + n_samples * thin, algorithm=algorithm, model=run_name(trace.gen_fn), key=key,
        params={"n_samples": n_samples, "burn": burn, "thin": thin, **(params or {})}, burn=burn, thin=thin,
        callback=callback, progress=progress, summarize=summarize_mcmc,
    )
    return InferenceResult(res.samples, finish_stats(res, res.samples, summary_paths), state=res.state)


def summarize_mcmc(r: driver.RunResult) -> dict:
    """The run's final diagnostics for `RunEnded` (acceptance rate over all iterations and chains)."""
    flat = _flatten_numbers(r.stats.get("accepted") or [])
    return {"acceptance_rate": float(flat.mean())} if len(flat) else {}


def mh(model, args: tuple, observations=None, *, selection=None, n_samples: int, burn: int = 0, thin: int = 1,
       key=None, init: Trace | None = None, callback=None, progress=None, compile: bool = False) -> InferenceResult:
    """Metropolis-Hastings with each selected choice's prior as the proposal.

    Args:
        model, args, observations: the target is p(latents | observations).
        selection: the choices to resample each iteration (a `Selection`, an
            address or a list of addresses); default: every unobserved choice.
        n_samples: traces to keep; `burn` iterations are run first and every
            `thin`-th trace is kept after them.
        key: an MLX key (same key, same chain, bit for bit).
        init: a starting trace (default: `model.generate(args, observations)`).
        callback: `callback(step, trace, stats)` after each iteration.
        compile: run each iteration as one compiled MLX call, as a Python loop
            over a jitted step runs in JAX: the same chain, a fraction of the
            Python per iteration. For a model whose score sums its sites the
            call takes and returns only the changed choices' values and the
            state's log density (`CompiledMH.step`; its last bits may differ
            from the regenerate weight's, as `compiled_mh`'s do), and the kept
            traces are `ChainTrace`s (choices read directly; scores and sites
            from `full()`, built on demand); other static models compile the
            proposal over the trace's arrays (`compiled_step`, bit for bit).
            The model's Python code then runs when the step is traced (once
            per model structure), not every iteration: leave it off for a
            model whose code has side effects or reads state that changes
            during the run. A model that cannot be compiled (a branch on a
            random value, `.item()`, a proposal that changes the trace's
            structure) runs as without it. An iteration observed per site
            also runs the GFI's proposal for its site events (site accounting
            measures the GFI's own graph); the chain stays the same.

    Returns:
        `InferenceResult` with `.traces` (the kept traces), `.stats`: per-iteration
        `accepted`, `accept_prob`; `acceptance_rate`; `ess_bulk`, `ess_tail`,
        `r_hat` keyed by address (selected latent sites); `syncs`, `iterations`, ...

    Raises:
        ValueError: n_samples < 0, burn < 0, thin < 1, a selection naming no
            unobserved choice (or naming an observation), or an observation with
            zero density under the model.
    """
    if not isinstance(compile, bool):
        raise TypeError(f"mh: compile must be True or False, got {compile!r}")
    make = _selection_kernel if compile else (lambda sel, tr: _driver_kernel(_propose, sel))
    return _mcmc("mh", model, args, observations, selection, n_samples, burn, thin, key, init, callback, progress,
                 make)


def mh_custom(model, args: tuple, observations=None, *, proposal, proposal_args: tuple = (), n_samples: int,
              burn: int = 0, thin: int = 1, key=None, init: Trace | None = None, callback=None,
              progress=None) -> InferenceResult:
    """MH with a custom proposal: a generative function called as `proposal(trace, *proposal_args)`.

    The proposal's choices are addresses of the model (their new values); see
    the module docstring for the acceptance ratio. Same result and errors as `mh`.
    """
    if not hasattr(proposal, "_simulate"):
        raise TypeError(f"mh_custom: proposal must be a generative function (@gm.gen), got {type(proposal).__name__}")
    return _mcmc("mh_custom", model, args, observations, None, n_samples, burn, thin, key, init, callback, progress,
                 lambda sel, tr: _driver_kernel(_propose_custom, proposal, tuple(proposal_args)))


def _mcmc(algorithm, model, args, observations, selection, n_samples, burn, thin, key, init, callback, progress,
          make_kernel):
    check_count(algorithm, "n_samples", n_samples, 0)
    check_count(algorithm, "burn", burn, 0)
    check_count(algorithm, "thin", thin, 1)
    k_init, k_run = split_key(key)
    if init is None:
        tr, obs = init_trace(algorithm, model, args, observations, k_init)
    else:
        from ..gfi import as_choicemap

        tr, obs = init, as_choicemap(observations)
    sel = resolve_selection(algorithm, tr, obs, selection)
    return run_chain(algorithm, make_kernel(sel, tr), tr, n_samples, burn=burn, thin=thin, key=k_run,
                     callback=callback, progress=progress, summary_paths=scalar_paths(tr, sel, obs))
