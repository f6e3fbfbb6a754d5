"""The accept recursion of a K-iteration independence chain on the default device: `chain_states` (on a
CUDA GPU its one custom kernel) against the comparison-and-doubling form, each compiled on its own.

`python -m benchmarks.gpu.accept_scan [OUT.json]`: for K = 50, 500 and 5,000, whether the two give the
same states on random densities (NaN and -inf included), then the median wall time of one call and
its `mx.eval` over 300 calls, alternating the two forms call by call.
"""

from __future__ import annotations

import json
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


def main(out: str | None) -> None:
    forms = {"chain_states": mx.compile(A.chain_states), "doubling": mx.compile(A._doubling_states)}
    rows = []
    for k in (50, 500, 5000):
        same = all(forms["chain_states"](*_case(k, s)).tolist() == forms["doubling"](*_case(k, s)).tolist()
                   for s in range(5))
        args = _case(k, 99)
        mx.eval(*args)
        times = {name: [] for name in forms}
        for _ in range(300):
            for name, fn in forms.items():
                t0 = time.perf_counter()
                mx.eval(fn(*args))
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(ts) * 1e6 for name, ts in times.items()}
        rows.append({"k": k, "same_states": same, **{f"{n}_us": round(v, 1) for n, v in med.items()}})
        print(f"K = {k}: same states {same}; " + "  ".join(f"{n} {v:.1f} us" for n, v in med.items())
              + f"  ratio {med['chain_states'] / med['doubling']:.2f}x", flush=True)
    if out:
        with open(out, "w") as f:
            json.dump({"device": device_description(), "cuda_kernel": A._on_cuda(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
