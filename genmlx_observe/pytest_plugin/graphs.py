"""The growing graph of a pending-node leak: which array, how deep, which ops.

A lazily accumulated value (``acc = acc + x`` never evaluated) keeps its
whole history as unevaluated primitives. `largest` finds the live array with
the most pending nodes; `shape_of` reads its graph from `mx.export_to_dot`:
the primitives (rectangles) by op name and the depth (the longest chain of
primitives). Exports of deep graphs recurse deeply in C++, so they run on a
thread with a large stack, as `genmlx.memory.graph` does for its counts.
"""

from __future__ import annotations

import io
import re
import threading
from typing import Any

__all__ = ["largest", "shape_of"]

_PRIM = re.compile(r'^\{ (\d+) \[label ="([^"]*)", shape=rectangle\]; \}$')
_EDGE = re.compile(r'^("?)([^"\s]+)\1 -> ("?)([^"\s]+)\3$')


def largest(arrays: list, max_arrays: int = 20_000) -> tuple[Any, int, int]:
    """`(array, its pending nodes, arrays with any)`: the array with the most pending nodes; `(None, 0, 0)` if none."""
    from genmlx.memory.graph import count_nodes

    best, most, holding = None, 0, 0
    for a in arrays[:max_arrays]:
        n = count_nodes(a)
        holding += n > 0
        if n > most:
            best, most = a, n
    return best, most, holding


def _dot(a: Any) -> str:
    import mlx.core as mx

    box: list = [None]

    def work():
        try:
            buf = io.StringIO()
            mx.export_to_dot(buf, a)
            box[0] = buf.getvalue()
        except BaseException as e:  # handed back to the caller
            box[0] = e

    old = threading.stack_size()
    try:
        threading.stack_size(1 << 30)
        t = threading.Thread(target=work, name="genmlx-leak-diagnosis", daemon=True)
        t.start()
    except (ValueError, RuntimeError, MemoryError):
        t = None
    finally:
        threading.stack_size(old)
    if t is None:
        work()
    else:
        t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def shape_of(a: Any) -> dict:
    """`{"nodes", "depth", "ops": {op name: count}}`: `a`'s pending primitives by op name, its depth in primitives."""
    depth: dict[str, int] = {}
    ops: dict[str, int] = {}
    prims: set[str] = set()
    # The export prints every node before the edges that leave it and its
    # inputs before it: one pass in file order is a topological pass.
    for line in _dot(a).splitlines():
        m = _PRIM.match(line)
        if m:
            prims.add(m.group(1))
            ops[m.group(2)] = ops.get(m.group(2), 0) + 1
            continue
        m = _EDGE.match(line)
        if m:
            src, dst = m.group(2), m.group(4)
            d = depth.get(src, 0) + (1 if dst in prims else 0)
            if d > depth.get(dst, 0):
                depth[dst] = d
    return {"nodes": len(prims), "depth": max(depth.values(), default=0),
            "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}
