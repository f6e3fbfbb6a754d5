"""Pending graph-node counts against graphs of known size."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import mlx.core as mx
import pytest

import genmlx
from genmlx.memory import (
    count_nodes,
    graph_cost,
    materialize,
    nodes_added,
    pending_node_ids,
    pending_nodes,
    young_pending_nodes,
)

graph_mod = importlib.import_module("genmlx.memory.graph")


def scalar(v: float = 1.0, dtype=mx.float32) -> mx.array:
    a = mx.array(v, dtype=dtype)
    mx.eval(a)
    return a


@pytest.mark.parametrize("k", [0, 1, 7, 100, 1000])
def test_k_chained_adds_are_k_nodes(k):
    x, s = scalar(1.0), scalar(0.0)
    for _ in range(k):
        s = s + x
    assert count_nodes(s) == k
    assert len(pending_node_ids(s)) == k


def test_each_step_that_casts_adds_two_nodes():
    # An int array added to a float score: AsType + Add per step.
    x, s = scalar(1, mx.int32), scalar(0.0)
    for _ in range(100):
        s = s + x
    assert count_nodes(s) == 200


def test_python_scalars_are_constants_not_nodes():
    s = scalar(0.0)
    for _ in range(50):
        s = s + 1.0
    assert count_nodes(s) == 50


def test_evaluated_arrays_contribute_zero():
    x, s = scalar(1.0), scalar(0.0)
    for _ in range(30):
        s = s + x
    mx.eval(s)
    assert count_nodes(s) == 0
    assert count_nodes(*[scalar(float(i)) for i in range(100)]) == 0
    assert count_nodes() == 0


def test_shared_subgraphs_are_counted_once():
    x = scalar(2.0)
    y = mx.exp(x)  # 1
    a = y * x  # 2
    b = y + x  # 3
    assert count_nodes(a) == 2 and count_nodes(b) == 2
    assert count_nodes(a, b) == 3
    assert count_nodes(a, b, y, a) == 3


def test_multi_output_primitive_is_one_node():
    v = mx.arange(9.0)  # Arange: 1
    parts = mx.split(v, 3)  # Split: 1 node, 3 outputs
    assert count_nodes(*parts) == 2
    assert count_nodes(parts[1]) == 2
    q, r = mx.divmod(v, 2.0)  # DivMod, with the scalar broadcast to v's shape
    assert count_nodes(q, r) == count_nodes(q) == count_nodes(r) == 3


def test_compiled_function_is_one_node_per_output():
    f = mx.compile(lambda x: mx.exp(x) * 2.0 + 1.0)
    g = mx.compile(lambda x: (mx.exp(x), mx.sin(x) * 2.0))
    x = mx.array([1.0, 2.0])
    mx.eval(x)
    y = f(x)
    eager = mx.exp(x) * 2.0 + 1.0
    assert count_nodes(y) == 1  # fused (CPU fusion needs a C++ compiler at run time)
    assert count_nodes(eager) == 5  # Exp, Broadcast, Multiply, Broadcast, Add
    a, c = g(x)
    assert count_nodes(a) == count_nodes(c) == 1


def test_chunked_export_deduplicates_across_chunks(monkeypatch):
    x = scalar(1.0)
    base = x + 1.0
    outs = [base * float(i) for i in range(50)]  # 1 shared + 50 own nodes
    whole = pending_node_ids(*outs)
    monkeypatch.setattr(graph_mod, "CHUNK", 7)
    assert pending_node_ids(*outs) == whole
    assert len(whole) == 51


def test_pending_nodes_default_counts_every_live_array():
    base = pending_nodes()
    x, s = scalar(1.0), scalar(0.0)
    for _ in range(40):
        s = s + x
    t = s * x  # shares s's graph: one more node
    assert pending_nodes() - base == 41
    assert pending_nodes([s]) == 40
    assert pending_nodes({"score": t, "other": [s, 3.0]}) == 41
    materialize([s, t])
    assert pending_nodes() == base


def test_young_pending_nodes_sees_a_lazily_accumulated_score():
    x, s = scalar(1.0), scalar(0.0)
    base = young_pending_nodes()
    for _ in range(25):
        s = s + x  # a new (young) array each step, holding the whole history
    assert young_pending_nodes() - base == 25
    assert young_pending_nodes() <= pending_nodes()


def test_nodes_added_counts_only_new_nodes():
    x, s = scalar(1.0), scalar(0.0)
    for _ in range(10):
        s = s + x
    before = [s, x]
    after = [s * x + x, s]
    assert nodes_added(before, after) == 2
    assert nodes_added(before, before) == 0
    assert nodes_added([], after) == 12
    assert nodes_added(before, []) == 0


def test_graph_cost_of_known_functions():
    x, y = scalar(2.0), scalar(3.0)
    assert graph_cost(lambda a, b: a * b + a, x, y) == 2
    # Arange, Broadcast (a to shape [6]), Multiply, Split (one node, three outputs)
    assert graph_cost(lambda a: mx.split(mx.arange(6.0) * a, 3), x) == 4
    lazy = x + y  # the inputs' own pending nodes are not the function's cost
    assert graph_cost(lambda a: a * a, lazy) == 1
    assert graph_cost(lambda a: mx.eval(a * a) or a, x) == 0  # evaluation inside hides the work
    assert graph_cost(lambda a, *, scale: {"out": (a * scale,)}, x, scale=y) == 1


def test_a_graph_deeper_than_the_main_stack_allows_is_counted():
    # export_to_dot recurses once per node: 100,000 deep crashes on an 8 MiB
    # stack, so this runs in a child process in case the helper thread fails.
    code = textwrap.dedent(
        """
        import mlx.core as mx
        from genmlx.memory import count_nodes
        x = mx.array(1.0); s = mx.array(0.0); mx.eval(x, s)
        for _ in range(120_000):
            s = s + x
        print(count_nodes(s))
        """
    )
    root = os.path.dirname(os.path.dirname(genmlx.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "120000"


def test_counting_keeps_no_array_alive():
    import weakref

    x = scalar(1.0)
    y = x + 1.0
    ref = weakref.ref(y)
    count_nodes(y)
    young_pending_nodes()
    pending_nodes()
    del y
    assert ref() is None


def test_nodes_sharing_a_primitive_object_are_counted_once_each():
    # MLX reuses one RandomBits primitive object across draws: the DOT output
    # prints the same id for distinct nodes (different inputs and outputs).
    keys = [mx.random.key(i) for i in range(3)]
    draws = [mx.random.normal(shape=(2,), key=k) for k in keys]
    one = count_nodes(draws[0])
    assert one > 0
    assert count_nodes(*draws) == 3 * one
    assert nodes_added(draws[:1], draws) == 2 * one
