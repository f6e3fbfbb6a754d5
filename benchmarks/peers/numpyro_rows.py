"""NumPyro on the suite's models: NUTS (1 chain) and a vectorized prior-proposal weighting.

Runs under the peers' Python (`jax`, `numpyro`); imported by
`benchmarks.peers.worker` only. `build(spec, data) -> (fn, summarize)` as in
`genjax_rows`.

* ``nuts``: `MCMC(NUTS(model), num_warmup=burn, num_samples=n, num_chains=1,
  progress_bar=False)`, one object per row: the worker's first call of the row
  is NumPyro's first run in a fresh process (tracing and XLA compilation
  included); later calls run the same object again (`mcmc.run` compiles its
  warm-up and sampling programs again on every call: the worker reports the
  compilation time JAX measured, `compile_wall_s`, beside each run).
  Models: the 100-point regression (observations under a `plate`) and Neal's
  funnel (x as one `to_event` site).
* ``is``: NumPyro has no importance sampler. The row is the computation such a
  sampler makes, written with NumPyro's distributions under one `jax.jit`
  (Beta-Bernoulli only): N prior draws `Beta(2, 2).sample(key, (N,))`, the
  observations' log likelihood `Bernoulli(p).log_prob(ys)` summed per draw, and
  the log-mean-exp of the weights. (Through `Predictive` and
  `numpyro.infer.log_likelihood` the same computation took 6x longer at
  N = 100,000; JAX's own Beta sampler, a per-draw rejection loop, is most of
  the hand-written form's time.)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

__all__ = ["build", "model"]

KEY = 12


def model(name: str, data: dict):
    """(model function, its keyword arguments, latent site names) of a suite model."""
    if name == "beta_bernoulli":
        def bb(ys=None):
            p = numpyro.sample("p", dist.Beta(2.0, 2.0))
            with numpyro.plate("obs", len(data["bb_data"])):
                numpyro.sample("y", dist.Bernoulli(probs=p), obs=ys)

        return bb, {"ys": jnp.asarray(data["bb_data"], dtype=jnp.float32)}, ["p"]
    if name == "regression100":
        sd = data["prior_sd"]

        def linreg(xs, ys=None):
            slope = numpyro.sample("slope", dist.Normal(0.0, sd))
            intercept = numpyro.sample("intercept", dist.Normal(0.0, sd))
            with numpyro.plate("obs", xs.shape[0]):
                numpyro.sample("y", dist.Normal(slope * xs + intercept, 1.0), obs=ys)

        return linreg, {"xs": jnp.asarray(data["reg100_xs"], dtype=jnp.float32),
                        "ys": jnp.asarray(data["reg100_ys"], dtype=jnp.float32)}, ["slope", "intercept"]
    if name == "funnel":
        dim = data["funnel_dim"]

        def funnel():
            v = numpyro.sample("v", dist.Normal(0.0, 3.0))
            numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2.0)).expand([dim]).to_event(1))

        return funnel, {}, ["v"]
    raise ValueError(f"NumPyro rows have no model {name!r} (beta_bernoulli, regression100, funnel)")


def build(spec: dict, data: dict):
    fn_model, kwargs, names = model(spec["model"], data)
    kind = spec["kind"]
    key = jax.random.key(KEY)

    if kind == "nuts":
        mcmc = MCMC(NUTS(fn_model), num_warmup=int(spec["burn"]), num_samples=int(spec["n"]), num_chains=1,
                    progress_bar=False)

        def fn():
            mcmc.run(key, extra_fields=("num_steps", "diverging", "accept_prob"), **kwargs)
            return jax.block_until_ready((mcmc.get_samples(), mcmc.get_extra_fields()))

        def summarize(out):
            samples, extra = out
            s = {f"mean_{a}": float(jnp.mean(samples[a])) for a in names}
            s.update(leapfrog_steps=int(jnp.sum(extra["num_steps"])), divergences=int(jnp.sum(extra["diverging"])),
                     accept_prob=float(jnp.mean(extra["accept_prob"])))
            return s

        return fn, summarize

    if kind == "is":
        if spec["model"] != "beta_bernoulli":
            raise ValueError(f"NumPyro's IS row is Beta-Bernoulli only, got model {spec['model']!r}")
        n = int(spec["n"])
        ys = kwargs["ys"]

        @jax.jit
        def run(k):
            p = dist.Beta(2.0, 2.0).sample(k, (n,))
            lw = jnp.sum(dist.Bernoulli(probs=p[:, None]).log_prob(ys), axis=-1)
            return p, lw, jax.scipy.special.logsumexp(lw) - math.log(n)

        def fn():
            return jax.block_until_ready(run(key))

        return fn, lambda out: {"log_ml": float(out[2])}

    raise ValueError(f"NumPyro rows have no kind {kind!r} (nuts, is)")
