"""Counting pending (unevaluated) graph nodes.

An unevaluated `mx.array` keeps its whole input graph alive; each primitive
in it becomes a buffer when evaluated. MLX has no API to walk a graph from
Python, but `mx.export_to_dot` writes every unevaluated primitive reachable
from the arrays it is given, one ``{ <id> [label ="Add", shape=rectangle]; }``
line each, where ``<id>`` is the primitive's C++ address. Parsing those ids
gives exact counts:

* evaluated arrays and constants (e.g. made from Python scalars) contribute 0;
* a multi-output primitive (`mx.split`, `mx.linalg.eigh`, ...) is one node,
  however many of its outputs are live;
* ids are deduplicated across arrays and across chunks of a large export.
* measured: 100 lazy ``s = s + x`` steps give 100 nodes when `s` and `x`
  share a dtype, 200 when each step must also cast `x` (an int array added
  to a float score: `AsType` + `Add`), 0 after `mx.eval(s)`.

`export_to_dot` walks the graph recursively in C++: on an 8 MiB stack it
crashes the process between 60,000 and 80,000 nodes deep, which is exactly the
lazy accumulator this module must diagnose. Exports therefore run on one
helper thread with a 1 GiB stack (reserved, not committed), at the price of a
call of hand-off (measured 50 us on 2 CPU cores). Ids are only comparable
while the nodes are alive: compare id sets taken while the arrays they came
from are still referenced.

Costs (MLX 0.32, CPU, 2 cores): about 0.35 us per evaluated array (1.7 ms for
5,000) and 1.2-1.8 us per pending node (17 ms for a 10,000-node chain).
A walk holds `genmlx.evaluation.WALK_LOCK`, under which genmlx evaluates:
an evaluation in another thread frees the nodes a walk would read (a crash).
"""

from __future__ import annotations

import io
import os
import queue
import re
import threading
from typing import Any, Callable, Iterable

import mlx.core as mx

from genmlx.evaluation import WALK_LOCK

from .census import live_array_objects, young_array_objects
from .walk import arrays_in

__all__ = [
    "pending_node_ids",
    "count_nodes",
    "pending_nodes",
    "young_pending_nodes",
    "nodes_added",
    "graph_cost",
]

CHUNK = 20_000  # arrays per export call: bounds the size of one DOT text
_NODE = re.compile(r"^\{ (\d+) \[label", re.MULTILINE)
_STACK_SIZES = (1 << 30, 256 << 20, 64 << 20)


def _export_ids(arrays: list) -> set:
    """Node keys of one export: `(id, k)` for the k-th node printed with primitive id `id`.

    Two calls of one compiled function share their `Compiled` primitive, so
    distinct nodes can print the same id: keying by occurrence keeps them
    apart, and set differences then count per-id differences.
    """
    buf = io.StringIO()
    mx.export_to_dot(buf, *arrays)
    seen: dict[int, int] = {}
    keys = set()
    for i in map(int, _NODE.findall(buf.getvalue())):
        k = seen.get(i, 0)
        seen[i] = k + 1
        keys.add((i, k))
    return keys


class _Exporter:
    """A helper thread with a large stack that runs `mx.export_to_dot`."""

    def __init__(self):
        self._jobs: queue.SimpleQueue | None = None
        self._pid = None
        self._failed = None
        self.thread: threading.Thread | None = None

    def _start(self) -> bool:
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        for size in _STACK_SIZES:
            old = threading.stack_size()
            try:
                threading.stack_size(size)
                t = threading.Thread(target=self._serve, args=(jobs,), name="genmlx-graph-export", daemon=True)
                t.start()
            except (ValueError, RuntimeError, MemoryError):
                continue
            finally:
                threading.stack_size(old)  # the setting is process-wide: put it back at once
            self._jobs, self._pid, self.thread = jobs, os.getpid(), t
            return True
        return False

    @staticmethod
    def _serve(jobs: queue.SimpleQueue) -> None:
        while True:
            box, done = jobs.get()
            try:
                box[1] = _export_ids(box[0])
            except BaseException as e:  # handed back to the caller
                box[1] = e
            box[0] = None  # drop the arrays: they must not outlive the call
            done.set()
            del box, done

    def ids(self, arrays: list) -> set[int]:
        with WALK_LOCK:  # one export at a time, and no evaluation (genmlx's) while it walks
            if self._pid != os.getpid():  # first use, or after fork (the thread is gone)
                if self._failed == os.getpid() or not self._start():
                    self._failed = os.getpid()
                    return _export_ids(arrays)  # no thread could start: deep graphs may crash
            box = [arrays, None]
            done = threading.Event()
            self._jobs.put((box, done))
            done.wait()
        result = box[1]
        if isinstance(result, BaseException):
            raise result
        return result


_exporter = _Exporter()


def _arrays(obj: Any) -> list[mx.array]:
    if type(obj) is list and all(type(a) is mx.array for a in obj):
        return obj
    if hasattr(obj, "__next__"):  # a generator or iterator: the walk would skip it
        obj = list(obj)
    return arrays_in(obj)


def pending_node_ids(*arrays: mx.array) -> set:
    """Keys of the unevaluated primitives reachable from `arrays` (deduplicated)."""
    ids: set = set()
    for i in range(0, len(arrays), CHUNK):
        ids |= _exporter.ids(list(arrays[i : i + CHUNK]))
    return ids


def count_nodes(*arrays: mx.array) -> int:
    """Number of distinct unevaluated primitives reachable from `arrays`."""
    return len(pending_node_ids(*arrays))


def pending_nodes(arrays: Iterable[mx.array] | None = None) -> int:
    """Pending graph nodes reachable from `arrays` (default: every live array).

    `arrays` may also be any object the memory walk understands (a Trace, a
    list of traces, a dict, ...).
    """
    if arrays is None:
        arrays = live_array_objects()
    else:
        arrays = _arrays(arrays)
    return count_nodes(*arrays)


def young_pending_nodes() -> int:
    """Pending nodes reachable from arrays in GC generations 0 and 1 (cheap).

    A score accumulated lazily as ``s = s + x`` is a new array each iteration,
    hence young, and its graph includes all the history. An old array updated
    in place (``s += x`` is in place in MLX) is not seen here: the budget's
    periodic full sweep catches that case.
    """
    arrays = young_array_objects()
    return count_nodes(*arrays) if arrays else 0


def nodes_added(before: Iterable[mx.array] | Any, after: Iterable[mx.array] | Any) -> int:
    """Pending nodes reachable from `after` but not from `before`.

    The basis of "buffers per trace site": take `before` (e.g. the score and
    inputs before handling a site) and `after` (the new score and value)
    while both are alive. Each argument is a list of arrays or any object the
    memory walk understands.
    """
    b = _arrays(before)
    a = _arrays(after)
    return len(pending_node_ids(*a) - pending_node_ids(*b)) if a else 0


def graph_cost(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Graph nodes `fn(*args, **kwargs)` creates: its outputs' pending nodes minus its inputs'.

    Evaluation inside `fn` (`mx.eval`, `.item()`) hides the work it evaluated.
    """
    out = fn(*args, **kwargs)
    return nodes_added((args, kwargs), out)
