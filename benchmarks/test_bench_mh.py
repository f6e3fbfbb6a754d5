"""Metropolis-Hastings: the dynamic handler path and the fused multi-iteration kernel (issue 8).

Run: python -m pytest benchmarks/test_bench_mh.py --benchmark-only

Models: Beta-Bernoulli and the 5-site regression; the selection is every
latent (genmlx's default), resampled from its prior. Against the plain-MLX
floors of `floors.mh_step` (the same proposal, accept rule and kept values):

* `infer.mh` (one driver step per iteration) vs the eager floor (one
  `mx.eval` per iteration) and the floor with its step `mx.compile`d;
* `infer.compiled_mh` (K = 50 iterations fused per driver step, the K
  proposals and uniforms drawn from the step's one key) vs the same program
  in MLX (`floors.mh_upfront_kernel`: proposals as one batch, the accept
  recursion resolved at once); with `keys="per_iteration"` (iteration i's
  randomness from the i-th key, `infer.mh`'s chain) vs `floors.mh_fused_kernel`;
  K = 500 vs K = 50 per iteration (a larger block must not cost more).

Per iteration; `steady` ratios leave out each run's first driver step (where
`compiled_mh` traces and compiles its kernel the first time; the kernel is
cached across calls by model, selection, K, thin, args and trace structure). Targets: dynamic MH within 1.5x of
the compiled-step floor (the fastest plain-MLX step), the fused path within 1.3x of the fused floor.

Also: instrumentation overhead of genmlx_observe on these loops (detached,
metrics only, spans at the default sampling, a span per step), as ratios
against the detached run of the same round.
"""

from __future__ import annotations

import statistics
from contextlib import nullcontext

import mlx.core as mx
import pytest

from benchmarks import floors as F
from benchmarks.common import size
from genmlx import inference as infer

MODELS = ["beta_bernoulli", "regression5"]
N_DYNAMIC = size(500, 20_000)
N_FUSED = size(1_500, 20_000)
K = 50  # compiled_mh's default iterations per step


def _mh_info(res) -> dict:
    st = res.stats
    it = st.get("iterations") or 1
    return {"syncs_per_iteration": st.get("syncs", 0) / it, "evals_per_iteration": st.get("steps", it) / it,
            "acceptance_rate": st.get("acceptance_rate"), "iterations": it}


def _loop(pair, record, c, model, compile: bool):
    """`infer.mh` (one driver step per iteration, the GFI's or the compiled proposal) against the same
    loop over the plain-MLX step, compiled (the fastest; the target's floor) and, for dynamic mh, eager."""
    key = mx.random.key(3)
    n = N_DYNAMIC
    step = F.mh_step(c.floor)
    step_c = mx.compile(step)
    st, ll = F.mh_init(c.floor, key)
    floors = {"floor_compiled_step": lambda: F.mh_eager(step_c, st, ll, key, n)}
    if not compile:  # the eager floor (one eval per step built afresh, as genmlx's step is), shown beside
        floors = {"floor_eager": lambda: F.mh_eager(step, st, ll, key, n), **floors}
    what = "mh(compile=True)" if compile else "dynamic MH"

    def genmlx():
        return infer.mh(c.model, c.args, c.obs, n_samples=n, key=key, compile=compile)

    res = pair(genmlx, floors, rounds=size(9, 3), per=n, unit="iteration", steady=True,
               info={"group": "mh", "model": model, "algorithm": "mh",
                     "variant": "compiled step" if compile else "dynamic",
                     "targets": [{"name": f"{what} within 1.5x of the compiled-step plain-MLX floor ({model})",
                                  "ratio": "floor_compiled_step", "statistic": "steady_paired_median", "max": 1.5}]})
    record(**_mh_info(res))


@pytest.mark.parametrize("model", MODELS)
def test_mh_dynamic(pair, record, cases, model):
    _loop(pair, record, cases[model], model, compile=False)


@pytest.mark.parametrize("model", MODELS)
def test_mh_compiled_step(pair, record, cases, model):
    """`mh(compile=True)`: a Python loop over the compiled proposal (GenJAX's Python loop over a jitted
    step), against the same loop over the compiled plain-MLX step."""
    _loop(pair, record, cases[model], model, compile=True)


