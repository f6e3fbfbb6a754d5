"""Where a vectorized IS call's fixed cost goes on the default device, against the compiled floor's.

`python -m benchmarks.gpu.is_split [N ...]`: for the 100-point regression in both forms (102 scalar
sites, one vector site), the wall time of one `importance_sampling(vectorized=True)` call and of the
compiled plain-MLX floor's (`benchmarks.floors.is_vectorized`), then the call's parts, each timed on
its own with the others' results at hand: the observations' choicemap, the call's cache key, the
lean compiled pass's call (its Python; nothing evaluated), the checks pass's call, the evaluation of
both, and the rest (the driver's run around them, the weights' summaries, the result). Medians of
interleaved rounds, in microseconds. The suite's target is the whole call at N = 100,000 within
1.5x of the floor (benchmarks/test_bench_is.py).
"""

from __future__ import annotations

import statistics
import sys
import time

import mlx.core as mx

from benchmarks import floors as F
from benchmarks.conftest import cases as _cases
from genmlx import compiled_pass
from genmlx import inference as infer
from genmlx.gfi import as_choicemap

ROUNDS, REPS = 15, 20


def _median_us(fns: dict) -> dict:
    """Each callable's median time per call over interleaved rounds (wall, after a warm-up)."""
    for f in fns.values():
        for _ in range(5):
            f()
    times: dict = {k: [] for k in fns}
    for _ in range(ROUNDS):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(REPS):
                f()
            times[k].append((time.perf_counter() - t) / REPS * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def split(model_name: str, n: int) -> dict:
    c = getattr(_cases, "__wrapped__", _cases)()[model_name]
    key = mx.random.key(1)
    floor = mx.compile(F.is_vectorized(c.floor, n))
    obs = as_choicemap(c.obs)
    args_c, obs_c = c.model._check_args(c.args), c.model._constraints(obs)
    call = compiled_pass.call_key(args_c, obs_c)

    def values():
        return compiled_pass.vgenerate_values(c.model, args_c, obs_c, n, key, "shared", call=call)

    got = values()

    def checks():
        return compiled_pass.checks_of_values(c.model, args_c, obs_c, got[0], n, key, "shared", call=call)

    def both_evaluated():
        v, cs = values(), checks()
        mx.eval(v, [x.ok for x in cs])

    return _median_us({
        "genmlx call": lambda: infer.importance_sampling(c.model, c.args, c.obs, n_particles=n, vectorized=True,
                                                         key=key),
        "floor (compiled)": lambda: mx.eval(floor(key)),
        "choicemap": lambda: as_choicemap(c.obs),
        "call key": lambda: compiled_pass.call_key(args_c, obs_c),
        "values pass (Python)": values,
        "checks pass (Python)": checks,
        "both passes evaluated": both_evaluated,
    })


def main(argv: list[str]) -> None:
    ns = [int(a) for a in argv] or [1, 100_000]
    print(f"device {mx.default_device()}, MLX {mx.__version__}; wall us per call, median of {ROUNDS} rounds")
    for n in ns:
        for name in ("regression100", "regression100_vec"):
            r = split(name, n)
            parts = ("choicemap", "call key", "both passes evaluated")
            rest = r["genmlx call"] - sum(r[p] for p in parts)
            print(f"{name} N={n:,}: genmlx {r['genmlx call']:.0f} / floor {r['floor (compiled)']:.0f} "
                  f"= {r['genmlx call'] / r['floor (compiled)']:.2f}x")
            for k, v in r.items():
                if k not in ("genmlx call", "floor (compiled)"):
                    print(f"  {k:24s} {v:8.0f}")
            print(f"  {'rest (driver, summaries)':24s} {rest:8.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
