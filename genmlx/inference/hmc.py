"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps.

Math, in the unconstrained space (see `transforms`), with diagonal inverse
mass matrix M^-1 (a vector) and step size e:

    r ~ N(0, M);  H(z, r) = -log p(z) + r . (M^-1 r) / 2
    L leapfrog steps: r += e/2 grad; z += e M^-1 r; r += e/2 grad
    accept (z', r') with probability min(1, exp(H(z, r) - H(z', r')))

An iteration whose energy error H' - H exceeds 1000 (or is NaN) is
`diverging` (it is rejected, like any proposal with a huge energy error).

One iteration is one compiled kernel (momentum draw, L unrolled leapfrog
steps, accept by `mx.where`): no host sync, one driver evaluation per
iteration. Warm-up (`burn`): dual averaging tunes e toward `target_accept`
(0.8) and Stan's windowed scheme adapts the diagonal mass matrix
(`adaptation`); with `burn=0` both stay at their initial values.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

from ..tiered_compile import FusedFrom, tiered
from . import driver
from ._gradient import (check_fuse, check_int, check_positive, check_step_size, finish, initial_gradient, setup,
                        summarize)
from .adaptation import Adaptation, adapt, init_adaptation, schedule

__all__ = ["hmc", "HMCState", "hmc_kernel", "leapfrog", "DIVERGENCE"]

DIVERGENCE = 1000.0  # energy error beyond which a trajectory is divergent (Stan's max_deltaH)
_UNROLL = 64  # longer trajectories call a compiled leapfrog step from Python


class HMCState(NamedTuple):
    z: mx.array
    logp: mx.array
    grad: mx.array
    adaptation: Adaptation
    i: int


def leapfrog(value_and_grad):
    """`(z, r, g, step, inv_mass) -> (z, r, g, logp)`: one leapfrog step (not compiled)."""

    def f(z, r, g, step, inv_mass):
        r = r + 0.5 * step * g
        z = z + step * inv_mass * r
        lp, g = value_and_grad(z)
        return z, r + 0.5 * step * g, g, lp

    return f


def _energy(lp, r, inv_mass):
    h = -lp + 0.5 * mx.sum(r * r * inv_mass, axis=-1)
    return mx.where(mx.isnan(h), mx.inf, h)


def hmc_kernel(value_and_grad, n_leapfrog: int, fuse: str = "auto"):
    """Compiled `(key, z, logp, grad, step, inv_mass) -> (z, logp, grad, accepted, accept_prob, diverging)`.

    Works on one point ([dim]) or a batch of independent chains ([C, dim] with a
    vmapped `value_and_grad`). `fuse`: how it is compiled (`genmlx.tiered_compile`
    modes); `kernel.tiered` are its tiered functions (for a `FusedFrom`).
    """
    lf = leapfrog(value_and_grad)
    unrolled = n_leapfrog <= _UNROLL

    def begin(key, z, lp, inv_mass):
        k1, k2 = mx.random.split(key)
        r = mx.random.normal(z.shape, key=k1) * mx.rsqrt(inv_mass)
        return r, _energy(lp, r, inv_mass), mx.log(mx.random.uniform(shape=lp.shape, key=k2))

    def end(z, lp, g, z1, r1, lp1, g1, h0, logu, inv_mass):
        dh = _energy(lp1, r1, inv_mass) - h0
        log_a = -dh
        accept = logu < log_a
        a2 = accept[..., None]
        return (mx.where(a2, z1, z), mx.where(accept, lp1, lp), mx.where(a2, g1, g), accept,
                mx.exp(mx.minimum(log_a, 0.0)), dh > DIVERGENCE)

    def trajectory(begin, lf, end):
        def run(key, z, lp, g, step, inv_mass):
            r, h0, logu = begin(key, z, lp, inv_mass)
            z1, r1, g1, lp1 = z, r, g, lp
            for _ in range(n_leapfrog):
                z1, r1, g1, lp1 = lf(z1, r1, g1, step, inv_mass)
            return end(z, lp, g, z1, r1, lp1, g1, h0, logu, inv_mass)

        return run

    if unrolled:  # one program: the leapfrog steps unrolled
        whole = tiered(trajectory(begin, lf, end), fuse)
        pieces = (whole,)

        def kernel(*a):
            return whole(*a)
    else:  # three programs, the leapfrog step called n_leapfrog times from Python
        pieces = (tiered(begin, fuse), tiered(lf, fuse), tiered(end, fuse))
        kernel = trajectory(*pieces)

    kernel.tiered = pieces
    return kernel


