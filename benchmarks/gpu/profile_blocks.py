"""Where a compiled_mh block's wall time goes on the default device, against the upfront-key floor's.

`python -m benchmarks.gpu.profile_blocks [N]`: for Beta-Bernoulli and the 5-site regression at K = 50,
the wall time per block split into the compiled kernel's call (building its outputs' graph), the
driver's `mx.eval` (waiting for the device) and the rest (Python), then cProfile's top functions.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

import mlx.core as mx

from benchmarks import floors as F
from benchmarks.gpu.mh_per_iteration import CASES  # the same models, data and floors
from genmlx import inference as infer
from genmlx.inference import compiled as C

K = 50


class Clock:
    """Wall time spent inside wrapped callables."""

    def __init__(self):
        self.s = 0.0

    def wrap(self, fn):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.s += time.perf_counter() - t0
        return timed


def split(run, kernels) -> dict:
    """Run `run()` with mx.eval and every kernel in `kernels` (objects with `_fn`, or None) timed."""
    ev, call = Clock(), Clock()
    real_eval = mx.eval
    mx.eval = ev.wrap(real_eval)
    saved = [(k, k._fn) for k in kernels]
    for k, fn in saved:
        k._fn = call.wrap(fn)
    try:
        t0 = time.perf_counter()
        run()
        total = time.perf_counter() - t0
    finally:
        mx.eval = real_eval
        for k, fn in saved:
            k._fn = fn
    return {"total": total, "eval": ev.s, "kernel_call": call.s, "rest": total - ev.s - call.s}


class _Holder:
    def __init__(self, fn):
        self._fn = fn


def main(n: int) -> None:
    print(mx.default_device(), mx.device_info().get("device_name"), flush=True)
    blocks = n // K
    for name, (model, args, obs, floor) in CASES.items():
        g = lambda: infer.compiled_mh(model, args, obs, n_samples=n, iterations_per_step=K, key=mx.random.key(1))
        g()
        kern = next(v for v in C._cache.values() if v.gen_fn is model)
        fk = _Holder(F.mh_upfront_kernel(floor, K))
        st, ll = F.mh_init(floor, mx.random.key(0))
        f = lambda: F.mh_upfront(lambda *a: fk._fn(*a), K, st, ll, mx.random.key(2), n)
        f()
        for label, run, kerns in [("genmlx", g, [kern]), ("floor", f, [fk])] * 2:
            s = split(run, kerns)
            print(f"{name} {label}: per block " + "  ".join(f"{k} {v / blocks * 1e6:.0f} us" for k, v in s.items()),
                  flush=True)
        pr = cProfile.Profile()
        pr.enable()
        g()
        pr.disable()
        out = io.StringIO()
        pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(18)
        print("\n".join(out.getvalue().splitlines()[6:30]), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
