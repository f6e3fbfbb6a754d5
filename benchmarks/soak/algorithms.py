"""One soak function per algorithm: `fn(n, census, key)` runs n iterations (particles, or particle-steps)
keeping about 100 samples, with `census` as the driver callback. The table `ALGORITHMS` maps names to
(function, iterations per driver step)."""

from __future__ import annotations

import mlx.core as mx

from genmlx import inference as infer

from .models import (GUIDE_INIT, LATENTS, OBS, WS_DATA, XS, amortized_guide, bits, gaussian_log_lik, hier,
                     reflect, regression, regression_guide, slope_step, slope_walk, walk, walk_backward,
                     walk_forward, walk_observation)

N_PARTICLES = 100  # SMC family: particle-steps = N_PARTICLES x time steps
IS_BATCH = {"importance": 1_000, "importance_vectorized": 10_000, "importance_vectorized_1k": 1_000,
            "importance_resampling": 1_000}
COMPILED_K = 1_000  # compiled_mh: iterations per driver step (thin = K: one kept sample per block)


def _thin(n: int) -> int:
    return max(1, n // 100)


def _mcmc(fn, n, c, key, **kw):
    fn(regression, (XS,), OBS, n_samples=100, thin=_thin(n), key=key, callback=c, **kw)


def mh(n, c, key):
    _mcmc(infer.mh, n, c, key)


def compiled_mh(n, c, key):
    infer.compiled_mh(regression, (XS,), OBS, n_samples=n // COMPILED_K, thin=COMPILED_K,
                      iterations_per_step=COMPILED_K, key=key, callback=c)


def mh_custom(n, c, key):
    _mcmc(infer.mh_custom, n, c, key, proposal=slope_walk, proposal_args=(0.3,))


def involutive_mh(n, c, key):
    _mcmc(infer.involutive_mh, n, c, key, proposal=slope_step, proposal_args=(0.3,), involution=reflect)


def gibbs(n, c, key):
    infer.gibbs(bits, (), {"c": 1}, addresses=["a", "b"], n_samples=100, thin=_thin(n), key=key, callback=c)


def hmc(n, c, key):
    _mcmc(infer.hmc, n, c, key, addresses=LATENTS, n_leapfrog=5, step_size=0.2)


def nuts(n, c, key):
    _mcmc(infer.nuts, n, c, key, addresses=LATENTS, step_size=0.3)


def mala(n, c, key):
    _mcmc(infer.mala, n, c, key, addresses=LATENTS, step_size=0.1)


def elliptical_slice(n, c, key):
    _mcmc(infer.elliptical_slice, n, c, key, addresses=["slope"])


def _sequence(n):
    T = max(1, n // N_PARTICLES)
    return [(1,)] * T, [walk_observation(t) for t in range(T)]


def smc(n, c, key):
    args, obs = _sequence(n)
    infer.smc(walk, args, obs, n_particles=N_PARTICLES, ess_threshold=0.5, vectorized=False, key=key, callback=c)


def vsmc(n, c, key):
    args, obs = _sequence(n)
    infer.vsmc(walk, args, obs, n_particles=N_PARTICLES, ess_threshold=0.5, key=key, callback=c)


def csmc(n, c, key):
    args, obs = _sequence(n)
    ref, _ = walk.generate((1,), obs[-1], key=mx.random.key(7))
    infer.csmc(walk, args, obs, ref, n_particles=N_PARTICLES, key=key, callback=c)


def smcp3(n, c, key):
    args, obs = _sequence(n)
    infer.smcp3(walk, args, obs, n_particles=N_PARTICLES, forward=walk_forward, backward=walk_backward,
                key=key, callback=c)


def vi(n, c, key):
    infer.vi(regression, (XS,), OBS, addresses=LATENTS, iterations=n, n_traces=0, n_posterior=100, key=key,
             callback=c)


def programmable_vi(n, c, key):
    infer.programmable_vi(regression, regression_guide, (XS,), OBS, dict(GUIDE_INIT), iterations=n,
                          optimizer=infer.adam(0.01), n_traces=0, n_posterior=100, key=key, callback=c)


def train(n, c, key):
    infer.train(gaussian_log_lik, {"mu": 0.0, "log_sigma": 0.0}, iterations=n, optimizer=infer.adam(0.01),
                key=key, callback=c)


def wake_sleep(n, c, key):
    infer.wake_sleep(hier, amortized_guide, (), WS_DATA, {"mu": 0.0},
                     {"w": mx.zeros((len(WS_DATA),)), "b": 0.0, "log_s": 0.0}, iterations=n,
                     model_optimizer=infer.adam(0.01), guide_optimizer=infer.adam(0.01), n_samples=8, key=key,
                     callback=c)


def _batched(name, call):
    """Importance sampling's equivalent of n iterations: n particles in batches (one run per batch);
    a census between batches (the batch's result dropped)."""

    def fn(n, c, key):
        b = min(IS_BATCH[name], n)
        keys = mx.random.split(key, max(1, n // b))
        for j in range(keys.shape[0]):
            call(b, keys[j])  # its result dropped before the census
            c.take((j + 1) * b)

    return fn


ALGORITHMS = {
    "importance": (_batched("importance", lambda b, k: infer.importance_sampling(
        regression, (XS,), OBS, n_particles=b, key=k)), 1),
    "importance_vectorized": (_batched("importance_vectorized", lambda b, k: infer.importance_sampling(
        regression, (XS,), OBS, n_particles=b, vectorized=True, key=k)), 1),
    "importance_vectorized_1k": (_batched("importance_vectorized_1k", lambda b, k: infer.importance_sampling(
        regression, (XS,), OBS, n_particles=b, vectorized=True, key=k)), 1),
    "importance_resampling": (_batched("importance_resampling", lambda b, k: infer.importance_resampling(
        regression, (XS,), OBS, n_particles=b, n_samples=10, key=k)), 1),
    "mh": (mh, 1),
    "compiled_mh": (compiled_mh, COMPILED_K),
    "mh_custom": (mh_custom, 1),
    "involutive_mh": (involutive_mh, 1),
    "gibbs": (gibbs, 1),
    "hmc": (hmc, 1),
    "nuts": (nuts, 1),
    "mala": (mala, 1),
    "elliptical_slice": (elliptical_slice, 1),
    "smc": (smc, N_PARTICLES),
    "vsmc": (vsmc, N_PARTICLES),
    "csmc": (csmc, N_PARTICLES),
    "smcp3": (smcp3, N_PARTICLES),
    "vi": (vi, 1),
    "programmable_vi": (programmable_vi, 1),
    "train": (train, 1),
    "wake_sleep": (wake_sleep, 1),
}