def hmc(model, args: tuple, observations=None, *, addresses, n_samples: int, burn: int = 0, thin: int = 1,
        step_size: float = 0.1, n_leapfrog: int = 10, adapt_step_size: bool = True, adapt_mass: bool = True,
        target_accept: float = 0.8, key=None, init=None, callback=None, progress=None, fuse: str = "auto"):
    """HMC over `addresses` (continuous choices; constrained ones through `transforms`).

    Args:
        model, args, observations: the target is p(addresses | observations);
            every other choice of the model must be observed.
        addresses: the list of addresses to sample.
        n_samples, burn, thin: keep every `thin`-th of `n_samples * thin`
            iterations after `burn` warm-up iterations.
        step_size: the initial leapfrog step size (> 0); dual averaging adapts
            it during burn-in toward `target_accept` when `adapt_step_size`
            (with burn=0 it stays fixed).
        n_leapfrog: leapfrog steps per iteration (>= 1).
        adapt_mass: adapt a diagonal mass matrix during burn-in (Stan's windows).
        key: an MLX key (same key, same chain, bit for bit; on a CUDA GPU
            whose kernels are being built, with `fuse="fused"`).
        init: {address: value} starting point (default: a draw from the model).
        callback: `callback(step, state, stats)` after each iteration.
        fuse: how the kernel is compiled (`genmlx.tiered_compile`): "auto"
            (default) fuses it, except on a CUDA GPU that has not built its
            kernels yet: there it runs unfused while a background process
            builds them, fused from the iteration after. "fused" always
            fuses (the same chain whatever the kernel cache holds),
            "unfused" never does.

    Returns:
        `InferenceResult`: `.traces` (kept traces in each address's own space);
        `.stats` per iteration `accepted`, `accept_prob`, `step_size`,
        `num_steps`, `diverging`; `acceptance_rate`, `divergences` (after
        burn-in), `final_step_size`, `inv_mass`, `ess_bulk`, `ess_tail`,
        `r_hat` by address; `syncs` (0 per iteration), `duration_s`;
        `fused_from` (a tiered kernel only, see `fuse`): the first iteration
        of this call run fused (None: none).

    Raises:
        ValueError: step_size <= 0, n_leapfrog < 1, an unknown, observed or
            discrete address, a latent choice neither listed nor observed.
    """
    alg = "hmc"
    n_samples = check_int(alg, "n_samples", n_samples, 0)
    burn = check_int(alg, "burn", burn, 0)
    thin = check_int(alg, "thin", thin, 1)
    step_size = check_step_size(alg, step_size)
    if isinstance(n_leapfrog, bool) or not hasattr(n_leapfrog, "__index__") or n_leapfrog < 1:
        raise ValueError(f"hmc: n_leapfrog must be an int >= 1, got {n_leapfrog!r}")
    n_leapfrog = int(n_leapfrog)
    target = check_positive(alg, "target_accept", target_accept, 1.0)
    check_fuse(alg, fuse)
    s = setup(alg, model, args, observations, addresses, key, init)
    vg = mx.value_and_grad(s.logp)
    kernel = hmc_kernel(vg, n_leapfrog, fuse)
    fused = FusedFrom(kernel.tiered)
    lp0, g0 = initial_gradient(vg, s.z0)
    plan = schedule(burn, adapt_step_size, adapt_mass, target)
    state = HMCState(s.z0, lp0, g0, init_adaptation(step_size, s.logp.dim), 0)

    def step(k, st: HMCState):
        a = st.adaptation
        z, lp, g, acc, ap, div = kernel(k, st.z, st.logp, st.grad, a.step_size, a.inv_mass)
        fused.after(st.i)
        a2 = adapt(a, plan, st.i, z, ap) if st.i < burn else a
        return driver.Step(HMCState(z, lp, g, a2, st.i + 1), z,
                           {"accepted": acc, "accept_prob": ap, "step_size": a.step_size,
                            "num_steps": n_leapfrog, "diverging": div})

    res = driver.run(step, state, burn + n_samples * thin, algorithm=alg, model=model.name, key=s.key,
                     params={"n_samples": n_samples, "burn": burn, "thin": thin, "step_size": step_size,
                             "n_leapfrog": n_leapfrog},
                     burn=burn, thin=thin, callback=callback, progress=progress, summarize=summarize(),
                     pipeline=True)  # a step reads nothing on the host
    a = res.state.adaptation
    return finish(res, model, args, s.logp.layout, burn=burn, n_samples=n_samples, thin=thin,
                  extra={"final_step_size": a.step_size.item(), "inv_mass": a.inv_mass.tolist(),
                         **fused.stats()})
