"""Shared helper for the inference memory tests: is a loop flat in both quantities?

Pass `rec = FlatRecorder(every=k)` as an algorithm's `callback=`; it takes an
exact census (live arrays minus those the loop keeps for its caller, and
pending graph nodes) every k-th step after `warmup` steps. `rec.assert_flat()`
fits least-squares slopes per iteration and fails with the numbers.
"""

from __future__ import annotations

import gc

import numpy as np

from genmlx import memory


class FlatRecorder:
    def __init__(self, every: int = 50, warmup: int = 20, keep=None):
        self.every = every
        self.warmup = warmup
        self.keep = keep  # object (e.g. a list) whose arrays are the caller's, not a leak
        self.points: list[tuple[int, int, int]] = []

    def __call__(self, i, state=None, stats=None):
        if i >= self.warmup and (i - self.warmup) % self.every == 0:
            gc.collect()
            live = memory.live_arrays(exclude=(self.keep, state))
            pending = memory.pending_nodes()
            self.points.append((i, live, pending))

    def slopes(self) -> tuple[float, float]:
        pts = np.array(self.points, dtype=float)
        if len(pts) < 3:
            raise AssertionError(f"too few census points ({len(pts)}) to judge flatness")
        x = pts[:, 0]
        return float(np.polyfit(x, pts[:, 1], 1)[0]), float(np.polyfit(x, pts[:, 2], 1)[0])

    def assert_flat(self, max_slope: float = 0.01) -> None:
        live, pending = self.slopes()
        assert abs(live) <= max_slope and abs(pending) <= max_slope, (
            f"memory not flat: live arrays {live:+.4f}/iteration, pending nodes {pending:+.4f}/iteration "
            f"(limit {max_slope}); census points (iteration, live, pending): {self.points[:3]} ... {self.points[-3:]}"
        )


class KeepStore:
    """An event subscriber pointing a FlatRecorder at the driver's sample store (kept samples are not a leak):
    `with events.subscribed(KeepStore(rec)): ...`."""

    def __init__(self, rec: FlatRecorder):
        self.rec = rec

    def on_run_start(self, e):
        self.rec.keep = e.store
