"""The plain-MLX floors: each benchmarked algorithm written directly in `mlx.core`, no PPL.

Every genmlx timing in the suite is divided by one of these, measured in the
same run, so the ratio isolates what the PPL itself costs (handlers, traces,
choicemaps, the loop driver, per-site bookkeeping). Each floor is the same
algorithm as genmlx's, on the same model, with the same random-number
machinery:

* Fairness: the floors draw their random numbers with genmlx's own samplers —
  `genmlx.distributions.gamma_sampler.log_gamma_pair` (the vectorized
  Marsaglia-Tsang gamma in log space, both of Beta's gammas in one pass;
  Beta(a, b) = sigmoid(log G_a - log G_b), exactly as `dist.beta` samples,
  a single draw as `beta_draw`'s one compiled call)
  and `genmlx.distributions._common.std_normal` (the fused Giles
  inverse-CDF normal of `dist.normal`). The speed of a
  sampler is the distributions' business (benchmarked on its own); here it
  must cancel out of the ratio. Log-densities are written out by hand.
* Each floor comes eager (the graph rebuilt every call, one `mx.eval` per
  step, like the driver) and compiled (`mx.compile` of the same step; for MH
  also the fused K-iteration kernels, the plain counterparts of
  `infer.compiled_mh`: proposals drawn as one batch, the accept recursion
  resolved at once by `genmlx.inference.accept_scan.resolve`, which is
  plain MLX — the fastest form of this chain we know, K = 50 about 6x
  faster than K unrolled scalar steps on the CPU; on a CUDA GPU one custom
  kernel, `mx.fast.cuda_kernel`, 11x faster than the array form at K = 50).
* A floor returns what the algorithm returns: IS the particles, their log
  weights and the log-evidence estimate; MH the kept values and accept flags;
  the particle filter the particle paths, weights and log evidence; HMC the
  kept positions.
"""

from __future__ import annotations

import math
from typing import Callable

import mlx.core as mx

from genmlx.distributions._common import std_normal  # the normal sampler dist.normal uses
from genmlx.distributions.gamma_sampler import beta_draw, log_gamma_pair  # the gamma sampler dist.beta uses
from genmlx.inference.accept_scan import resolve  # plain MLX: the accept recursion of an independence chain

__all__ = [
    "normal_lp", "beta22", "BetaBernoulli", "Regression", "ParticleFilter", "mh_eager", "mh_fused", "mh_upfront",
    "HMC", "funnel_logp", "regression_logp", "gradient_chain",
]

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def normal_lp(x, mu, sigma):
    z = (x - mu) / sigma
    log_sigma = mx.log(sigma) if isinstance(sigma, mx.array) else math.log(sigma)
    return -0.5 * z * z - (log_sigma + HALF_LOG_2PI)


def beta22(key, shape=()):
    """Beta(2, 2) draws, as `dist.beta(2.0, 2.0).sample` makes them: both log-gammas from one
    sampler pass (`log_gamma_pair`); a single draw as its one compiled call (`beta_draw`)."""
    if shape == ():
        return beta_draw(key, 2.0, 2.0)
    return mx.sigmoid(mx.subtract(*log_gamma_pair(key, 2.0, 2.0, shape)))


# -- models as plain functions -----------------------------------------------------------------

class BetaBernoulli:
    """p ~ Beta(2, 2); y_i ~ Bernoulli(p)."""

    def __init__(self, data):
        self.ys = mx.array([float(y) for y in data])

    def prior(self, key, shape=()):
        return beta22(key, shape)

    def loglik(self, p):
        """sum_i log Bernoulli(y_i | p), over the trailing data axis (p: any shape)."""
        p = p[..., None]
        return mx.sum(self.ys * mx.log(p) + (1.0 - self.ys) * mx.log1p(-p), axis=-1)

    def state(self, key, shape=()):
        return self.prior(key, shape)


class Regression:
    """slope, intercept ~ N(0, 10); y_i ~ N(slope x_i + intercept, 1)."""

    def __init__(self, xs, ys, prior_sd: float = 10.0):
        self.xs, self.ys, self.sd = mx.array(xs), mx.array(ys), prior_sd

    def prior(self, key, shape=()):
        k1, k2 = mx.random.split(key)
        return self.sd * std_normal(k1, shape), self.sd * std_normal(k2, shape)

    def loglik(self, slope, intercept):
        mu = slope[..., None] * self.xs + intercept[..., None]
        return mx.sum(normal_lp(self.ys, mu, 1.0), axis=-1)


