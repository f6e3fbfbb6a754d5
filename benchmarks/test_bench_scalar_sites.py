"""A model written with one scalar site per observation costs what its one-vector-site form costs (issue 14).

Run: python -m pytest benchmarks/test_bench_scalar_sites.py --benchmark-only

The 100-point regression as the README writes it (`regression100`: 102
scalar sites) against the same model with the observations as one vector
site (`regression100_vec`), the same algorithm on each, in the same rounds.
Static-structure models are scored through `genmlx.flat_density` (sites of
one form as one batch), so the per-site form should cost what the vector
form costs. Targets: HMC (per iteration), NUTS (per leapfrog step used,
1,000 + 1,000 with GENMLX_BENCH_FULL=1) and vectorized IS (N = 100,000, per
particle) within 1.5x of the vector form.
"""

from __future__ import annotations

import mlx.core as mx
import pytest

from benchmarks.common import size
from genmlx import inference as infer

N_HMC = size(200, 1_000)
N_NUTS = size(200, 1_000)
N_IS = 100_000


def _run(alg, c, n, key):
    if alg == "importance":
        return infer.importance_sampling(c.model, c.args, c.obs, n_particles=n, vectorized=True, key=key)
    return getattr(infer, alg)(c.model, c.args, c.obs, addresses=c.addresses, n_samples=n, burn=n, key=key)


def _units(alg, res, n) -> int:
    if alg == "nuts":
        return int(sum(res.stats["num_steps"]))  # the two forms' chains differ in their last bits
    return n if alg == "importance" else 2 * n


@pytest.mark.parametrize("alg", ["hmc", "nuts", "importance"])
def test_scalar_sites_cost_what_the_vector_site_costs(pair, record, cases, alg):
    scalar, vector = cases["regression100"], cases["regression100_vec"]
    n = {"hmc": N_HMC, "nuts": N_NUTS, "importance": N_IS}[alg]
    key = mx.random.key(12)
    vec_units = _units(alg, _run(alg, vector, n, key), n)  # deterministic for a key: counted once
    unit = {"hmc": "iteration", "nuts": "leapfrog step used", "importance": "particle"}[alg]
    res = pair(lambda: _run(alg, scalar, n, key), {"genmlx_vector_form": (lambda: _run(alg, vector, n, key), vec_units)},
               rounds=3, per=lambda r: _units(alg, r, n), unit=unit,
               info={"group": "scalar_sites", "model": "regression100", "algorithm": alg,
                     "variant": "102 scalar sites vs one vector site",
                     "targets": [{"name": f"{alg} on the 102-site scalar regression within 1.5x of the vector-site form",
                                  "ratio": "genmlx_vector_form", "statistic": "paired_median", "max": 1.5}]})
    record(log_ml=getattr(res, "log_ml", None), iterations=res.stats.get("iterations"))
