"""Models and sizes shared by the distributed tests and their rank cases (not a test module)."""

from __future__ import annotations

import os
import sys

import genmlx as gm
from genmlx import dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from inference.smc_models import data, kalman, lg, sequence  # noqa: E402,F401

KEY = 7
IS_N = 10_001  # odd: the two shards differ in size (5,001 and 5,000)
N_CHAINS, N_SAMPLES, BURN = 4, 200, 50
SMC_N, SMC_T = 4_000, 15
SMC_TOL = 0.6  # 4 sd of the estimate: sd 0.15 over 12 keys at N = 4,000, T = 15 (measured)


@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 2.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 2.0))
    for i, x in enumerate(xs):
        gm.trace(f"y{i}", dist.normal(slope * x + intercept, 1.0))
    return slope


ARGS = ([-1.0, 0.0, 1.0, 2.0],)
OBS = {"y0": -1.2, "y1": 0.4, "y2": 1.1, "y3": 2.6}


@gm.gen
def normal_mean(n):
    mu = gm.trace("mu", dist.normal(0.0, 3.0))
    for i in range(n):
        gm.trace(("y", i), dist.normal(mu, 1.0))
    return mu


NM_ARGS = (3,)
NM_OBS = {("y", 0): 0.8, ("y", 1): 1.4, ("y", 2): 0.3}


def smc_problem():
    """args_seq, observations_seq of the linear-Gaussian model `lg` over SMC_T steps."""
    return sequence(data(SMC_T, seed=3))


def exact_log_ml() -> float:
    return kalman(data(SMC_T, seed=3))[0]
