"""The Observer: what genmlx_observe does with each event of `genmlx.events`.

Per step it must be cheap (the overhead targets in benchmarks/ are a few
microseconds): `on_step` adds the step's numbers to its run's plain Python
fields and returns, except on *sampled* steps (every `sample_every`-th),
where it also writes a step span, observes the iteration-duration histogram
and may take a census. Counters and gauges are not pushed anywhere per step:
the exporters read them at collection time (`read`), summing finished runs
(folded into a `Series` per label set at run end) and the runs in progress.

Census (live arrays excluding the run's kept samples, pending graph nodes):
taken on the thread that runs MLX (graphs must not be walked while another
thread evaluates them), at sampled steps, as long as census time stays under
`census_overhead` of the observed step time. The driver's own census
(`StepEnded.live_arrays`, taken when a resource budget is active) is free and
always used. Growth per iteration is the least-squares slope of a run's
sampling-phase census points against the iteration index.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, Callable

from . import spans
from .aggregate import Hist, Slope
from .catalog import DURATION_BUCKETS

__all__ = ["Observer", "Run", "Series"]

HistogramSink = Callable[[str, float, dict], None]


class Run:
    """What one run has done so far (plain numbers; the exporters read it live)."""

    __slots__ = (
        "run_id", "labels", "series", "span", "store", "store_ids", "store_len", "steps", "warmup", "sampling",
        "syncs", "duration", "accepted", "proposals", "prob_sum", "prob_n", "divergences", "diverging", "ess",
        "live_slope", "pending_slope", "live", "pending",
    )

    def __init__(self, run_id: int, labels: tuple, series: "Series", store: Any):
        self.run_id = run_id
        self.labels = labels
        self.series = series
        self.span = None
        self.store = store
        self.store_ids: set[int] = set()  # ids of the arrays in `store` (walked incrementally)
        self.store_len = 0
        self.steps = self.warmup = self.sampling = self.syncs = 0
        self.duration = 0.0
        self.accepted = self.proposals = self.prob_n = self.divergences = 0
        self.prob_sum = 0.0
        self.diverging = False  # the algorithm reports `diverging`
        self.ess = None
        self.live_slope = Slope()
        self.pending_slope = Slope()
        self.live = self.pending = None

    def acceptance(self) -> float | None:
        if self.proposals:
            return self.accepted / self.proposals
        if self.prob_n:
            return self.prob_sum / self.prob_n
        return None

    def observed(self) -> dict[str, Any]:
        """What the observer saw, for the run span's attributes."""
        return {
            "acceptance_rate": self.acceptance(),
            "divergences": self.divergences if self.diverging else None,
            "ess": self.ess,
            "live_arrays.growth": self.live_slope.value(),
            "pending_nodes.growth": self.pending_slope.value(),
        }


class Series:
    """Cumulative totals of the finished runs with one label set, and its latest run."""

    __slots__ = ("ok", "error", "steps", "warmup", "sampling", "syncs", "duration", "accepted",
                 "proposals", "divergences", "hist", "latest", "active")

    def __init__(self):
        self.ok = self.error = self.steps = self.warmup = self.sampling = self.syncs = 0
        self.accepted = self.proposals = self.divergences = self.active = 0
        self.duration = 0.0
        self.hist = Hist(DURATION_BUCKETS)
        self.latest: Run | None = None

    def fold(self, r: Run) -> None:
        self.steps += r.steps
        self.warmup += r.warmup
        self.sampling += r.sampling
        self.syncs += r.syncs
        self.duration += r.duration
        self.accepted += r.accepted
        self.proposals += r.proposals
        self.divergences += r.divergences


def _count(v) -> tuple[int, int]:
    """(sum, n) of a per-iteration statistic: a number, a bool or a list of them."""
    if type(v) is list:
        return sum(v), len(v)
    return v, 1


