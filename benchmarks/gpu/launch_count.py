"""Kernel launches of a `compiled_mh` K = 50 block on a CUDA GPU, estimated on any machine from MLX's graph.

`python -m benchmarks.gpu.launch_count`: the block's outputs are built (not evaluated) with the GPU's
normal sampler forced (`distributions._common._normal_by_erfinv`), and MLX's graph export
(`mx.export_to_dot`) lists their primitives after `mx.compile`'s fusion. Each primitive that is not a
view (reshape, slice, squeeze, broadcast, split, transpose) is one launch on MLX's CUDA backend. On a
CPU the accept recursion takes its array form, so its primitives are taken off and the CUDA kernel's
one launch put in their place (on a CUDA GPU the graph holds the kernel: the count is direct). At d4ecb92 (before MLX's normal on a GPU and the views) it gives 32 for the
regression's block, where that stop's H100 profile read about 30, and 28 for Beta-Bernoulli. Since:
12 and 25 on a CPU, but 21 and 34 counted directly on the H100 (results/gpu/launch-count-h100.txt):
the CPU estimate reads 9 low (the array form's primitives it takes off include some the CUDA path
keeps around the kernel), so it guards against growth, and a GPU gives the number.
"""

from __future__ import annotations

import collections
import io
import re

import mlx.core as mx

from benchmarks import models as M
from genmlx.distributions import _common as D
from genmlx.inference import accept_scan as A
from genmlx.inference import compiled as C
from genmlx.inference._common import init_trace, resolve_selection, split_key

VIEWS = {"Squeeze", "ExpandDims", "Broadcast", "Reshape", "Slice", "Split", "Transpose"}
K = 50


def launches(*outs) -> collections.Counter:
    """The non-view primitives of the graph of `outs`, by name (fused kernels as "Compiled")."""
    f = io.StringIO()
    mx.export_to_dot(f, *outs)
    names = re.findall(r'label ="?([A-Za-z_]+)', f.getvalue())
    return collections.Counter("Compiled" if n.startswith("Compiled") else n for n in names if n not in VIEWS)


def recursion_launches() -> int:
    """The accept recursion's launches in a block's count on this device: on a CPU its array form's
    primitives (taken off, the CUDA kernel's one launch put in), on a CUDA GPU none (counted as is)."""
    lls, logu = mx.random.normal((K,)), mx.log(mx.random.uniform(shape=(K,)))
    mx.eval(lls, logu)  # (their own primitives are not the recursion's)
    if A._kernel_runs(lls, logu):
        return 0
    return sum(launches(A._doubling_states(lls, logu, mx.array(0.0))).values()) - 1


def block_launches(model, args, obs) -> tuple[int, collections.Counter]:
    """About how many kernel launches a K = 50 `compiled_mh` block of `model` is on a CUDA GPU, and
    the block's primitives here. Call with the GPU's normal sampler forced (`main` does)."""
    k_init, _ = split_key(mx.random.key(1))
    tr, obs_ = init_trace("launch_count", model, args, obs, k_init)
    kern = C.CompiledMH(tr, resolve_selection("launch_count", tr, obs_, None), K, 1, "block")
    st = kern.initial_state(tr)
    mx.eval(st.values, st.ll)
    state, kept, stats = kern.block(mx.random.key(3), st, kern.reference(tr))
    c = launches(*state.values, state.ll, stats["accepted"], stats["accept_prob"], *kept.values.values())
    return sum(c.values()) - recursion_launches(), c


CASES = {"beta_bernoulli": (M.beta_bernoulli, M.BB_ARGS, M.BB_OBS),
         "regression5": (M.linreg, (M.LR5_XS,), M.obs_of(M.LR5_YS))}


def main() -> None:
    D._normal_by_erfinv = lambda: True
    for name, case in CASES.items():
        n, c = block_launches(*case)
        print(f"{name}: about {n} launches a K = {K} block on a CUDA GPU ({sum(c.values())} primitives here); "
              f"{dict(c)}")


if __name__ == "__main__":
    main()
