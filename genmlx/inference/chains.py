"""Many MH chains in one pass: C chains as one vectorized trace (`vregenerate`).

Each iteration resamples the selection in every chain at once (`[C]`-shaped
leaves) and accepts per lane with `mx.where(accept[c], new, old)` — no host
sync, one driver step per iteration for all chains. Chain c equals a scalar
chain run with that lane's keys (the vectorized GFI's contract), so R-hat
across chains is meaningful: `.stats["r_hat"]` is computed over the C chains.

The model must vectorize (no Python decision on a random value; see
`genmlx.vectorize`); a model that cannot raises `VectorizationError`.
"""

from __future__ import annotations


import mlx.core as mx
import numpy as np

from ..gfi import as_choicemap
from ..trace import Trace
from . import driver
from ._common import _bad_score, check_count, finish_stats, resolve_selection, run_name, scalar_paths, select_trace, split_key
from .mh import summarize_mcmc
from .result import InferenceResult

__all__ = ["mh_chains", "mh_chains_step"]


def mh_chains_step(key, vtrace: Trace, selection) -> tuple[Trace, dict]:
    """One MH iteration in every chain of a vectorized trace; stats are `[C]` per iteration."""
    k1, k2 = mx.random.split(key)
    model = vtrace.gen_fn
    new, w = model.vregenerate(vtrace, selection, key=k1)
    logu = mx.log(mx.random.uniform(shape=w.shape, key=k2))
    accept = logu < w
    return select_trace(accept, new, vtrace, lane_axis=True), {
        "accepted": accept, "accept_prob": mx.exp(mx.minimum(w, 0.0))}


def mh_chains(model, args: tuple, observations=None, *, selection=None, n_chains: int, n_samples: int,
              burn: int = 0, thin: int = 1, key=None, callback=None, progress=None) -> InferenceResult:
    """`n_chains` MH chains (prior proposals over `selection`) advanced together.

    Returns:
        `InferenceResult` whose `.traces` are vectorized traces (`batch = C`, one
        per kept iteration; `vectorize.lane(t, c)` gives chain c), `.state` the
        final vectorized trace, `.stats`: per-iteration `accepted` and
        `accept_prob` (lists of C values), `acceptance_rate` (all chains),
        `acceptance_rate_per_chain`, and `ess_bulk`, `ess_tail`, `r_hat` over
        the chains, keyed by address.
    """
    c = check_count("mh_chains", "n_chains", n_chains, 1)
    n_samples = check_count("mh_chains", "n_samples", n_samples, 0)
    burn = check_count("mh_chains", "burn", burn, 0)
    thin = check_count("mh_chains", "thin", thin, 1)
    obs = as_choicemap(observations)
    k_init, k_run = split_key(key)
    vtr, _ = model.vgenerate(args, obs, c, key=k_init)
    scores = np.asarray(driver.host(vtr.score), dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(scores)):
        from ..vectorize import lane

        i = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"mh_chains: chain {i}: " + _bad_score("mh_chains", lane(vtr, i), obs, float(scores[i])))
    from ..vectorize import lane

    sel = resolve_selection("mh_chains", lane(vtr, 0), obs, selection)

    def step(k, state):
        t, st = mh_chains_step(k, state, sel)
        return driver.Step(t, t, st)

    res = driver.run(step, vtr, burn + n_samples * thin, algorithm="mh_chains", model=run_name(model), key=k_run,
                     params={"n_chains": c, "n_samples": n_samples, "burn": burn, "thin": thin}, burn=burn,
                     thin=thin, callback=callback, progress=progress, chain=0,
                     summarize=summarize_mcmc)
    stats = finish_stats(res, res.samples, scalar_paths(lane(vtr, 0), sel, obs), chains_axis=True)
    acc = stats.get("accepted")
    if acc:
        stats["acceptance_rate_per_chain"] = np.asarray(acc, dtype=np.float64).mean(axis=0).tolist()
    stats["n_chains"] = c
    return InferenceResult(res.samples, stats, state=res.state)