class Observer:
    """Subscribed to `genmlx.events`; keeps per-run state and exports nothing by itself.

    Args:
        sample_every: every k-th driver step is sampled.
        tracer: an OpenTelemetry tracer, or None for no spans.
        step_spans: write a span per sampled step.
        census_overhead: share of observed step time censuses may take.
    """

    def __init__(self, sample_every: int = 100, tracer=None, step_spans: bool = True,
                 census_overhead: float = 0.01):
        self.every = sample_every
        self.tracer = tracer
        self.step_spans = bool(step_spans) and tracer is not None
        self.census_overhead = census_overhead
        self.sites = None  # a SiteObserver when site accounting is on
        self.sinks: list[HistogramSink] = []
        self._runs: dict[int, Run] = {}
        self._series: dict[tuple, Series] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._finished_s = 0.0
        self.census_s = 0.0
        self.census_max_s = 0.0
        self.censuses = 0
        self.live: int | None = None  # latest census, process-wide (pending nodes have no other source)
        self.pending: int | None = None

    # -- events ----------------------------------------------------------------------
    def on_run_start(self, e) -> None:
        labels = (e.algorithm, e.model, str(e.chain))
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = Series()
            run = Run(e.run_id, labels, series, e.store)
            series.latest = run
            series.active += 1
            self._runs[e.run_id] = run
        stack = self._stack()
        if self.tracer is not None:
            parent = stack[-1].span if stack else None
            run.span = spans.start_run(self.tracer, e, parent)
        stack.append(run)

    def on_step(self, e) -> None:
        # One unpack instead of a dozen attribute lookups: this runs at every step.
        run_id, _, _, step, _, n, duration, syncs, phase, st, _, _, live, _ = e
        r = self._runs.get(run_id)
        if r is None:  # the run started before we subscribed
            return
        r.steps += 1
        if phase == "warmup":
            r.warmup += n
        else:
            r.sampling += n
        r.syncs += syncs
        r.duration += duration
        if st:
            v = st.get("accepted")
            if v is not None:
                if type(v) is list:
                    r.accepted += sum(v)
                    r.proposals += len(v)
                else:
                    r.accepted += v
                    r.proposals += 1
            elif "accept_prob" in st:
                a, k = _count(st["accept_prob"])
                r.prob_sum += a
                r.prob_n += k
            v = st.get("diverging")
            if v is not None:
                r.divergences += _count(v)[0]
                r.diverging = True
            v = st.get("ess")
            if v is not None:
                r.ess = v[-1] if type(v) is list else v
        if live is not None:
            self._point(r, e, live, e.pending_nodes)
        if step % self.every == 0:
            self._sampled(r, e)
        elif self.sites is not None:
            self.sites.take_step_nodes()

    def on_run_end(self, e) -> None:
        r = self._runs.pop(e.run_id, None)
        if r is None:
            return
        stack = self._stack()
        if r in stack:
            stack.remove(r)
        if r.span is not None:
            spans.end_run(r.span, e, r.observed())
        r.span = None
        r.store = None  # never keep the caller's samples alive
        r.store_ids = set()
        with self._lock:
            s = r.series
            s.fold(r)
            s.active -= 1
            if e.error is None:
                s.ok += 1
            else:
                s.error += 1
            self._finished_s += r.duration

    # -- sampled steps ------------------------------------------------------------------
    def _sampled(self, r: Run, e) -> None:
        per_iter = e.duration_s / e.iterations if e.iterations else e.duration_s
        with self._lock:
            r.series.hist.observe(per_iter)
        if self.sinks:
            attrs = dict(zip(("algorithm", "model", "chain"), r.labels))
            for sink in self.sinks:
                sink("inference.iteration.duration", per_iter, attrs)
        extra: dict[str, Any] = {}
        if e.live_arrays is None and self._census_allowed():
            live, pending = self.census(r)
            self._point(r, e, live, pending)
            extra["genmlx.memory.live_arrays"] = live
            extra["genmlx.memory.pending_nodes"] = pending
        elif e.live_arrays is not None:
            extra["genmlx.memory.live_arrays"] = e.live_arrays
            extra["genmlx.memory.pending_nodes"] = e.pending_nodes
        if self.sites is not None:
            extra["genmlx.step.buffers"] = self.sites.take_step_nodes()
        if self.step_spans and r.span is not None:
            from genmlx import memory

            extra["genmlx.memory.active_bytes"] = memory.active_bytes()
            extra["genmlx.memory.cache_bytes"] = memory.cache_bytes()
            spans.step_span(self.tracer, r.span, e, extra)

    def _census_allowed(self) -> bool:
        """Would one more census keep census time within `census_overhead` of the observed step time?"""
        if self.census_overhead <= 0:
            return False
        if self.census_overhead == math.inf:
            return True
        if self.censuses:
            expected = self.census_s / self.censuses
        else:  # no measurement yet: about 2-3 ns per allocated block for the heap walk, doubled
            expected = 5e-9 * sys.getallocatedblocks()
        observed = self._finished_s + sum(r.duration for r in list(self._runs.values()))
        return self.census_s + expected <= self.census_overhead * observed

    def census(self, run: Run | None = None) -> tuple[int, int]:
        """Count live arrays (minus `run`'s kept samples) and pending graph nodes, exactly, now.

        One walk of the GC heap, the run's store walked only where it grew,
        and one graph export over the arrays outside the store (the driver
        materializes kept samples, so they hold no pending nodes). Call it on
        the thread that runs MLX work. Updates the process-wide latest census
        read by the `memory.pending_nodes` gauge.
        """
        from genmlx.memory import arrays_in, count_nodes, live_array_objects

        t0 = time.perf_counter()
        arrays = live_array_objects()
        total = len(arrays)
        store = None if run is None else run.store
        if store is not None:
            if type(store) is list and len(store) >= run.store_len:
                run.store_ids.update(map(id, arrays_in(store[run.store_len:])))
            else:
                run.store_ids = set(map(id, arrays_in(store)))
            run.store_len = len(store) if type(store) is list else 0
            ids = run.store_ids
            arrays = [a for a in arrays if id(a) not in ids]
        live = len(arrays)
        pending = count_nodes(*arrays) if arrays else 0
        del arrays
        self.live, self.pending = total, pending
        dt = time.perf_counter() - t0
        self.census_s += dt
        self.census_max_s = max(self.census_max_s, dt)
        self.censuses += 1
        return live, pending

    def _point(self, r: Run, e, live: int, pending: int | None) -> None:
        r.live, r.pending = live, pending
        if pending is not None:
            self.pending = pending
        if e.phase != "warmup":
            x = e.iteration + e.iterations
            r.live_slope.add(x, live)
            if pending is not None:
                r.pending_slope.add(x, pending)

    # -- nesting ----------------------------------------------------------------------
    def _stack(self) -> list:
        s = getattr(self._local, "stack", None)
        if s is None:
            s = self._local.stack = []
        return s

    def current_model(self) -> str:
        """The model of the innermost run in progress on this thread ("" outside runs)."""
        s = getattr(self._local, "stack", None)
        return s[-1].labels[1] if s else ""

    # -- collection --------------------------------------------------------------------
    def read(self, key: str) -> list:
        """`[(attributes, value)]` of catalog metric `key` (the observer's own metrics)."""
        with self._lock:
            rows = []
            for labels, s in self._series.items():
                attrs = dict(zip(("algorithm", "model", "chain"), labels))
                active = [r for r in self._runs.values() if r.series is s]
                rows.extend(_READ[key](s, active, attrs))
            return rows

    def keys(self) -> tuple[str, ...]:
        return tuple(_READ)


