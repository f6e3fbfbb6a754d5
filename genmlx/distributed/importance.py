"""Distributed importance sampling: particles sharded across ranks, the log-ML combined exactly.

Each rank runs its shard through `genmlx.inference.importance_sampling` (with
`vectorized=True`, the same cached compiled pass a single process uses), so a
2-rank run of N particles costs a 1-rank run of N/2 plus one collective.

Math: rank r holds n_r particles with log weights w_{r,i}; it sends the
sufficient statistics L_r = logsumexp_i w_{r,i} and L2_r = logsumexp_i 2 w_{r,i}
(read from its result: L_r = log_ml_r + log n_r, L2_r = 2 L_r - log ESS_r), in
float64, exactly (`Group.all_gather`). Every rank then computes

    log_ml = logsumexp_r L_r - log N,    ESS = exp(2 logsumexp_r L_r - logsumexp_r L2_r),

with a stable (max-shifted) log-sum-exp: the same numbers a single process
computes over all N weights, up to float64 rounding of the summation order.

Keys: with world size 1 the run is `importance_sampling(..., key=key)` itself;
with W ranks, rank r uses `mx.random.split(key, W)[r]`.
"""

from __future__ import annotations

import math

import numpy as np

from ..inference import importance_sampling as _local_is
from ..inference.result import Floats, InferenceResult
from .group import Group, current

__all__ = ["importance_sampling", "logsumexp64", "rank_key", "site_values"]


def logsumexp64(x) -> float:
    """Stable float64 log-sum-exp of a 1-d array (-inf when every entry is -inf)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    top = a.max()
    if not np.isfinite(top):
        return float(top)
    return float(top + math.log(np.exp(a - top).sum()))


def rank_key(key, group: Group):
    """This rank's key: `key` itself in a single process, else `split(key, W)[rank]`."""
    if group.size == 1:
        return key
    return group.keys(key, group.size)[group.rank]


def site_values(result: InferenceResult, addr) -> np.ndarray:
    """The value at `addr` of every particle (or kept trace) of a result, `[N, ...]` float64."""
    state = result.state
    if state is not None and getattr(state, "batch", None) is not None:
        return np.asarray(state[addr], dtype=np.float64)
    return np.asarray(result.values(addr), dtype=np.float64)


def importance_sampling(model, args: tuple, observations=None, *, n_particles: int, key, group: Group | None = None,
                        vectorized: bool = True, gather: bool = False, gather_addresses=(), **kwargs) -> InferenceResult:
    """Importance sampling over the ranks of `group` (default: `genmlx.distributed.current()`).

    Args:
        n_particles: N, the total over all ranks (>= the world size); rank r
            gets N // W particles, plus one for the first N % W ranks.
        key: an MLX key, the same on every rank (required: ranks must not draw the same particles).
        vectorized: run the shard through the vectorized compiled pass (default True).
        gather: also gather every particle's log weight on every rank.
        gather_addresses: addresses whose value in every particle is gathered
            (`result.posterior[addr]`, `[N, ...]` in global particle order: rank 0's first).
        **kwargs: passed to `genmlx.inference.importance_sampling` (`layout=`, `callback=`, ...).

    Returns:
        `InferenceResult`: `.traces` this rank's particles, `.log_ml` the global
        estimate (the same on every rank), `.log_weights` this rank's weights (all
        N with `gather`), `.posterior` the gathered values, `.stats`: global `ess`
        and `n_particles`, this rank's `ess_local`, `log_ml_local`,
        `n_particles_local`, `shard_start`, `rank`, `world_size`, `duration_s`, ...
    """
    g = group if group is not None else current()
    start, count = g.shard(n_particles, "importance_sampling: n_particles")
    local = _local_is(model, args, observations, n_particles=count, vectorized=vectorized, key=rank_key(key, g),
                      **kwargs)
    lw = np.asarray(local.log_weights, np.float64)  # n floats to the host: the sums in float64 throughout
    parts = g.all_gather(np.array([logsumexp64(lw), logsumexp64(2.0 * lw)]),
                       "importance_sampling: log-ML combination")
    total = logsumexp64(parts[:, 0])
    log_ml = total - math.log(n_particles)
    ess = math.exp(2.0 * total - logsumexp64(parts[:, 1]))
    weights = local.log_weights
    if gather:
        weights = Floats(g.gather_rows(lw, "importance_sampling: weights"))
    values = {a: g.gather_rows(site_values(local, a), f"importance_sampling: values of {a!r}")
              for a in gather_addresses}
    stats = dict(local.stats)
    stats.update(ess=ess, n_particles=int(n_particles), ess_local=local.stats["ess"], log_ml_local=local.log_ml,
                 n_particles_local=count, shard_start=start, rank=g.rank, world_size=g.size)
    # the local state as it is (a Deferred batched trace stays unmade until read)
    return InferenceResult(local.traces, stats, log_weights=weights, log_ml=log_ml, posterior=values,
                           state=object.__getattribute__(local, "state"))
