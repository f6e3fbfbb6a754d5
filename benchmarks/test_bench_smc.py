"""SMC on the linear-Gaussian state space model, T = 100, against the plain-MLX particle filter (issue 8).

Run: python -m pytest benchmarks/test_bench_smc.py --benchmark-only

* `infer.smc` on the `unfold` form of the model with 1,000 particles: genmlx
  runs it vectorized (`vsmc`: one batched trace, resampling by `mx.where`, no
  host sync), one driver step per time step; against `floors.ParticleFilter`
  (the same bootstrap filter with systematic resampling at ESS < N/2, the
  paths kept as a [T, N] array), eager and with its step `mx.compile`d.
* `infer.smc` on the dynamic `@gen` form (sequential: a Python list of traces,
  `update` re-runs the body, O(t) per particle at step t) with fewer particles:
  what a user gets without the combinator.

Per time step (one driver step each). The log-evidence estimates and the
exact Kalman value go to `extra_info`.
"""

from __future__ import annotations

import mlx.core as mx
import pytest

from benchmarks import floors as F
from benchmarks import models as M
from benchmarks.common import size

N_PARTICLES = 1_000
N_SEQUENTIAL = size(10, 100)


@pytest.fixture(scope="module")
def ssm():
    ys = M.ssm100()
    return ys, M.kalman_log_evidence(ys)


def _smc_info(res, exact: float) -> dict:
    st = res.stats
    return {"log_ml": res.log_ml, "exact_log_evidence": exact, "log_ml_error": res.log_ml - exact,
            "syncs": st.get("syncs"), "resampled_steps": int(sum(bool(r) for r in st.get("resampled", []))),
            "min_ess": min(st.get("ess", [float("nan")]))}


@pytest.mark.parametrize("variant", ["vectorized", "sequential"])
def test_smc(pair, record, ssm, variant):
    from genmlx import inference as infer

    ys, exact = ssm
    key = mx.random.key(6)
    if variant == "vectorized":
        n = N_PARTICLES
        args_seq, obs_seq = M.ssm_unfold_sequence(ys)
        model = M.ssm_unfold
    else:
        n = N_SEQUENTIAL
        args_seq, obs_seq = M.ssm_sequence(ys)
        model = M.ssm
    pf = F.ParticleFilter(ys, n, M.SSM_Q, M.SSM_R)
    step_c = mx.compile(pf.step)

    def genmlx():
        return infer.smc(model, args_seq, obs_seq, n_particles=n, key=key)

    res = pair(genmlx, {"floor_eager": lambda: pf.run(pf.step, key), "floor_compiled": lambda: pf.run(step_c, key)},
               rounds=2 if variant == "vectorized" else 1, per=len(ys), unit="time step", steady=True,
               warmup=True if variant == "vectorized" else "baselines",
               info={"group": "smc", "model": "ssm100", "algorithm": "smc", "variant": variant,
                     "n_particles": n, "T": len(ys)})
    floor_log_ml, _ = pf.run(step_c, key)
    record(floor_log_ml=floor_log_ml, **_smc_info(res, exact))
