"""Multi-chain MCMC across ranks: one or more chains per rank, R-hat and ESS over all chains.

Chain c of a job of C chains uses key `mx.random.split(key, C)[c]` whichever
rank runs it, so its draws are those of a single-process run with that key:
the diagnostics of a W-rank job equal `chain_summaries` over the same C chains
in one process. Each rank runs its chains with an ordinary sampler
(`infer.mh`, `hmc`, `nuts`, `mala`, `compiled_mh`, ...: one call per chain),
or with a vectorized multi-chain sampler (`infer.mh_chains`,
`infer.mala_chains`: one call for all of the rank's chains, keyed
`split(key, W)[rank]`), then the draws of the tracked addresses are gathered
(`[C, draws, ...]` on every rank) and rank-normalized split R-hat, bulk and
tail ESS (`genmlx.inference.diagnostics`) are computed over all chains.
"""

from __future__ import annotations

import inspect

import numpy as np

from .. import inference as infer
from ..inference.diagnostics import chain_summaries, draws_of
from ..inference.result import InferenceResult
from .group import Group, current
from .importance import rank_key

__all__ = ["chains"]


def _resolve(sampler):
    if isinstance(sampler, str):
        f = getattr(infer, sampler, None)
        if f is None or not callable(f):
            raise ValueError(f"chains: sampler {sampler!r} is not a function of genmlx.inference "
                             "(e.g. 'mh', 'hmc', 'nuts', 'mala', 'mh_chains', 'mala_chains')")
        return f
    if not callable(sampler):
        raise TypeError(f"chains: sampler must be a genmlx.inference function or its name, got {type(sampler).__name__}")
    return sampler


def chains(sampler, model, args: tuple, observations=None, *, n_chains: int, key, group: Group | None = None,
           track=None, **kwargs) -> InferenceResult:
    """Run `n_chains` MCMC chains over the ranks of `group` and diagnose them together.

    Args:
        sampler: a `genmlx.inference` sampler or its name; one with an
            `n_chains` parameter (`mh_chains`, `mala_chains`) runs all of a
            rank's chains in one vectorized call.
        n_chains: C, the total over all ranks (>= the world size).
        key: an MLX key, the same on every rank.
        track: the addresses whose draws are gathered and diagnosed (default:
            the sampler's `addresses=`, else every address of the traces).
        **kwargs: passed to the sampler (`n_samples=`, `burn=`, `addresses=`, `selection=`, ...).

    Returns:
        `InferenceResult`: `.traces` this rank's kept traces (chain after
        chain), `.posterior[addr]` every chain's draws `[C, draws, ...]` (on
        every rank), `.stats`: `r_hat`, `ess_bulk`, `ess_tail` keyed by
        address (over all C chains), `acceptance_rate` (mean over chains) and
        `acceptance_rate_per_chain` where the sampler reports it, `n_chains`,
        `n_chains_local`, `chain_start`, `rank`, `world_size`, `duration_s`
        (this rank's sampling time).
    """
    f = _resolve(sampler)
    g = group if group is not None else current()
    if key is None:
        raise ValueError("chains: key is required (the same MLX key on every rank), got None")
    start, count = g.shard(n_chains, "chains: n_chains")
    if track is None:
        track = kwargs.get("addresses")
    track = list(track) if track is not None else None
    if "n_chains" in inspect.signature(f).parameters:
        res = f(model, args, observations, n_chains=count, key=rank_key(key, g), **kwargs)
        results, draws = [res], draws_of(res, track)
        rates = res.stats.get("acceptance_rate_per_chain") or [res.stats.get("acceptance_rate", np.nan)] * count
    else:
        keys = g.keys(key, n_chains) if g.size > 1 or n_chains > 1 else [key]
        results = [f(model, args, observations, key=keys[start + c], **kwargs) for c in range(count)]
        draws = draws_of(results, track)
        rates = [r.stats.get("acceptance_rate", np.nan) for r in results]
    gathered = {a: g.gather_rows(d, f"chains: draws of {a!r}") for a, d in draws.items()}
    rates_all = g.gather_rows(np.asarray(rates, np.float64), "chains: acceptance rates")
    stats = chain_summaries(gathered)
    if not np.all(np.isnan(rates_all)):
        stats.update(acceptance_rate=float(np.nanmean(rates_all)), acceptance_rate_per_chain=rates_all.tolist())
    stats.update(n_chains=int(n_chains), n_chains_local=count, chain_start=start, rank=g.rank, world_size=g.size,
                 duration_s=sum(r.stats.get("duration_s", 0.0) for r in results))
    traces = [t for r in results for t in r.traces]
    return InferenceResult(traces, stats, posterior=gathered, state=[r.state for r in results])
