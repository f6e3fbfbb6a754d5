"""Elliptical slice sampling: `compiled_elliptical_slice` against dynamic `elliptical_slice` and plain-MLX floors.

Run: python -m pytest benchmarks/test_bench_elliptical.py -q -p no:cacheprovider -o addopts=""

Model: Bayesian logistic regression, 10 weights w ~ N(0, I) (one vector site)
and 100 observations y_i ~ Bernoulli(sigmoid(w . x_i)) (one scalar site each;
covariates and labels drawn once from a fixed NumPy seed, below); elliptical
slice over w. Per iteration:

* `infer.compiled_elliptical_slice` (K = 50 iterations per driver step, its
  default; R = 32 shrink rounds, its default), steady driver steps;
* `infer.elliptical_slice` (a GFI `update` and a host sync per shrink round) on a
  few iterations;
* `floor`: the fastest plain-MLX program of the same iterations we know,
  `mx.compile` of K iterations with the log likelihood written by hand
  (`sum(y * l - log(1 + e^l))`, `l = X w`), the keys split once up front, each
  iteration's R rounds' angles computed up front by the same plain-MLX rule
  compiled_elliptical_slice uses (until an iteration lands they depend on its
  uniforms alone) and its R proposals scored as one batch, the
  first on the slice taken: the target's baseline, compiled_elliptical_slice's
  own algorithm;
* `floor_sequential`: the same K iterations with the R rounds unrolled one after
  another, each masked once an earlier one landed (the same chain, R dependent
  likelihood evaluations an iteration), on one block: what the batching saves.

Target: compiled_elliptical_slice within 1.5x of `floor` per iteration (steady
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
from genmlx.inference.compiled_elliptical import _angles  # the paper's shrinking rule, plain MLX
from genmlx.rng import row

pytestmark = [pytest.mark.no_leak_gate, pytest.mark.benchmark(timer=primary_clock())]

N_WEIGHTS = 10
N_OBS = 100
K = 50  # compiled_elliptical_slice's default block
R = 32  # its default max_rounds


def logistic_data(n: int = N_OBS, d: int = N_WEIGHTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Covariates x_i ~ N(0, I) and labels from the model at weights w ~ N(0, I) (NumPy, fixed seed)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-x @ w))).astype(np.int32)
    return x, y


X_NP, Y_NP = logistic_data()
X = mx.array(X_NP)
OBS = {("y", i): int(y) for i, y in enumerate(Y_NP)}


@gm.gen
def logistic(xs):
    w = gm.trace("w", dist.normal(mx.zeros(xs.shape[1]), 1.0))
    for i in range(xs.shape[0]):
        gm.trace(("y", i), dist.bernoulli(mx.sigmoid(mx.sum(w * xs[i]))))


# -- the plain-MLX floors --------------------------------------------------------------------------

def _log_lik(w):
    """log L of weights `w` [..., D] by hand: sum_i y_i l_i - log(1 + e^l_i), l = X w."""
    logits = w @ X.T
    return mx.sum(mx.array(Y_NP, mx.float32) * logits - mx.logaddexp(0.0, logits), axis=-1)


def floor_kernel(k: int, r: int, sequential: bool):
    """K iterations as one compiled program: `(key, ll, w [D]) -> (w, ll, rounds [K], kept [K, D])`.
    `sequential`: the R rounds scored one after another (masked once one lands), else as one batch."""

    def block(key, ll, w):
        ks = mx.random.split(key, 2)
        nus = mx.random.normal((k, N_WEIGHTS), key=row(ks, 0))  # sigma = 1, mu = 0
        us = mx.random.uniform(shape=(r + 1, k), key=row(ks, 1))
        log_u = mx.log(row(us, 0))
        angles = _angles(us)
        cos, sin = mx.cos(angles)[..., None], mx.sin(angles)[..., None]  # [K, R, 1]
        kept, steps = [], []
        for it in range(k):
            c, s, nu, level = row(cos, it), row(sin, it), row(nus, it), ll + row(log_u, it)
            step = _sequential if sequential else _batched
            w, ll, n = step(w, ll, nu, c, s, level, r)
            kept.append(w)
            steps.append(n)
        return w, ll, mx.stack(steps), mx.stack(kept)

    return mx.compile(block)


def _batched(w, ll, nu, c, s, level, r):
    props = w * c + nu * s  # [R, D]
    lp = _log_lik(props)
    lands = lp > level
    done, first = mx.any(lands), mx.argmax(lands)
    return (mx.where(done, mx.take(props, first, axis=0), w), mx.where(done, mx.take(lp, first), ll),
            mx.where(done, first + 1, r))


def _sequential(w, ll, nu, c, s, level, r):
    new, new_ll, n, done = w, ll, mx.array(r), mx.array(False)
    for j in range(r):
        prop = w * row(c, j) + nu * row(s, j)
        lp = _log_lik(prop)
        lands = mx.logical_and(lp > level, mx.logical_not(done))
        new, new_ll, n = mx.where(lands, prop, new), mx.where(lands, lp, new_ll), mx.where(lands, j + 1, n)
        done = mx.logical_or(done, lands)
    return new, new_ll, n


def floor_run(kernel, k: int, n_iterations: int, key) -> list:
    """The floor's chain: ceil(n / K) blocks, one evaluation each (as the driver evaluates a step)."""
    w = mx.zeros((N_WEIGHTS,))
    ll = _log_lik(w)
    out = []
    for kb in mx.random.split(key, math.ceil(n_iterations / k)):
        w, ll, steps, kept = kernel(kb, ll, w)
        mx.eval(w, ll, steps, kept)
        out.append(kept)
    return out


# -- the benchmark -------------------------------------------------------------------------------

N_COMPILED = size(2_000, 20_000)  # iterations
N_SEQUENTIAL = K  # one block: about 3 ms an iteration on the 2-core CPU
N_DYNAMIC = size(10, 50)  # dynamic elliptical_slice: about 25 ms an iteration on the 2-core CPU


def test_elliptical_logistic(pair, record):
    key = mx.random.key(11)
    batched, sequential = floor_kernel(K, R, sequential=False), floor_kernel(K, R, sequential=True)

    def genmlx():
        return infer.compiled_elliptical_slice(logistic, (X,), OBS, addresses=["w"], n_samples=N_COMPILED,
                                               iterations_per_step=K, max_rounds=R, key=key)

    def dynamic():
        return infer.elliptical_slice(logistic, (X,), OBS, addresses=["w"], n_samples=N_DYNAMIC, key=key)

    res = pair(genmlx, {"floor": lambda: floor_run(batched, K, N_COMPILED, key),
                        "floor_sequential": (lambda: floor_run(sequential, K, N_SEQUENTIAL, key), N_SEQUENTIAL),
                        "elliptical_dynamic": (dynamic, N_DYNAMIC)},
               rounds=size(3, 5), per=N_COMPILED, unit="iteration", steady=True,
               info={"group": "elliptical", "model": f"logistic{N_WEIGHTS}x{N_OBS}",
                     "algorithm": "compiled_elliptical_slice", "variant": f"K={K}, R={R}", "iterations_per_step": K,
                     "targets": [{"name": f"compiled_elliptical_slice within 1.5x of the plain-MLX floor per "
                                          f"iteration (logistic regression, {N_WEIGHTS} weights, {N_OBS} observations)",
                                  "ratio": "floor", "statistic": "steady_paired_median", "max": 1.5}]})
    st = res.stats
    record(compiled=st["compiled"], syncs_per_iteration=st["syncs"] / max(st["iterations"], 1),
           capped=st["capped"], iterations=st["iterations"])
