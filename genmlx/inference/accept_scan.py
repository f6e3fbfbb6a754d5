"""The accept decisions of K MH iterations whose proposals do not depend on the chain, in O(log K) ops.

Selection MH on a static-structure model is an independence sampler: the
selected choices are redrawn from their prior given the unselected ones,
which never change, so the K proposals of a block can be drawn at once. What
stays sequential is the accept rule: iteration j (1-based) moves the chain
from its state c to proposal j iff `log u_j < L_j - L_c` (L: each state's
log density of the retained sites; state 0 is the block's starting state).

Written as K scalar `mx.where`s, that recursion costs K dependent kernels
(MLX's CPU backend: about 5 us each). Here it costs a few dozen array
operations whatever K is:

1. From every state i, the next state the chain would move to:
   `next(i) = min {j > i : log u_j < L_j - L_i}` (a [K+1, K+1] comparison,
   the same floating-point subtraction and comparison as the sequential rule,
   so the decisions are the same bit for bit).
2. The chain's path 0 -> next(0) -> next(next(0)) -> ... by pointer doubling
   (ceil(log2(K + 1)) rounds of gathers).
3. The state after iteration j: the last path state <= j (a cumulative max).

Blocks longer than `chunk` are done `chunk` iterations at a time, so the
comparison's memory and the work per iteration stay bounded as K grows.

On a CUDA GPU each of those array operations is a kernel launch (on an
H100 they took 320 us of a K = 50 block's 620 us), while the recursion
itself is K scalar steps. There the rule runs as one custom kernel
(`mx.fast.cuda_kernel`): the block's threads stage the densities and
uniforms in shared memory and one thread walks them, with the same float32
subtraction and comparison, so the states are the same (29 us at K = 50,
74 us at K = 500: benchmarks/results/gpu/accept-scan-h100.json). The same
launch writes the accept flags, probabilities and last density, which the
array form derives with four to five more launches (on an H100, `resolve`
at K = 50: 58 us against 87 us for the states-only kernel and its derived
outputs, the same values: results/gpu/accept-scan-h100-one-kernel.json).
"""

from __future__ import annotations

import math

import mlx.core as mx

__all__ = ["chain_states", "resolve"]

CHUNK = 512


def chain_states(lls: mx.array, logu: mx.array, ll0: mx.array, chunk: int = CHUNK) -> mx.array:
    """The state after each of K iterations: int32 `[K + 1]`, entry 0 is 0 (the start), entry j is
    the index in 0..K of the state after iteration j (0: the start, i >= 1: proposal i).

    Args:
        lls: `[K]` log densities of the K proposals (NaN: never accepted).
        logu: `[K]` the log uniforms of the K accept tests.
        ll0: the starting state's log density (0-d).
    """
    if _kernel_runs(lls, logu):
        return _cuda_resolve(lls, logu, ll0)[0]
    return _doubling_states(lls, logu, ll0, chunk)


def resolve(lls: mx.array, logu: mx.array, ll0: mx.array) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """The K accept decisions and what a block reports of them: `(states, accepted, accept_prob,
    ll_last)`.

    `states` is `chain_states`; `accepted[j]` is whether iteration j + 1 moved the chain (bool
    `[K]`); `accept_prob[j]` is `exp(min(lls[j] - L, 0))` against the state L it started from
    (NaN for a NaN density); `ll_last` is the log density of the state after the last iteration.
    """
    if _kernel_runs(lls, logu):
        return _cuda_resolve(lls, logu, ll0)
    return _derive(_doubling_states(lls, logu, ll0), lls, ll0)


def _array_resolve(lls, logu, ll0):
    """`resolve` by array operations only (the doubling form's states, on every device)."""
    return _derive(_doubling_states(lls, logu, ll0), lls, ll0)


