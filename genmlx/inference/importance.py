"""Importance sampling with the prior as proposal, and importance resampling.

Sequential: one `generate` per driver step (one particle per step), so a run
of N particles has flat memory whatever N is — the seed's version built N
traces with no materialization and ran out of Metal buffers. Vectorized: one
driver step for all N particles. With the default shared-key layout
(`genmlx.vectorize`) it evaluates two cached compiled passes in one `mx.eval`
(`genmlx.compiled_pass`): the particles' values and weights (`vgenerate_values`)
and their parameter checks (`checks_of_values`); the batched trace is then made from the
values (`trace_of_values`, lazy). The checks an observation's finite log density
implies (`checks.GuardedCheck`: a normal's mean and scale, say) are read from
that trace only when some weight is not finite. With `layout="per_lane"`: one
`vgenerate(args, observations, N)`, particle i equal to the sequential one of key i.

Math: particle i has log weight w_i = log p(observations | latents_i) (the
`generate` weight); log_ml = logsumexp(w) - log N estimates
log p(observations) without bias in p (not in log p); the particle ESS is
(sum e^w)^2 / sum e^(2w).
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx
import numpy as np

from ..checks import raise_failed
from ..deferred import Deferred
from ..evaluation import evaluate
from ..gfi import as_choicemap
from ..rng import KeyStream
from .. import compiled_pass, vectorize
from ..vectorize import BatchedTraces
from . import driver
from ._common import _bad_score, check_count, finish_stats, run_name, split_key
from .diagnostics import particle_ess
from .result import Floats, InferenceResult

__all__ = ["importance_sampling", "importance_resampling", "log_ml_estimate", "BatchedTraces"]


def log_ml_estimate(log_weights) -> float:
    """logsumexp(w) - log N, in float64."""
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    top = lw.max()
    if not np.isfinite(top):
        return float(top)
    return float(top + math.log(np.exp(lw - top).sum()) - math.log(lw.size))


def importance_sampling(model, args: tuple, observations=None, *, n_particles: int, vectorized: bool = False,
                        key=None, callback=None, progress=None, layout: str = "shared") -> InferenceResult:
    """Importance sampling with each site's prior as proposal.

    Args:
        n_particles: N >= 1.
        vectorized: one `vgenerate` call for all particles (`.traces` is then a
            lazy sequence of per-particle views of one batched trace,
            `.state` the batched trace) instead of N `generate` calls.
        layout: the lane layout of the vectorized pass (`genmlx.vectorize`):
            "shared" (default: one key for all particles, the fastest) or
            "per_lane" (particle i equals the sequential particle of key i).

    Returns:
        `InferenceResult` with `.traces` (N traces), `.log_weights` (N floats),
        `.log_ml`, `.stats`: `ess` (particle ESS), `n_particles`, per-particle
        `log_weight` (sequential), `syncs`, `duration_s`, ...

    Raises:
        ValueError: n_particles < 1; every particle has log weight -inf or a
            weight is NaN (the error names the first site of zero density).
    """
    n = check_count("importance_sampling", "n_particles", n_particles, 1)
    obs = as_choicemap(observations)
    algorithm = "importance_vectorized" if vectorized else "importance"
    params = {"n_particles": n, "vectorized": bool(vectorized)}
    if vectorized:
        args_c, obs_c = model._check_args(args), model._constraints(obs)

        checks: list = []
        # The weights' summaries: with them on the device (no copy of N weights to the host), or, on
        # the CPU device, in NumPy (the weights are in host memory, and NumPy's exp is ~15x MLX's there)
        summarize = _weight_sums if _sums_on_device() else None

        def vstep(k, state):
            if layout == "shared":
                # the lean compiled pass: particle values, weights (and on a GPU their summaries) only;
                # then the checks pass of the same particles (both keyed by the call's args, signed once)
                call = compiled_pass.call_key(args_c, obs_c)
                got = None if call is None else compiled_pass.vgenerate_values(
                    model, args_c, obs_c, n, k, layout, summarize=summarize, call=call)
                cs = None if got is None else compiled_pass.checks_of_values(model, args_c, obs_c, got[0], n, k,
                                                                             layout, call=call)
                if cs is not None:
                    vals, w, sums = got if summarize else (*got, None)
                    checks[:] = cs  # evaluated by the driver in the same mx.eval as the particles
                    return driver.Step(None, (k, vals, w, sums, [c.ok for c in cs]), {})
            vtr, w = vectorize.vgenerate(model, args_c, obs_c, n, k, layout)
            return driver.Step(None, (k, vtr, w, summarize(w) if summarize else None, []), {})

        res = driver.run(vstep, None, 1, algorithm=algorithm, model=run_name(model), key=key, params=params,
                         callback=callback, progress=progress)
        k, vtr, w, sums, _ = res.samples[0]
        lse, lse2, finite = _host_weight_sums(w) if sums is None else (float(x) for x in np.asarray(sums, np.float64))
        if isinstance(vtr, dict):
            raise_failed(checks)
            # the batched trace of these particles, made from their values when first asked for
            vtr = Deferred(functools.partial(compiled_pass.trace_of_values, model, args_c, obs_c, vtr, n, k, layout))
            if not finite:  # the guarded checks may fail only here: check them all
                full = vtr.get()
                evaluate([c.ok for c in full.checks])
                raise_failed(full.checks)
        traces = BatchedTraces(vtr, n)
        state = vtr
        # all weights finite: the summaries are already there, the weights stay on the device until read
        lw = None if finite else np.asarray(w, dtype=np.float64).ravel()
    else:
        model._check_args(args)

        def step(k, state):
            tr, w = model._generate(args, obs, KeyStream(k))
            return driver.Step(None, tr, {"log_weight": w})

        res = driver.run(step, None, n, algorithm=algorithm, model=run_name(model), key=key, params=params,
                         callback=callback, progress=progress,
                         summarize=lambda r: {"log_ml": log_ml_estimate(r.stats.get("log_weight", [0.0]))},
                         pipeline=True)  # the particles are independent: the next is drawn while one lands
        traces = res.samples
        lw = np.asarray(res.stats["log_weight"], dtype=np.float64)
        state = None
    if lw is None:
        log_ml, ess, weights = lse - math.log(n), math.exp(2.0 * lse - lse2), Floats(w)
    else:
        _check_weights(lw, traces, obs)
        (log_ml, ess), weights = _log_ml_and_ess(lw), Floats(lw)
    stats = finish_stats(res)
    stats.update(ess=ess, n_particles=n)
    return InferenceResult(traces, stats, log_weights=weights, log_ml=log_ml, state=state)


def _sums_on_device() -> bool:
    """Whether the weights' summaries are made on the device (a GPU) rather than in NumPy."""
    return mx.default_device() != mx.cpu


