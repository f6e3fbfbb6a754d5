"""The Observer: what genmlx_observe does with each event of `genmlx.events`.

Per step it must be cheap (the overhead targets in benchmarks/ are a few
microseconds): `on_step` adds the step's numbers to its run's plain Python
fields and returns, except on *sampled* steps (every `sample_every`-th),
where it also writes a step span, observes the iteration-duration histogram
and may take a census. Counters and gauges are not pushed anywhere per step:
the exporters read them at collection time (`read`), summing finished runs
(folded into a `Series` per label set at run end) and the runs in progress.

Census (live arrays excluding the kept samples of every run active at that
moment, in any thread, so two concurrent runs do not see each other's samples
as growth; pending graph nodes):
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
from .catalog import RUN_ATTRIBUTES
from .runs import READ, Run, Series, count

__all__ = ["Observer"]

HistogramSink = Callable[[str, float, dict], None]


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
        self._walk_lock = threading.Lock()  # runs' store walks (a census walks every active run's store)
        self._local = threading.local()
        self._finished_s = 0.0
        self.census_s = 0.0
        self.census_in_runs_s = 0.0
        self._store_walk_s = 0.0  # part of census_s spent walking kept samples, and how many
        self._store_walked = 0
        self.census_max_s = 0.0
        self.censuses = 0
        self.pending: int | None = None  # latest pending-node count, process-wide (no other safe source)

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
        run_id, _, _, step, _, n, duration, syncs, phase, st, _, _, live = e[:13]
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
                a, k = count(st["accept_prob"])
                r.prob_sum += a
                r.prob_n += k
            v = st.get("diverging")
            if v is not None:
                r.divergences += count(v)[0]
                r.diverging = True
            v = st.get("ess")
            if v is not None:
                r.ess = v[-1] if type(v) is list else v
        if live is not None:
            self._point(r, e, live, e.pending_nodes)
        if step % self.every == 0:
            self._sampled(r, e)
        elif self.sites is not None:
            self.sites.take_step_nodes(sampled=False)

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
        with self._walk_lock:
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
            attrs = dict(zip(RUN_ATTRIBUTES, r.labels))
            for sink in self.sinks:
                sink("inference.iteration.duration", per_iter, attrs)
        extra: dict[str, Any] = {}
        if e.live_arrays is None and self._census_allowed(r):
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

    def _census_allowed(self, run: Run) -> bool:
        """Would one more census keep census time within `census_overhead` of the observed step time?

        The expected cost is the mean cost of a census so far (mostly the
        heap walk) plus walking the samples `run` kept since its last census.
        """
        if self.census_overhead <= 0:
            return False
        if self.census_overhead == math.inf:
            return True
        if self.censuses:
            expected = (self.census_s - self._store_walk_s) / self.censuses
        else:  # no measurement yet: about 2-3 ns per allocated block for the heap walk, doubled
            expected = 5e-9 * sys.getallocatedblocks()
        store = run.store
        if type(store) is list and len(store) > run.store_len:
            per_item = self._store_walk_s / self._store_walked if self._store_walked else 1e-4
            expected += (len(store) - run.store_len) * per_item
        observed = self._finished_s + sum(r.duration for r in list(self._runs.values()))
        return self.census_in_runs_s + expected <= self.census_overhead * observed

    def census(self, run: Run | None = None) -> tuple[int, int]:
        """Count live arrays (minus the kept samples of every active run) and pending graph nodes, now.

        One walk of the GC heap, the active runs' stores walked only where they grew,
        and one graph export over the arrays outside the store (the driver
        materializes kept samples, so they hold no pending nodes). Call it on
        the thread that runs MLX work. Updates the process-wide latest census
        read by the `memory.pending_nodes` gauge.
        """
        from genmlx.memory import count_nodes, live_array_objects

        t0 = time.perf_counter()
        arrays = live_array_objects()
        if run is not None:
            ids = self._kept_ids(run)
            if ids:
                arrays = [a for a in arrays if id(a) not in ids]
        live = len(arrays)
        pending = count_nodes(*arrays) if arrays else 0
        del arrays
        self.pending = pending
        dt = time.perf_counter() - t0
        self.census_s += dt
        if run is not None:  # what the budget counts: censuses taken while runs were going on
            self.census_in_runs_s += dt
        self.census_max_s = max(self.census_max_s, dt)
        self.censuses += 1
        return live, pending

    def _kept_ids(self, run: Run) -> set[int]:
        """Ids of the arrays kept by every run active now (`run` included), all threads.

        A census must not count another thread's kept samples as this run's
        growth. Each run's store is walked only where it grew since the last
        walk (by whichever thread's census), under one lock.
        """
        from genmlx.memory import arrays_in

        with self._lock:
            runs = list(self._runs.values())
        if run not in runs:
            runs.append(run)
        t1 = time.perf_counter()
        walked = 0
        out: set[int] | None = None
        with self._walk_lock:
            for r in runs:
                store = r.store
                if store is None:
                    continue
                if type(store) is list and len(store) >= r.store_len:
                    r.store_ids.update(map(id, arrays_in(store[r.store_len:])))
                    walked += len(store) - r.store_len
                else:
                    r.store_ids = set(map(id, arrays_in(store)))
                    walked += len(store) if type(store) is list else 1
                r.store_len = len(store) if type(store) is list else 0
                if out is None:
                    out = r.store_ids if len(runs) == 1 else set(r.store_ids)
                else:
                    out |= r.store_ids
        self._store_walk_s += time.perf_counter() - t1
        self._store_walked += walked
        return out or set()

    def _point(self, r: Run, e, live: int, pending: int | None) -> None:
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

    def current_run(self) -> tuple[str, str] | None:
        """(model, algorithm) of the innermost run in progress on this thread (None outside runs)."""
        s = getattr(self._local, "stack", None)
        return (s[-1].labels[1], s[-1].labels[0]) if s else None

    # -- collection --------------------------------------------------------------------
    def read(self, key: str) -> list:
        """`[(attributes, value)]` of catalog metric `key` (the observer's own metrics)."""
        with self._lock:
            rows = []
            for labels, s in self._series.items():
                attrs = dict(zip(RUN_ATTRIBUTES, labels))
                active = [r for r in self._runs.values() if r.series is s]
                rows.extend(READ[key](s, active, attrs))
            return rows

    def keys(self) -> tuple[str, ...]:
        return tuple(READ)
