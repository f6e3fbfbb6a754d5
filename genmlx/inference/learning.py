"""Optimizers, a generic training loop on the driver, and wake-sleep.

Optimizers (`adam`, `sgd`, defined in `_optim`) are pure functions over
parameter trees: `opt.init(params) -> state`, `opt.update(grads, state,
params) -> (params, state)` (descent). An update is one lazy graph; the
parameters and optimizer state are returned in `Step.state`, so the driver's
single `mx.eval` per step cuts it, never carrying it across iterations
unevaluated (the seed's `programmable-vi` leak).

`train(objective, params, ...)` maximizes `objective(params, key)` (a scalar
MLX function; set `maximize=False` for a loss) with `mx.value_and_grad`, one
driver step per iteration. `wake_sleep` learns a model's parameters and an
amortized guide's together (Hinton et al. 1995; Bornschein & Bengio 2015).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import mlx.core as mx

from ..choicemap import ChoiceMap
from ..evaluation import evaluate
from ..gfi import as_choicemap
from ..rng import KeyStream
from . import driver
from ._common import run_name
from ._gradient import check_int
from ._optim import AdamState, Optimizer, SGDState, _check_optimizer, adam, as_params, sgd, tree_map
from .adev import map_keys

__all__ = ["Optimizer", "AdamState", "SGDState", "TrainState", "TrainResult", "WakeSleepResult",
           "adam", "sgd", "train", "wake_sleep", "fit", "as_params", "obs_vector"]


# -- the generic loop --------------------------------------------------------------------------

_EVAL_MSG = "Attempting to eval an array during function transformations"


def compiled(fn: Callable, enabled: bool) -> Callable:
    """`mx.compile(fn)`, falling back to `fn` for good if tracing it needs an array's value (a Python
    decision on a random choice): such programs cannot be compiled, yet still run eagerly."""
    if not enabled:
        return fn
    box = {"f": mx.compile(fn), "traced": False}

    def call(*a):
        if box["traced"]:
            return box["f"](*a)
        try:
            out = box["f"](*a)
        except ValueError as e:
            if _EVAL_MSG not in str(e):
                raise
            box["f"] = fn
            out = fn(*a)
        box["traced"] = True
        return out

    return call


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    average: Any = None  # running (Polyak-Ruppert) mean of the params, when averaging
    i: int = 0  # iterations done (host-side)


class TrainResult(NamedTuple):
    params: Any  # the fitted parameters (evaluated arrays)
    opt_state: Any
    stats: dict  # per-iteration objective values and run counts, plain Python


def fit(loss_and_grad: Callable, params, optimizer: Optimizer, iterations: int, *, key, algorithm: str,
        model: str, run_params: dict, stat: str, compile: bool, callback=None, progress=None,
        average_from: int | None = None):
    """`iterations` optimizer steps on the driver; `loss_and_grad(params, key) -> (loss, grads)`.

    One driver step per iteration: the new parameters and optimizer state are
    the step's state (materialized by the driver's one `mx.eval`);
    `stats[stat]` records `-loss` per iteration. From iteration `average_from`
    on, the state's `average` keeps the running mean of the parameters
    (Polyak-Ruppert averaging: it removes most of a constant step size's
    jitter around the optimum). Returns the driver's RunResult.
    """
    otype = type(optimizer.init(params))

    def update(params, opt, key):
        loss, grads = loss_and_grad(params, key)
        p, o = optimizer.update(grads, otype(*opt), params)
        return p, tuple(o), loss

    run_update = compiled(update, compile)

    def step(k, st: TrainState):
        p, o, loss = run_update(st.params, tuple(st.opt_state), k)
        avg = st.average
        if average_from is not None and st.i >= average_from:
            c = 1.0 / (st.i - average_from + 1)
            avg = p if avg is None else tree_map(lambda a, x: a + c * (x - a), avg, p)
        return driver.Step(TrainState(p, otype(*o), avg, st.i + 1), None, {stat: -loss})

    state = TrainState(params, optimizer.init(params))
    return driver.run(step, state, iterations, algorithm=algorithm, model=model, key=key, params=run_params,
                      callback=callback, progress=progress, pipeline=True)  # a step reads nothing on the host


def run_stats(res: driver.RunResult, *names: str) -> dict:
    """The run's per-iteration history (`names` present even after 0 iterations) and counts."""
    stats = {n: [] for n in names}
    stats.update(res.stats)
    stats.update(iterations=res.iterations, steps=res.steps, syncs=res.syncs, duration_s=res.duration_s)
    return stats


