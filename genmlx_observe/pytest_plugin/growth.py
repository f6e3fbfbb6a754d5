"""Per-loop growth measurement: an observer of `genmlx.events` for one test.

For every inference loop (one `RunStarted` ... `RunEnded`, keyed by run id)
the recorder takes a *census* at the end of every k-th driver step once the
loop is past its warm-up:

* **live arrays** (wrappers): after collecting garbage (arrays held only by
  reference cycles are garbage, not growth), the exact number of live
  `mx.array` objects minus the distinct arrays reachable from the loop's own
  result store (`RunStarted.store`, what the driver keeps for its caller;
  see `kept_array_ids`). The store only grows by appending, so it is walked
  incrementally: each kept sample once, and only ids are remembered (the
  census must not keep anything alive).
* **pending graph nodes**: the exact count over every live array outside the
  store (the driver materializes kept samples, so they hold none). This sees
  a lazy ``s += x`` on an old array, which the cheaper count over young
  arrays only (`genmlx.memory.young_pending_nodes`) misses.

Growth per iteration is the least-squares slope of each count against the
iteration index (`StepEnded.iteration + iterations`, so a fused K-iteration
step counts K). k adapts so that census time stays under `share` (10%) of
the loop's own step time, but a loop that is long enough always gets at
least `MIN_POINTS` census points.

A census collects young garbage only (`gc.collect(1)`: tens of microseconds,
where a full collection costs milliseconds on a large heap), except the first
point of each loop (a full collection: older garbage, e.g. from earlier
tests, must not be counted at the start and freed later). A loop whose slope
exceeds a limit is confirmed by a second exact census at its end, compared
with that first point, so reference cycles that died old during the loop
(and wait for Python's next full collection) cannot fake a leak.

The plugin imports this module when the first test is measured, not at startup.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

try:
    from mlx.core import array as _ARRAY
except ImportError:  # pragma: no cover - mlx is a dependency
    _ARRAY = None

__all__ = ["slope", "census_interval", "kept_array_ids", "LoopRecord", "TestRecorder", "SiteTap", "MIN_POINTS", "JUDGE_POINTS"]

MIN_POINTS = 10  # census points a loop gets whenever it is long enough
JUDGE_POINTS = 3  # fewer than this after warm-up: "too short to judge"
SHARE = 0.10  # census time / loop time the adaptive k aims for
SITE_SAMPLES = 3  # steps per loop whose trace sites are sampled for the report
MAX_STORED_POINTS = 200  # census points kept per loop in records (evenly thinned)


def slope(xs: list[int], ys: list[int]) -> float:
    """Least-squares slope of `ys` against `xs`, exact for integer data.

    Integer sums (Python ints do not overflow) and one final division, so a
    count growing by exactly 1 per iteration gives exactly 1.0. Returns NaN
    with fewer than two distinct x values.
    """
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"slope: {n} x values but {len(ys)} y values")
    sx, sy = sum(xs), sum(ys)
    sxx = sum(x * x for x in xs)
    sxy = sum(x * y for x, y in zip(xs, ys))
    den = n * sxx - sx * sx
    if den == 0:
        return math.nan
    return (n * sxy - sx * sy) / den


def census_interval(
    census_s: float,
    step_s: float,
    *,
    share: float = SHARE,
    steps_left: int | None = None,
    points_missing: int = 0,
) -> int:
    """Steps between two censuses: the k of "a census every k-th step".

    Args:
        census_s: what one census costs (seconds).
        step_s: what one driver step costs (seconds, census excluded).
        share: the largest fraction of loop time the census may take.
        steps_left: driver steps still to run, when the loop's length is known.
        points_missing: census points still needed to reach `MIN_POINTS`;
            while > 0, k is capped so that they fit in `steps_left`.
    """
    if step_s > 0 and census_s > 0:
        k = math.ceil(census_s / (share * step_s))
    else:
        k = 1
    if steps_left is not None and points_missing > 0:
        k = min(k, max(1, steps_left // points_missing))
    return max(1, k)


@dataclass
class LoopRecord:
    """What the gate measured for one loop (plain data: JSON-ready)."""

    run_id: int
    algorithm: str
    model: str
    chain: int
    planned_steps: int | None
    warmup: int  # iterations before the first census point
    steps: int = 0
    iterations: int = 0
    points: list = field(default_factory=list)  # [iteration, live, pending]
    wrapper_growth: float | None = None  # arrays / iteration
    pending_growth: float | None = None  # pending graph nodes / iteration
    kept_arrays: int = 0  # distinct arrays in the result store (subtracted)
    census_every: int = 1  # the last k used
    census_s: float = 0.0
    loop_s: float = 0.0
    confirm_growth: list | None = None  # [arrays, nodes] per iteration, first point to an exact end census
    verdict: str = "running"  # "ok", "leak", "too short", "running"
    error: str | None = None

    @property
    def judged(self) -> bool:
        return self.wrapper_growth is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        pts = d["points"]
        if len(pts) > MAX_STORED_POINTS:
            step = len(pts) / MAX_STORED_POINTS
            d["points"] = [pts[int(i * step)] for i in range(MAX_STORED_POINTS - 1)] + [pts[-1]]
        d["census_points"] = len(pts)
        return d


_PRUNE: tuple | None = None


def _prune_types() -> tuple:
    global _PRUNE
    if _PRUNE is None:
        import types

        from genmlx.distributions.base import Distribution
        from genmlx.gfi import GenerativeFunction

        code = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                types.CodeType, types.FrameType, types.GeneratorType, types.CellType)
        _PRUNE = (code, GenerativeFunction, Distribution)
    return _PRUNE


def kept_array_ids(roots: Any, ids: set[int], visited: set[int] | None = None) -> None:
    """Add to `ids` the id of every `mx.array` reachable from `roots` (what a result store keeps).

    Reachability is Python's own (`gc.get_referents`), not only the walk
    protocol (`_genmlx_arrays()`): a trace keeps, for instance, the parameter
    arrays of its sites' distribution objects. It stops at shared program
    objects, which the store does not own: modules, classes, functions and
    code, and generative functions other than distributions (a model's memo
    cache is not a result; a distribution object made at a site holds that
    site's parameters).
    """
    code, gen_fn, dist = _prune_types()
    visited = set() if visited is None else visited
    # The roots themselves are not remembered: a temporary list (a slice of
    # the store) dies, and a later object may reuse its id.
    stack = list(roots) if type(roots) in (list, tuple) else [roots]
    get = gc.get_referents
    while stack:
        o = stack.pop()
        t = type(o)
        if t is _ARRAY:
            ids.add(id(o))
            continue
        if t in _ATOMS or isinstance(o, code):
            continue
        if isinstance(o, gen_fn) and not isinstance(o, dist):
            continue
        i = id(o)
        if i in visited:
            continue
        visited.add(i)
        stack.extend(get(o))


_ATOMS = frozenset((int, float, bool, str, bytes, complex, type(None)))


class _Loop:
    """Live measurement state of one loop; produces a `LoopRecord`."""

    def __init__(self, record: LoopRecord, store: Any, settings):
        self.rec = record
        self.store = store  # dropped at the end: the caller's results must not outlive it here
        self.settings = settings
        self.store_ids: set[int] = set()
        self.visited: set[int] = set()  # objects of the store already walked (kept alive by it)
        self.walked = 0
        self.next_census = 0  # driver step index of the next census
        self.step_s = 0.0  # moving average of step time
        self.one_census_s = 0.0  # moving average of census time
        self.sites_sampled = 0

    def on_step(self, ev, recorder: "TestRecorder") -> None:
        rec = self.rec
        rec.steps = ev.step + 1
        rec.iterations = ev.iteration + ev.iterations
        rec.loop_s += ev.duration_s
        self.step_s = ev.duration_s if rec.steps == 1 else 0.8 * self.step_s + 0.2 * ev.duration_s
        if rec.iterations < rec.warmup or ev.step < self.next_census:
            return
        t0 = time.perf_counter()
        live, pending = self._census(full=not rec.points)
        dt = time.perf_counter() - t0
        rec.census_s += dt
        rec.points.append([rec.iterations, live, pending])
        self.one_census_s = dt if len(rec.points) == 1 else 0.7 * self.one_census_s + 0.3 * dt
        every = self.settings.census_every
        if not every:
            left = None if rec.planned_steps is None else rec.planned_steps - ev.step - 1
            every = census_interval(
                self.one_census_s, self.step_s, steps_left=left,
                points_missing=max(0, MIN_POINTS - len(rec.points)),
            )
        rec.census_every = every
        self.next_census = ev.step + every
        if self.sites_sampled < SITE_SAMPLES:
            self.sites_sampled += 1
            recorder.tap.arm()

    def _census(self, full: bool = False) -> tuple[int, int]:
        from genmlx.memory import count_nodes

        store = self.store
        if isinstance(store, list):
            if len(store) < self.walked:  # not append-only after all: walk it again
                self.store_ids, self.visited, self.walked = set(), set(), 0
            if len(store) > self.walked:
                kept_array_ids(store[self.walked:], self.store_ids, self.visited)
                self.walked = len(store)
        elif store is not None:
            self.store_ids, self.visited = set(), set()
            kept_array_ids(store, self.store_ids, self.visited)
        self.rec.kept_arrays = len(self.store_ids)
        # Generations 0-1 only (tens of us, against ms for a full collection on a
        # large heap); `finish` confirms a suspected leak with a full collection.
        gc.collect() if full else gc.collect(1)
        objs = gc.get_objects()
        ids = self.store_ids
        outside = [a for a in objs if type(a) is _ARRAY and id(a) not in ids]
        del objs
        live = len(outside)
        pending = count_nodes(*outside) if outside else 0
        del outside
        return live, pending

    def finish(self, error: BaseException | None = None) -> LoopRecord:
        """Fit the slopes; confirm a suspected leak against an exact census taken now."""
        rec = self.rec
        if error is not None:
            rec.error = f"{type(error).__name__}: {error}"
        pts = rec.points
        if len(pts) < JUDGE_POINTS:
            rec.verdict = "too short"
        else:
            xs = [p[0] for p in pts]
            w, p = slope(xs, [p[1] for p in pts]), slope(xs, [p[2] for p in pts])
            if math.isnan(w) or math.isnan(p):  # all points at one iteration
                rec.verdict = "too short"
            else:
                rec.wrapper_growth, rec.pending_growth, rec.verdict = w, p, "ok"
                if w > self.settings.limit or p > self.settings.pending_limit:
                    self._confirm()
        self.store = None
        self.store_ids, self.visited = set(), set()
        return rec

    def _confirm(self) -> None:
        """Growth from the first point (a full collection) to an exact census now.

        Cheap censuses collect only young garbage; reference cycles that died
        old inflate them until Python's next full collection. A leak is
        confirmed when this end-to-end growth also exceeds the limit.
        """
        rec = self.rec
        t0 = time.perf_counter()
        live, pending = self._census(full=True)
        rec.census_s += time.perf_counter() - t0
        first = rec.points[0]
        span = rec.iterations - first[0]
        if span > 0:
            rec.confirm_growth = [(live - first[1]) / span, (pending - first[2]) / span]


class SiteTap:
    """An `on_site` observer: subscribed for one step after a census, or for the whole test.

    Keeps, per (address, gen_fn, op), the largest node count seen and its breakdown.
    """

    def __init__(self, events, always: bool = False):
        self._events = events
        self.always = always
        self.sites: dict[tuple, dict] = {}
        self._armed = False

    def on_site(self, ev) -> None:
        key = (tuple(ev.address) if isinstance(ev.address, (tuple, list)) else (ev.address,), ev.gen_fn, ev.op)
        cur = self.sites.get(key)
        if cur is None:
            self.sites[key] = {"address": list(key[0]), "gen_fn": ev.gen_fn, "op": ev.op, "nodes": int(ev.nodes),
                               "visits": 1, "breakdown": {str(k): int(v) for k, v in dict(ev.breakdown).items()}}
        else:
            cur["visits"] += 1
            if ev.nodes > cur["nodes"]:
                cur["nodes"] = int(ev.nodes)
                cur["breakdown"] = {str(k): int(v) for k, v in dict(ev.breakdown).items()}

    def start(self) -> None:
        if self.always:
            self._events.subscribe(self)

    def arm(self) -> None:
        if not self.always and not self._armed:
            self._armed = True
            self._events.subscribe(self)

    def disarm(self) -> None:
        if not self.always and self._armed:
            self._armed = False
            self._events.unsubscribe(self)

    def stop(self) -> None:
        self._armed = False
        self._events.unsubscribe(self)

    def ranked(self) -> list[dict]:
        """Sites by nodes, largest first; `leaf` is False for a site that contains other sites."""
        addrs = [tuple(s["address"]) for s in self.sites.values()]
        out = []
        for s in self.sites.values():
            a = tuple(s["address"])
            leaf = not any(len(b) > len(a) and b[: len(a)] == a for b in addrs)
            out.append(dict(s, leaf=leaf))
        out.sort(key=lambda s: (-s["nodes"], str(s["address"])))
        return out


class TestRecorder:
    """Subscribed to `genmlx.events` for one test: records every loop it runs."""

    __test__ = False  # not a test class, whatever pytest's collection patterns say

    def __init__(self, settings):
        import genmlx.events as events

        self._events = events
        self.settings = settings
        self.loops: list[LoopRecord] = []
        self._live: dict[int, _Loop] = {}
        self.tap = SiteTap(events, always=settings.site_budget is not None)
        self.active = False

    def start(self) -> None:
        if not self.active:
            self.active = True
            self._events.subscribe(self)
            self.tap.start()

    def stop(self) -> None:
        if self.active:
            self.active = False
            self._events.unsubscribe(self)
            self.tap.stop()
            for loop in list(self._live.values()):  # a loop left open: judge what it has
                loop.finish()
            self._live.clear()

    def _warmup(self, planned_iterations: int | None) -> int:
        w = self.settings.warmup
        if w is not None:
            return w
        if planned_iterations is None:
            return 20
        return max(20, math.ceil(0.1 * planned_iterations))

    def on_run_start(self, ev) -> None:
        self._open(ev.run_id, ev.algorithm, ev.model, ev.chain, ev.total_steps, ev.store, None)

    def _open(self, run_id, algorithm, model, chain, total_steps, store, iterations_per_step):
        planned = None
        if total_steps is not None and iterations_per_step is not None:
            planned = total_steps * iterations_per_step
        elif total_steps is not None:
            planned = total_steps  # refined at the first step when steps fuse iterations
        rec = LoopRecord(run_id, algorithm, model, chain, total_steps, self._warmup(planned))
        self.loops.append(rec)
        loop = self._live[run_id] = _Loop(rec, store, self.settings)
        return loop

    def on_step(self, ev) -> None:
        self.tap.disarm()
        loop = self._live.get(ev.run_id)
        if loop is None:  # the run started before this test subscribed
            loop = self._open(ev.run_id, ev.algorithm, ev.model, ev.chain, None, ev.store, ev.iterations)
        elif ev.step == 0 and ev.iterations > 1 and self.settings.warmup is None and loop.rec.planned_steps:
            loop.rec.warmup = self._warmup(loop.rec.planned_steps * ev.iterations)
        loop.on_step(ev, self)

    def on_run_end(self, ev) -> None:
        self.tap.disarm()
        loop = self._live.pop(ev.run_id, None)
        if loop is not None:
            loop.finish(ev.error)

    def records(self) -> list[LoopRecord]:
        return list(self.loops)