@mx.compile
def _weight_sums(w):
    """[logsumexp(w), logsumexp(2 w), all weights finite], on the device with the weights (float32):
    a run whose weights are all finite needs no copy of them on the host (log_ml = lse(w) - log N,
    ESS = exp(2 lse(w) - lse(2 w)))."""
    w = w.reshape(-1)
    return mx.stack([mx.logsumexp(w), mx.logsumexp(2.0 * w), mx.all(mx.isfinite(w)).astype(w.dtype)])


def _host_weight_sums(w) -> tuple[float, float, bool]:
    """`_weight_sums` in NumPy: exponentials in the weights' dtype, float64 sums."""
    a = np.asarray(w).ravel()
    if not np.isfinite(a).all():
        return math.nan, math.nan, False
    top = a.max()
    e = np.exp(a - top)
    return float(top) + math.log(e.sum(dtype=np.float64)), 2.0 * float(top) + math.log(np.square(e).sum(dtype=np.float64)), True


def _log_ml_and_ess(lw: np.ndarray) -> tuple[float, float]:
    """`log_ml_estimate(lw)` and `particle_ess(lw)`, from one exponentiation when every weight is finite."""
    lse, lse2, finite = _host_weight_sums(lw)
    if not finite:
        return log_ml_estimate(lw), particle_ess(lw)
    return lse - math.log(lw.size), math.exp(2.0 * lse - lse2)


def _check_weights(lw: np.ndarray, traces, obs) -> None:
    if np.isnan(lw).any():
        i = int(np.flatnonzero(np.isnan(lw))[0])
        raise ValueError(f"importance_sampling: particle {i} has a NaN log weight: "
                         + _bad_score("importance_sampling", traces[i], obs, float("nan")))
    if lw.size and np.all(lw == -np.inf):
        raise ValueError(f"importance_sampling: all {lw.size} particles have log weight -inf; "
                         + _bad_score("importance_sampling", traces[0], obs, float("-inf")))


def importance_resampling(model, args: tuple, observations=None, *, n_particles: int, n_samples: int = 1,
                          vectorized: bool = False, key=None, callback=None, progress=None) -> InferenceResult:
    """Sampling importance resampling: N weighted particles, then `n_samples` draws by weight.

    The draws are multinomial (with replacement). `.traces` holds the draws,
    `.log_ml` the importance estimate, `.stats["ess"]` the particle ESS and
    `.stats["indices"]` the chosen particles.
    """
    n_samples = check_count("importance_resampling", "n_samples", n_samples, 0)
    k_is, k_pick = split_key(key)
    res = importance_sampling(model, args, observations, n_particles=n_particles, vectorized=vectorized,
                              key=k_is, callback=callback, progress=progress)
    lw = mx.array(np.asarray(res.log_weights, dtype=np.float32))
    idx = mx.random.categorical(lw, num_samples=n_samples, key=k_pick).tolist() if n_samples else []
    stats = dict(res.stats, indices=idx, n_samples=n_samples)
    return InferenceResult([res.traces[i] for i in idx], stats, log_ml=res.log_ml, state=res.state)
