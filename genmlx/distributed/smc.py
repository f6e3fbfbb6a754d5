"""Distributed SMC: particles sharded across ranks, global ESS and global resampling.

Scheme (`smc`, the default). N particles, W ranks, n = N / W per rank, each
rank's particles one batched trace (`vgenerate` / `vupdate`, the vectorized
filter's moves). Step t on every rank:

1. (t > 0) if the global ESS of the current weights is below
   `ess_threshold * N`: draw N global ancestor indices from all N weights
   (gathered at the end of step t - 1) with the chosen scheme and a key shared
   by all ranks (every rank draws the same indices: same key, same weights,
   same operation on ranks of one device type), and give rank r the particles of global
   slots r n .. (r + 1) n - 1: every batched leaf is all-gathered and indexed
   (a particle may come from any rank). The evidence so far is banked:
   log Z += logsumexp(w) - log N over all N weights; the weights reset to 0.
2. move the particles to step t (`vgenerate` at t = 0, `vupdate` after) with
   this rank's key, and add the increments to the weights;
3. all-gather the ranks' weights (N floats): the global ESS exp(2 L - L2)
   with L = logsumexp(w), L2 = logsumexp(2w) over all N, and the step's
   evidence increment.

Estimator: log Z = banked + logsumexp(w over all N) - log N, the standard
particle filter's estimate with multinomial-type resampling of all N
particles: exactly the single-process filter on N particles, run with a
different random stream (unbiased for Z). Cost per resampling: one all-gather
of every batched leaf of the particles (O(N x the trace's size) over the
network, O(t) for a trace that grows with t), in one collective; per step:
one collective of N floats and one counted host sync.

Island variant (`island_smc`, optional, labelled as such): every rank runs an
independent filter of n_r particles with local resampling
(`genmlx.inference.smc`), and the estimates are averaged:
Z = sum_r (n_r / N) Z_r (unbiased; no particle ever moves between ranks, but
its variance is that of W small filters, not one large one).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from ..inference import driver
from ..inference import smc as _local_smc
from ..inference.resampling import ZeroLikelihoodError, get_scheme
from ..inference.result import Floats, InferenceResult
from ..inference.smc import check_inputs
from ..inference.vsmc import _tree
from ..vectorize import BatchedTraces
from .group import Group, current
from .importance import logsumexp64, rank_key

__all__ = ["smc", "island_smc"]


class DistSMCState(NamedTuple):
    particles: Any  # this rank's particles: one batched trace (None before t = 0)
    log_weights: mx.array  # [n], relative to the last resampling
    banked: float  # log evidence banked at the resamplings so far (the same on every rank)
    t: int
    sums: tuple  # global (logsumexp w, logsumexp 2w) of the current weights
    weights: Any = None  # every rank's current weights, [N] float32 on the host (rank order)


def _migrate(g: Group, tr, mine: np.ndarray, n: int):
    """This rank's new particles: global slots `mine` of the all-gathered batched leaves."""
    leaves, rebuild = _tree(tr)
    batched = [i for i, x in enumerate(leaves) if x.ndim >= 1 and x.shape[0] == n]
    # one collective for every batched leaf of the particles
    full = g.all_gather_many([np.asarray(leaves[i]) for i in batched], "smc: resampling (the particles)")
    out = list(leaves)
    for i, f in zip(batched, full):
        out[i] = mx.array(f.reshape((-1,) + f.shape[2:])[mine])
    return rebuild(out, tr.batch)


