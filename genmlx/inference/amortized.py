"""Amortized inference: train a guide on model simulations, then use it as an importance proposal.

The guide is a generative function `guide(params, y)` where `y` is the vector
of observed values (the model's choices at `observed`, flattened in order),
e.g. a linear map or a small MLP from `y` to the parameters of each latent's
distribution, written with plain mx ops (or `mlx.nn` modules' functional
forms) over the `params` dict. Its choices name the model's latent addresses.

Training (the sleep phase of wake-sleep, "neural importance sampling"):
each iteration draws `batch_size` joint samples (z, x) ~ p from the model in
one `mx.vmap` pass and ascends mean log q(z | y(x); params), which minimizes
E_x[KL(p(z | x) || q(z | x))]: a mass-covering proposal, as importance
sampling wants. One driver step per iteration (parameters and Adam's state
materialized by the driver).

Importance sampling with a proposal: particle i draws z_i ~ q(. | y) and has
log weight log p(x, z_i) - log q(z_i | y) (the model's `generate` weight with
every choice constrained is log p(x, z_i)); `log_ml` = logsumexp(w) - log N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from ..address import from_path
from ..choicemap import ChoiceMap
from ..gfi import as_choicemap
from ..rng import KeyStream
from ..vectorize import VectorizationError, _checks_out, _pack_top, _reduce_checks, _unpack, vmap_tree
from . import driver
from ._common import check_count, run_name, split_key
from ._gradient import check_int
from .adev import map_keys
from .diagnostics import particle_ess
from .importance import BatchedTraces, log_ml_estimate
from ._optim import _check_optimizer, as_params
from .learning import fit, obs_vector, run_stats
from .result import Floats, InferenceResult

__all__ = ["amortized_proposal", "AmortizedProposal", "proposal_importance_sampling"]


@dataclass(frozen=True, eq=False)
class AmortizedProposal:
    """A trained amortized guide: `.params`, `.stats` (training), `.importance_sampling(observations, ...)`."""

    model: Any
    guide: Any
    args: tuple
    observed: tuple
    params: Any
    stats: dict

    def proposal_args(self, observations) -> tuple:
        """The guide's args `(params, y)` for these observations."""
        obs = dict(as_choicemap(observations).items())
        missing = [a for a in self.observed if a not in obs]
        if missing:
            raise ValueError(f"amortized proposal: observations lack the observed address {missing[0]!r}")
        return (self.params, obs_vector(obs, list(self.observed)))

    def importance_sampling(self, observations, *, n_particles: int, key=None, vectorized: bool = True,
                            callback=None) -> InferenceResult:
        """Importance sampling of the model given `observations`, the trained guide as proposal."""
        return proposal_importance_sampling(self.model, self.args, observations, self.guide,
                                            self.proposal_args(observations), n_particles=n_particles, key=key,
                                            vectorized=vectorized, callback=callback)


def amortized_proposal(model, guide, args: tuple, *, observed, init_params, iterations: int, optimizer=None,
                       batch_size: int = 16, average: float = 0.5, key=None, compile: bool = True,
                       callback=None, progress=None) -> AmortizedProposal:
    """Train `guide(params, y)` on model simulations to propose the latents given the observations.

    Args:
        model, args: the model and its arguments.
        guide: `@gm.gen` function `guide(params, y)` sampling the model's latent addresses.
        observed: the addresses the guide conditions on (in the order of `y`).
        init_params: the guide's initial parameters, a dict of mx.arrays.
        iterations: optimizer steps, >= 0 (one driver step each).
        optimizer: default `adam(0.01)`.
        batch_size: model simulations per step, >= 1.
        average: the fraction of final iterations over which the parameters
            are averaged (Polyak-Ruppert) for the returned proposal; 0: the last iterate.
        compile: `mx.compile` the update (eager when that is impossible).

    Returns:
        `AmortizedProposal` with `.params`, `.stats["log_q"]` per iteration
        (the training objective, mean log q(z | x)) and `.importance_sampling`.

    Raises:
        ValueError: iterations < 0, batch_size < 1, observed naming no choice of
            the model, init_params holding no arrays.
    """
    algorithm = "amortized_proposal"
    iterations = check_int(algorithm, "iterations", iterations, 0)
    b = check_int(algorithm, "batch_size", batch_size, 1)
    if isinstance(average, bool) or not isinstance(average, (int, float)) or not 0.0 <= average <= 1.0:
        raise ValueError(f"{algorithm}: average must be a fraction in [0, 1], got {average!r}")
    optimizer = _check_optimizer(algorithm, optimizer, 0.01)
    params = as_params(algorithm, init_params, "init_params")
    observed = [observed] if isinstance(observed, (str, int)) else list(observed)
    k_setup, k_fit = split_key(key)
    obs_paths, z_paths = _paths(algorithm, model, guide, args, params, observed, k_setup)

    def loss(p, key):
        def one(k):
            m = model._simulate(args, KeyStream(k))
            ch = m.get_choices()._leaves
            y = mx.concatenate([ch[q].astype(mx.float32).reshape(-1) for q in obs_paths])
            lq, _ = guide._assess((p, mx.stop_gradient(y)), ChoiceMap._from_leaves({q: ch[q] for q in z_paths}))
            return (lq,)

        (lq,) = map_keys(one, mx.random.split(key, b), run_name(model), algorithm)
        return -mx.mean(lq)

    res = fit(mx.value_and_grad(loss), params, optimizer, iterations, key=k_fit, algorithm=algorithm,
              model=run_name(model), stat="log_q", compile=compile, callback=callback, progress=progress,
              run_params={"iterations": iterations, "batch_size": b, "optimizer": optimizer.name,
                          "learning_rate": optimizer.learning_rate},
              average_from=iterations - int(average * iterations) if average > 0 else None)
    fitted = res.state.average if res.state.average is not None else res.state.params
    return AmortizedProposal(model, guide, args, tuple(observed), fitted, run_stats(res, "log_q"))