# -- importance sampling -----------------------------------------------------------------------

def _log_ml(lw):
    return mx.logsumexp(lw) - math.log(lw.size)


def is_vectorized(model, n: int) -> Callable:
    """`f(key) -> (particles, log weights, log_ml)` for N particles at once."""

    def f(key):
        if isinstance(model, BetaBernoulli):
            p = model.prior(key, (n,))
            lw = model.loglik(p)
            parts = (p,)
        else:
            s, b = model.prior(key, (n,))
            lw = model.loglik(s, b)
            parts = (s, b)
        return parts, lw, _log_ml(lw)

    return f


def is_particle(model) -> Callable:
    """`f(key) -> (particle, log weight)`: one particle (the sequential floor calls it N times)."""

    def f(key):
        if isinstance(model, BetaBernoulli):
            p = model.prior(key)
            return (p,), model.loglik(p)
        s, b = model.prior(key)
        return (s, b), model.loglik(s, b)

    return f


def is_sequential(particle: Callable, key, n: int):
    """N particles one at a time, one `mx.eval` each (what the driver does per particle)."""
    keys = mx.random.split(key, n)
    mx.eval(keys)
    parts, lws = [], []
    for i in range(n):
        x, lw = particle(keys[i])
        mx.eval(x, lw)
        parts.append(x)
        lws.append(lw)
    lw = mx.stack(lws)
    return parts, lw, _log_ml(lw).item()


# -- Metropolis-Hastings with the prior as proposal (selection = all latents) ------------------

def mh_step(model) -> Callable:
    """`step(key, state, ll) -> (state, ll, accepted)`: resample every latent from its prior.

    Math (as genmlx's `mh` with the default selection): the regenerate weight of
    a prior proposal is the change in log likelihood; accept when log u < it.
    """

    def step(key, state, ll):
        k1, k2 = mx.random.split(key)
        if isinstance(model, BetaBernoulli):
            new = (model.prior(k1),)
            lln = model.loglik(new[0])
        else:
            new = model.prior(k1)
            lln = model.loglik(*new)
        acc = mx.log(mx.random.uniform(key=k2)) < lln - ll
        return tuple(mx.where(acc, a, b) for a, b in zip(new, state)), mx.where(acc, lln, ll), acc

    return step


def mh_init(model, key):
    if isinstance(model, BetaBernoulli):
        st = (model.prior(key),)
        ll = model.loglik(st[0])
    else:
        st = model.prior(key)
        ll = model.loglik(*st)
    mx.eval(st, ll)
    return st, ll


def mh_eager(step: Callable, state, ll, key, n: int):
    """n iterations, one `mx.eval` per iteration, every state kept (as `infer.mh` keeps traces)."""
    keys = mx.random.split(key, n)
    mx.eval(keys)
    kept, accs = [], []
    for i in range(n):
        state, ll, acc = step(keys[i], state, ll)
        mx.eval(state, ll, acc)
        kept.append(state)
        accs.append(acc)
    return state, kept, accs


def _proposals(model, key, shape=()):
    """Prior proposals and their log likelihoods, `shape` of them from one key."""
    if isinstance(model, BetaBernoulli):
        props = (model.prior(key, shape),)
        return props, model.loglik(props[0])
    props = model.prior(key, shape)
    return props, model.loglik(*props)


def _resolve(props: tuple, lls, logu, state, ll, k: int):
    """The K accept decisions of an independence chain at once (`accept_scan.resolve`: the same
    comparisons as K sequential steps, in O(log K) ops, one kernel on a CUDA GPU) and the states
    after each iteration, gathered by index."""
    c, accepted, _, ll_last = resolve(lls, logu, ll)
    kept = tuple(mx.concatenate([s[None], p])[c[1:]] for s, p in zip(state, props))
    # the last state: the last kept row, as a view (an int index is a gather: a launch on a GPU)
    return tuple(mx.squeeze(a[-1:], 0) for a in kept), ll_last, kept, accepted


