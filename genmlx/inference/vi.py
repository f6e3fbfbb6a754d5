"""Mean-field Gaussian variational inference (ADVI) in the unconstrained space.

The listed addresses are mapped to R^D by `transforms` (each support kind's
bijection T; real addresses by the identity) and the guide is
q(z) = N(z; loc, diag(exp(log_scale))^2). The objective is

    ELBO(loc, log_scale) = E_eps[ log p(x, T(loc + scale * eps)) + log|J_T| ] + sum(log_scale) + D/2 (1 + log 2 pi)

(the Gaussian entropy in closed form; the Jacobian makes it the ELBO of the
pushed-forward guide against the posterior in each address's own space;
Kucukelbir et al. 2017). The guide starts at loc = 0, scale = `init_scale`.
Its gradient is reparameterized over `n_samples`
draws of eps per iteration (`mx.value_and_grad`, the whole Adam update
`mx.compile`d by default), one driver step per iteration: the parameters and
Adam's state are the step's state, so the driver's one `mx.eval` cuts the
graph every iteration. With a constant step size the iterates jitter around
the optimum; the reported fit averages the parameters over the last
`average` fraction of iterations (Polyak-Ruppert), which removes most of it.

Reported moments, `.posterior[addr] = (mean, std)` in the address's own space:
for a real-support address (identity transform) the guide's exact `loc` and
`scale`; for a constrained one, the moments of T(z), z ~ q, by Monte Carlo over
`n_posterior` draws with a fixed key (relative error about 1/sqrt(n_posterior)
of the std). `.stats["unconstrained"]` holds every address's (loc, scale).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ._common import run_name, split_key
from ._gradient import build_traces, check_int, check_positive, setup
from ..evaluation import item
from .learning import _EVAL_MSG, adam, fit, run_stats
from .result import InferenceResult
from .transforms import Identity

__all__ = ["vi"]


def vi(model, args: tuple, observations=None, *, addresses, iterations: int = 1000, learning_rate: float = 0.05,
       n_samples: int = 1, key=None, init=None, init_scale: float = 0.1, average: float = 0.5,
       compile: bool = True, n_traces: int = 10, n_posterior: int = 10_000, callback=None,
       progress=None) -> InferenceResult:
    """Fit a mean-field Gaussian guide over `addresses` by maximizing the ELBO with Adam.

    Args:
        model, args, observations: the target p(addresses | observations);
            every other choice of the model must be observed.
        addresses: the continuous addresses to fit (constrained supports are
            handled through bijections with their Jacobians).
        iterations: Adam steps, >= 0 (one driver step each).
        learning_rate: Adam's step size, > 0.
        n_samples: reparameterized draws per gradient estimate, >= 1.
        key: an MLX key (same key, same fit, bit for bit).
        init: {address: value} for the guide's initial location (addresses
            not listed start from a draw of the model); default: loc = 0 in
            unconstrained space (Stan's ADVI convention; robust to broad priors).
        init_scale: the guide's initial standard deviation in unconstrained space.
        average: the fraction of final iterations over which the guide's
            parameters are averaged (Polyak-Ruppert) for the reported fit;
            0 reports the last iterate.
        compile: `mx.compile` the update (the model's Python runs once).
        n_traces: traces drawn from the fitted guide for `.traces`.
        n_posterior: guide draws (fixed key) for the Monte Carlo moments of
            constrained addresses and `final_elbo`.
        callback: `callback(step, state, stats)` after each iteration.

    Returns:
        `InferenceResult`: `.posterior[addr] = (mean, std)` (floats; lists for
        array-valued addresses); `.stats["elbo"]` per iteration (plain floats),
        `final_elbo` (the reported guide's ELBO over the `n_posterior` draws), `unconstrained`
        {addr: (loc, scale)}, `iterations`, `duration_s`; `.traces` model
        traces at fitted-guide draws; `.state` a `TrainState` whose params
        are {"loc", "log_scale"}.

    Raises:
        ValueError: learning_rate <= 0, iterations < 0, n_samples < 1, an
            unknown, observed or discrete address (naming `addresses`).
    """
    algorithm = "vi"
    iterations = check_int(algorithm, "iterations", iterations, 0)
    lr = check_positive(algorithm, "learning_rate", learning_rate)
    n = check_int(algorithm, "n_samples", n_samples, 1)
    init_scale = check_positive(algorithm, "init_scale", init_scale)
    if isinstance(average, bool) or not isinstance(average, (int, float)) or not 0.0 <= average <= 1.0:
        raise ValueError(f"vi: average must be a fraction in [0, 1], got {average!r}")
    n_traces = check_int(algorithm, "n_traces", n_traces, 0)
    n_posterior = check_int(algorithm, "n_posterior", n_posterior, 2)
    try:
        s = setup(algorithm, model, args, observations, addresses, key, init)
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(("vi:", "init")) else f"vi: addresses: {msg}") from None
    logp, lay = s.logp, s.logp.layout
    d = lay.dim
    entropy_const = 0.5 * d * (1.0 + math.log(2.0 * math.pi))

    def logp_rows(z):
        if n == 1:
            return logp(z[0])
        try:
            return mx.vmap(logp)(z)
        except ValueError as e:  # a model deciding on a value in Python: one draw at a time
            if _EVAL_MSG not in str(e):
                raise
            return mx.stack([logp(z[i]) for i in range(n)])

    def neg_elbo(params, key):
        log_scale = params["log_scale"]
        z = params["loc"] + mx.exp(log_scale) * mx.random.normal((n, d), key=key)
        return -(mx.mean(logp_rows(z)) + mx.sum(log_scale) + entropy_const)

    loc0 = s.z0 if init is not None else mx.zeros((d,))
    params = {"loc": loc0, "log_scale": mx.full((d,), math.log(init_scale))}
    res = fit(mx.value_and_grad(neg_elbo), params, adam(lr), iterations, key=s.key, algorithm=algorithm,
              model=run_name(model), stat="elbo", compile=compile, callback=callback, progress=progress,
              run_params={"iterations": iterations, "learning_rate": lr, "n_samples": n, "dim": d},
              average_from=iterations - int(average * iterations) if average > 0 else None)
    fitted = res.state.average if res.state.average is not None else res.state.params
    loc, log_scale = fitted["loc"], fitted["log_scale"]
    scale = mx.exp(log_scale)
    stats = run_stats(res, "elbo")
    stats["unconstrained"] = {st.address: (_py(part_l), _py(part_s)) for st, part_l, part_s
                              in zip(lay.sites, lay.split(loc), lay.split(scale))}
    k_post, k_tr = split_key(s.aux_key)
    z = loc + scale * mx.random.normal((n_posterior, d), key=k_post)
    lp = _batch_logp(logp, z)
    stats["final_elbo"] = float(np.mean(lp)) + float(item(mx.sum(log_scale))) + entropy_const
    posterior = _moments(lay, loc, scale, z)
    if n_traces:
        eps = mx.random.normal((n_traces, d), key=k_tr)
        zs = loc + scale * eps
        traces = build_traces(model, args, lay, [zs[i] for i in range(n_traces)])
    else:
        traces = []
    return InferenceResult(traces, stats, posterior=posterior, state=res.state._replace(average=fitted))


def _py(x: mx.array):
    return x.item() if x.size == 1 else x.tolist()


def _batch_logp(logp, z) -> np.ndarray:
    """logp at each row of z: one vmap pass, else (a model that cannot be batched) its first 500 rows."""
    try:
        return np.asarray(mx.vmap(logp)(z), dtype=np.float64)
    except ValueError:
        return np.array([item(logp(z[i])) for i in range(min(500, z.shape[0]))], dtype=np.float64)


def _moments(lay, loc, scale, z) -> dict:
    """{address: (mean, std)} of the pushed-forward guide (exact for identity transforms; else over draws z)."""
    out = {}
    mc = [st for st in lay.sites if type(st.bijection) is not Identity]
    draws = lay.to_constrained(z) if mc else {}
    for st, l, sc in zip(lay.sites, lay.split(loc), lay.split(scale)):
        if type(st.bijection) is Identity:
            m, s = np.asarray(l, dtype=np.float64).reshape(st.shape), np.asarray(sc, dtype=np.float64).reshape(st.shape)
        else:
            v = np.asarray(draws[st.address], dtype=np.float64)
            m, s = v.mean(axis=0), v.std(axis=0, ddof=1)
        out[st.address] = (float(m), float(s)) if m.ndim == 0 else (m.tolist(), s.tolist())
    return out
