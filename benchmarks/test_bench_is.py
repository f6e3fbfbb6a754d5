"""Importance sampling: sequential vs vectorized, against the plain-MLX floors (issue 8).

Run: python -m pytest benchmarks/test_bench_is.py --benchmark-only

Models: Beta-Bernoulli (10 observations) and the 100-point regression, the
latter in both forms: one scalar site per observation (`regression100`,
102 sites) and one vector observation site (`regression100_vec`); the prior
is the proposal. Vectorized IS runs the shared-key lane layout (one key for
all particles) as one cached `mx.compile` of the whole pass. Vectorized: N = 1,000 and 100,000 particles in one
`vgenerate` (one driver step), against the same sampler written directly in
MLX for N lanes, eager and `mx.compile`d. Sequential: one particle per driver
step; the floor evaluates one particle per `mx.eval` too. Cost per particle
in `extra_info`; target: vectorized IS at N = 100,000 within 1.5x of the
compiled floor (paired median of the per-round ratios).
"""

from __future__ import annotations

import mlx.core as mx
import pytest

from benchmarks import floors as F
from benchmarks.common import size
from genmlx import inference as infer

MODELS = ["beta_bernoulli", "regression100", "regression100_vec"]
VEC_ROUNDS = {1_000: 7, 100_000: 5}
SEQ_N = {"beta_bernoulli": size(200, 1_000), "regression100": size(40, 1_000), "regression100_vec": size(200, 1_000)}


def _is_info(res, case) -> dict:
    st = res.stats
    info = {"log_ml": res.log_ml, "ess": st.get("ess"), "syncs": st.get("syncs"), "steps": st.get("steps")}
    if case.log_evidence is not None:
        info["exact_log_evidence"] = case.log_evidence
        info["log_ml_error"] = res.log_ml - case.log_evidence
    return info


@pytest.mark.parametrize("n", [1_000, 100_000])
@pytest.mark.parametrize("model", MODELS)
def test_is_vectorized(pair, record, cases, model, n):
    c = cases[model]
    key = mx.random.key(1)
    floor = F.is_vectorized(c.floor, n)
    floor_c = mx.compile(floor)

    def genmlx():
        return infer.importance_sampling(c.model, c.args, c.obs, n_particles=n, vectorized=True, key=key)

    targets = []
    if n == 100_000:
        targets.append({"name": f"vectorized IS within 1.5x of the compiled plain-MLX floor ({model}, N = 100,000)",
                        "ratio": "floor_compiled", "statistic": "paired_median", "max": 1.5})
    res = pair(genmlx, {"floor_eager": lambda: mx.eval(floor(key)), "floor_compiled": lambda: mx.eval(floor_c(key))},
               rounds=VEC_ROUNDS[n], per=n, unit="particle",
               info={"group": "importance", "model": model, "algorithm": "importance_sampling",
                     "variant": "vectorized", "n_particles": n, "targets": targets})
    record(**_is_info(res, c))


@pytest.mark.parametrize("model", MODELS)
def test_is_sequential(pair, record, cases, model):
    c = cases[model]
    n = SEQ_N[model]
    key = mx.random.key(2)
    particle = F.is_particle(c.floor)
    particle_c = mx.compile(particle)

    def genmlx():
        return infer.importance_sampling(c.model, c.args, c.obs, n_particles=n, vectorized=False, key=key)

    res = pair(genmlx, {"floor_eager": lambda: F.is_sequential(particle, key, n),
                        "floor_compiled": lambda: F.is_sequential(particle_c, key, n)},
               rounds=2, per=n, unit="particle", steady=True,
               info={"group": "importance", "model": model, "algorithm": "importance_sampling",
                     "variant": "sequential", "n_particles": n})
    record(**_is_info(res, c))
