"""Distributions (issue 3): sampler draw rates against plain-MLX uniform/normal draws, log-prob
throughput against an eager plain-MLX log-density, and graph nodes per log-prob.

Run: python -m pytest benchmarks/test_bench_distributions.py --benchmark-only

* Draw rates: one `sample(key, (N,))` of N = 100,000 values (a batch: later rejection
  rounds run only for the lanes that need them), and N draws of one value each under
  `mx.vmap` over N keys (what vectorized inference does with a scalar site). Baselines,
  timed in the same rounds: `mx.random.uniform` and `mx.random.normal` of N values.
  `extra_info["draws_per_s"]`; targets are ratios against the plain normal draw
  (paired median, CPU time on a CPU device).
* Log-prob throughput: Beta and Gamma log-densities of 100,000 values against the same
  densities written in plain eager MLX with a Lanczos lgamma (the seed's approach).
* Nodes: the per-distribution table of docs/distributions.md, as value targets
  (at most half the seed's buffers).
"""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from benchmarks.common import primary_clock
from genmlx import dist

pytestmark = [pytest.mark.no_leak_gate, pytest.mark.benchmark(timer=primary_clock())]

N = 100_000
KEY = mx.random.key(7)

SAMPLERS = {
    # name: (distribution, scalar draws per value, max ratio to the plain normal draw: batch, vmapped)
    "normal": (dist.normal(0.0, 1.0), 1, 1.5, 4.0),
    "gamma_0.5": (dist.gamma(0.5, 1.0), 1, 5.0, 9.0),
    "gamma_2.5": (dist.gamma(2.5, 1.0), 1, 4.0, 7.0),
    "beta_2_3": (dist.beta(2.0, 3.0), 1, 7.0, 13.0),
    "beta_0.5_0.5": (dist.beta(0.5, 0.5), 1, 9.0, 15.0),
    "dirichlet_5": (dist.dirichlet([0.5, 1.0, 2.0, 3.0, 4.0]), 5, 6.0, None),
    "student_t_3": (dist.student_t(3.0, 0.0, 1.0), 1, 6.0, 12.0),
    "poisson_3": (dist.poisson(3.0), 1, 2.0, 6.0),
    "poisson_30": (dist.poisson(30.0), 1, 12.0, None),
    "binomial_1000": (dist.binomial(1000, 0.4), 1, 15.0, None),
    "von_mises_2": (dist.von_mises(0.0, 2.0), 1, 30.0, None),
}


def _baselines(n):
    return {"uniform": lambda: mx.eval(mx.random.uniform(shape=(n,), key=KEY)),
            "normal": lambda: mx.eval(mx.random.normal((n,), key=KEY))}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_batch_draw_rate(pair, record, name):
    d, per_value, max_ratio, _ = SAMPLERS[name]
    n = N // per_value

    def draw():
        x = d.sample(KEY, (n,))
        mx.eval(x)
        return x

    targets = [{"name": f"{name}: a batch of draws within {max_ratio}x the plain normal draw (per scalar value)",
                "ratio": "normal", "statistic": "paired_median", "max": max_ratio}]
    pair(draw, _baselines(N), rounds=7, per=n * per_value, unit="scalar draw",
         info={"group": "distributions", "sampler": name, "mode": "batch", "targets": targets})
    record(batch=n, scalar_draws=n * per_value)


@pytest.mark.parametrize("name", [k for k, v in SAMPLERS.items() if v[3] is not None])
def test_sampler_vmapped_draw_rate(pair, record, name):
    d, _, _, max_ratio = SAMPLERS[name]
    keys = mx.random.split(KEY, N)
    mx.eval(keys)
    f = mx.vmap(lambda k: d._sample(k, ()))

    def draw():
        x = f(keys)
        mx.eval(x)
        return x

    targets = [{"name": f"{name}: N draws under mx.vmap within {max_ratio}x the plain normal draw of N values",
                "ratio": "normal", "statistic": "paired_median", "max": max_ratio}]
    pair(draw, _baselines(N), rounds=5, per=N, unit="draw",
         info={"group": "distributions", "sampler": name, "mode": "vmap", "targets": targets})
    record(lanes=N)


# -- log-prob throughput -------------------------------------------------------------------------

_G = 7
_C = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
      12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7]


def _lanczos_lgamma(x):
    """The seed's plain-MLX Lanczos lgamma (g = 7, 9 terms), eager."""
    x = x - 1.0
    a = _C[0]
    t = x + _G + 0.5
    for i in range(1, _G + 2):
        a = a + _C[i] / (x + i)
    return 0.5 * math.log(2 * math.pi) + (x + 0.5) * mx.log(t) - t + mx.log(a)


def _plain_beta_lp(x, a, b):
    lb = _lanczos_lgamma(a) + _lanczos_lgamma(b) - _lanczos_lgamma(a + b)
    return mx.where((x >= 0) & (x <= 1), (a - 1) * mx.log(x) + (b - 1) * mx.log1p(-x) - lb, -mx.inf)


def _plain_gamma_lp(x, a, r):
    return mx.where(x > 0, a * mx.log(r) + (a - 1) * mx.log(x) - r * x - _lanczos_lgamma(a), -mx.inf)


@pytest.mark.parametrize("params", ["float", "array"])
@pytest.mark.parametrize("name", ["beta", "gamma"])
def test_log_prob_throughput(pair, record, name, params):
    """Python-number parameters: the host picks the density's form, one fused kernel; at most the eager
    plain-MLX time. Array parameters: both forms per lane (shape < 11 or not), within 3x."""
    x = mx.random.uniform(low=0.01, high=0.99, shape=(N,), key=KEY)
    a, b = mx.array(2.5), mx.array(3.5)
    mx.eval(x, a, b)
    pa, pb = (2.5, 3.5) if params == "float" else (a, b)
    d = dist.beta(pa, pb) if name == "beta" else dist.gamma(pa, pb)
    plain = _plain_beta_lp if name == "beta" else _plain_gamma_lp

    def genmlx():
        lp = d.log_prob(x)
        mx.eval(lp)
        return lp

    limit = 1.0 if params == "float" else 3.0
    targets = [{"name": f"{name} log-prob of 100,000 values ({params} parameters) within {limit}x the eager plain-MLX time",
                "ratio": "plain_eager", "statistic": "paired_median", "max": limit}]
    pair(genmlx, {"plain_eager": lambda: mx.eval(plain(x, a, b))}, rounds=9, per=N, unit="value",
         info={"group": "distributions", "log_prob": name, "params": params, "targets": targets})
    record(values=N)


# -- graph nodes per log-prob --------------------------------------------------------------------


def test_log_prob_graph_nodes(benchmark, record):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "distributions"))
    from dist_helpers import graph_nodes
    from node_table import ROWS, measure

    table = benchmark.pedantic(lambda: measure(graph_nodes), rounds=1, iterations=1)
    targets = []
    for name, (f_x, f_vec, a_x, a_vec) in table.items():
        seed = ROWS[name][3]
        if seed is not None:
            targets.append({"name": f"{name}: log-prob nodes at most half the seed's {seed} (Python-number params)",
                            "value": max(f_x, f_vec), "max": seed / 2})
    record(nodes={k: dict(zip(("float_scalar", "float_vector", "array_scalar", "array_vector"), v))
                  for k, v in table.items()},
           seed={k: r[3] for k, r in ROWS.items() if r[3] is not None}, targets=targets, group="distributions")