def _fused(pair, record, c, model, keys: str):
    """compiled_mh with `keys` against the same chain written in plain MLX (its fastest form we know)."""
    key = mx.random.key(4)
    n = N_FUSED
    st, ll = F.mh_init(c.floor, key)
    if keys == "block":
        kernel, run, base = F.mh_upfront_kernel(c.floor, K), F.mh_upfront, "floor_fused_upfront"
        variant, target = f"fused K={K}", f"fused MH (K = {K}) within 1.3x of the upfront-key plain-MLX floor ({model})"
    else:
        kernel, run, base = F.mh_fused_kernel(c.floor, K), F.mh_fused, "floor_fused"
        variant = f"fused K={K}, per-iteration keys"
        target = f"fused MH, per-iteration keys, within 1.3x of the same plain-MLX program ({model})"

    def genmlx():
        return infer.compiled_mh(c.model, c.args, c.obs, n_samples=n, iterations_per_step=K, keys=keys, key=key)

    # compiled_mh caches its kernel across calls: the first round's first step compiles it, the
    # steady statistic leaves each run's first step out
    res = pair(genmlx, {base: lambda: run(kernel, K, st, ll, key, n)},
               rounds=3, per=n, unit="iteration", steady=True, warmup="baselines",
               info={"group": "mh", "model": model, "algorithm": "compiled_mh", "variant": variant,
                     "iterations_per_step": K,
                     "targets": [{"name": target, "ratio": base, "statistic": "steady_paired_median", "max": 1.3}]})
    record(**_mh_info(res))


@pytest.mark.parametrize("model", MODELS)
def test_mh_fused(pair, record, cases, model):
    """compiled_mh (keys="block") against the upfront-key floor: the same chain, written in plain MLX."""
    _fused(pair, record, cases[model], model, "block")


@pytest.mark.parametrize("model", MODELS)
def test_mh_fused_per_iteration_keys(pair, record, cases, model):
    """compiled_mh (keys="per_iteration", the chain of infer.mh) against the same program in plain MLX."""
    _fused(pair, record, cases[model], model, "per_iteration")


K_LARGE = 500


@pytest.mark.parametrize("model", MODELS)
def test_mh_fused_block_size(pair, record, cases, model):
    """A larger block never costs more per iteration: compiled_mh K = 500 against K = 50, same run."""
    c = cases[model]
    key = mx.random.key(6)
    n = size(5_000, 50_000)
    upfront = F.mh_upfront_kernel(c.floor, K_LARGE)
    st, ll = F.mh_init(c.floor, key)

    def run(k):
        return lambda: infer.compiled_mh(c.model, c.args, c.obs, n_samples=n, iterations_per_step=k, key=key)

    res = pair(run(K_LARGE), {"compiled_mh_k50": run(K),
                              "floor_fused_upfront_k500": lambda: F.mh_upfront(upfront, K_LARGE, st, ll, key, n)},
               rounds=3, per=n, unit="iteration", steady=True, warmup="baselines",
               info={"group": "mh", "model": model, "algorithm": "compiled_mh", "variant": f"fused K={K_LARGE}",
                     "iterations_per_step": K_LARGE,
                     "targets": [{"name": f"fused MH K = {K_LARGE} at most 1.05x K = {K} per iteration ({model})",
                                  "ratio": "compiled_mh_k50", "statistic": "paired_median", "max": 1.05}]})
    record(**_mh_info(res))


# -- instrumentation overhead ------------------------------------------------------------------

def _configs() -> dict:
    pytest.importorskip("opentelemetry.sdk", reason="genmlx_observe's OpenTelemetry SDK is not installed")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from prometheus_client import CollectorRegistry

    import genmlx_observe as go

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

        def shutdown(self):
            pass

    def tracer():
        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(Discard()))
        return tp

    def metrics():
        return {"meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]), "registry": CollectorRegistry()}

    return {
        "detached": lambda: nullcontext(),
        "metrics_only": lambda: go.observe(step_spans=False, **metrics()),
        "spans_default": lambda: go.observe(tracer_provider=tracer(), **metrics()),
        "span_per_step": lambda: go.observe(tracer_provider=tracer(), sample_every=1, **metrics()),
    }


OBS_ROUNDS = 5


@pytest.mark.parametrize("algorithm", ["mh"])
def test_instrumentation_overhead(benchmark, record, cases, algorithm):
    """Per-iteration time observed / detached (same round), median over rounds; no timed assertion."""
    c = cases["beta_bernoulli"]
    configs = _configs()
    n = size(300, 2_000) if algorithm == "mh" else size(2_000, 20_000)
    timer = benchmark._timer
    key = mx.random.key(5)

    def run():
        if algorithm == "mh":
            return infer.mh(c.model, c.args, c.obs, n_samples=n, key=key)
        return infer.compiled_mh(c.model, c.args, c.obs, n_samples=n, iterations_per_step=K, key=key)

    run()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in configs}

    def measure():
        for r in range(OBS_ROUNDS):
            names = list(configs) if r % 2 == 0 else list(configs)[::-1]
            for name in names:
                with configs[name]():
                    t0 = timer()
                    run()
                    times[name].append((timer() - t0) / n)

    benchmark.pedantic(measure, rounds=1)
    ratios = {k: statistics.median(a / b for a, b in zip(v, times["detached"])) for k, v in times.items()}
    record(group="instrumentation", model="beta_bernoulli", algorithm=algorithm, unit="iteration", per=n,
           per_iteration_s={k: statistics.median(v) for k, v in times.items()}, overhead_ratios=ratios,
           round_times_s=times)
