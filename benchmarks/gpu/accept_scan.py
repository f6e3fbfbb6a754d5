"""The accept recursion of a K-iteration independence chain on the default device: `resolve` (on a
CUDA GPU its one custom kernel) against its array form (comparison and pointer doubling, then the
accept flags, probabilities and last density as array ops), each compiled on its own.

On a CUDA GPU a third form is tried: `one_kernel`, a candidate kernel that writes all four of
`resolve`'s results in its one launch (the shipped kernel writes the states, and four to five array
ops derive the rest, a launch each). It ships once it has run here: same results, fewer microseconds.

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


# The candidate: thread 0 also notes each iteration's accept probability; the threads write the states,
# flags and probabilities of a tile; thread 0 writes the last density at the end.
ONE_KERNEL_SOURCE = """
    constexpr int TILE = 1024;
    __shared__ float sl[TILE];
    __shared__ float su[TILE];
    __shared__ float sp[TILE];
    __shared__ int sc[TILE];
    __shared__ int cur;
    __shared__ float lcur;
    const int t = threadIdx.x, nt = blockDim.x;
    if (t == 0) { cur = 0; lcur = ll0[0]; states[0] = 0; }
    for (int a = 0; a < K; a += TILE) {
        const int n = min(TILE, K - a);
        for (int i = t; i < n; i += nt) { sl[i] = lls[a + i]; su[i] = logu[a + i]; }
        __syncthreads();
        if (t == 0) {
            int c = cur;
            float l = lcur;
            for (int i = 0; i < n; ++i) {
                const float li = sl[i];
                const float d = li - l;
                sp[i] = isnan(d) ? d : expf(fminf(d, 0.0f));  // NaN stays NaN, as mx.minimum keeps it
                if (su[i] < d) { c = a + i + 1; l = li; }  // NaN compares false: never accepted
                sc[i] = c;
            }
            cur = c;
            lcur = l;
        }
        __syncthreads();
        for (int i = t; i < n; i += nt) {
            states[a + i + 1] = sc[i];
            accepted[a + i] = sc[i] == a + i + 1;
            prob[a + i] = sp[i];
        }
        __syncthreads();
    }
    if (t == 0) { ll_last[0] = lcur; }
"""
_one_kernel = None


def one_kernel_resolve(lls, logu, ll0):
    global _one_kernel
    if _one_kernel is None:
        _one_kernel = mx.fast.cuda_kernel(name="genmlx_accept_resolve", input_names=["lls", "logu", "ll0"],
                                          output_names=["states", "accepted", "prob", "ll_last"],
                                          source=ONE_KERNEL_SOURCE)
    k = lls.shape[0]
    threads = min(256, 32 * math.ceil(k / 32))
    states, accepted, prob, last = _one_kernel(
        inputs=[lls, logu, ll0.astype(mx.float32).reshape(1)], template=[("K", k)], grid=(threads, 1, 1),
        threadgroup=(threads, 1, 1), output_shapes=[(k + 1,), (k,), (k,), (1,)],
        output_dtypes=[mx.int32, mx.bool_, mx.float32, mx.float32])
    return states, accepted, prob, last.reshape(())


def _same(a, b) -> bool:
    (sa, fa, pa, la), (sb, fb, pb, lb) = a, b
    return (sa.tolist() == sb.tolist() and fa.tolist() == fb.tolist() and la.item() == lb.item()
            and np.allclose(np.asarray(pa), np.asarray(pb), rtol=1e-6, atol=0, equal_nan=True))


def main(out: str | None) -> None:
    forms = {"resolve": mx.compile(A.resolve), "array_form": mx.compile(A._array_resolve)}
    if A._kernel_runs(*_case(1, 0)[:2]):
        forms["one_kernel"] = mx.compile(one_kernel_resolve)
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
