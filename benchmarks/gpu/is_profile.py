"""Where a vectorized IS call's host time goes on this device: cProfile of repeated calls.

    python -m benchmarks.gpu.is_profile [MODEL] [N] [CALLS]

The 100-point regression with one vector site at N = 100,000 by default; the top functions by
cumulative and by own time. `is_split.py` splits the same call into its parts by timing each alone.
"""

from __future__ import annotations

import cProfile
import pstats
import sys

import mlx.core as mx

from benchmarks.conftest import cases as _cases
from genmlx import inference as infer


def main(argv: list[str]) -> None:
    model = argv[0] if argv else "regression100_vec"
    n = int(argv[1]) if len(argv) > 1 else 100_000
    calls = int(argv[2]) if len(argv) > 2 else 300
    c = getattr(_cases, "__wrapped__", _cases)()[model]
    key = mx.random.key(1)

    def call():
        return infer.importance_sampling(c.model, c.args, c.obs, n_particles=n, vectorized=True, key=key)

    for _ in range(20):
        call()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        call()
    prof.disable()
    print(f"device {mx.default_device()}, {model}, N = {n:,}, {calls} calls")
    st = pstats.Stats(prof)
    st.sort_stats("cumulative").print_stats(28)
    st.sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main(sys.argv[1:])
