"""Conditional SMC (Andrieu, Doucet & Holenstein 2010) and a particle-Gibbs kernel.

`csmc(model, args_seq, observations_seq, reference, n_particles)` runs the
particle filter of `smc` with particle 0 pinned to the `reference` trajectory
(a trace of `model` at `args_seq[-1]`): at step t it is the reference's choices
as far as step t reaches, and at each resampling it keeps its own ancestor
while the other N - 1 ancestors are drawn multinomially from all N weights
(the conditional resampling that keeps CSMC's invariance; other schemes
would need their own conditional versions, so only "multinomial" is offered).

The reference particle's weight is what the bootstrap proposal would have
given it. Step t updates it with the observations *and* the reference's
values of the choices first created at step t (found by a probe update; a
few rounds when the model's structure depends on those values), then removes
their prior density:

    Math: log w_ref,t = [log p(new) - log p(old)] - sum_{a new at t} log p(x_a | ...)

which equals `update`'s weight for a freshly sampled particle, for models
whose internal proposal is the prior (`@gen` functions and the combinators).

`csmc_kernel(...)` wraps one CSMC sweep and a draw of the next trajectory in
proportion to the final weights: `kernel(key, trace) -> (trace, stats)`, a
Markov kernel leaving the posterior invariant (particle Gibbs). Each call is a
driver run of T steps; loop it from Python (or another driver's callback),
not inside another driver step.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..address import AddressError, from_path
from ..choicemap import ChoiceMap
from ..memory import materialize
from ..selection import Selection
from ..trace import Trace
from . import driver
from .resampling import multinomial
from .result import InferenceResult
from .smc import _reindex_list, check_inputs, finish, run_filter, sequential_advance

__all__ = ["csmc", "csmc_kernel"]

_MAX_ROUNDS = 16  # probe rounds for models whose later addresses depend on earlier choices


def _reference_advance(model, args_seq: list, observations: list, ref: ChoiceMap):
    leaves = ref._leaves

    def move(prev, cons, t, key):
        if prev is None:
            tr, w = model.generate(args_seq[0], cons, key=key)
            return tr, w
        tr, w, _ = model.update(prev, cons, args=args_seq[t], key=key)
        return tr, w

    def advance(key, prev, t):
        obs = observations[t]
        have = set(prev.get_choices().paths()) if prev is not None else set()
        pinned: dict = {}
        ks = mx.random.split(key, _MAX_ROUNDS)
        for r in range(_MAX_ROUNDS):
            cons = obs.merge(ChoiceMap._from_leaves(dict(pinned))) if pinned else obs
            tr, w = move(prev, cons, t, ks[r])
            fresh = [p for p in tr.get_choices().paths() if p not in have and p not in obs._leaves and p not in pinned]
            if not fresh:
                if pinned:
                    w = w - model.project(tr, Selection(pinned))
                return tr, w
            known = [p for p in fresh if p in leaves]
            if not known:  # pinning what the reference has cannot change the structure any more
                raise AddressError(
                    f"csmc: the reference trace has no choice at {from_path(fresh[0])!r}, which step t={t} "
                    f"creates (the reference must be a trace of {model.name} at args_seq[-1])"
                )
            # Pin what the reference has; choices it lacks may vanish once those are pinned.
            pinned.update((p, leaves[p]) for p in known)
        raise RuntimeError(f"csmc: step t={t} kept creating new addresses after {_MAX_ROUNDS} rounds")

    return advance


def csmc(
    model,
    args_seq,
    observations_seq,
    reference: Trace,
    n_particles: int = 100,
    *,
    resample="multinomial",
    ess_threshold: float = 1.0,
    key=None,
    callback=None,
    progress=None,
) -> InferenceResult:
    """Conditional SMC with `reference` retained as particle 0.

    Args:
        reference: a trace of `model` (at `args_seq[-1]`) agreeing with the observations.
        n_particles: N >= 2 (the reference and N - 1 free particles).
        resample: only "multinomial" (conditional multinomial resampling).
        ess_threshold: resample when ESS < ess_threshold * N (default 1.0: every step).

    Returns:
        InferenceResult as `smc`'s; `.traces[0]` is the reference trajectory.
    """
    args_seq, obs = check_inputs("csmc", args_seq, observations_seq, n_particles, ess_threshold)
    if n_particles < 2:
        raise ValueError(f"csmc: n_particles must be >= 2 (the reference and at least one more), got {n_particles}")
    if resample != "multinomial":
        raise ValueError(f"csmc: resample must be 'multinomial' (conditional resampling), got {resample!r}")
    if not isinstance(reference, Trace) or reference.gen_fn is not model:
        raise TypeError(f"csmc: reference must be a trace of {getattr(model, 'name', model)!r}, got {reference!r}")
    n = n_particles
    materialize(reference)  # once, before the loop: a lazy reference would join every step's graph
    free = sequential_advance(model, args_seq, obs, n - 1)
    pinned = _reference_advance(model, args_seq, obs, reference.get_choices())

    def advance(key, traces, t):
        k1, k2 = mx.split(mx.random.split(key, 2), 2)
        others, w_o = free(k1.reshape(2), traces[1:] if traces is not None else None, t)
        ref, w_r = pinned(k2.reshape(2), traces[0] if traces is not None else None, t)
        return [ref] + others, mx.concatenate([mx.reshape(w_r, (1,)), w_o])

    def ancestors(key, lw):
        return mx.concatenate([mx.zeros((1,), dtype=mx.int32), multinomial(key, lw, n - 1)])

    res = run_filter(
        algorithm="csmc", model=model, n_steps=len(args_seq), n_particles=n, advance=advance,
        ancestors=ancestors, reindex=_reindex_list, ess_threshold=float(ess_threshold), sync=True,
        observations=obs, key=key, callback=callback, progress=progress,
        params={"n_particles": n, "resample": "multinomial", "ess_threshold": ess_threshold,
                "n_steps": len(args_seq), "conditional": True},
    )
    return finish(res, list(res.state.particles))


def csmc_kernel(model, args_seq, observations_seq, n_particles: int = 10, *, ess_threshold: float = 1.0):
    """Particle-Gibbs kernel: `kernel(key, trace) -> (new trace, stats)`.

    One CSMC sweep conditioned on `trace`, then the next trajectory drawn from
    the final particles in proportion to their weights (one counted host sync).
    Stats: `log_ml` (the conditional sweep's estimate) and `changed` (whether
    a particle other than the reference was drawn).
    """
    args_seq, obs = check_inputs("csmc_kernel", args_seq, observations_seq, n_particles, ess_threshold)

    def kernel(key, trace):
        k1, k2 = mx.split(mx.random.split(key, 2), 2)
        r = csmc(model, args_seq, obs, trace, n_particles, ess_threshold=ess_threshold, key=k1.reshape(2))
        j = driver.host(mx.random.categorical(mx.array(np.asarray(r.log_weights, dtype=np.float32)), key=k2.reshape(2)))
        return r.traces[j], {"log_ml": r.log_ml, "changed": j != 0}

    return kernel
