"""Metropolis-adjusted Langevin (MALA), one chain or C chains in one pass.

Math, in the unconstrained space (see `transforms`), with step size e:

    z' = z + (e^2 / 2) grad log p(z) + e xi,        xi ~ N(0, I)
    log q(z' | z) = -|z' - z - (e^2 / 2) grad log p(z)|^2 / (2 e^2)
    accept with probability min(1, p(z') q(z | z') / (p(z) q(z' | z)))

(MALA is HMC with one leapfrog step.) One iteration is one compiled kernel
(gradient, proposal, accept by `mx.where`): no host sync, one driver
evaluation per iteration. During burn-in, dual averaging (`adaptation`) tunes
e toward acceptance 0.574 (Roberts & Rosenthal's optimum for MALA); with
`burn=0` the step size stays fixed.

`mala_chains` runs C chains as one batched computation: the gradient is
`mx.vmap`-ed over the chains, the proposal and accept are elementwise, and
the chains share one step size (adapted on their mean acceptance).
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

from ..tiered_compile import FusedFrom, tiered
from . import driver
from ._gradient import (check_fuse, check_int, check_positive, check_step_size, finish, initial_gradient, setup,
                        summarize)
from .adaptation import Adaptation, adapt, init_adaptation, schedule

__all__ = ["mala", "mala_chains", "MalaState", "mala_kernel"]


class MalaState(NamedTuple):
    z: mx.array  # [dim] or [C, dim]
    logp: mx.array
    grad: mx.array
    adaptation: Adaptation
    i: int  # iterations done (host-side, for the warm-up schedule)


def mala_kernel(value_and_grad, fuse: str = "auto"):
    """Compiled `(key, z, logp, grad, step) -> (z, logp, grad, accepted, accept_prob)`.

    Works on one point ([dim]) or a batch ([C, dim] with a vmapped `value_and_grad`).
    `fuse`: how it is compiled (`genmlx.tiered_compile` modes).
    """

    def kernel(key, z, lp, g, step):
        k1, k2 = mx.random.split(key)
        half = 0.5 * step * step
        z2 = z + half * g + step * mx.random.normal(z.shape, key=k1)
        lp2, g2 = value_and_grad(z2)
        fwd = z2 - z - half * g
        bwd = z - z2 - half * g2
        log_q = (mx.sum(fwd * fwd, axis=-1) - mx.sum(bwd * bwd, axis=-1)) / (2.0 * step * step)
        log_a = lp2 - lp + log_q
        log_a = mx.where(mx.isnan(log_a), -mx.inf, log_a)
        accept = mx.log(mx.random.uniform(shape=lp.shape, key=k2)) < log_a
        a2 = accept[..., None]
        return (mx.where(a2, z2, z), mx.where(accept, lp2, lp), mx.where(a2, g2, g), accept,
                mx.exp(mx.minimum(log_a, 0.0)))

    return tiered(kernel, fuse)


def _run(algorithm, model, args, observations, addresses, n_samples, burn, thin, step_size, adapt_step_size,
         target_accept, key, init, n_chains, callback, progress, fuse):
    n_samples = check_int(algorithm, "n_samples", n_samples, 0)
    burn = check_int(algorithm, "burn", burn, 0)
    thin = check_int(algorithm, "thin", thin, 1)
    step_size = check_step_size(algorithm, step_size)
    target = check_positive(algorithm, "target_accept", target_accept, 1.0)
    check_fuse(algorithm, fuse)
    s = setup(algorithm, model, args, observations, addresses, key, init)
    vg = mx.value_and_grad(s.logp)
    if n_chains is None:
        z0 = s.z0
    else:
        z0 = _chain_inits(s, model, args, observations, addresses, n_chains, init)
        vg = mx.vmap(vg)
    kernel = mala_kernel(vg, fuse)
    fused = FusedFrom((kernel,))
    lp0, g0 = initial_gradient(vg, z0)
    plan = schedule(burn, adapt_step_size, False, target)
    state = MalaState(z0, lp0, g0, init_adaptation(step_size, s.logp.dim), 0)
    chains = n_chains is not None

    def step(k, st: MalaState):
        a = st.adaptation
        z, lp, g, acc, ap = kernel(k, st.z, st.logp, st.grad, a.step_size)
        fused.after(st.i)
        a2 = adapt(a, plan, st.i, z, mx.mean(ap) if chains else ap) if st.i < burn else a
        return driver.Step(MalaState(z, lp, g, a2, st.i + 1), z,
                           {"accepted": acc, "accept_prob": ap, "step_size": a.step_size})

    res = driver.run(step, state, burn + n_samples * thin, algorithm=algorithm, model=model.name, key=s.key,
                     params={"n_samples": n_samples, "burn": burn, "thin": thin, "step_size": step_size,
                             "n_chains": n_chains or 1},
                     burn=burn, thin=thin, callback=callback, progress=progress, summarize=summarize(),
                     pipeline=True)  # a step reads nothing on the host
    final = res.state.adaptation.step_size.item() if res.steps else step_size
    return finish(res, model, args, s.logp.layout, burn=burn, n_samples=n_samples, thin=thin, chains=chains,
                  extra={"final_step_size": final, **({"n_chains": n_chains} if chains else {}), **fused.stats()})


def _chain_inits(s, model, args, observations, addresses, n_chains, init):
    from .transforms import layout

    c = check_int("mala_chains", "n_chains", n_chains, 1)
    zs = [s.z0]
    keys = mx.random.split(s.aux_key, c)
    for i in range(1, c):
        zs.append(layout(model, args, observations, addresses, key=keys[i], init=init).z0)
    return mx.stack(zs)


def mala(model, args: tuple, observations=None, *, addresses, n_samples: int, burn: int = 0, thin: int = 1,
         step_size: float = 0.1, adapt_step_size: bool = True, target_accept: float = 0.574, key=None, init=None,
         callback=None, progress=None, fuse: str = "auto"):
    """MALA over `addresses` (continuous choices; constrained ones through `transforms`).

    Args:
        model, args, observations: the target is p(addresses | observations);
            every other choice of the model must be observed.
        addresses: the list of addresses to sample.
        n_samples, burn, thin: keep every `thin`-th of `n_samples * thin`
            iterations after `burn` warm-up iterations.
        step_size: the (initial) step size e > 0; adapted during burn-in by
            dual averaging toward `target_accept` when `adapt_step_size`.
        key: an MLX key (same key, same chain, bit for bit; on a CUDA GPU
            whose kernels are being built, with `fuse="fused"`).
        init: {address: value} starting point (default: a draw from the model).
        callback: `callback(step, state, stats)` after each iteration.
        fuse: how the kernel is compiled, as for `hmc` (`genmlx.tiered_compile`):
            "auto" (default), "fused" or "unfused".

    Returns:
        `InferenceResult`: `.traces` (kept traces, values in each address's own
        space); `.stats` per iteration `accepted`, `accept_prob`, `step_size`;
        `acceptance_rate` (after burn-in), `final_step_size`, `ess_bulk`,
        `ess_tail`, `r_hat` by address; `syncs` (0 per iteration), `duration_s`;
        `fused_from` (a tiered kernel only): the first iteration run fused.

    Raises:
        ValueError: step_size <= 0, an unknown, observed or discrete address,
            a latent choice neither listed nor observed, n_samples/burn < 0, thin < 1.
    """
    return _run("mala", model, args, observations, addresses, n_samples, burn, thin, step_size, adapt_step_size,
                target_accept, key, init, None, callback, progress, fuse)


def mala_chains(model, args: tuple, observations=None, *, addresses, n_chains: int, n_samples: int,
                burn: int = 0, thin: int = 1, step_size: float = 0.1, adapt_step_size: bool = True,
                target_accept: float = 0.574, key=None, init=None, callback=None, progress=None,
                fuse: str = "auto"):
    """`n_chains` MALA chains in one batched pass (gradients `mx.vmap`-ed over the chains).

    Each chain starts from its own draw from the model (or all from `init`).
    Returns an `InferenceResult` whose `.traces` are vectorized traces (`batch
    = C`, one per kept iteration; `genmlx.vectorize.lane(t, c)` is chain c);
    per-iteration `accepted` and `accept_prob` are lists of C values;
    `ess_bulk`, `ess_tail`, `r_hat` are computed across the chains. Same
    arguments (`fuse` included) and errors as `mala`, plus `n_chains >= 1`.
    """
    check_int("mala_chains", "n_chains", n_chains, 1)
    return _run("mala_chains", model, args, observations, addresses, n_samples, burn, thin, step_size,
                adapt_step_size, target_accept, key, init, n_chains, callback, progress, fuse)
