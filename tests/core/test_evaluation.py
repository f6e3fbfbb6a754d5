"""genmlx.evaluation: evaluations in threads that neither crash beside a graph count nor at exit.

Those two failures kill the process, so their cases run in child processes; the third (a thread's
end marker freed in another thread) runs here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import genmlx

MODEL = """
import threading, time
import mlx.core as mx
import genmlx as gm
from genmlx import dist
from genmlx import inference as infer

@gm.gen
def deep(x):
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    s = mu
    for _ in range(60):
        s = mx.sin(s) + 0.5 * mu
    gm.trace("y", dist.normal(s + x, 1.0))
"""


def _child(code: str) -> subprocess.CompletedProcess:
    root = os.path.dirname(os.path.dirname(genmlx.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    script = textwrap.dedent(MODEL) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)


def test_counting_graphs_while_another_thread_evaluates_does_not_crash():
    # `mx.eval` frees the graph it evaluates with the GIL released; a count in
    # another thread walking that graph then reads freed nodes. With a plain
    # `mx.eval` inside `genmlx.evaluation.evaluate`, this child died of a
    # segmentation fault in 5 runs of 5.
    out = _child(
        """
        from genmlx.memory import materialize, pending_nodes
        stop = time.time() + 1.5
        counts = []

        def evaluate():
            x = mx.random.normal((8,))
            while time.time() < stop:
                s = x
                for _ in range(200):
                    s = mx.sin(s) + x * 0.5
                materialize(s)
                infer.mh(deep, (0.5,), {"y": 1.0}, n_samples=5, key=mx.random.key(1))

        def count():
            while time.time() < stop:
                counts.append(pending_nodes())

        threads = [threading.Thread(target=evaluate), threading.Thread(target=count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(len(counts))
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 10  # the counts really ran beside the evaluations


def test_a_run_in_a_thread_then_exit_ends_cleanly():
    # MLX frees a thread's compiled functions as the thread's C++ state is torn
    # down, which can come after the interpreter began shutting down: without
    # genmlx clearing MLX's per-thread state at thread end, this child aborted
    # ("terminate called without an active exception", exit 134) in 8 exits of 8.
    out = _child(
        """
        t = threading.Thread(target=lambda: infer.mh(deep, (0.5,), {"y": 1.0}, n_samples=20,
                                                     key=mx.random.key(3)))
        t.start()
        t.join()
        print("joined")
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "joined"


def test_a_threads_end_marker_freed_in_another_thread_leaves_that_threads_streams_alone():
    """Python may free a finished thread's locals from the garbage collector in another thread: the
    marker then must not clear the streams of the thread that happens to free it."""
    import threading

    import mlx.core as mx

    from genmlx.evaluation import _ThreadEnd

    marker: list = []
    t = threading.Thread(target=lambda: marker.append(_ThreadEnd()))
    t.start()
    t.join()
    out: list = []

    def other():
        try:
            mx.eval(mx.array(1.0) + 1.0)  # this thread's stream exists
            marker.clear()  # the marker dies here, in a thread it was not made in
            y = mx.array(2.0) * 3.0
            mx.eval(y)
            out.append(y.item())
        except Exception as e:  # noqa: BLE001 - asserted below
            out.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert out == [6.0]


def test_evaluate_async_schedules_and_wait_for_waits_in_place():
    import mlx.core as mx

    from genmlx.evaluation import evaluate_async, wait_for
    from genmlx.memory import count_nodes

    base = mx.arange(12, dtype=mx.float32)
    outs = [base * 2, (base.reshape(3, 4).T + 1), (base > 5), base.astype(mx.bfloat16)[::3], base[:0] + 1,
            mx.random.key(0)]
    assert count_nodes(*outs) > 0
    evaluate_async(outs)
    assert count_nodes(*outs) == 0  # scheduled: the graph is walked and detached before the call returns
    wait_for(outs)  # every layout the driver can meet: strided, bool, bfloat16, empty, uint32 keys
    assert outs[0].tolist() == [2.0 * i for i in range(12)]
    assert outs[1].shape == (4, 3) and outs[1][0, 1].item() == 5.0
    assert outs[3].tolist() == [0.0, 3.0, 6.0, 9.0] and outs[4].size == 0