def mh_fused_kernel(model, k: int) -> Callable:
    """K iterations in one compiled function, iteration j's randomness from the j-th of K keys (the
    keys `infer.mh` uses): `(keys [K, 2], state, ll) -> (state, ll, stacked states, accepts)`.

    The proposals do not depend on the chain (prior proposals): the K of them are drawn by one
    `mx.vmap` over the keys, their likelihoods batched, and the accept recursion resolved at once.
    """

    def kernel(keys, state, ll):
        def one(key):
            k1, k2 = mx.random.split(key)
            props, lls = _proposals(model, k1)
            return props, lls, mx.log(mx.random.uniform(key=k2))

        props, lls, logu = mx.vmap(one)(keys)
        return _resolve(props, lls, logu, state, ll, k)

    return mx.compile(kernel)


def mh_fused(kernel: Callable, k: int, state, ll, key, n: int):
    """n // K fused steps, one `mx.eval` each; the stacked states are kept."""
    return _blocks(kernel, k, state, ll, key, n, per_iteration_keys=True)


def _blocks(kernel: Callable, k: int, state, ll, key, n: int, per_iteration_keys: bool):
    """Drive a K-iteration kernel n // K times, one `mx.eval` per block; the stacked states are kept.
    The kernel gets K keys (one per iteration) or the block's one key."""
    steps = n // k
    keys = mx.random.split(key, steps)
    mx.eval(keys)
    blocks = []
    for i in range(steps):
        ks = mx.random.split(keys[i], k) if per_iteration_keys else keys[i]
        state, ll, stacked, accs = kernel(ks, state, ll)
        mx.eval(state, ll, stacked, accs)
        blocks.append((stacked, accs))
    return state, blocks


def mh_upfront_kernel(model, k: int) -> Callable:
    """K iterations compiled, all randomness drawn up front from the block's one key: the K prior
    proposals and uniforms in one call of each sampler, the K likelihoods as one batch, the accept
    recursion resolved at once (`chain_states`). The fastest plain-MLX program of this chain we
    know; `infer.compiled_mh(keys="block")` is judged against it.
    """

    def kernel(key, state, ll):
        k1, k2 = mx.random.split(key)
        props, lls = _proposals(model, k1, (k,))
        logu = mx.log(mx.random.uniform(shape=(k,), key=k2))
        return _resolve(props, lls, logu, state, ll, k)

    return mx.compile(kernel)


def mh_upfront(kernel: Callable, k: int, state, ll, key, n: int):
    """n // K steps of `mh_upfront_kernel`, one key per block."""
    return _blocks(kernel, k, state, ll, key, n, per_iteration_keys=False)


# -- bootstrap particle filter on the linear-Gaussian state space ------------------------------

class ParticleFilter:
    """Bootstrap filter for x_t ~ N(x_{t-1}, q), y_t ~ N(x_t, r), N particles, T steps.

    The same algorithm as `infer.smc` on the unfold model (`vsmc`): at t > 0,
    when ESS < threshold * N, systematic resampling (inverse CDF by
    `searchsorted`), applied with `mx.where` (no host sync); the log evidence
    is banked at each resampling; particle paths are kept ([T, N]) and
    gathered with the ancestors, like the batched trace's leaves.
    """

    def __init__(self, ys, n: int, q: float = 1.0, r: float = 0.5, ess_threshold: float = 0.5):
        self.ys = mx.array(ys)
        self.T, self.n, self.q, self.r = len(ys), n, q, r
        self.log_thr = math.log(ess_threshold * n)
        self.rows = mx.arange(self.T)[:, None]
        self.arange = mx.arange(n, dtype=mx.int32)

    def step(self, key, t, x, lw, log_ml, paths):
        n = self.n
        k_res, k_adv = mx.random.split(key)
        lse = mx.logsumexp(lw)
        do = (t > 0) & ((2.0 * lse - mx.logsumexp(2.0 * lw)) < self.log_thr)
        w = mx.exp(lw - lse)
        cdf = mx.cumsum(w)
        cdf = cdf / cdf[-1]
        u = (mx.arange(n, dtype=mx.float32) + mx.random.uniform(key=k_res)) / n
        anc = mx.minimum(mx.searchsorted(cdf, u, side="right").astype(mx.int32), n - 1)
        idx = mx.where(do, anc, self.arange)
        x, paths = x[idx], paths[:, idx]
        log_ml = mx.where(do, log_ml + lse - math.log(n), log_ml)
        lw = mx.where(do, 0.0, lw)
        x = x + self.q * std_normal(k_adv, (n,))
        lw = lw + normal_lp(self.ys[t], x, self.r)
        paths = mx.where(self.rows == t, x[None], paths)
        return x, lw, log_ml, paths

    def init(self):
        n = self.n
        return mx.zeros((n,)), mx.zeros((n,)), mx.array(0.0), mx.zeros((self.T, n))

    def run(self, step: Callable, key):
        """T driver-like steps, one `mx.eval` each; returns the log-evidence estimate."""
        keys = mx.random.split(key, self.T)
        mx.eval(keys)
        x, lw, log_ml, paths = self.init()
        for t in range(self.T):
            x, lw, log_ml, paths = step(keys[t], mx.array(t), x, lw, log_ml, paths)
            mx.eval(x, lw, log_ml, paths)
        return (log_ml + mx.logsumexp(lw) - math.log(self.n)).item(), paths