def smc(model, args_seq, observations_seq, n_particles: int = 1000, *, key, group: Group | None = None,
        resample="systematic", ess_threshold: float = 0.5, callback=None, progress=None) -> InferenceResult:
    """Particle filter over the ranks of `group` with global ESS and global resampling (module docstring).

    Same contract as `genmlx.inference.smc` (a vectorized model: `vgenerate`, `vupdate`).

    Args:
        n_particles: N, the total; a multiple of the world size.
        key: an MLX key, the same on every rank.

    Returns:
        `InferenceResult`: `.traces` this rank's particles, `.log_weights` theirs,
        `.log_ml` the global estimate (the same on every rank), `.stats`: per
        step global `ess`, `resampled`, `log_weight` (the step's evidence
        increment), `ess_local`, `migrated` (particles this rank received from
        other ranks); `n_particles`, `n_particles_local`, `rank`, `world_size`, ...
    """
    g = group if group is not None else current()
    args_seq, obs = check_inputs("distributed.smc", args_seq, observations_seq, n_particles, ess_threshold)
    if key is None:
        raise ValueError("distributed.smc: key is required (the same MLX key on every rank), got None")
    if n_particles % g.size:
        raise ValueError(f"distributed.smc: n_particles ({n_particles}) must be a multiple of the world size "
                         f"({g.size}): every rank holds the same number of particles")
    scheme = get_scheme(resample)
    N, n, T = n_particles, n_particles // g.size, len(args_seq)
    log_n = math.log(N)
    threshold = float(ess_threshold)
    shared = mx.random.split(mx.random.split(key, 2)[0], T)  # resampling keys: the same on every rank

    def gathered(lw, t):
        driver.host((lw,))  # the step's weights, evaluated: one counted sync
        return g.all_gather(np.asarray(lw, np.float32), f"smc: weights of step {t}").reshape(-1)

    def step(k, s: DistSMCState) -> driver.Step:
        t, tr, lw, banked = s.t, s.particles, s.log_weights, s.banked
        resampled, migrated = False, 0
        lse, lse2 = s.sums  # the global sums of the weights so far (log N for the initial zeros)
        if t > 0 and threshold > 0 and (threshold >= 1.0 or 2.0 * lse - lse2 < math.log(threshold * N)):
            # every rank draws the same ancestors: the same key, the same gathered weights, the same operation
            anc = np.asarray(scheme(shared[t], mx.array(s.weights), N), np.int64)
            mine = anc[g.rank * n:(g.rank + 1) * n]
            migrated = int(np.sum((mine < g.rank * n) | (mine >= (g.rank + 1) * n)))
            tr = _migrate(g, tr, mine, n) if g.size > 1 else _migrate_local(tr, mine, n)
            banked, lw, resampled, lse = banked + lse - log_n, mx.zeros((n,)), True, log_n
        if t == 0:
            tr, inc = model.vgenerate(args_seq[0], obs[0], n, key=k)
        else:
            tr, inc, _ = model.vupdate(tr, obs[t], args=args_seq[t], key=k)
        lw = lw + mx.broadcast_to(inc, (n,))
        weights = gathered(lw, t)  # one collective per step: every rank's weights (ESS and resampling)
        sums = (logsumexp64(weights), logsumexp64(2.0 * weights.astype(np.float64)))
        if not math.isfinite(sums[0]):
            raise ZeroLikelihoodError(f"distributed.smc: at step t={t} every particle on every rank has log weight "
                                      f"-inf (or NaN): the observations of step {t} are impossible under the model")
        stats = {"ess": math.exp(2.0 * sums[0] - sums[1]), "resampled": resampled, "migrated": migrated,
                 "log_weight": sums[0] - lse,
                 "ess_local": mx.exp(2.0 * mx.logsumexp(lw) - mx.logsumexp(2.0 * lw))}
        return driver.Step(DistSMCState(tr, lw, banked, t + 1, sums, weights), None, stats)

    res = driver.run(step, DistSMCState(None, mx.zeros((n,)), 0.0, 0, (log_n, log_n)), T, algorithm="smc_distributed",
                     model=getattr(model, "name", ""), key=rank_key(mx.random.split(key, 2)[1], g),
                     params={"n_particles": n, "n_particles_global": N, "rank": g.rank, "world_size": g.size,
                             "resample": str(resample), "ess_threshold": threshold, "n_steps": T},
                     callback=callback, progress=progress)
    s: DistSMCState = res.state
    log_ml = s.banked + s.sums[0] - log_n
    stats = dict(res.stats)
    stats.update(steps=res.steps, iterations=res.iterations, syncs=res.syncs, duration_s=res.duration_s,
                 n_particles=N, n_particles_local=n, rank=g.rank, world_size=g.size)
    return InferenceResult(BatchedTraces(s.particles, n), stats, log_weights=Floats(s.log_weights), log_ml=log_ml,
                           state=s)


def _migrate_local(tr, mine: np.ndarray, n: int):
    from ..inference.vsmc import index_trace

    return index_trace(tr, mx.array(mine.astype(np.int32)), n)


def island_smc(model, args_seq, observations_seq, n_particles: int = 1000, *, key, group: Group | None = None,
               **kwargs) -> InferenceResult:
    """OPTIONAL island variant: an independent filter per rank (local resampling), estimates averaged.

    Rank r runs `genmlx.inference.smc` on its n_r particles with key
    `split(key, W)[r]`; log Z = logsumexp_r(log Z_r + log n_r) - log N
    (unbiased for Z). Nothing but the W estimates crosses ranks.

    Returns:
        The rank's own `InferenceResult` with `.log_ml` the combined estimate
        and `.stats`: `log_ml_local`, `log_ml_per_rank`, `n_particles`,
        `n_particles_local`, `rank`, `world_size`, `island=True`.
    """
    g = group if group is not None else current()
    if key is None:
        raise ValueError("distributed.island_smc: key is required (the same MLX key on every rank), got None")
    _, count = g.shard(n_particles, "island_smc: n_particles")
    local = _local_smc(model, args_seq, observations_seq, count, key=rank_key(key, g), **kwargs)
    parts = g.all_gather(np.array([local.log_ml, math.log(count)], np.float64), "island_smc: log-ML combination")
    log_ml = logsumexp64(parts[:, 0] + parts[:, 1]) - math.log(n_particles)
    stats = dict(local.stats)
    stats.update(log_ml_local=local.log_ml, log_ml_per_rank=parts[:, 0].tolist(), n_particles=int(n_particles),
                 n_particles_local=count, rank=g.rank, world_size=g.size, island=True)
    return InferenceResult(local.traces, stats, log_weights=local.log_weights, log_ml=log_ml, state=local.state)
