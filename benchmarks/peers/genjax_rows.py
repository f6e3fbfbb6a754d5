"""GenJAX 1.0.x on the suite's models: vectorized importance sampling and single-site MH.

Runs under the peers' Python (3.12+, `jax`, `genjax`); imported by
`benchmarks.peers.worker` only. Each model comes in two forms:

* ``sites``: one scalar site per observation, as `benchmarks/models.py`
  writes the genmlx models (addresses ``y0``, ``y1``, ...);
* ``vector``: the observations as one vectorized site ``y``
  (`bernoulli.repeat(n)`, `normal.vmap`), GenJAX's own idiom. Its trace has
  fewer leaves, which matters for a Python loop over a jitted step (each call
  flattens the trace): the issue's 162 us figure is this form.

Every row is built by `build(spec, data) -> (fn, summarize)`: `fn()` runs the
whole workload from a fixed key and returns after `jax.block_until_ready`;
`summarize(out)` gives a few numbers to check it against genmlx's answer.

* ``is``: `jax.jit` of `genjax.inference.init` (a `modular_vmap` of
  `generate` over N particles, the prior as proposal), returning the particle
  collection and its log marginal likelihood estimate.
* ``mh_scan``: `jax.jit` of `lax.scan` over `genjax.mh` (a `regenerate` of the
  selection from the prior and the accept test), n iterations, the chain's
  latent values kept, the initial trace made by `generate` in the same program.
* ``mh_loop``: a Python loop over one jitted step (split the key, `mh`),
  the traces kept in a list, the initial trace from a jitted `generate`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from genjax import bernoulli, beta, const, gen, mh, normal, seed, sel
from genjax.inference import init

__all__ = ["build", "model"]

KEY = 11  # every row draws from jax.random.key(KEY): the same stream in each round


def model(name: str, form: str, data: dict):
    """(generative function, observations, MH selection, latent addresses) of a suite model."""
    if form not in ("sites", "vector"):
        raise ValueError(f"form must be 'sites' or 'vector', got {form!r}")
    if name == "beta_bernoulli":
        ys = data["bb_data"]
        n = len(ys)
        if form == "sites":
            @gen
            def bb():
                p = beta(2.0, 2.0) @ "p"
                for i in range(n):
                    bernoulli(probs=p) @ f"y{i}"
                return p
        else:
            @gen
            def bb():
                p = beta(2.0, 2.0) @ "p"
                bernoulli.repeat(n)(None, p) @ "y"
                return p
        return bb, _obs(ys, form), sel("p"), ["p"]
    if name in ("regression5", "regression100"):
        xs, ys = (data["lr5_xs"], data["lr5_ys"]) if name == "regression5" else (data["reg100_xs"], data["reg100_ys"])
        sd = data["prior_sd"]
        if form == "sites":
            @gen
            def linreg():
                slope = normal(0.0, sd) @ "slope"
                intercept = normal(0.0, sd) @ "intercept"
                for i, x in enumerate(xs):
                    normal(slope * x + intercept, 1.0) @ f"y{i}"
                return slope
        else:
            xv = jnp.asarray(xs, dtype=jnp.float32)

            @gen
            def linreg():
                slope = normal(0.0, sd) @ "slope"
                intercept = normal(0.0, sd) @ "intercept"
                normal.vmap(in_axes=(0, None))(slope * xv + intercept, 1.0) @ "y"
                return slope
        return linreg, _obs(ys, form), sel("slope") | sel("intercept"), ["slope", "intercept"]
    raise ValueError(f"GenJAX rows have no model {name!r} (beta_bernoulli, regression5, regression100)")


def _obs(ys, form: str) -> dict:
    if form == "sites":
        return {f"y{i}": jnp.asarray(float(y), dtype=jnp.float32) for i, y in enumerate(ys)}
    return {"y": jnp.asarray(ys, dtype=jnp.float32)}


def _latents(tr, names):
    ch = tr.get_choices()
    return {a: ch[a] for a in names}


def _chain_summary(latents: dict) -> dict:
    """Posterior means and the acceptance rate (a step accepted iff the latent values moved)."""
    out = {f"mean_{a}": float(jnp.mean(v)) for a, v in latents.items()}
    first = next(iter(latents.values()))
    out["acceptance_rate"] = float(jnp.mean(first[1:] != first[:-1])) if first.shape[0] > 1 else None
    return out


def build(spec: dict, data: dict):
    gf, obs, selection, names = model(spec["model"], spec.get("form", "sites"), data)
    kind, n = spec["kind"], int(spec["n"])
    key = jax.random.key(KEY)

    if kind == "is":
        run = jax.jit(seed(lambda: _is(gf, obs, n)))

        def fn():
            return jax.block_until_ready(run(key))

        return fn, lambda out: {"log_ml": float(out[1])}

    if kind == "mh_scan":
        def chain():
            tr0, _ = gf.generate(obs)

            def body(tr, _):
                tr = mh(tr, selection)
                return tr, _latents(tr, names)

            return jax.lax.scan(body, tr0, length=n)[1]

        run = jax.jit(seed(chain))

        def fn():
            return jax.block_until_ready(run(key))

        return fn, _chain_summary

    if kind == "mh_loop":
        first = jax.jit(seed(lambda: gf.generate(obs)[0]))
        one = seed(lambda tr: mh(tr, selection))

        @jax.jit
        def step(k, tr):
            k, sub = jax.random.split(k)
            return k, one(sub, tr)

        def fn():
            k, sub = jax.random.split(key)
            tr = first(sub)
            kept = []
            for _ in range(n):
                k, tr = step(k, tr)
                kept.append(tr)
            return jax.block_until_ready(kept)

        def summarize(kept):
            return _chain_summary({a: jnp.stack([_latents(t, names)[a] for t in kept]) for a in names})

        return fn, summarize

    raise ValueError(f"GenJAX rows have no kind {kind!r} (is, mh_scan, mh_loop)")


def _is(gf, obs, n: int):
    pc = init(gf, (), const(n), obs)
    return pc, pc.log_marginal_likelihood()
