"""Vectorized SMC: all N particles as one batched trace (`[N]`-shaped leaves).

Step t calls `vgenerate` (t = 0) or `vupdate` once for all particles, so the
per-step cost is a handful of batched MLX operations whatever N is; with an
`unfold` model the model work per step is O(1) in t. Resampling never syncs:
ancestor indices are computed lazily and applied as
`where(ess < threshold * N, ancestors, arange(N))` by gathering every batched
leaf (`x[idx]`), so a step is one `mx.eval` at the driver and `stats["syncs"]`
stays 0. The price: the gather runs at every step, resampling or not (one
gather node per batched leaf).

Rejuvenation: a Selection means prior MH through `vregenerate`, accepted per
particle with `mx.where` over the leaves (no sync); a kernel is called as
`kernel(key, batched_trace) -> (batched_trace, stats)` with `[N]` stats.

An `unfold` model filtered one step at a time (each step extends the chain
by one and observes only the new step; no rejuvenation) runs on
`ChainParticles` instead: the steps' batched traces and the resampling
indices, so a step costs the same at t = 1 and t = 1,000 and a resampling
gathers the chain's state alone; the whole batched trace is assembled once,
at the end (the same particles, bit for bit). During the run a callback's
`state.particles` is that `ChainParticles` (`.trace()` assembles it).

`.traces` is a lazy sequence of N ordinary traces (each unbatched when
indexed); the batched trace itself is `.state.particles` (and `.traces.batched`).
"""

from __future__ import annotations

import mlx.core as mx

from ..memory import materialize
from ..selection import Selection
from ..trace import Trace
from ..tree import flatten
from ..vectorize import BatchedTraces
from .chain_particles import ChainParticles, steps_one_at_a_time
from .resampling import get_scheme
from .result import InferenceResult
from ._common import check_selection, observed_union
from .smc import check_inputs, check_rejuvenation_targets, finish, run_filter

__all__ = ["vsmc", "index_trace", "select_traces", "prefers_vectorized"]


def _tree(tr: Trace):
    # The vectorized engine's own view of a batched trace: every array leaf, including the
    # [N]-shaped parameters of the distributions recorded at each site, gains the batch axis.
    from .. import vectorize as vz

    leaves, rebuild = flatten(vz._pack_top(tr))
    return leaves, lambda new, batch: vz._unpack(rebuild(new), tr.args, batch, tr.checks)


def index_trace(tr: Trace, idx, n: int) -> Trace:
    """Index every batched leaf (leading dimension `n`) of a vectorized trace with `idx`.

    An int gives particle `idx` as an ordinary trace; an index array `[M]`
    gathers a batched trace (resampling). Leaves without the batch axis are kept.
    """
    leaves, rebuild = _tree(tr)
    out = [x[idx] if x.ndim >= 1 and x.shape[0] == n else x for x in leaves]
    return rebuild(out, None if isinstance(idx, int) else tr.batch)


def select_traces(accept: mx.array, new: Trace, old: Trace, n: int) -> Trace:
    """Per particle, `new` where `accept` [N] is true else `old` (same structure; no sync)."""
    ln, rebuild = _tree(new)
    lo, _ = _tree(old)
    if len(ln) != len(lo):
        raise ValueError("vsmc rejuvenation: the proposed trace's structure differs from the current one")
    out = []
    for a, b in zip(ln, lo):
        if a is not b and a.ndim >= 1 and a.shape[0] == n and a.shape == b.shape:
            a = mx.where(accept.reshape((n,) + (1,) * (a.ndim - 1)), a, b)
        out.append(a)
    return rebuild(out, new.batch)


def prefers_vectorized(model) -> bool:
    """True for `unfold` models: their steps batch cleanly (`genmlx.vectorize`)."""
    return "unfold" in type(model).__name__.lower()


def _rejuvenate_batched(model, rejuvenation, sweeps: int, n: int, observations=()):
    if rejuvenation is None:
        return None
    if not (isinstance(rejuvenation, Selection) or callable(rejuvenation)):
        raise TypeError(
            f"rejuvenation must be None, a Selection or a kernel(key, batched_trace) -> (trace, stats), "
            f"got {type(rejuvenation).__name__}"
        )
    pending = []
    if isinstance(rejuvenation, Selection):  # the shared validation, as smc's
        observed = observed_union(observations)
        check_selection("vsmc", rejuvenation, observed, param="rejuvenation")
        pending.append(observed)

    def rejuvenate(key, tr):
        if pending:
            check_rejuvenation_targets("vsmc", tr, rejuvenation, pending.pop())
        ks = mx.random.split(key, 2 * sweeps)
        stats: dict[str, list] = {}
        for s in range(sweeps):
            if isinstance(rejuvenation, Selection):
                new, w = model.vregenerate(tr, rejuvenation, key=ks[2 * s])
                accept = mx.log(mx.random.uniform(shape=(n,), key=ks[2 * s + 1])) < w
                tr = select_traces(accept, new, tr, n)
                st = {"accepted": accept}
            else:
                tr, st = rejuvenation(ks[2 * s], tr)
            for k, v in st.items():
                stats.setdefault(k, []).append(mx.mean(mx.array(v).astype(mx.float32)))
        return tr, {f"rejuvenation_{k}": sum(v[1:], v[0]) / len(v) for k, v in stats.items()}

    return rejuvenate


def vsmc(
    model,
    args_seq,
    observations_seq,
    n_particles: int = 1000,
    *,
    resample="systematic",
    ess_threshold: float = 0.5,
    rejuvenation=None,
    rejuvenation_steps: int = 1,
    key=None,
    callback=None,
    progress=None,
) -> InferenceResult:
    """Vectorized particle filter; same contract as `smc` (see there), no host syncs.

    Needs a model with the vectorized GFI (`vgenerate`, `vupdate`,
    `vregenerate` for Selection rejuvenation); `unfold` models make each step O(1).
    """
    args_seq, obs = check_inputs("vsmc", args_seq, observations_seq, n_particles, ess_threshold, rejuvenation_steps)
    scheme = get_scheme(resample)
    n = n_particles

    by_step = rejuvenation is None and steps_one_at_a_time(model, args_seq, obs)

    def advance(key, tr, t):
        if t == 0:
            tr, w = model.vgenerate(args_seq[0], obs[0], n, key=key)
            if by_step:
                tr = ChainParticles.of_trace(tr, n)
        elif by_step:
            tr, w = tr.extend(key, args_seq[t], obs[t])
        else:
            tr, w, _ = model.vupdate(tr, obs[t], args=args_seq[t], key=key)
        return tr, mx.broadcast_to(w, (n,))

    def reindex(tr, idx):
        return tr.reindex(idx) if by_step else index_trace(tr, idx, n)

    res = run_filter(
        algorithm="vsmc", model=model, n_steps=len(args_seq), n_particles=n, advance=advance,
        ancestors=lambda k, lw: scheme(k, lw, n), reindex=reindex,
        ess_threshold=float(ess_threshold), sync=False, observations=obs,
        rejuvenate=_rejuvenate_batched(model, rejuvenation, rejuvenation_steps, n, obs),
        key=key, callback=callback, progress=progress,
        params={"n_particles": n, "resample": str(resample), "ess_threshold": ess_threshold,
                "n_steps": len(args_seq), "vectorized": True},
    )
    if by_step:
        particles = materialize(res.state.particles.trace())  # one evaluation of the gathered history
        res = res._replace(state=res.state._replace(particles=particles))
    return finish(res, BatchedTraces(res.state.particles, n))
