"""Per-run state and per-label-set totals, and how the exporters read them.

A `Run` is what one inference run has done so far: plain Python numbers the
observer increments at each step (nothing is exported per step). When a run
ends it is folded into the `Series` of its labels (algorithm, model, chain),
which keeps the cumulative counters and its latest run for the gauges.
`READ` maps each of the observer's catalog metrics to a function of
`(series, active runs of that series, attributes)` returning
`[(attributes, value)]`: counters sum finished and active runs.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .aggregate import Hist, Slope
from .catalog import DURATION_BUCKETS

__all__ = ["Run", "Series", "READ", "count"]


class Run:
    """What one run has done so far (plain numbers; the exporters read it live)."""

    __slots__ = (
        "run_id", "labels", "series", "span", "store", "store_ids", "store_len", "steps", "warmup", "sampling",
        "syncs", "duration", "accepted", "proposals", "prob_sum", "prob_n", "divergences", "diverging", "ess",
        "live_slope", "pending_slope",
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


def count(v) -> tuple[int, int]:
    """(sum, n) of a per-iteration statistic: a number, a bool or a list of them."""
    if type(v) is list:
        return sum(v), len(v)
    return v, 1


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


READ: dict[str, Callable] = {
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
