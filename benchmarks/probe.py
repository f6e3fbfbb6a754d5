"""Growth per iteration and graph nodes per driver evaluation, for one inference call.

`LoopProbe` is an observer of `genmlx.events` plus a driver `callback`:

* Census (every `every` driver steps after `warmup` iterations, in the
  callback, i.e. after the step's materialization): a full garbage
  collection, then `genmlx.memory.live_array_objects()` minus the arrays
  reachable from the run's result store (`RunStarted.store`, the kept samples;
  for particle filters also from the current particles, whose trajectories
  grow by design) gives the live arrays; `genmlx.memory.count_nodes` over
  all live arrays (samples included: materialized, they hold none) gives the
  pending graph nodes. Growth per iteration is the least-squares slope of each
  against the iterations done.
* Nodes per driver evaluation: while armed (a few steps after warm-up), the
  driver's `mx.eval` and its counted host syncs (`driver.host`) count the
  pending nodes they are handed before evaluating them: the graph one step
  builds, i.e. the buffers it creates. The probe patches the driver module's
  `mx` and `host` for the duration of the call only (`patched`).

Only `genmlx` is imported (not the observability plugin, whose optional
dependencies a GPU box may lack): `kept_array_ids` follows the same rule as
the leak gate's (genmlx_observe.pytest_plugin.growth).
"""

from __future__ import annotations

import gc
import math
import types
from contextlib import contextmanager
from typing import Any

import mlx.core as mx

import genmlx as gm
from genmlx.distributions.base import Distribution
from genmlx.gfi import GenerativeFunction
from genmlx.inference import driver

__all__ = ["LoopProbe", "slope", "kept_array_ids"]

_ATOMS = frozenset((int, float, bool, str, bytes, complex, type(None)))
_CODE = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.CodeType,
         types.FrameType, types.GeneratorType, types.CellType)


def kept_array_ids(roots: Any, ids: set[int], visited: set[int] | None = None) -> None:
    """Add the id of every `mx.array` reachable from `roots` (Python's own references).

    Stops at program objects the results do not own: modules, classes,
    functions, code, and generative functions other than distributions (a
    distribution object recorded at a site holds that site's parameters).
    """
    visited = set() if visited is None else visited
    stack = list(roots) if type(roots) in (list, tuple) else [roots]
    while stack:
        o = stack.pop()
        t = type(o)
        if t is mx.array:
            ids.add(id(o))
            continue
        if t in _ATOMS or isinstance(o, _CODE):
            continue
        if isinstance(o, GenerativeFunction) and not isinstance(o, Distribution):
            continue
        i = id(o)
        if i in visited:
            continue
        visited.add(i)
        stack.extend(gc.get_referents(o))


def slope(xs: list, ys: list) -> float:
    """Least-squares slope of ys against xs (NaN with fewer than two distinct xs)."""
    n = len(xs)
    sx, sy = sum(xs), sum(ys)
    den = n * sum(x * x for x in xs) - sx * sx
    return (n * sum(x * y for x, y in zip(xs, ys)) - sx * sy) / den if den else math.nan


class _CountingMx:
    """Stands in for `mlx.core` inside the driver module: counts what `eval` is given."""

    def __init__(self, real, probe):
        self._real, self._probe = real, probe

    def __getattr__(self, name):
        return getattr(self._real, name)

    def eval(self, *args):
        if self._probe.armed:
            self._probe.add_nodes(args)
        return self._real.eval(*args)


class LoopProbe:
    def __init__(self, every: int = 10, warmup: int = 20, node_steps: int = 3, exclude_state: bool = False):
        self.every, self.warmup, self.node_steps, self.exclude_state = every, warmup, node_steps, exclude_state
        self.points: list[tuple[int, int, int]] = []
        self.step_nodes: list[int] = []  # nodes per armed driver step (eval + host syncs)
        self.armed = False
        self._acc = 0
        self.iterations = 0
        self.store = None
        self._kept: set[int] = set()
        self._visited: set[int] = set()
        self._walked = 0
        self._armed_steps = 0

    # -- events ---------------------------------------------------------------------------------
    def on_run_start(self, ev) -> None:
        self.store = ev.store
        self._kept, self._visited, self._walked = set(), set(), 0
        if self.warmup == 0 and self._armed_steps < self.node_steps:
            self._arm()  # single-step runs: count the first step

    def on_step(self, ev) -> None:
        self.iterations = ev.iteration + ev.iterations

    def on_run_end(self, ev) -> None:
        self._disarm_and_keep()
        self.store = None

    # -- node counting ----------------------------------------------------------------------------
    def add_nodes(self, obj: Any) -> None:
        arrays = gm.memory.arrays_in(obj)
        if arrays:
            self._acc += gm.memory.count_nodes(*arrays)

    def _arm(self) -> None:
        self.armed, self._acc = True, 0

    def _disarm_and_keep(self) -> None:
        if self.armed:
            self.step_nodes.append(self._acc)
            self._armed_steps += 1
        self.armed = False

    # -- the driver callback ------------------------------------------------------------------------
    def callback(self, i: int, state, stats) -> None:
        self._disarm_and_keep()
        if self.iterations >= self.warmup and self._armed_steps < self.node_steps:
            self._arm()  # count the next step's graph
        if self.iterations < self.warmup or i % self.every:
            return
        self.census(state)

    def census(self, state=None) -> None:
        if isinstance(self.store, list) and len(self.store) > self._walked:
            kept_array_ids(self.store[self._walked:], self._kept, self._visited)
            self._walked = len(self.store)
        skip = set(self._kept)
        if self.exclude_state and state is not None:
            kept_array_ids(getattr(state, "particles", state), skip)
        gc.collect()
        arrays = gm.memory.live_array_objects()
        live = sum(1 for a in arrays if id(a) not in skip)
        pending = gm.memory.count_nodes(*arrays) if arrays else 0
        del arrays
        self.points.append((self.iterations, live, pending))

    # -- results ------------------------------------------------------------------------------------
    def growth(self) -> dict:
        pts = self.points
        out = {"census_points": len(pts), "first": list(pts[0]) if pts else None, "last": list(pts[-1]) if pts else None}
        if len(pts) >= 3:
            xs = [p[0] for p in pts]
            out["live_arrays_per_iteration"] = slope(xs, [p[1] for p in pts])
            out["pending_nodes_per_iteration"] = slope(xs, [p[2] for p in pts])
        return out

    @contextmanager
    def patched(self):
        """Subscribe, and count nodes at the driver's evaluations and host syncs."""
        real_mx, real_host = driver.mx, driver.host

        def host(x):
            if self.armed:
                self.add_nodes(x)
            return real_host(x)

        driver.mx = _CountingMx(real_mx, self)
        driver.host = host
        gm.events.subscribe(self)
        try:
            yield self
        finally:
            gm.events.unsubscribe(self)
            driver.mx, driver.host = real_mx, real_host
            self.armed = False