def _paths(algorithm: str, model, guide, args, params, observed: list, key) -> tuple[list, list]:
    """The observed paths and the guide's (latent) paths, from one simulation of each (setup only)."""
    choices = dict(model.simulate(args, key=key).get_choices().items())
    missing = [a for a in observed if a not in choices]
    if not observed or missing:
        raise ValueError(f"{algorithm}: observed must name random choices of {run_name(model)}; "
                         f"not choices: {missing or observed!r}")
    obs_paths = list(ChoiceMap({a: choices[a] for a in observed})._leaves)
    z_paths = list(guide.simulate((params, obs_vector(choices, observed)), key=key).get_choices()._leaves)
    clash = [p for p in z_paths if p in obs_paths]
    if clash:
        raise ValueError(f"{algorithm}: the guide samples the observed address {from_path(clash[0])!r}")
    return obs_paths, z_paths


def proposal_importance_sampling(model, args: tuple, observations, proposal, proposal_args: tuple, *,
                                 n_particles: int, key=None, vectorized: bool = True,
                                 callback=None) -> InferenceResult:
    """Importance sampling with a custom proposal generative function over the model's latents.

    Particle i: z_i ~ proposal(*proposal_args); log w_i = log p(observations, z_i) - log q(z_i).
    Vectorized: one `mx.vmap` pass in one driver step (`.traces` are views
    of one batched trace); else one driver step per particle.

    Returns:
        `InferenceResult` with `.traces`, `.log_weights`, `.log_ml`, `.stats["ess"]`.
    """
    algorithm = "proposal_importance"
    n = check_count(algorithm, "n_particles", n_particles, 1)
    obs = as_choicemap(observations)._leaves
    model._check_args(args)
    proposal._check_args(proposal_args)

    def particle(keys: KeyStream):
        q = proposal._simulate(proposal_args, keys)
        leaves = dict(obs)
        for p, v in q.get_choices()._leaves.items():
            if p in leaves:
                raise ValueError(f"{algorithm}: the proposal samples the observed address {from_path(p)!r}")
            leaves[p] = v
        tr, w = model._generate(args, ChoiceMap._from_leaves(leaves), keys.child())
        return tr, w - q.score

    params = {"n_particles": n, "vectorized": bool(vectorized)}
    if vectorized:
        def vstep(k, state):
            def lane(kk):
                tr, lw = particle(KeyStream(kk))
                return _pack_top(tr), lw, _checks_out(tr)

            node, lw, cs = vmap_tree(lane, (mx.random.split(k, n),), run_name(model), algorithm)
            return driver.Step(None, (_unpack(node, args, n, _reduce_checks(cs)), lw), {})

        try:
            res = driver.run(vstep, None, 1, algorithm=algorithm, model=run_name(model), key=key, params=params,
                             callback=callback)
        except VectorizationError:
            vectorized = False
        else:
            vtr, lw = res.samples[0]
            traces, state = BatchedTraces(vtr, n), vtr
            lw = np.asarray(lw, dtype=np.float64).ravel()
    if not vectorized:
        def step(k, state):
            tr, lw = particle(KeyStream(k))
            return driver.Step(None, tr, {"log_weight": lw})

        res = driver.run(step, None, n, algorithm=algorithm, model=run_name(model), key=key, params=params,
                         callback=callback)
        traces, state = res.samples, None
        lw = np.asarray(res.stats["log_weight"], dtype=np.float64)
    stats = run_stats(res)
    stats.update(ess=particle_ess(lw), n_particles=n)
    return InferenceResult(traces, stats, log_weights=Floats(lw), log_ml=log_ml_estimate(lw), state=state)
