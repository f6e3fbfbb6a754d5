"""Gibbs over finite discrete sites: `compiled_gibbs` against dynamic `gibbs` and a plain-MLX floor.

Run: python -m pytest benchmarks/test_bench_gibbs.py -q -p no:cacheprovider -o addopts=""

Model: a 40-site Gaussian mixture with fixed components, z_i ~ Categorical(w),
y_i ~ N(means[z_i], 1), the y_i observed (data drawn once from a fixed NumPy
seed, below); Gibbs over the 40 assignments. Per sweep (one iteration: the
40 sites updated in order, each from its full conditional):

* `infer.compiled_gibbs` (K = 12 sweeps per driver step, its default for 40
  sites: about 500 site updates a block), steady driver steps;
* `infer.gibbs` (the GFI's `update` once per support value per site per sweep)
  on a few sweeps;
* `floor_tables`: the fastest plain-MLX program of the same sweeps we know (the
  target's baseline), `mx.compile` of K sweeps drawing each site with
  `mx.random.categorical` from its conditional (log w + the normal log density at
  the 3 means, written by hand), computed once: with fixed means it is a constant
  of the run, which compiled_gibbs finds too (its blanket terms that read only
  the site become a constant table); the K x 40 keys split once up front and
  taken as views;
* `floor_conditional`: the same program with each conditional computed in the
  sweep, as a model whose means moved would need it: what the tables save.

Target: compiled_gibbs within 1.5x of `floor_tables` per sweep (steady
paired median). Nothing asserts a time.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx as gm
from benchmarks.common import primary_clock, size
from genmlx import dist
from genmlx import inference as infer
from genmlx.rng import row

pytestmark = [pytest.mark.no_leak_gate, pytest.mark.benchmark(timer=primary_clock())]

N_SITES = 40
WEIGHTS = [0.5, 0.3, 0.2]
MEANS = [-2.0, 0.0, 3.0]
LOG_W = mx.log(mx.array(WEIGHTS))
MEANS_MX = mx.array(MEANS)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mixture_data(n: int = N_SITES, seed: int = 0) -> list[float]:
    """y_i from the model itself (NumPy, fixed seed): the same data every run."""
    rng = np.random.default_rng(seed)
    z = rng.choice(len(WEIGHTS), size=n, p=WEIGHTS)
    return [float(y) for y in np.asarray(MEANS)[z] + rng.standard_normal(n)]


@gm.gen
def mixture(n):
    for i in range(n):
        z = gm.trace(("z", i), dist.categorical(LOG_W))
        gm.trace(("y", i), dist.normal(mx.take(MEANS_MX, z), 1.0))


YS = mixture_data()
OBS = {("y", i): y for i, y in enumerate(YS)}
ADDRESSES = [("z", i) for i in range(N_SITES)]
K = 12  # compiled_gibbs's default block for 40 sites: round(500 / 40)


# -- the plain-MLX floor -------------------------------------------------------------------------

def _conditional(y: float):
    """Site i's full conditional (unnormalized log probabilities of z_i = 0, 1, 2), by hand."""
    return LOG_W - 0.5 * mx.square(y - MEANS_MX) - HALF_LOG_2PI


def floor_kernel(k: int, ys: list[float], tables: bool):
    """K sweeps as one compiled program: `(key, z [S]) -> (z, kept [K, S])`. `tables`: each site's
    conditional computed once outside the program (a constant), else in the sweep."""
    consts = [_conditional(y) for y in ys] if tables else None
    if consts:
        mx.eval(consts)
    s = len(ys)

    def block(key, z):
        keys = mx.random.split(key, k * s)
        zs = [row(z, i) for i in range(s)]  # (with fixed means no conditional reads them)
        kept = []
        for sweep in range(k):
            for i in range(s):
                j = sweep * s + i
                lp = consts[i] if tables else _conditional(ys[i])
                zs[i] = mx.random.categorical(lp, key=row(keys, j)).astype(mx.int32)
            kept.append(mx.stack(zs))
        return mx.stack(zs), mx.stack(kept)

    return mx.compile(block)


def floor_run(kernel, k: int, n_sweeps: int, key) -> list:
    """The floor's chain: ceil(n / K) blocks, one evaluation each (as the driver evaluates a step)."""
    z = mx.zeros((N_SITES,), mx.int32)
    out = []
    for kb in mx.random.split(key, math.ceil(n_sweeps / k)):
        z, kept = kernel(kb, z)
        mx.eval(z, kept)
        out.append(kept)
    return out


# -- the benchmark -------------------------------------------------------------------------------

N_COMPILED = size(240, 2_400)  # sweeps
N_DYNAMIC = size(2, 20)  # dynamic gibbs: about 0.7 s a sweep on the 2-core CPU


def test_gibbs_mixture(pair, record):
    key = mx.random.key(11)
    conditional, tables = floor_kernel(K, YS, tables=False), floor_kernel(K, YS, tables=True)

    def genmlx():
        return infer.compiled_gibbs(mixture, (N_SITES,), OBS, addresses=ADDRESSES, n_samples=N_COMPILED,
                                    iterations_per_step=K, key=key)

    def dynamic():
        return infer.gibbs(mixture, (N_SITES,), OBS, addresses=ADDRESSES, n_samples=N_DYNAMIC, key=key)

    res = pair(genmlx, {"floor_conditional": lambda: floor_run(conditional, K, N_COMPILED, key),
                        "floor_tables": lambda: floor_run(tables, K, N_COMPILED, key),
                        "gibbs_dynamic": (dynamic, N_DYNAMIC)},
               rounds=size(3, 5), per=N_COMPILED, unit="sweep", steady=True,
               info={"group": "gibbs", "model": f"mixture{N_SITES}", "algorithm": "compiled_gibbs",
                     "variant": f"K={K}", "iterations_per_step": K,
                     "targets": [{"name": f"compiled_gibbs within 1.5x of the plain-MLX floor per sweep "
                                          f"(mixture, {N_SITES} sites)",
                                  "ratio": "floor_tables", "statistic": "steady_paired_median", "max": 1.5}]})
    st = res.stats
    record(compiled=st["compiled"], syncs_per_iteration=st["syncs"] / max(st["iterations"], 1),
           iterations=st["iterations"])