def train(objective: Callable, params, *, iterations: int, optimizer: Optimizer | None = None, key=None,
          maximize: bool = True, compile: bool = True, callback=None, progress=None) -> TrainResult:
    """Fit `params` to maximize (or minimize) `objective(params, key) -> scalar`, one driver step per iteration.

    Args:
        objective: a pure MLX function of the parameter tree and a key (for
            stochastic objectives: an ELBO, an ADEV surrogate, ...).
        params: the initial parameters, a dict (or list/tuple) of mx.arrays
            (numbers are converted to float32 arrays).
        iterations: optimizer steps, >= 0.
        optimizer: `adam(...)` (default `adam(0.01)`) or `sgd(...)`.
        maximize: False to minimize a loss.
        compile: `mx.compile` the whole update (an objective that makes
            Python decisions on array values falls back to eager steps).

    Returns:
        `TrainResult(params, opt_state, stats)`; `stats["objective"]` holds the
        objective per iteration (plain floats), plus `iterations`, `duration_s`.

    Raises:
        ValueError: iterations < 0, params holding no arrays.
    """
    iterations = check_int("train", "iterations", iterations, 0)
    optimizer = _check_optimizer("train", optimizer, 0.01)
    params = as_params("train", params)
    sign = -1.0 if maximize else 1.0
    vg = mx.value_and_grad(lambda p, k: sign * objective(p, k))
    res = fit(vg, params, optimizer, iterations, key=key, algorithm="train", model=getattr(objective, "__name__", ""),
              run_params={"iterations": iterations, "optimizer": optimizer.name,
                          "learning_rate": optimizer.learning_rate},
              stat="objective", compile=compile, callback=callback, progress=progress)
    stats = run_stats(res, "objective")
    if not maximize:
        stats["objective"] = [-v for v in stats.get("objective", [])]
    return TrainResult(res.state.params, res.state.opt_state, stats)


# -- wake-sleep ----------------------------------------------------------------------------------

def obs_vector(values, observed: list) -> mx.array:
    """The observed values at `observed` (in order), flattened into one float32 vector."""
    parts = [mx.array(values[a]).astype(mx.float32).reshape(-1) for a in observed]
    return mx.concatenate(parts) if len(parts) > 1 else parts[0]


def _latent_paths(guide, gp, y) -> list:
    """The guide's choice paths (the latents), from one simulation (setup only)."""
    return list(guide.simulate((gp, y), key=mx.random.key(0)).get_choices()._leaves)


class WakeSleepResult(NamedTuple):
    model_params: Any
    guide_params: Any
    stats: dict


class _WSState(NamedTuple):
    model_params: Any
    guide_params: Any
    model_opt: Any
    guide_opt: Any