def _derive(c, lls, ll0):
    """The accept flags, probabilities and last density of the states `c`."""
    k = lls.shape[0]
    L = mx.concatenate([ll0.reshape(1).astype(lls.dtype), lls])
    accepted = c[1:] == mx.arange(1, k + 1, dtype=c.dtype)
    prob = mx.exp(mx.minimum(lls - L[c[:-1]], 0.0))
    return c, accepted, prob, L[c[-1]]


def _doubling_states(lls, logu, ll0, chunk: int = CHUNK):
    """`chain_states` by comparison and pointer doubling (the module's steps 1-3), `chunk` at a time."""
    k = lls.shape[0]
    out = [mx.zeros((1,), mx.int32)]
    cur, ll = mx.array(0, mx.int32), ll0
    for a in range(0, k, chunk):
        b = min(a + chunk, k)
        local = _chunk_states(lls[a:b], logu[a:b], ll)
        # local 0 is the chunk's starting state (global `cur`); local j is proposal a + j
        glob = mx.where(local == 0, cur, local + a).astype(mx.int32)
        out.append(glob[1:])
        last = local[-1]
        ll = mx.where(last == 0, ll, lls[a + mx.maximum(last, 1) - 1])
        cur = glob[-1]
    return mx.concatenate(out) if len(out) > 1 else out[0]


def _chunk_states(lls, logu, ll0):
    k = lls.shape[0]
    L = mx.concatenate([ll0.reshape(1).astype(lls.dtype), lls])
    U = mx.concatenate([mx.array([mx.inf], logu.dtype), logu])  # nothing moves to the start
    idx = mx.arange(k + 1, dtype=mx.int32)
    moves = (idx[None, :] > idx[:, None]) & (U[None, :] < L[None, :] - L[:, None])  # [from i, to j]
    nxt = mx.where(mx.any(moves, axis=1), mx.argmax(moves, axis=1).astype(mx.int32), k + 1)
    jump = mx.concatenate([nxt, mx.array([k + 1], mx.int32)])  # k + 1: past the end (absorbing)
    path = mx.zeros((1,), mx.int32)
    rounds = max(1, math.ceil(math.log2(k + 1)))
    for r in range(rounds):
        path = mx.concatenate([path, jump[path]])
        if r < rounds - 1:
            jump = jump[jump]
    on_path = mx.zeros((k + 2,), mx.int32).at[path].add(1)[: k + 1] > 0
    return mx.cummax(mx.where(on_path, idx, 0))


def _kernel_runs(lls, logu) -> bool:
    """The CUDA kernel takes the recursion: a non-empty float32 block on a CUDA GPU."""
    return (lls.shape[0] > 0 and lls.dtype == mx.float32 and logu.dtype == mx.float32
            and mx.default_device() == mx.gpu and mx.cuda.is_available())


# One thread block: its threads stage a tile of the densities and uniforms in shared memory, thread 0
# walks the tile (the sequential rule) noting each iteration's accept probability, then the threads
# write the tile's states, flags and probabilities; thread 0 writes the last density at the end.
_RESOLVE_SOURCE = """
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
_resolve_kernel = None


def _cuda_resolve(lls, logu, ll0):
    """`resolve` as one CUDA kernel launch."""
    global _resolve_kernel
    if _resolve_kernel is None:
        _resolve_kernel = mx.fast.cuda_kernel(name="genmlx_accept_resolve", input_names=["lls", "logu", "ll0"],
                                              output_names=["states", "accepted", "prob", "ll_last"],
                                              source=_RESOLVE_SOURCE)
    k = lls.shape[0]
    threads = min(256, 32 * math.ceil(k / 32))
    states, accepted, prob, last = _resolve_kernel(
        inputs=[lls, logu, ll0.astype(mx.float32).reshape(1)], template=[("K", k)], grid=(threads, 1, 1),
        threadgroup=(threads, 1, 1), output_shapes=[(k + 1,), (k,), (k,), (1,)],
        output_dtypes=[mx.int32, mx.bool_, mx.float32, mx.float32])
    return states, accepted, prob, last.reshape(())
