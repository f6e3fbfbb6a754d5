"""Shared pieces of the leak-gate tests: inner loops and a pytester runner.

Every test here runs pytest inside pytest (`pytester`). The outer tests carry
`no_leak_gate`: the inner sessions' loops run in this process, and the outer
gate must not judge them.
"""

from __future__ import annotations

import gc
import json
from importlib import metadata

import pytest

# Every genmlx module is imported here, before any inner run: a module first
# imported inside an in-process inner session gets that session's assertion
# rewriter as its loader (genmlx is a plugin's distribution), which keeps the
# whole session alive -- its test modules and their arrays included, which
# other tests' absolute counts then see -- and is imported again by the next.
# The outer tests carry no_leak_gate.
import importlib
import pkgutil

import genmlx
import genmlx_observe.pytest_plugin.growth  # noqa: F401

for _info in pkgutil.walk_packages(genmlx.__path__, "genmlx."):
    try:
        importlib.import_module(_info.name)
    except Exception:  # a module being written, or an optional one: the inner runs import what they need
        pass

# Step functions for the inner test files (written as `loops.py`): plain MLX,
# run through the one loop driver as every genmlx algorithm is.
LOOPS = '''
import mlx.core as mx
from genmlx.inference import driver
from genmlx.inference.driver import Step, host

LEAK = []  # what a leaky step appends to
ACC = [mx.array(0.0)]  # a score accumulated lazily across iterations


def _mh(key, s, scale=0.5):
    """Random-walk MH on N(0, 1), accept/reject on the device (mx.where)."""
    x, lp = s
    k1, k2 = mx.random.split(key)
    prop = x + scale * mx.random.normal(key=k1)
    lq = -0.5 * prop * prop
    acc = mx.log(mx.random.uniform(key=k2)) < lq - lp
    return (mx.where(acc, prop, x), mx.where(acc, lq, lp)), acc


def clean(key, s):
    s2, acc = _mh(key, s)
    return Step(s2, stats={"accepted": acc})


def leaky(per_step=1, every=1):
    """Leak `per_step` evaluated arrays at every `every`-th step (wrappers only, no pending nodes)."""
    count = [0]

    def step(key, s):
        s2, acc = _mh(key, s)
        if count[0] % every == 0:
            LEAK.extend(mx.array(1.0) for _ in range(per_step))
        count[0] += 1
        return Step(s2, stats={"accepted": acc})

    return step


def lazy(key, s):
    s2, acc = _mh(key, s)
    ACC[0] = ACC[0] + s2[1]  # never evaluated: one more pending node per iteration
    return Step(s2, stats={"accepted": acc})


def keeping(scale):
    """MH deciding on the host and keeping every sample: a rejection keeps the same object."""

    def step(key, s):
        x, lp = s
        k1, k2 = mx.random.split(key)
        prop = x + scale * mx.random.normal(key=k1)
        lq = -0.5 * prop * prop
        acc = host(mx.log(mx.random.uniform(key=k2)) < lq - lp)
        new = (prop, lq) if acc else s
        return Step(new, sample=new, stats={"accepted": acc})

    return step


def run(step, n=400, **kw):
    return driver.run(step, (mx.array(0.0), mx.array(0.0)), n, algorithm="mh", model="gauss", **kw)
'''


def _entry_point_installed() -> bool:
    eps = metadata.entry_points(group="pytest11")
    return any(ep.value == "genmlx_observe.pytest_plugin.plugin" for ep in eps)


ENTRY_POINT = _entry_point_installed()


class Gate:
    """A pytester with `loops.py` written, and helpers to run and read the gate."""

    def __init__(self, pytester: pytest.Pytester):
        self.pytester = pytester
        pytester.makepyfile(loops=LOOPS)

    def run(self, *args: str, subprocess: bool = False):
        # Installed packages load the plugin through its entry point; a bare
        # checkout (no `pip install -e .`) names it explicitly.
        extra = () if ENTRY_POINT else ("-p", "genmlx_observe.pytest_plugin.plugin")
        runner = self.pytester.runpytest_subprocess if subprocess else self.pytester.runpytest
        # Hypothesis' plugin imports hypothesis in every inner session; the
        # in-process runs then keep each session's modules alive (about 10,000
        # objects a run), which slows every later census. The inner suites
        # here have no hypothesis tests.
        # An in-process run shares the heap with the earlier tests of this worker: their cyclic garbage (a
        # thread's lazy arrays, say) holds pending graph nodes until a full collection, which the gate's end
        # census makes; collected now, it cannot turn an inner loop's confirmation negative.
        gc.collect()
        return runner("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *extra, *args)

    def json(self, name: str = "gate.json") -> dict:
        return json.loads((self.pytester.path / name).read_text())

    def entries(self, name: str = "gate.json") -> dict:
        return {t["nodeid"].split("::")[-1]: t for t in self.json(name)["tests"]}


@pytest.fixture
def gate(pytester: pytest.Pytester) -> Gate:
    return Gate(pytester)
