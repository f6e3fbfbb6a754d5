"""Tests that run INSIDE each rank of a launched job (not collected by the outer suite: no test_ prefix).

`tests/distributed/test_jobs.py` launches `python -m pytest tests/distributed/rank_cases.py -k <case>`
as every rank of a 2-rank ring job on loopback, so each rank is a pytest session with the genmlx
leak gate active: the distributed algorithms' loops are gated per rank. Each case checks what one
rank can check and writes what the outer test compares with a single-process run to
`$GENMLX_TEST_OUT/<case>-rank<r>.json`.
"""

from __future__ import annotations

import json
import math
import os

import mlx.core as mx
import numpy as np

import genmlx.distributed as gd
from genmlx.inference.importance import log_ml_estimate

import dist_models as dm


def _write(case: str, g, payload: dict) -> None:
    out = os.environ["GENMLX_TEST_OUT"]
    with open(os.path.join(out, f"{case}-rank{g.rank}.json"), "w") as f:
        json.dump(dict(payload, rank=g.rank, world_size=g.size), f)


def test_is():
    g = gd.init(backend="ring")
    res = gd.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=dm.IS_N, key=mx.random.key(dm.KEY),
                                 gather=True, gather_addresses=["slope"])
    lw = np.asarray(res.log_weights)
    assert lw.shape == (dm.IS_N,) and res.posterior["slope"].shape == (dm.IS_N,)
    # the exact combination equals the estimate over all N gathered weights (this rank's view)
    assert res.log_ml == __import__("pytest").approx(log_ml_estimate(lw), rel=0, abs=1e-9)
    _write("is", g, {"log_ml": res.log_ml, "log_weights": lw.tolist(), "ess": res.stats["ess"],
                     "n_local": res.stats["n_particles_local"], "slope": res.posterior["slope"].tolist()})


def test_chains():
    g = gd.init(backend="ring")
    res = gd.chains("mh", dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, n_chains=dm.N_CHAINS, key=mx.random.key(dm.KEY),
                    n_samples=dm.N_SAMPLES, burn=dm.BURN, selection=__import__("genmlx").select("mu"), track=["mu"])
    assert res.posterior["mu"].shape == (dm.N_CHAINS, dm.N_SAMPLES)
    assert res.stats["n_chains_local"] == dm.N_CHAINS // g.size
    _write("chains", g, {"r_hat": res.stats["r_hat"]["mu"], "ess_bulk": res.stats["ess_bulk"]["mu"],
                         "ess_tail": res.stats["ess_tail"]["mu"], "draws": res.posterior["mu"].tolist(),
                         "acceptance_rate_per_chain": res.stats["acceptance_rate_per_chain"]})


def test_smc():
    g = gd.init(backend="ring")
    args_seq, obs_seq = dm.smc_problem()
    res = gd.smc(dm.lg, args_seq, obs_seq, dm.SMC_N, key=mx.random.key(dm.KEY), ess_threshold=0.5)
    assert res.stats["n_particles_local"] == dm.SMC_N // g.size and len(res.traces) == dm.SMC_N // g.size
    assert math.isfinite(res.log_ml)
    assert math.isclose(sum(res.stats["log_weight"]), res.log_ml, abs_tol=1e-9)
    _write("smc", g, {"log_ml": res.log_ml, "ess": res.stats["ess"], "resampled": res.stats["resampled"],
                      "migrated": res.stats["migrated"], "syncs": res.stats["syncs"]})


def test_island():
    g = gd.init(backend="ring")
    args_seq, obs_seq = dm.smc_problem()
    res = gd.island_smc(dm.lg, args_seq, obs_seq, dm.SMC_N, key=mx.random.key(dm.KEY), vectorized=True)
    assert res.stats["island"] and len(res.stats["log_ml_per_rank"]) == g.size
    _write("island", g, {"log_ml": res.log_ml, "log_ml_local": res.stats["log_ml_local"]})


LEAK: list = []


def test_gate_sees_a_leak_on_rank_1():
    """Rank 1 keeps one array per iteration of its chains: its own gate fails it (rank 0 stays clean)."""
    g = gd.init(backend="ring")
    callback = (lambda *a, **k: LEAK.append(mx.array(1.0))) if g.rank == 1 else None
    gd.chains("mh", dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, n_chains=2, key=mx.random.key(1), n_samples=300,
              selection=__import__("genmlx").select("mu"), track=["mu"], callback=callback)


def test_telemetry():
    """Each rank serves its own /metrics at base port + rank, every series labelled with its rank."""
    import urllib.request

    import genmlx_observe as go

    g = gd.init(backend="ring")
    base = int(os.environ["GENMLX_TEST_PORT"])
    with go.observe(prometheus_port=base) as o:
        assert (o.config.rank, o.config.world_size) == (g.rank, g.size)
        gd.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=1000, key=mx.random.key(0))
        text = urllib.request.urlopen(o.server.url, timeout=10).read().decode()
        port = o.server.port
    runs = [l for l in text.splitlines() if l.startswith("genmlx_inference_runs_total{")]
    assert runs and all(f'rank="{g.rank}"' in l for l in runs)
    _write("telemetry", g, {"port": port, "runs": runs})