def wake_sleep(model, guide, args: tuple, data, model_params, guide_params, *, iterations: int,
               observed=None, model_optimizer: Optimizer | None = None, guide_optimizer: Optimizer | None = None,
               n_samples: int = 8, key=None, compile: bool = True, callback=None,
               progress=None) -> WakeSleepResult:
    """Learn a model's parameters and an amortized guide's by wake-sleep.

    The model is called as `model(model_params, *args)`; the guide as
    `guide(guide_params, y)` with `y` the observed values at `observed`
    (default: the keys of `data`, in order) flattened into one vector; the
    guide's random choices are the model's latent addresses. Each iteration
    (one driver step, `n_samples` particles in one `mx.vmap` pass):

    * wake: z ~ q(. | x); ascend mean log p_theta(x, z) in the model parameters;
    * sleep: (z', x') ~ p_theta; ascend mean log q_phi(z' | x') in the guide's.

    `stats["elbo"]` is the wake phase's ELBO estimate mean[log p(x, z) - log q(z | x)]
    per iteration; `wake_log_joint`, `sleep_log_q` the two objectives.

    Raises:
        ValueError: iterations < 0, n_samples < 1, observed naming no data,
            params holding no arrays.
    """
    algorithm = "wake_sleep"
    iterations = check_int(algorithm, "iterations", iterations, 0)
    n = check_int(algorithm, "n_samples", n_samples, 1)
    mp, gp = as_params(algorithm, model_params, "model_params"), as_params(algorithm, guide_params, "guide_params")
    mopt = _check_optimizer(algorithm, model_optimizer, 0.01)
    gopt = _check_optimizer(algorithm, guide_optimizer, 0.01)
    data = dict(as_choicemap(data).items())
    observed = list(data) if observed is None else list(observed)
    missing = [a for a in observed if a not in data]
    if not observed or missing:
        raise ValueError(f"{algorithm}: observed must name addresses of data; missing {missing or observed!r}")
    x_obs = ChoiceMap({a: data[a] for a in observed})._leaves
    obs_paths = list(x_obs)
    y = obs_vector(data, observed)
    evaluate(y)
    z_paths = _latent_paths(guide, gp, y)

    def wake(mp, gp, keys):
        def one(k):
            g = guide._simulate((gp, y), KeyStream(k))
            leaves = dict(x_obs)
            leaves.update({p: mx.stop_gradient(v) for p, v in g.get_choices()._leaves.items()})
            lp, _ = model._assess((mp, *args), ChoiceMap._from_leaves(leaves))
            return lp, mx.stop_gradient(g.score)
        lp, lq = map_keys(one, keys, model.name, "wake_sleep")
        return -mx.mean(lp), (mx.mean(lp), mx.mean(lp - lq))

    def sleep(gp, mp, keys):
        def one(k):
            tr = model._simulate((mp, *args), KeyStream(k))
            ch = tr.get_choices()._leaves
            yy = mx.stop_gradient(mx.concatenate([ch[p].astype(mx.float32).reshape(-1) for p in obs_paths]))
            z = ChoiceMap._from_leaves({p: mx.stop_gradient(ch[p]) for p in z_paths})
            lq, _ = guide._assess((gp, yy), z)
            return (lq,)
        (lq,) = map_keys(one, keys, guide.name, "wake_sleep")
        return -mx.mean(lq)

    wake_vg = mx.value_and_grad(wake)
    sleep_vg = mx.value_and_grad(sleep)
    mtype, gtype = type(mopt.init(mp)), type(gopt.init(gp))

    def update(mp, gp, mo, go, key):
        k1, k2 = mx.random.split(key)
        (_, (lj, elbo)), mg = wake_vg(mp, gp, mx.random.split(k1, n))
        mp2, mo2 = mopt.update(mg, mtype(*mo), mp)
        lq, gg = sleep_vg(gp, mp2, mx.random.split(k2, n))
        gp2, go2 = gopt.update(gg, gtype(*go), gp)
        return mp2, gp2, tuple(mo2), tuple(go2), lj, elbo, -lq

    run_update = compiled(update, compile)

    def step(k, st: _WSState):
        mp2, gp2, mo, go, lj, elbo, lq = run_update(st.model_params, st.guide_params, tuple(st.model_opt),
                                                tuple(st.guide_opt), k)
        return driver.Step(_WSState(mp2, gp2, mtype(*mo), gtype(*go)), None,
                           {"elbo": elbo, "wake_log_joint": lj, "sleep_log_q": lq})

    state = _WSState(mp, gp, mopt.init(mp), gopt.init(gp))
    res = driver.run(step, state, iterations, algorithm=algorithm, model=run_name(model), key=key,
                     params={"iterations": iterations, "n_samples": n}, callback=callback, progress=progress,
                     pipeline=True)
    stats = run_stats(res, "elbo", "wake_log_joint", "sleep_log_q")
    return WakeSleepResult(res.state.model_params, res.state.guide_params, stats)
