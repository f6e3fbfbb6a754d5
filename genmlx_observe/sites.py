"""Buffers per trace site: the opt-in site observer and its bounded `site` label.

Subscribing an object with an `on_site` method to `genmlx.events` is what
turns the handler's site accounting on (it then counts the graph nodes each
site adds, see `genmlx.handler`). So `SiteObserver` exists separately from
`Observer` and is only subscribed when the user asked (`site_metrics=True`).

The `site` label is bounded: the `top_k` addresses with the most nodes get
their own label and every other address shares ``other``. Which addresses
are the top K is decided once, from exact per-address totals, at the first of:
the end of the first driver step that handled sites, the first collection,
`FREEZE_AFTER` events. Until then events are buffered, and replayed under
their final label, so cumulative values never jump between labels.
"""

from __future__ import annotations

import threading
from typing import Callable

from genmlx.handler import current_root

from .aggregate import Hist
from .catalog import NODE_BUCKETS

__all__ = ["SiteLabels", "SiteObserver", "site_label", "OTHER", "FREEZE_AFTER"]

OTHER = "other"
FREEZE_AFTER = 10_000

HistogramSink = Callable[[str, float, dict], None]


def site_label(address: tuple) -> str:
    """A site's hierarchical address as one label value: ``("sub", 3, "x")`` -> ``"sub/3/x"``."""
    return "/".join(map(str, address))


class SiteLabels:
    """The frozen choice of which sites keep their own label."""

    def __init__(self, top_k: int):
        self.top_k = top_k
        self.labels: dict[tuple, str] | None = None  # None until frozen

    @property
    def frozen(self) -> bool:
        return self.labels is not None

    def freeze(self, totals: dict[tuple, int]) -> None:
        """Keep the `top_k` addresses with the largest totals (ties: first seen)."""
        order = sorted(totals, key=lambda a: -totals[a])  # sorted() is stable: ties keep first-seen order
        self.labels = {a: site_label(a) for a in order[: self.top_k]}

    def label(self, address: tuple) -> str:
        return self.labels.get(address, OTHER)