# -- gradient-based samplers -------------------------------------------------------------------

def regression_logp(xs, ys, prior_sd: float = 10.0) -> Callable:
    """log p(slope, intercept, ys) with z = [slope, intercept]."""
    xs_a, ys_a = mx.array(xs), mx.array(ys)

    def logp(z):
        s, b = z[0], z[1]
        prior = normal_lp(s, 0.0, prior_sd) + normal_lp(b, 0.0, prior_sd)
        return prior + mx.sum(normal_lp(ys_a, s * xs_a + b, 1.0))

    return logp


def funnel_logp(dim: int = 9) -> Callable:
    """log p(v, x) with z = [v, x_1..x_dim]: v ~ N(0, 3), x_i ~ N(0, exp(v / 2))."""

    def logp(z):
        v, x = z[0], z[1:]
        return normal_lp(v, 0.0, 3.0) + mx.sum(normal_lp(x, 0.0, mx.exp(v / 2.0)))

    return logp


class HMC:
    """Fixed-length HMC (as `infer.hmc`'s kernel: momentum, L leapfrog steps, accept by `mx.where`)."""

    def __init__(self, logp: Callable, n_leapfrog: int, compiled: bool):
        self.vg = mx.value_and_grad(logp)
        self.n_leapfrog = n_leapfrog
        self.iteration = mx.compile(self._iteration) if compiled else self._iteration

    def _iteration(self, key, z, lp, g, step, inv_mass):
        k1, k2 = mx.random.split(key)
        r = mx.random.normal(z.shape, key=k1) * mx.rsqrt(inv_mass)
        h0 = -lp + 0.5 * mx.sum(r * r * inv_mass)
        z1, r1, g1, lp1 = z, r, g, lp
        for _ in range(self.n_leapfrog):
            r1 = r1 + 0.5 * step * g1
            z1 = z1 + step * inv_mass * r1
            lp1, g1 = self.vg(z1)
            r1 = r1 + 0.5 * step * g1
        h1 = -lp1 + 0.5 * mx.sum(r1 * r1 * inv_mass)
        log_a = h0 - h1
        acc = mx.log(mx.random.uniform(key=k2)) < mx.where(mx.isnan(log_a), -mx.inf, log_a)
        return mx.where(acc, z1, z), mx.where(acc, lp1, lp), mx.where(acc, g1, g), acc

    def run(self, z0, key, n: int, step_size: float, inv_mass=None):
        inv_mass = mx.ones(z0.shape) if inv_mass is None else mx.array(inv_mass)
        step = mx.array(step_size)
        keys = mx.random.split(key, n)
        lp, g = self.vg(z0)
        z = z0
        mx.eval(keys, lp, g, inv_mass)
        kept, accs = [], []
        for i in range(n):
            z, lp, g, acc = self.iteration(keys[i], z, lp, g, step, inv_mass)
            mx.eval(z, lp, g, acc)
            kept.append(z)
            accs.append(acc)
        return kept, accs


def gradient_chain(vg: Callable, z0, n: int, step: float = 1e-4, per_eval: int = 1):
    """n gradient evaluations `vg(z)` along a short gradient path, `mx.eval` every `per_eval` of them.

    `vg` is `mx.compile(mx.value_and_grad(logp))`. per_eval=1: a gradient as a
    standalone computation (one eval each); per_eval=16: evaluations chained
    lazily, as a NUTS doubling chains its leapfrog steps before its one sync.
    """
    z = z0
    for i in range(n):
        lp, g = vg(z)
        z = z + step * g
        if (i + 1) % per_eval == 0:
            mx.eval(z, lp)
    mx.eval(z)
    return z
