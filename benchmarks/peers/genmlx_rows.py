"""The genmlx side of the peers benchmark: the suite's own calls on the suite's models.

Each call is the one the pytest suite times (benchmarks/test_bench_is.py,
test_bench_mh.py, test_bench_hmc_nuts.py), with the same keys, so a
genmlx figure here and its row in docs/benchmarks.md measure the same thing.
`build(spec) -> (fn, summarize)` mirrors the peers' `build`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from benchmarks import models as M
from genmlx import inference as infer

__all__ = ["Case", "cases", "build", "CALLS"]


class Case(NamedTuple):
    model: Any
    args: tuple
    obs: dict
    addresses: list


def cases() -> dict[str, Case]:
    """The models of benchmarks/conftest.py's `cases` fixture, without the floors."""
    xs, ys = M.regression100()
    return {
        "beta_bernoulli": Case(M.beta_bernoulli, M.BB_ARGS, M.BB_OBS, ["p"]),
        "beta_bernoulli_vec": Case(M.beta_bernoulli_vec, M.BB_ARGS, M.BB_VEC_OBS, ["p"]),
        "regression5": Case(M.linreg, (M.LR5_XS,), M.obs_of(M.LR5_YS), ["slope", "intercept"]),
        "regression5_vec": Case(M.linreg_vec, (mx.array(M.LR5_XS),), {"y": mx.array(M.LR5_YS)},
                                ["slope", "intercept"]),
        "regression100": Case(M.linreg, (xs,), M.obs_of(ys), ["slope", "intercept"]),
        "regression100_vec": Case(M.linreg_vec, (mx.array(xs),), {"y": mx.array(ys)}, ["slope", "intercept"]),
        "funnel": Case(M.funnel, (), {}, M.FUNNEL_ADDRESSES),
        "funnel_vec": Case(M.funnel_vec, (), {}, M.FUNNEL_VEC_ADDRESSES),
    }


# the suite's keys (test_bench_is: 1, test_bench_mh: 3 dynamic / 4 fused, test_bench_hmc_nuts: 8)
KEYS = {"is": 1, "mh": 3, "mh_compiled": 3, "compiled_mh": 4, "nuts": 8}
CALLS = {
    "is": "infer.importance_sampling(model, args, obs, n_particles=n, vectorized=True, key=key)",
    "mh": "infer.mh(model, args, obs, n_samples=n, key=key)",
    "mh_compiled": "infer.mh(model, args, obs, n_samples=n, key=key, compile=True)",
    "compiled_mh": "infer.compiled_mh(model, args, obs, n_samples=n, iterations_per_step=k, key=key)",
    "nuts": "infer.nuts(model, args, obs, addresses=addresses, n_samples=n, burn=burn, key=key)",
}


def _chain_summary(res, names) -> dict:
    out = {"acceptance_rate": res.stats.get("acceptance_rate")}
    for a in names:
        v = np.asarray([np.asarray(tr[a]) for tr in res.traces], dtype=np.float64)
        out[f"mean_{a if isinstance(a, str) else a[0]}"] = float(v.mean())
    return out


def build(spec: dict, table: dict[str, Case] | None = None):
    kind = spec["kind"]
    if kind not in CALLS:
        raise ValueError(f"genmlx rows have no kind {kind!r} ({', '.join(CALLS)})")
    table = table if table is not None else cases()
    if spec["model"] not in table:
        raise ValueError(f"genmlx rows have no model {spec['model']!r} ({', '.join(table)})")
    c = table[spec["model"]]
    key = mx.random.key(KEYS[kind])
    n = int(spec["n"])

    if kind == "is":
        def fn():
            return infer.importance_sampling(c.model, c.args, c.obs, n_particles=n, vectorized=True, key=key)

        return fn, lambda res: {"log_ml": float(res.log_ml)}

    if kind in ("mh", "mh_compiled"):
        compile = kind == "mh_compiled"

        def fn():
            return infer.mh(c.model, c.args, c.obs, n_samples=n, key=key, compile=compile)

        return fn, lambda res: _chain_summary(res, c.addresses)

    if kind == "compiled_mh":
        k = int(spec["k"])

        def fn():
            return infer.compiled_mh(c.model, c.args, c.obs, n_samples=n, iterations_per_step=k, key=key)

        return fn, lambda res: _chain_summary(res, c.addresses)

    burn = int(spec["burn"])

    fuse = spec.get("fuse", "auto")

    def fn():
        return infer.nuts(c.model, c.args, c.obs, addresses=c.addresses, n_samples=n, burn=burn, key=key, fuse=fuse)

    def summarize(res):
        out = _chain_summary(res, c.addresses[:1])
        st = res.stats
        out.update(leapfrog_steps=int(sum(st.get("num_steps", []))), divergences=st.get("divergences"),
                   fused_from=st.get("fused_from"))
        return out

    return fn, summarize