def _total(field: str) -> Callable:
    def read(s: Series, active: list, attrs: dict):
        return [(attrs, getattr(s, field) + sum(getattr(r, field) for r in active))]

    return read


def _latest(fn: Callable[[Run], Any]) -> Callable:
    def read(s: Series, active: list, attrs: dict):
        v = None if s.latest is None else fn(s.latest)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return []
        return [(attrs, v)]

    return read


def _iterations(s: Series, active: list, attrs: dict):
    return [
        ({**attrs, "phase": "warmup"}, s.warmup + sum(r.warmup for r in active)),
        ({**attrs, "phase": "sampling"}, s.sampling + sum(r.sampling for r in active)),
    ]


def _runs(s: Series, active: list, attrs: dict):
    return [({**attrs, "outcome": "ok"}, s.ok), ({**attrs, "outcome": "error"}, s.error)]


_READ: dict[str, Callable] = {
    "inference.runs": _runs,
    "inference.runs.active": lambda s, active, attrs: [(attrs, s.active)],
    "inference.steps": _total("steps"),
    "inference.iterations": _iterations,
    "inference.syncs": _total("syncs"),
    "inference.duration": _total("duration"),
    "inference.iteration.duration": lambda s, active, attrs: [(attrs, s.hist.point())] if s.hist.count else [],
    "inference.proposals": _total("proposals"),
    "inference.accepted": _total("accepted"),
    "inference.acceptance.ratio": _latest(Run.acceptance),
    "inference.divergences": _total("divergences"),
    "inference.particle.ess": _latest(lambda r: r.ess),
    "memory.live_arrays.growth": _latest(lambda r: r.live_slope.value()),
    "memory.pending_nodes.growth": _latest(lambda r: r.pending_slope.value()),
}
