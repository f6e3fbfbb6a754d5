"""Where a compiled_mh block's wall time goes on the default device, against the upfront-key floor's.

`python -m benchmarks.gpu.profile_blocks [N [K]]`: for Beta-Bernoulli and the 5-site regression at K (50),
the wall time per block split into the driver's parts (the block: the compiled kernel's call and its
Python; the step's launch: its walk and `mx.async_eval`; its land: the wait for the device and the
checks; the statistics' conversion to Python, the history, the budget's check), the rest of the driver's loop, and the call's
set-up and finish outside the driver (the initial trace, diagnostics, the final trace) spread over
its blocks; then cProfile's top functions.
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
import genmlx.memory as gm_memory
from genmlx import inference as infer
from genmlx.inference import compiled as C
from genmlx.inference import diagnostics
from genmlx.inference import driver
from genmlx.inference.history import History

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


def split(run, parts: dict) -> dict:
    """Run `run()` with each callable in `parts` ({label: (owner, attribute)}) timed; nested parts are
    reported inclusive (the driver's materialize includes its eval, the block its kernel call)."""
    clocks = {label: Clock() for label in parts}
    saved = []
    for label, (owner, attr) in parts.items():
        saved.append((owner, attr, owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr)))
        setattr(owner, attr, clocks[label].wrap(getattr(owner, attr)))
    try:
        t0 = time.perf_counter()
        run()
        total = time.perf_counter() - t0
    finally:
        for owner, attr, fn in reversed(saved):
            setattr(owner, attr, fn)
    out = {"total": total, **{label: c.s for label, c in clocks.items()}}
    inside = sum(c.s for label, c in clocks.items() if label in IN_LOOP)
    if "run" in clocks:  # genmlx: the driver's loop apart from its parts, and the call's set-up and finish
        out["loop_rest"] = clocks["run"].s - inside
        out["outside_run"] = total - clocks["run"].s
    else:
        out["rest"] = total - inside
    return out


# The parts of one driver step (or floor block), each timed inclusively; none nests in another.
IN_LOOP = ("block", "launch", "land", "to_python", "history", "budget", "floor_kernel", "floor_eval")


def genmlx_parts(kern) -> dict:
    # a pipelined run: the step's walk and scheduling (`launch`), then its wait (`wait`, inside `land`)
    return {"run": (driver, "run"), "block": (kern, "block"), "kernel_call": (kern, "_fn"), "launch": (driver, "_launch"),
            "land": (driver, "_land"), "wait": (driver, "wait_for"), "to_python": (driver, "to_python"), "history": (History, "add"),
            "budget": (gm_memory, "check_budget"),
            # outside the driver's loop: the set-up and the finish
            "init_trace": (C, "init_trace"), "final_trace": (kern, "trace_of"), "kept_array": (C.StackedTraces, "array"),
            "summaries": (diagnostics, "chain_summaries")}


class _Holder:
    def __init__(self, fn):
        self._fn = fn


def main(n: int, k: int = K) -> None:
    print(mx.default_device(), mx.device_info().get("device_name"), f"K = {k}", flush=True)
    blocks = n // k
    for name, (model, args, obs, floor) in CASES.items():
        g = lambda: infer.compiled_mh(model, args, obs, n_samples=n, iterations_per_step=k, key=mx.random.key(1))
        g()
        kern = next(v for v in C._cache.values() if v.gen_fn is model)
        fk = _Holder(F.mh_upfront_kernel(floor, k))
        st, ll = F.mh_init(floor, mx.random.key(0))
        f = lambda: F.mh_upfront(lambda *a: fk._fn(*a), k, st, ll, mx.random.key(2), n)
        f()
        floor_parts = {"floor_kernel": (fk, "_fn"), "floor_eval": (mx, "eval")}
        for label, run, parts in [("genmlx", g, genmlx_parts(kern)), ("floor", f, floor_parts)] * 2:
            s = split(run, parts)
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
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, int(sys.argv[2]) if len(sys.argv) > 2 else K)
