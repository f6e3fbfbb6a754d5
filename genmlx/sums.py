"""Fused sums: a trace's score and an update's weight as one graph node.

An execution adds one score per site; written as a chain of additions that is
one node per site. `signed_sum(pos, neg)` compiles `sum(pos) - sum(neg)` as a
balanced tree (MLX fuses at most 11 primitives deep and 24 inputs per region),
one node for up to 16 terms, a few for long lists.
"""

from __future__ import annotations

import mlx.core as mx

from .special.fuse import compiled

__all__ = ["signed_sum", "sum_nodes", "CHUNK"]

CHUNK = 16  # inputs per compiled region (MLX fuses at most 24 distinct inputs per region)


def _tree_sum(xs):
    xs = list(xs)
    while len(xs) > 1:  # balanced: MLX fuses at most 11 primitives deep
        nxt = [xs[i] + xs[i + 1] for i in range(0, len(xs) - 1, 2)]
        if len(xs) % 2:
            nxt.append(xs[-1])
        xs = nxt
    return xs[0]


_signed_fns: dict = {}


def _signed_fn(npos: int, nneg: int):
    f = _signed_fns.get((npos, nneg))
    if f is None:
        def body(*xs):
            s = _tree_sum(xs[:npos])
            return s - _tree_sum(xs[npos:]) if nneg else s

        f = _signed_fns[(npos, nneg)] = compiled(body)
    return f


def _arr(x):
    return x if type(x) is mx.array else mx.array(x, dtype=mx.float32)


def signed_sum(pos: list, neg: list = ()):
    """sum(pos) - sum(neg) as one fused node (a few for long lists). `pos` must not be empty."""
    if len(pos) + len(neg) > CHUNK:
        pos = _chunked(pos)
        neg = _chunked(neg) if neg else []
        if len(pos) + len(neg) > CHUNK:
            return _signed_fn(1, 1)(signed_sum(pos), signed_sum(neg)) if neg else signed_sum(pos)
    if len(pos) == 1 and not neg:
        return _arr(pos[0])
    return _signed_fn(len(pos), len(neg))(*map(_arr, pos), *map(_arr, neg))


def _chunked(xs: list) -> list:
    while len(xs) > CHUNK:
        xs = [signed_sum(xs[i:i + CHUNK]) for i in range(0, len(xs), CHUNK)]
    return xs


def sum_nodes(n: int) -> int:
    """Graph nodes `signed_sum` makes for n terms (chunks of CHUNK, then their sum)."""
    if n <= 1:
        return 0
    if n <= CHUNK:
        return 1
    chunks = [min(CHUNK, n - i) for i in range(0, n, CHUNK)]
    return sum(1 for c in chunks if c > 1) + sum_nodes(len(chunks))
