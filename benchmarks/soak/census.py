"""The soak's census: RSS, live arrays and pending graph nodes at regular iterations, and their slopes.

A census point is taken after `gc.collect()`: RSS (psutil), the live MLX arrays outside what the
run keeps on purpose (the driver's store of kept samples, `RunStarted.store`, and the algorithm's
state), and the pending graph nodes. The verdict on each quantity is a least-squares slope per
1,000 iterations with its standard error.
"""

from __future__ import annotations

import gc
import sys

import numpy as np
import psutil

from genmlx import memory

# RSS per history entry (genmlx.inference.history keeps the driver's per-iteration statistics), measured
# on this box: a float is 8 bytes of an array("d") and a bool 1 byte of an array("b") (a million of each
# raise RSS by 9.1 MB, the arrays over-allocated by about 1/16); any other value is a list slot (8,
# over-allocated by 1/8) and its object (a float 31 in pymalloc's pools; small ints, None: shared)
_ARRAY_FLOAT, _ARRAY_BOOL = 8.5, 1.06
_SLOT, _FLOAT = 9, 31


def _entry_bytes(v, same: bool = False) -> float:
    """RSS one per-iteration statistic adds to the driver's history (`same`: the previous step's object)."""
    if isinstance(v, list):
        return sum(_entry_bytes(x) for x in v)
    if type(v) is float:
        return _ARRAY_FLOAT
    if type(v) is bool:
        return _ARRAY_BOOL
    if same or v is None or (isinstance(v, int) and -5 <= v <= 256):
        return _SLOT
    return _SLOT + (_FLOAT if isinstance(v, float) else sys.getsizeof(v))


class Census:
    """A driver callback (and run observer) that takes a census every `every` iterations.

    Args:
        every: iterations between census points.
        warm: iterations before the first point (the caches' and allocator's warm-up).
        per_step: iterations per driver step (SMC: particles per time step; compiled MH: K).
    """

    def __init__(self, every: int, warm: int, per_step: int = 1):
        self.every, self.warm, self.per_step = max(1, every), warm, per_step
        self.points: list = []
        self.proc = psutil.Process()
        self.keep = None  # the driver's store of kept samples: the caller's, not growth
        self.history_bytes = 0  # what the driver's per-iteration statistics have added so far, by design
        self._last: dict = {}  # the previous step's statistics (a value that is the same object costs a slot)
        self._next = warm

    def on_run_start(self, e):
        self.keep = e.store

    def __call__(self, i, state, stats):
        last = self._last
        self.history_bytes += sum(_entry_bytes(v, v is last.get(k)) for k, v in stats.items())
        self._last = stats
        self.take((i + 1) * self.per_step, state)

    def take(self, it: int, state=None) -> None:
        """A census point at iteration `it` if one is due."""
        if it < self._next:
            return
        self._next = it + self.every
        gc.collect()
        live = memory.live_arrays(exclude=(self.keep, state))
        self.points.append((it, self.proc.memory_info().rss, live, memory.pending_nodes(), self.history_bytes))


def slope(x, y) -> dict:
    """Least-squares slope of y on x per 1,000 x, its standard error, and y's range."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    A = np.vstack([x, np.ones_like(x)]).T
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    n = len(x)
    resid = y - A @ coef
    se = float(np.sqrt(resid @ resid / max(n - 2, 1) / np.sum((x - x.mean()) ** 2))) if n > 2 else float("nan")
    return {"per_1000": 1000 * float(coef[0]), "se_per_1000": 1000 * se, "min": float(y.min()), "max": float(y.max())}


# A quantity is flat when its slope is within 3 standard errors of 0 or below these limits per 1,000
# iterations: 16 KiB of RSS net of the statistics history (16 bytes an iteration: one leaked Python float
# or MLX array per iteration would exceed it; 1M iterations: 16 MiB, the allocator's and MLX's caches
# settling), 1 live array, 1 pending node (1M iterations: 1,000).
LIMITS = {"rss_bytes": 16384.0, "live_arrays": 1.0, "pending_nodes": 1.0}


def verdict(row: dict) -> dict:
    """flat / NOT flat per quantity; RSS judged net of the statistics history the driver keeps."""
    out = {}
    for q, limit in LIMITS.items():
        s = row[q]
        v = s["per_1000"] - (row["history_bytes_per_1000"] if q == "rss_bytes" else 0.0)
        out[q] = "flat" if abs(v) <= max(3 * s["se_per_1000"], limit) else "NOT flat"
    return out


def summarize(c: Census, alg: str, n: int, seconds: float, extra: dict | None = None) -> dict:
    pts = np.array(c.points, dtype=float)
    row = {"algorithm": alg, "iterations": n, "seconds": seconds, "ms_per_iteration": 1000 * seconds / max(n, 1),
           "points": len(pts), "history_bytes_per_1000": slope(pts[:, 0], pts[:, 4])["per_1000"] if len(pts) > 1 else 0.0,
           "history_model": f"array float {_ARRAY_FLOAT} / bool {_ARRAY_BOOL}, else slot {_SLOT} + object",
           "rss_bytes": slope(pts[:, 0], pts[:, 1]), "live_arrays": slope(pts[:, 0], pts[:, 2]),
           "pending_nodes": slope(pts[:, 0], pts[:, 3]),
           "census": [[int(x) for x in p] for p in c.points], **(extra or {})}
    row["verdict"] = verdict(row)
    return row
