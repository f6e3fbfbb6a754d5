"""Programmable variational inference: guides are generative functions with trainable parameters.

Design (the simplest that works): a guide is a `@gm.gen` function whose first
argument is its parameters, a dict of mx.arrays, `guide(params, *guide_args)`;
its random choices name the model's latent addresses. Parameters stay plain
arrays passed in (no parameter store), so objectives are pure functions of
`params` that `mx.value_and_grad` and `mx.compile` transform directly.

Objectives, with z_i ~ q(. ; params) and log w_i = log p(x, z_i) - log q(z_i):

* `elbo`:   mean_i log w_i                                  (n draws)
* `iwelbo`: mean_j [logsumexp_i log w_ji - log k]           (n groups of k draws)

IWELBO_k >= ELBO in expectation and increases with k toward log p(x)
(Burda et al. 2016). Both return ADEV surrogates (`adev`): the value is the
plain estimate; the gradient is unbiased, pathwise through reparameterizable
guide choices and by REINFORCE with a leave-one-out baseline through discrete
ones.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..address import from_path
from ..choicemap import ChoiceMap
from ..evaluation import evaluate
from ..gfi import as_choicemap
from ..memory import materialize
from ..rng import KeyStream, resolve
from ..vectorize import VectorizationError
from ._common import run_name, split_key
from ._gradient import check_int
from .adev import _check_baseline, adev_simulate, estimate, map_keys
from ._optim import _check_optimizer, as_params
from .learning import fit, run_stats
from .result import InferenceResult

__all__ = ["elbo", "iwelbo", "programmable_vi", "log_weights"]


def log_weights(model, guide, args: tuple, observations, params, keys: mx.array, guide_args: tuple = ()):
    """Per-draw log w = log p(x, z) - log q(z) for z ~ guide, one draw per key (one vmap pass).

    Returns (log_w [n], score-function log densities [n] or None).
    """
    obs = as_choicemap(observations)._leaves
    box = {}

    def one(k):
        tr, sf = adev_simulate(guide, (params, *guide_args), KeyStream(k))
        z = tr.get_choices()._leaves
        clash = [p for p in z if p in obs]
        if clash:
            raise ValueError(f"the guide {guide.name} samples the observed address {from_path(clash[0])!r}")
        leaves = dict(obs)
        leaves.update(z)
        lp, _ = model._assess(args, ChoiceMap._from_leaves(leaves))
        lw = lp - tr.score
        box["sf"] = sf is not None
        return lw, (sf if sf is not None else 0.0 * lw)

    lw, sf = map_keys(one, keys, guide.name, "elbo")
    return lw, (sf if box["sf"] else None)


def elbo(model, guide, args: tuple, observations, params, key=None, n: int = 1, *, guide_args: tuple = (),
         baseline="loo") -> mx.array:
    """ELBO estimate mean_i [log p(x, z_i) - log q(z_i)] over `n` guide draws (differentiable in `params`)."""
    n = check_int("elbo", "n", n, 1)
    lw, sf = log_weights(model, guide, args, observations, params, mx.random.split(resolve(key), n), guide_args)
    return estimate(lw, sf, _check_baseline(baseline))


def iwelbo(model, guide, args: tuple, observations, params, key=None, k: int = 5, n: int = 1, *,
           guide_args: tuple = (), baseline="loo") -> mx.array:
    """Importance-weighted ELBO: mean over `n` groups of logsumexp(log w of `k` draws) - log k."""
    k = check_int("iwelbo", "k", k, 1)
    n = check_int("iwelbo", "n", n, 1)
    lw, sf = log_weights(model, guide, args, observations, params, mx.random.split(resolve(key), n * k), guide_args)
    bound = mx.logsumexp(lw.reshape(n, k), axis=1) - math.log(k)
    return estimate(bound, None if sf is None else mx.sum(sf.reshape(n, k), axis=1), _check_baseline(baseline))


_OBJECTIVES = ("elbo", "iwelbo")


def programmable_vi(model, guide, args: tuple, observations, init_params, *, iterations: int, optimizer=None,
                    objective: str = "elbo", n_samples: int = 1, k: int = 5, guide_args: tuple = (),
                    baseline="loo", average: float = 0.5, key=None, compile: bool = True, n_traces: int = 10,
                    n_posterior: int = 1000, callback=None, progress=None) -> InferenceResult:
    """Fit the parameters of a guide generative function by stochastic gradient ascent.

    Args:
        model, args, observations: the target p(latents | observations).
        guide: `@gm.gen` function `guide(params, *guide_args)` sampling the
            model's latent addresses (every unobserved choice of the model).
        init_params: dict of mx.arrays (numbers are converted).
        iterations: optimizer steps (one driver step each), >= 0.
        optimizer: `adam(...)` (default `adam(0.01)`) or `sgd(...)`.
        objective: "elbo" (n_samples draws) or "iwelbo" (n_samples groups of k).
        baseline: for score-function (discrete) guide choices: "loo", None or a number.
        average: the fraction of final iterations over which the parameters
            are averaged (Polyak-Ruppert) for the reported fit; 0: the last iterate.
        compile: `mx.compile` the whole update (falls back to eager steps when
            the guide or model makes Python decisions on array values).
        n_traces: model traces built from fitted-guide draws for `.traces`.
        n_posterior: guide draws (fixed key) for the `.posterior` moments.

    Returns:
        `InferenceResult`: `.stats[objective]` per iteration (plain floats),
        `.posterior[addr] = (mean, std)` of each guide choice under the fitted
        guide (Monte Carlo), `.traces` model traces at fitted-guide draws,
        `.state` a `TrainState`: `.average` holds the reported (averaged)
        parameters, `.params` the last iterate.

    Raises:
        ValueError: iterations < 0, n_samples/k < 1, an unknown objective,
            init_params holding no arrays.
    """
    algorithm = "programmable_vi"
    iterations = check_int(algorithm, "iterations", iterations, 0)
    n = check_int(algorithm, "n_samples", n_samples, 1)
    k = check_int(algorithm, "k", k, 1)
    n_traces = check_int(algorithm, "n_traces", n_traces, 0)
    n_posterior = check_int(algorithm, "n_posterior", n_posterior, 2)
    if objective not in _OBJECTIVES:
        raise ValueError(f"{algorithm}: objective must be one of {_OBJECTIVES}, got {objective!r}")
    baseline = _check_baseline(baseline)
    if isinstance(average, bool) or not isinstance(average, (int, float)) or not 0.0 <= average <= 1.0:
        raise ValueError(f"{algorithm}: average must be a fraction in [0, 1], got {average!r}")
    optimizer = _check_optimizer(algorithm, optimizer, 0.01)
    params = as_params(algorithm, init_params, "init_params")
    obs = as_choicemap(observations)
    k_fit, k_out = split_key(key)
    lw0, _ = log_weights(model, guide, args, obs, params, k_out[None], guide_args)  # checks the pairing once
    evaluate(lw0)

    if objective == "elbo":
        def loss(p, key):
            return -elbo(model, guide, args, obs, p, key, n, guide_args=guide_args, baseline=baseline)
    else:
        def loss(p, key):
            return -iwelbo(model, guide, args, obs, p, key, k, n, guide_args=guide_args, baseline=baseline)

    res = fit(mx.value_and_grad(loss), params, optimizer, iterations, key=k_fit, algorithm=algorithm,
              model=run_name(model), stat=objective, compile=compile, callback=callback, progress=progress,
              run_params={"iterations": iterations, "objective": objective, "n_samples": n, "k": k,
                          "optimizer": optimizer.name, "learning_rate": optimizer.learning_rate},
              average_from=iterations - int(average * iterations) if average > 0 else None)
    fitted = res.state.average if res.state.average is not None else res.state.params
    stats = run_stats(res, objective)
    stats["objective"] = objective
    k_post, k_tr = split_key(k_out)
    return InferenceResult(_traces(model, guide, args, obs, fitted, guide_args, n_traces, k_tr), stats,
                           posterior=guide_moments(guide, (fitted, *guide_args), n_posterior, k_post),
                           state=res.state._replace(average=fitted))


def guide_moments(guide, guide_args: tuple, n: int, key) -> dict:
    """{address: (mean, std)} of every guide choice over `n` draws (floats, or lists for arrays)."""
    try:
        leaves = guide.vsimulate(guide_args, n, key=key).get_choices()._leaves
    except VectorizationError:  # a guide deciding on values in Python: one draw at a time
        keys = mx.random.split(key, n)
        draws = [guide.simulate(guide_args, key=keys[i]).get_choices()._leaves for i in range(n)]
        paths = dict.fromkeys(p for d in draws for p in d)
        leaves = {p: mx.stack([d[p] for d in draws if p in d]) for p in paths}
    evaluate(list(leaves.values()))
    out = {}
    for p, v in leaves.items():
        a = np.asarray(v.astype(mx.float32), dtype=np.float64)
        m, s = a.mean(axis=0), a.std(axis=0)
        out[from_path(p)] = (float(m), float(s)) if a.ndim == 1 else (m.tolist(), s.tolist())
    return out


def _traces(model, guide, args, obs, params, guide_args, n: int, key) -> list:
    if n == 0:
        return []
    keys = mx.random.split(key, 2 * n)
    out = []
    for i in range(n):
        z = guide.simulate((params, *guide_args), key=keys[2 * i]).get_choices()._leaves
        leaves = dict(obs._leaves)
        leaves.update(z)
        out.append(model.generate(args, ChoiceMap._from_leaves(leaves), key=keys[2 * i + 1])[0])
    return materialize(out)
