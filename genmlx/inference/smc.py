"""Sequential Monte Carlo: a particle filter in Gen's style, on the one loop driver.

One driver step per time step t:

1. (t > 0) if the particles' ESS < `ess_threshold * N`, resample them
   (the log evidence so far is banked, weights reset to equal);
2. move every particle to `args_seq[t]` with observations `observations_seq[t]`
   (`generate` at t = 0, `update` after) and add the update weight
   (Math: log w_t = log w_{t-1} + log p(new) - log p(old) - log q(fresh));
3. optionally rejuvenate (MCMC moves leaving the step-t posterior invariant,
   valid on weighted particles);
4. record `ess` (after reweighting), `resampled` (whether step 1 resampled)
   and `log_weight` = log Z_t / Z_{t-1}, the step's evidence increment, so
   that `sum(stats["log_weight"]) == log_ml`.

Host syncs. Resampling a Python list of traces needs the ancestor indices on
the host: the sequential path makes one counted `driver.host` sync per step
(t > 0, threshold > 0), reading the ESS decision and the ancestors together
from already-materialized weights. The vectorized path (`vsmc`) makes none:
it always gathers with `mx.where(resample, ancestors, arange(N))`.

Cost. With a dynamic `@gen` model whose args are `(T,)`, `update` re-runs the
whole body, so step t costs O(t) per particle (O(T^2) for the run): fine for
T = 100; an `unfold` model under `vsmc` costs O(1) per step in model work.

An observation under which every particle has log weight -inf raises
`ZeroLikelihoodError` (a `ValueError`) at the driver's evaluation of that
step, never a silent NaN.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import mlx.core as mx

from ..checks import DeferredCheck
from ..evaluation import item
from ..gfi import as_choicemap
from ..selection import Selection
from ..trace import Trace
from ._common import check_selection, check_selects_latent, observed_union
from . import driver
from .resampling import ZeroLikelihoodError, get_scheme
from .result import Floats, InferenceResult

__all__ = ["smc", "SMCState", "run_filter", "check_inputs", "rejuvenation_kernel", "prior_mh_kernel",
           "check_rejuvenation_targets"]


class SMCState(NamedTuple):
    particles: Any  # list of Trace (sequential) or one batched Trace (vectorized); None before t = 0
    log_weights: mx.array  # [N], relative to the last resampling
    log_ml: mx.array  # log evidence banked at the resamplings so far
    t: int  # the next time step
    check: Any = None  # the last step's weight check (evaluated by the driver)


class _WeightCheck:
    """Deferred check that the weights of step t are not all -inf (or NaN)."""

    __slots__ = ("checks", "lse")

    def __init__(self, lse: mx.array, algorithm: str, t: int, obs):
        self.lse = lse
        self.checks = (DeferredCheck(mx.isfinite(lse), lambda: _weight_error(algorithm, t, obs, lse)),)

    def _genmlx_arrays(self):
        yield self.lse
        yield self.checks[0].ok


def _weight_error(algorithm: str, t: int, obs, lse) -> Exception:
    v = item(lse)
    what = "NaN" if v != v else "-inf" if v < 0 else "+inf"
    addrs = obs._show() if len(obs) else "none"
    return ZeroLikelihoodError(
        f"{algorithm}: at step t={t} the total particle weight is {what} (log-sum-exp of the log weights); "
        f"every particle has log weight -inf, so the observations of step {t} (addresses: {addrs}) are "
        "impossible under every particle: check their values against the model's support"
    )


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def check_inputs(algorithm: str, args_seq, observations_seq, n_particles, ess_threshold,
                 rejuvenation_steps: int = 1) -> tuple[list, list]:
    """Validate the common inputs; returns (args list, observation choicemaps)."""
    if not _count(n_particles):
        raise ValueError(f"{algorithm}: n_particles must be an int >= 1, got {n_particles!r}")
    if not _count(rejuvenation_steps):
        raise ValueError(f"{algorithm}: rejuvenation_steps must be an int >= 1, got {rejuvenation_steps!r}")
    if isinstance(args_seq, (str, bytes)) or not isinstance(args_seq, Sequence):
        raise TypeError(f"{algorithm}: args_seq must be a sequence of args tuples, got {type(args_seq).__name__}")
    if isinstance(observations_seq, (str, bytes, dict)) or not isinstance(observations_seq, Sequence):
        raise TypeError(
            f"{algorithm}: observations_seq must be a sequence of choicemaps/dicts, got {type(observations_seq).__name__}"
        )
    if len(args_seq) != len(observations_seq):
        raise ValueError(
            f"{algorithm}: args_seq and observations_seq must have the same length (one entry per time step), "
            f"got len(args_seq)={len(args_seq)} and len(observations_seq)={len(observations_seq)}"
        )
    if len(args_seq) == 0:
        raise ValueError(f"{algorithm}: args_seq and observations_seq are empty (need at least one time step)")
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)) or not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"{algorithm}: ess_threshold must be a number in [0, 1], got {ess_threshold!r}")
    for t, a in enumerate(args_seq):
        if not isinstance(a, tuple):
            raise TypeError(f"{algorithm}: args_seq[{t}] must be an args tuple, got {type(a).__name__} {a!r}")
    return list(args_seq), [as_choicemap(o) for o in observations_seq]


# -- rejuvenation ------------------------------------------------------------------


def prior_mh_kernel(model, selection: Selection):
    """MH with the prior as proposal on `selection` (via `regenerate`): `kernel(key, trace) -> (trace, stats)`.

    Math: accept with probability min(1, exp(w)), w = the regenerate weight.
    Works on one trace; the particle paths below batch it themselves.
    """

    def kernel(key, trace):
        k1, k2 = mx.random.split(key)
        new, w = model.regenerate(trace, selection, key=k1)
        accept = driver.host(mx.log(mx.random.uniform(key=k2)) < w)
        return (new if accept else trace), {"accepted": accept}

    kernel.selection = selection
    return kernel


def rejuvenation_kernel(model, rejuvenation, observations=(), algorithm: str = "smc"):
    """Normalize `rejuvenation=`: None, a Selection (prior MH on it) or a kernel.

    A Selection is validated by the shared `check_selection` against every
    step's observations (a selection that resamples an observation raises, as
    in `mh`); `check_rejuvenation_targets` checks at the first rejuvenation that
    it names an unobserved choice of the particles.
    """
    if rejuvenation is None:
        return None
    if isinstance(rejuvenation, Selection):
        observed = observed_union(observations)
        check_selection(algorithm, rejuvenation, observed, param="rejuvenation")
        kernel = prior_mh_kernel(model, rejuvenation)
        kernel.observed, kernel.algorithm = observed, algorithm
        return kernel
    if callable(rejuvenation):
        return rejuvenation
    raise TypeError(
        f"rejuvenation must be None, a Selection (prior MH on it) or a kernel(key, trace) -> (trace, stats), "
        f"got {type(rejuvenation).__name__}"
    )


def check_rejuvenation_targets(algorithm: str, trace: Trace, selection: Selection, observed) -> None:
    """The shared `check_selects_latent` on the first rejuvenated particle (the particles share a structure)."""
    check_selects_latent(algorithm, trace, observed, selection, param="rejuvenation")


def _rejuvenate_list(model, kernel, sweeps: int):
    """Apply `kernel` to every particle; prior-MH kernels decide all particles with one host sync."""
    sel = getattr(kernel, "selection", None)
    pending = [sel is not None and hasattr(kernel, "observed")]

    def rejuvenate(key, traces):
        n = len(traces)
        if pending[0] and traces:
            check_rejuvenation_targets(kernel.algorithm, traces[0], sel, kernel.observed)
            pending[0] = False
        ks = mx.random.split(key, sweeps * (n + 1))
        stats: dict[str, list] = {}
        for s in range(sweeps):
            base = s * (n + 1)
            if sel is not None:
                props = [model.regenerate(tr, sel, key=ks[base + i]) for i, tr in enumerate(traces)]
                u = mx.random.uniform(shape=(n,), key=ks[base + n])
                acc = mx.log(u) < mx.stack([w for _, w in props])
                flags = driver.host(acc)  # one counted sync for all N accept decisions
                traces = [p[0] if f else tr for p, f, tr in zip(props, flags, traces)]
                stats.setdefault("accepted", []).append(mx.mean(acc.astype(mx.float32)))
            else:
                out = [kernel(ks[base + i], tr) for i, tr in enumerate(traces)]
                traces = [tr for tr, _ in out]
                for k in out[0][1] if out else ():
                    vals = mx.stack([mx.array(st[k]).astype(mx.float32) for _, st in out])
                    stats.setdefault(k, []).append(mx.mean(vals))
        return traces, {f"rejuvenation_{k}": sum(v[1:], v[0]) / len(v) for k, v in stats.items()}

    return rejuvenate


# -- the filter engine -------------------------------------------------------------


def run_filter(
    *,
    algorithm: str,
    model,
    n_steps: int,
    n_particles: int,
    advance: Callable,
    ancestors: Callable,
    reindex: Callable,
    ess_threshold: float,
    sync: bool,
    observations: list,
    rejuvenate: Callable | None = None,
    key=None,
    callback=None,
    progress=None,
    params: dict | None = None,
    initial=None,
) -> driver.RunResult:
    """Run a particle filter through the loop driver.

    Args:
        advance: `advance(key, particles, t) -> (particles, log weight increments [N])`.
        ancestors: `ancestors(key, log_weights) -> int32 [N]`.
        reindex: `reindex(particles, indices) -> particles` (indices: a host list
            when `sync`, else an `mx.array`).
        sync: decide resampling on the host (one counted sync per step) or with `mx.where`.
    """
    n = n_particles
    log_n = math.log(n)
    arange = None if sync else mx.arange(n, dtype=mx.int32)

    def step(key, s: SMCState) -> driver.Step:
        t = s.t
        k_res, k_adv, k_rej = mx.split(mx.random.split(key, 3), 3)
        particles, lw, acc = s.particles, s.log_weights, s.log_ml
        resampled: Any = False
        if t > 0 and ess_threshold > 0:
            lse = mx.logsumexp(lw)
            always = ess_threshold >= 1.0
            do = mx.array(True) if always else (2.0 * lse - mx.logsumexp(2.0 * lw)) < math.log(ess_threshold * n)
            anc = ancestors(k_res.reshape(2), lw)
            if sync:
                info = driver.host(mx.concatenate([do.astype(mx.int32).reshape(1), anc.astype(mx.int32)]))
                if info[0]:
                    particles = reindex(particles, info[1:])
                    acc, lw, resampled = acc + lse - log_n, mx.zeros((n,)), True
            else:
                particles = reindex(particles, mx.where(do, anc, arange))
                acc, lw, resampled = mx.where(do, acc + lse - log_n, acc), mx.where(do, 0.0, lw), do
        lse_prev = mx.logsumexp(lw)
        particles, inc = advance(k_adv.reshape(2), particles, t)
        lw = lw + inc
        stats: dict = {}
        if rejuvenate is not None:
            particles, rstats = rejuvenate(k_rej.reshape(2), particles)
            stats.update(rstats)
        lse = mx.logsumexp(lw)
        stats["ess"] = mx.exp(2.0 * lse - mx.logsumexp(2.0 * lw))
        stats["resampled"] = resampled
        stats["log_weight"] = lse - lse_prev
        check = _WeightCheck(lse, algorithm, t, observations[t])
        # a history kept by design (ChainParticles' per-step traces) goes to the driver's store: what the
        # run keeps on purpose is not growth to the census, the leak gate or the growth alert
        kept = particles.latest() if hasattr(particles, "latest") else None
        return driver.Step(SMCState(particles, lw, acc, t + 1, check), kept, stats)

    # The initial state is built inline: a local name here would keep it alive for the whole run.
    return driver.run(
        step, SMCState(initial, mx.zeros((n,)), mx.array(0.0), 0), n_steps, algorithm=algorithm, model=getattr(model, "name", ""), key=key,
        params=params, callback=callback, progress=progress,
    )


def finish(res: driver.RunResult, traces, extra_stats: dict | None = None) -> InferenceResult:
    """Build the InferenceResult: log_ml = banked evidence + log mean of the final weights."""
    s: SMCState = res.state
    lw = s.log_weights
    log_ml = item(s.log_ml + mx.logsumexp(lw) - math.log(lw.shape[0]))
    stats = dict(res.stats)
    stats.update(steps=res.steps, iterations=res.iterations, syncs=res.syncs, duration_s=res.duration_s)
    stats["n_particles"] = int(lw.shape[0])
    acc = stats.get("rejuvenation_accepted")
    if acc:
        stats["acceptance_rate"] = sum(acc) / len(acc)
    if extra_stats:
        stats.update(extra_stats)
    return InferenceResult(traces=traces, stats=stats, log_weights=Floats(lw), log_ml=log_ml, state=s)


# -- sequential particles ----------------------------------------------------------


def sequential_advance(model, args_seq: list, observations: list, n_particles: int):
    """`advance` for a Python list of traces: generate at t = 0, update after."""

    def advance(key, traces, t):
        n = n_particles if t == 0 else len(traces)
        ks = mx.random.split(key, n)
        if t == 0:
            out = [model.generate(args_seq[0], observations[0], key=ks[i]) for i in range(n)]
            return [tr for tr, _ in out], mx.stack([w for _, w in out])
        out = [model.update(tr, observations[t], args=args_seq[t], key=ks[i]) for i, tr in enumerate(traces)]
        return [o[0] for o in out], mx.stack([o[1] for o in out])

    return advance


def _reindex_list(traces: list, idx) -> list:
    return [traces[i] for i in idx]


def smc(
    model,
    args_seq,
    observations_seq,
    n_particles: int = 100,
    *,
    resample="systematic",
    ess_threshold: float = 0.5,
    rejuvenation=None,
    rejuvenation_steps: int = 1,
    vectorized: bool | None = None,
    key=None,
    callback=None,
    progress=None,
) -> InferenceResult:
    """Particle filter: step t moves every particle to `args_seq[t]` with `observations_seq[t]`.

    Args:
        model: a generative function.
        args_seq: one args tuple per time step.
        observations_seq: one choicemap (or dict) of new observations per time step.
        n_particles: N >= 1.
        resample: "systematic", "stratified", "residual", "multinomial" or a
            callable `(key, log_weights, n) -> ancestor indices`.
        ess_threshold: resample when ESS < ess_threshold * N (0: never, 1: every step).
        rejuvenation: None, a Selection (prior MH on it via `regenerate`) or a
            kernel `kernel(key, trace) -> (trace, stats)` (on the batched trace
            when vectorized), applied `rejuvenation_steps` times after each step's reweighting.
        vectorized: run all particles as one batched trace (`vsmc`); None picks
            it for `unfold` models when vectorized execution is available.
        key: an MLX key; without one, genmlx's stream.
        callback, progress: passed to the loop driver.

    Returns:
        InferenceResult with `.traces` (final particles), `.log_weights`
        (relative to the last resampling), `.log_ml`, and `.stats`: per-step
        `ess`, `resampled`, `log_weight`, `rejuvenation_*`; `acceptance_rate`,
        `syncs`, `duration_s`, ...
    """
    args_seq, obs = check_inputs("smc", args_seq, observations_seq, n_particles, ess_threshold, rejuvenation_steps)
    scheme = get_scheme(resample)
    if vectorized is None:
        from .vsmc import prefers_vectorized

        vectorized = prefers_vectorized(model)
    if vectorized:
        from .vsmc import vsmc

        return vsmc(model, args_seq, obs, n_particles, resample=resample, ess_threshold=ess_threshold,
                    rejuvenation=rejuvenation, rejuvenation_steps=rejuvenation_steps, key=key,
                    callback=callback, progress=progress)
    kernel = rejuvenation_kernel(model, rejuvenation, obs, "smc")
    res = run_filter(
        algorithm="smc", model=model, n_steps=len(args_seq), n_particles=n_particles,
        advance=sequential_advance(model, args_seq, obs, n_particles),
        ancestors=lambda k, lw: scheme(k, lw, n_particles),
        reindex=_reindex_list, ess_threshold=float(ess_threshold), sync=True, observations=obs,
        rejuvenate=_rejuvenate_list(model, kernel, rejuvenation_steps) if kernel is not None else None,
        key=key, callback=callback, progress=progress,
        params={"n_particles": n_particles, "resample": str(resample), "ess_threshold": ess_threshold,
                "n_steps": len(args_seq), "vectorized": False},
    )
    return finish(res, list(res.state.particles))
