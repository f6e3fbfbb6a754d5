"""Evaluation that never overlaps a graph walk in another thread.

`mx.eval` releases the GIL and, as it runs, detaches the graph it evaluates:
the intermediate nodes are freed. A graph count (`genmlx.memory.graph` walks
every pending node reachable from the live arrays with `mx.export_to_dot`)
taken by another thread at that moment reads freed nodes and crashes the
process. Seen: two observed MH runs in two threads, a census in one and the
step's evaluation in the other (a segmentation fault about once in 40 runs).

So genmlx evaluates under `WALK_LOCK`, and every graph walk holds it: the two
never overlap. Uncontended (one thread) the lock costs well under a
microsecond per evaluation. Code that evaluates in one thread while another
thread counts graphs (an observed run beside it) should evaluate through
`evaluate` or `gm.memory.materialize` too.

MLX keeps streams and compiled functions per thread and frees them when the
thread's C++ state is torn down, which can come after the interpreter began
shutting down: the free then takes the GIL and the process aborts ("terminate
called without an active exception"). A script that ran an inference in a
thread, joined it and exited did so in 8 exits of 8. MLX asks for
`mx.clear_streams()` at the end of each thread and of the process: genmlx does
that for the threads it ran in (`clean_up_at_thread_end`) and at exit.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

import mlx.core as mx

__all__ = ["WALK_LOCK", "evaluate", "evaluate_async", "wait_for", "item", "clean_up_at_thread_end"]

WALK_LOCK = threading.RLock()  # re-entrant: a nested use in one thread cannot deadlock

atexit.register(mx.clear_streams)  # the main thread's; registered at import, so it runs late


class _ThreadEnd:
    """Held in a thread-local: dropped, with the GIL, as its thread ends.

    Usually in that thread, after `threading` has let go of it; but Python may free a finished
    thread's locals later, from the garbage collector in whatever thread runs it, and
    `mx.clear_streams()` there would clear a running thread's streams (its next evaluation:
    "There is no Stream(cpu, 3) in current thread"; seen in tests/observe/test_threads.py about
    once in 6 runs, when a census collected garbage). So it clears only in a thread that is no
    longer running Python code of its own (its end) or in the thread it was made in. Thread ids
    are reused, so the thread is told apart by its `Thread` object, not its id.
    """

    __slots__ = ("thread",)

    def __init__(self):
        self.thread = threading.current_thread()

    def __del__(self):
        me = threading.get_ident()
        running = next((t for t in threading.enumerate() if t.ident == me), None)
        if running is not None and running is not self.thread:
            return  # another thread, alive: its streams are not ours to clear
        try:
            mx.clear_streams()
        except Exception:  # noqa: BLE001 - nothing to report to at thread end
            pass


_this_thread = threading.local()


def clean_up_at_thread_end() -> None:
    """Have MLX's per-thread state freed when the calling thread ends (a no-op on the main thread)."""
    if not hasattr(_this_thread, "end") and threading.current_thread() is not threading.main_thread():
        _this_thread.end = _ThreadEnd()


def evaluate(*args: Any) -> None:
    """`mx.eval(*args)`, never while another thread walks a graph."""
    with WALK_LOCK:
        mx.eval(*args)


def evaluate_async(*args: Any) -> None:
    """`mx.async_eval(*args)`, never while another thread walks a graph.

    MLX walks and detaches the graph in the calling thread before it returns (the arrays are then
    scheduled, not pending: a later graph walk finds no node of them), and computes on the
    stream's own thread.
    """
    with WALK_LOCK:
        mx.async_eval(*args)


def wait_for(arrays: list) -> None:
    """Wait until arrays scheduled by `evaluate_async` are computed, and for nothing else.

    `mx.eval` of a scheduled array would also wait for everything queued on its stream since,
    work scheduled later included. Each array is read in place instead (a `memoryview`: no copy
    on a CPU), which waits for its own evaluation only. On a CUDA GPU a read moves a device
    buffer to host-visible memory: wait through a scalar of the same evaluation (all its arrays
    of a stream share one event; scalars live in host-visible memory already).
    """
    for a in arrays:
        try:
            memoryview(a).release()
        except (TypeError, ValueError, BufferError):  # a layout the buffer protocol refuses: read it
            a.tolist()


def item(x: mx.array):
    """`x.item()` of an array that may be pending (reading it evaluates it)."""
    with WALK_LOCK:
        return x.item()
