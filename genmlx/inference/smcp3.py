"""SMCP3: SMC with probabilistic program proposals (Lew et al., PLDI 2023).

At step t each particle is moved by a *forward proposal* K, a generative
function `forward(trace, observations_t, t)` (trace is None at t = 0) whose
choices are model addresses: the values it samples are written into the
particle (new latents of step t, and possibly new values for old latents).
Overwritten old values are scored by the *backward kernel* (L-kernel) L, a
generative function `backward(new_trace, observations_t, t)` whose choices are
exactly the overwritten addresses. The move (old, u) -> (new, v) swaps values,
so it is a bijection with Jacobian 1, and the incremental weight is

    Math: log w_t = log p_t(new) - log p_{t-1}(old) + log L(v | new) - log K(u | old)

computed as `update`'s weight (log p_t(new) - log p_{t-1}(old), minus the
prior density of any model choice that neither K nor the observations set,
which the model samples from its prior) + `backward.assess(v)` - K's score.
At t = 0: log w_0 = log p(observations, u) - log K(u) (`generate`'s weight).

A forward proposal that only adds new choices needs no backward kernel (Gen's
particle filter with a custom proposal). One that overwrites choices without
a backward kernel is an error: dropping L (plain SMC's weight) is biased.

Resampling, ESS, rejuvenation, stats and the -inf check are `smc`'s (this runs
on the same engine, with sequential particles and one counted sync per step).
"""

from __future__ import annotations

import mlx.core as mx

from ..gfi import GenerativeFunction
from .resampling import get_scheme
from .result import InferenceResult
from .smc import _reindex_list, _rejuvenate_list, check_inputs, finish, rejuvenation_kernel, run_filter

__all__ = ["smcp3", "smcp3_advance"]


def _check_gf(x, what: str):
    if x is not None and not isinstance(x, GenerativeFunction):
        raise TypeError(f"smcp3: {what} must be a generative function (e.g. a @gm.gen function), got {type(x).__name__}")


def smcp3_advance(model, args_seq: list, observations: list, n_particles: int, forward, backward):
    """`advance(key, traces, t) -> (traces, increments)` for the filter engine."""

    def move(key, old, t):
        kf, km = mx.split(mx.random.split(key, 2), 2)
        obs = observations[t]
        fwd = forward.simulate((old, obs, t), key=kf.reshape(2))
        u = fwd.get_choices()
        cons = obs.merge(u) if len(u) else obs
        if old is None:
            new, w = model.generate(args_seq[0], cons, key=km.reshape(2))
            return new, w - fwd.score
        new, w, discard = model.update(old, cons, args=args_seq[t], key=km.reshape(2))
        if len(discard):
            if backward is None:
                raise ValueError(
                    f"smcp3: at step t={t} the forward proposal overwrote existing choices "
                    f"({discard._show()}) but no backward kernel was given: the weight needs "
                    "L(old values | new trace) (pass backward=...)"
                )
            log_l, _ = backward.assess((new, obs, t), discard)
            w = w + log_l
        return new, w - fwd.score

    def advance(key, traces, t):
        n = n_particles if traces is None else len(traces)
        ks = mx.random.split(key, n)
        out = [move(ks[i], None if traces is None else traces[i], t) for i in range(n)]
        return [tr for tr, _ in out], mx.stack([w for _, w in out])

    return advance


def smcp3(
    model,
    args_seq,
    observations_seq,
    n_particles: int = 100,
    *,
    forward,
    backward=None,
    resample="systematic",
    ess_threshold: float = 0.5,
    rejuvenation=None,
    rejuvenation_steps: int = 1,
    key=None,
    callback=None,
    progress=None,
) -> InferenceResult:
    """SMC whose step-t move is a forward proposal with an L-kernel correction.

    Args:
        forward: generative function `(trace_or_None, observations_t, t)` sampling
            values at model addresses (the new latents of step t, and optionally
            new values of old latents).
        backward: generative function `(new_trace, observations_t, t)` over the
            addresses the forward proposal overwrote (their old values); needed
            whenever it overwrites anything.
        Others as in `smc` (sequential particles only).

    Returns:
        InferenceResult as `smc`'s.
    """
    args_seq, obs = check_inputs("smcp3", args_seq, observations_seq, n_particles, ess_threshold, rejuvenation_steps)
    scheme = get_scheme(resample)
    if forward is None:
        raise TypeError("smcp3: forward must be a generative function (the forward proposal)")
    _check_gf(forward, "forward")
    _check_gf(backward, "backward")
    kernel = rejuvenation_kernel(model, rejuvenation, obs, "smcp3")
    res = run_filter(
        algorithm="smcp3", model=model, n_steps=len(args_seq), n_particles=n_particles,
        advance=smcp3_advance(model, args_seq, obs, n_particles, forward, backward),
        ancestors=lambda k, lw: scheme(k, lw, n_particles), reindex=_reindex_list,
        ess_threshold=float(ess_threshold), sync=True, observations=obs,
        rejuvenate=_rejuvenate_list(model, kernel, rejuvenation_steps) if kernel is not None else None,
        key=key, callback=callback, progress=progress,
        params={"n_particles": n_particles, "resample": str(resample), "ess_threshold": ess_threshold,
                "n_steps": len(args_seq), "forward": getattr(forward, "name", ""),
                "backward": getattr(backward, "name", "")},
    )
    return finish(res, list(res.state.particles))