class SiteObserver:
    """Receives `SiteHandled` events; keeps a `site.buffers` histogram per (site, model, algorithm, op).

    Each event is labelled with the model and algorithm of the run in progress
    on its thread. A site handled outside any run (an algorithm's initial trace,
    made before its run starts) waits for the next run: it takes that run's
    labels when the run's model is the model it was handled for, else it keeps
    its model and an empty algorithm (also when the labels are read first).

    Args:
        top_k: addresses with their own label.
        current_run: returns ``(model, algorithm)`` of the innermost run in
            progress on this thread, or None outside runs.
    """

    def __init__(self, top_k: int, current_run: Callable[[], tuple[str, str] | None]):
        self._labels = SiteLabels(top_k)
        self._run = current_run
        self._lock = threading.Lock()
        self._pending: list[tuple] = []  # (address, model, algorithm, op, nodes, in a run) before freezing
        self._orphans: list[tuple[tuple, str, str, int]] = []  # outside runs: (address, model, op, nodes)
        self._totals: dict[tuple, int] = {}
        self.hists: dict[tuple[str, str, str, str], Hist] = {}
        self._attrs: dict[tuple[str, str, str, str], dict] = {}  # the attributes of each histogram, made once
        self._bound: dict[tuple, tuple[Hist, dict]] = {}  # (address, model, algorithm, op) -> its histogram
        self._step_sinks: list[tuple[int, dict]] = []  # this step's values for the sinks (sent if it is sampled)
        self.sinks: list[HistogramSink] = []  # e.g. the OpenTelemetry histogram's record
        self.events = 0
        # Nodes of the current driver step, top-level sites only (a nested call
        # reports its sub-sites first, then itself with their sum).
        self._step: list[tuple[tuple, int]] = []

    # -- events ---------------------------------------------------------------------
    def on_site(self, e) -> None:
        run = self._run()
        self.events += 1
        address, nodes, b = e.address, e.nodes, e.breakdown
        if len(b) == 1 and "site" in b:
            self._step.append((address, nodes))
        else:
            self._step_add(address, nodes, nested=True)
        with self._lock:
            if run is not None and not self._orphans and self._labels.labels is not None:
                self._observe(address, run[0], run[1], e.op, nodes, True)  # the steady case
                return
            if not self._labels.frozen:
                self._totals[address] = self._totals.get(address, 0) + nodes
            if run is None:
                self._orphans.append((address, _root_model(), e.op, nodes))
                return
            if self._orphans:
                self._adopt(run)
            self._add(address, run[0], run[1], e.op, nodes, True)

    def _add(self, address, model, algorithm, op, nodes, in_run: bool) -> None:
        if self._labels.frozen:
            self._observe(address, model, algorithm, op, nodes, in_run)
            return
        self._pending.append((address, model, algorithm, op, nodes, in_run))
        if len(self._pending) >= FREEZE_AFTER:
            self._freeze()

    def _adopt(self, run) -> None:
        """Label the sites handled outside runs: with `run` where it is their model's, else model only."""
        orphans, self._orphans = self._orphans, []
        for address, model, op, nodes in orphans:
            algorithm = run[1] if run is not None and run[0] == model else ""
            self._add(address, model, algorithm, op, nodes, run is not None)

    def _step_add(self, address: tuple, nodes: int, nested: bool) -> None:
        step = self._step
        if nested:  # replace the sub-sites already counted by the call's own total
            n = len(address)
            while step and step[-1][0][:n] == address and len(step[-1][0]) > n:
                step.pop()
        step.append((address, nodes))

    def take_step_nodes(self, sampled: bool = True) -> int:
        """Nodes added at the sites handled since the last call (the observer calls it at each step's end).

        The first step that handled sites also freezes the top-K labels. The
        step's site values go to the sinks when the step is `sampled`.
        """
        if self._orphans:
            run = self._run()
            with self._lock:
                self._adopt(run)
        total = 0
        if self._step:
            total = sum(n for _, n in self._step)
            self._step = []
            if self._labels.labels is None:
                self.freeze()
        if self._step_sinks:
            with self._lock:
                values, self._step_sinks = self._step_sinks, []
            if sampled:
                for nodes, attrs in values:
                    for sink in self.sinks:
                        sink("site.buffers", nodes, attrs)
        return total

    # -- labels -------------------------------------------------------------------
    def freeze(self) -> None:
        """Decide the top-K labels now (idempotent) and replay buffered events."""
        with self._lock:
            if not self._labels.frozen:
                self._freeze()

    def _freeze(self) -> None:
        self._labels.freeze(self._totals)
        pending, self._pending, self._totals = self._pending, [], {}
        for address, model, algorithm, op, nodes, in_run in pending:
            self._observe(address, model, algorithm, op, nodes, in_run)

    @property
    def labels(self) -> dict[tuple, str] | None:
        return None if self._labels.labels is None else dict(self._labels.labels)

    def _observe(self, address: tuple, model: str, algorithm: str, op: str, nodes: int, in_run: bool) -> None:
        """One value into its histogram (labels frozen; looked up by address once) and to the sinks.

        The sinks (OpenTelemetry's histogram, about 5-25 us per value: most of a
        site's cost) get the sites of sampled driver steps only, as the iteration
        duration histogram does; sites outside runs at once.
        """
        k = (address, model, algorithm, op)
        bound = self._bound.get(k)
        if bound is None:
            key = (self._labels.label(address), model, algorithm, op)
            h = self.hists.get(key)
            if h is None:
                h = self.hists[key] = Hist(NODE_BUCKETS)
                self._attrs[key] = {"site": key[0], "model": model, "algorithm": algorithm, "op": op}
            bound = self._bound[k] = (h, self._attrs[key])
        bound[0].observe(nodes)
        if self.sinks:
            if in_run:
                self._step_sinks.append((nodes, bound[1]))
            else:
                for sink in self.sinks:
                    sink("site.buffers", nodes, bound[1])

    # -- collection -------------------------------------------------------------
    def read(self) -> list:
        """`[(attributes, HistogramPoint)]` for `site.buffers` (freezes the labels first).

        Sites still waiting for a run are labelled with their model and no algorithm.
        """
        if self.events:
            self.freeze()
        with self._lock:
            if self._orphans:
                self._adopt(None)
            return [(dict(self._attrs[k]), h.point()) for k, h in self.hists.items()]


def _root_model() -> str:
    """The name of the outermost generative function being executed (the model a site belongs to)."""
    gf = current_root()
    return getattr(gf, "name", "") if gf is not None else ""
