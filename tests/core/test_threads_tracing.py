"""Two threads tracing at once keep their own handler stacks (genmlx.thread_state): no site of one model
lands in the other's trace, no address is 'traced twice' across threads."""

from __future__ import annotations

import sys
import threading

import mlx.core as mx

import genmlx as gm
from genmlx import dist


@gm.gen
def left():
    x = gm.trace("x", dist.normal(0.0, 1.0))
    for i in range(20):
        gm.trace(("y", i), dist.normal(x, 1.0))


@gm.gen
def right():
    z = gm.trace("z", dist.normal(0.0, 1.0))
    for i in range(20):
        gm.trace(("y", i), dist.normal(z, 2.0))
    gm.trace("w", dist.normal(z, 1.0))


def test_two_threads_trace_concurrently_without_mixing_sites():
    errors: list = []
    seen: dict = {"left": set(), "right": set()}
    barrier = threading.Barrier(2)

    def work(name, model):
        try:
            barrier.wait()
            for k in range(60):
                tr = model.simulate((), key=mx.random.key(k))
                seen[name].add(frozenset(tr.get_choices().paths()))
                mx.eval(tr.score)
        except Exception as e:  # pragma: no cover - what the test reports
            errors.append(f"{name}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(n, m)) for n, m in (("left", left), ("right", right))]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: interleave the traces
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    (lp,), (rp,) = seen["left"], seen["right"]  # every execution had exactly its own sites
    assert ("x",) in lp and ("z",) not in lp and len(lp) == 21
    assert ("z",) in rp and ("w",) in rp and ("x",) not in rp and len(rp) == 22
