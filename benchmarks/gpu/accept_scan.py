"""The accept recursion of a K-iteration independence chain on the default device: `resolve` (on a
CUDA GPU one custom kernel that writes the states, flags, probabilities and last density) against
its array form (comparison and pointer doubling, then the rest as array ops), each compiled on its own.

`python -m benchmarks.gpu.accept_scan [OUT.json]`: for K = 50, 500 and 5,000, whether each form gives
the array form's states, flags and last density (and probabilities within 1e-6) on random densities
(NaN and -inf included), then the median wall time of one call and its `mx.eval` over 300 calls,
alternating the forms call by call.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time

import mlx.core as mx
import numpy as np

from benchmarks.common import device_description
from genmlx.inference import accept_scan as A


def _case(k: int, seed: int):
    rng = np.random.default_rng(seed)
    lls = rng.normal(size=k).astype(np.float32) * 2.0
    lls[rng.random(k) < 0.05] = np.nan
    lls[rng.random(k) < 0.05] = -np.inf
    logu = np.log(rng.random(k)).astype(np.float32)
    return mx.array(lls), mx.array(logu), mx.array(float(rng.normal()), dtype=mx.float32)


def _same(a, b) -> bool:
    (sa, fa, pa, la), (sb, fb, pb, lb) = a, b
    return (sa.tolist() == sb.tolist() and fa.tolist() == fb.tolist() and la.item() == lb.item()
            and np.allclose(np.asarray(pa), np.asarray(pb), rtol=1e-6, atol=0, equal_nan=True))


def main(out: str | None) -> None:
    forms = {"resolve": mx.compile(A.resolve), "array_form": mx.compile(A._array_resolve)}
    rows = []
    for k in (50, 500, 5000):
        same = {name: all(_same(fn(*_case(k, s)), forms["array_form"](*_case(k, s))) for s in range(5))
                for name, fn in forms.items() if name != "array_form"}
        args = _case(k, 99)
        mx.eval(*args)
        times = {name: [] for name in forms}
        for _ in range(300):
            for name, fn in forms.items():
                t0 = time.perf_counter()
                mx.eval(fn(*args))
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(ts) * 1e6 for name, ts in times.items()}
        rows.append({"k": k, "same_as_array_form": same, **{f"{n}_us": round(v, 1) for n, v in med.items()}})
        print(f"K = {k}: same as the array form {same}; " + "  ".join(f"{n} {v:.1f} us" for n, v in med.items())
              + f"  ratio {med['resolve'] / med['array_form']:.2f}x", flush=True)
    if out:
        with open(out, "w") as f:
            json.dump({"device": device_description(), "cuda_kernel": A._kernel_runs(*_case(1, 0)[:2]), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
