"""Per-loop growth measurement: an observer of `genmlx.events` for one test.

For every inference loop (one `RunStarted` ... `RunEnded`, keyed by run id)
the recorder takes a census (`census.Census`: live arrays outside the loop's
result store and state, pending graph nodes) at the end of every k-th driver
step once the loop is past its warm-up. Growth per iteration is the
least-squares slope of each count against the iteration index
(`StepEnded.iteration + iterations`, so a fused K-iteration step counts K).
k adapts so that census time stays under `SHARE` (10%) of the loop's own step
time, but a loop that is long enough always gets at least `MIN_POINTS` points.
A loop whose slope exceeds a limit is confirmed by an exact census at its end,
compared with the first point.

The plugin imports this module when the first test is measured, not at startup.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .census import Census, kept_array_ids, loop_state, postpone_old_collections, restore_collections
from .sites import SiteTap

__all__ = ["slope", "census_interval", "kept_array_ids", "LoopRecord", "TestRecorder", "SiteTap",
           "MIN_POINTS", "JUDGE_POINTS", "WARMUP"]

# Census counts are exact integers, so a flat loop measures 0 exactly and two
# points already give an exact slope. On genmlx's own suite, censused at every
# step (docs/pytest-plugin.md, "Warm-up and points"), a warm-up of 3 iterations
# and 2 points judge 323 of 593 loops with no false positive (today's 20 and 3:
# 168); 2 iterations or fewer flag one-off allocations of a loop's first steps.
MIN_POINTS = 5  # census points a loop gets whenever it is long enough
JUDGE_POINTS = 2  # fewer than this after warm-up: "too short to judge"
WARMUP = 3  # iterations before the first census, at least (and at least 10% of a loop of known length)
WATCH_POINTS = 3  # census points before a loop that looks leaky has steps watched for origins
WATCH_STEPS = 3  # consecutive steps watched (a leak may skip some: an accepted sample is kept, not leaked)
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
    points: list = field(default_factory=list)  # [iteration, live, pending, state arrays]
    wrapper_growth: float | None = None  # arrays / iteration
    pending_growth: float | None = None  # pending graph nodes / iteration
    kept_arrays: int = 0  # distinct arrays in the result store (subtracted)
    state_growth: float | None = None  # arrays / iteration of the algorithm's own state (subtracted)
    census_every: int = 1  # the last k used
    full_censuses: int = 0  # censuses that scanned the whole heap (the first, after foreign collections)
    census_s: float = 0.0
    loop_s: float = 0.0
    confirm_growth: list | None = None  # [arrays, nodes] per iteration, first point to an exact end census
    verdict: str = "running"  # "ok", "leak", "too short", "raised" (not judged), "running"
    error: str | None = None
    watched: int | None = None  # iteration of the first step watched for origins (the loop looked leaky there)
    diagnosis: dict | None = None  # what holds the leak (`diagnose.diagnose`), for a confirmed leak

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


class _Loop:
    """Live measurement state of one loop; produces a `LoopRecord`."""

    def __init__(self, record: LoopRecord, store: Any, settings, others=None):
        self.rec = record
        self.census = Census(store, others)  # closed at the end: the caller's results must not outlive it here
        self.settings = settings
        self.next_census = 0  # driver step index of the next census
        self.step_s = 0.0  # moving average of step time
        self.one_census_s = 0.0  # moving average of census time
        self.sites_sampled = 0
        self.origins = None  # an `origins.Origins` once the loop looks leaky
        self.watch_left = 0  # steps still to watch
        self.graph_before = None  # the largest pending graph at the end of the watched step

    def on_step(self, ev, recorder: "TestRecorder") -> None:
        watching = self.origins is not None and self.origins.armed
        if watching:
            self.origins.disarm()
            self.watch_left -= 1
            if self.watch_left == 0:
                self._end_watch(ev.iteration + ev.iterations)
        self._on_step(ev, recorder)
        if watching and self.watch_left > 0:
            self.origins.arm(self.rec.iterations)

    def _on_step(self, ev, recorder: "TestRecorder") -> None:
        rec = self.rec
        rec.steps = ev.step + 1
        rec.iterations = ev.iteration + ev.iterations
        rec.loop_s += ev.duration_s
        self.step_s = ev.duration_s if rec.steps == 1 else 0.8 * self.step_s + 0.2 * ev.duration_s
        if rec.iterations < rec.warmup or ev.step < self.next_census:
            return
        t0 = time.perf_counter()
        live, pending, state = self.census.take(loop_state(ev))
        rec.kept_arrays = len(self.census.store_ids)
        dt = time.perf_counter() - t0
        rec.census_s += dt
        # a pipelined run has already built its next step (`ev.ahead`): that step's Python has run too
        ran = rec.iterations + (ev.iterations if getattr(ev, "ahead", None) is not None else 0)
        rec.points.append([ran, live, pending, state])
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
        if self.origins is None and self._looks_leaky():
            self._watch(recorder)

    def _growing(self, a: list, b: list) -> tuple[bool, bool]:
        span = b[0] - a[0]
        return (span > 0 and (b[1] - a[1]) / span > self.settings.limit,
                span > 0 and (b[2] - a[2]) / span > self.settings.pending_limit)

    def _looks_leaky(self) -> bool:
        """Both of the last two census intervals grew over a limit (a one-off allocation grows one)."""
        pts = self.rec.points
        if len(pts) < WATCH_POINTS or not self.settings.enabled:
            return False
        (w1, p1), (w2, p2) = self._growing(pts[-3], pts[-2]), self._growing(pts[-2], pts[-1])
        return (w1 and w2) or (p1 and p2)

    def _watch(self, recorder: "TestRecorder") -> None:
        """Watch the next `WATCH_STEPS` steps: source lines and trace sites of the arrays they create."""
        from .origins import Origins

        self.origins = Origins(recorder._events)
        if self.origins.arm(self.rec.iterations):
            self.watch_left = WATCH_STEPS
            self.rec.watched = self.rec.iterations

    def _end_watch(self, iteration: int) -> None:
        pts = self.rec.points
        if len(pts) >= 3 and self._growing(pts[-2], pts[-1])[1]:
            from .diagnose import graph_snapshot

            made = self.origins.created()  # the graph that grows is usually a new array each step
            self.graph_before = graph_snapshot(made, iteration, self.origins) or graph_snapshot(
                self.census.outside(), iteration, self.origins)
            del made

    def finish(self, error: BaseException | None = None, state: Any = None) -> LoopRecord:
        """Fit the slopes; confirm a suspected leak against an exact census taken now."""
        rec = self.rec
        if error is not None:
            rec.error = f"{type(error).__name__}: {error}"
        pts = rec.points
        if len(pts) < JUDGE_POINTS:
            rec.verdict = "too short"
        else:
            xs = [pt[0] for pt in pts]
            w, p = slope(xs, [pt[1] for pt in pts]), slope(xs, [pt[2] for pt in pts])
            if math.isnan(w) or math.isnan(p):  # all points at one iteration
                rec.verdict = "too short"
            else:
                rec.wrapper_growth, rec.pending_growth, rec.verdict = w, p, "ok"
                rec.state_growth = slope(xs, [pt[3] for pt in pts])
                if error is not None:  # e.g. a budget test expecting ResourceLimitExceeded
                    rec.verdict = "raised"
                elif w > self.settings.limit or p > self.settings.pending_limit:
                    self._confirm(state)
        rec.full_censuses = self.census.full_censuses
        if self.origins is not None:
            self.origins.disarm()
        if rec.confirm_growth is not None and error is None:
            w, p = rec.confirm_growth
            lw, lp = self.settings.limit, self.settings.pending_limit
            if (w > lw and rec.wrapper_growth > lw) or (p > lp and rec.pending_growth > lp):
                self._diagnose(state, wrappers=w > lw and rec.wrapper_growth > lw,
                               pending=p > lp and rec.pending_growth > lp)
        self.census.close()
        self.origins = self.graph_before = None
        return rec

    def _diagnose(self, state: Any, wrappers: bool, pending: bool) -> None:
        """Name what holds the arrays that appeared since the first census (a confirmed leak only)."""
        from .diagnose import diagnose

        rec = self.rec
        try:
            new, outside = self.census.survivors(state)
            span = rec.iterations - rec.points[0][0]
            grown = (rec.confirm_growth[1] if rec.confirm_growth else 0) * span
            rec.diagnosis = diagnose(
                new, store=self.census.store, state=state, iterations=span, pending=new if pending else None,
                pending_fallback=outside, min_nodes=max(1, int(0.5 * grown)), graph_before=self.graph_before,
                origins=self.origins, iteration=rec.iterations, wrappers=wrappers,
            )
            del new, outside
        except Exception as e:  # the diagnosis is evidence, never a reason to break the run
            rec.diagnosis = {"error": f"{type(e).__name__}: {e}"}

    def _confirm(self, state: Any) -> None:
        """Growth from the first point to an exact census (full collection) now.

        Censuses collect only young garbage; reference cycles that died old
        inflate them until Python's next full collection. A leak is confirmed
        when this end-to-end growth also exceeds the limit. The first point
        is corrected for the garbage it counted: its arrays that the full
        collection frees (had one of them been live then and garbage only
        later, the correction errs towards confirming).
        """
        rec = self.rec
        t0 = time.perf_counter()
        live, pending, freed = self.census.exact(state)
        rec.census_s += time.perf_counter() - t0
        first = rec.points[0]
        span = rec.iterations - first[0]
        if span > 0:
            rec.confirm_growth = [(live - (first[1] - freed)) / span, (pending - first[2]) / span]


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
                restore_collections()
            self._live.clear()

    def _warmup(self, planned_iterations: int | None) -> int:
        w = self.settings.warmup
        if w is not None:
            return w
        if planned_iterations is None:
            return WARMUP
        return max(WARMUP, math.ceil(0.1 * planned_iterations))

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
        loop = self._live[run_id] = _Loop(rec, store, self.settings, self._censuses)
        postpone_old_collections()
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
            try:
                loop.finish(ev.error, loop_state(ev))
            finally:
                restore_collections()

    def _censuses(self) -> list:
        """The census of every loop active now: each loop's census excludes all their stores."""
        return [loop.census for loop in list(self._live.values())]

    def records(self) -> list[LoopRecord]:
        return list(self.loops)
