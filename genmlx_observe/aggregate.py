"""Small exact aggregates the observers keep between collections.

Both are O(1) per observation, hold plain Python numbers only (never arrays),
and are read at collection time by both dialects.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import NamedTuple, Sequence

__all__ = ["Hist", "HistogramPoint", "Slope"]


class HistogramPoint(NamedTuple):
    """A histogram snapshot: per-bucket counts (not cumulative; last is +Inf), sum, count."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int


class Hist:
    """Explicit-bucket histogram; bucket i holds values v with bounds[i-1] < v <= bounds[i]."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        """Add `n` observations of `value`."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def merge(self, other: "Hist") -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.sum += other.sum
        self.count += other.count

    def point(self) -> HistogramPoint:
        return HistogramPoint(self.bounds, tuple(self.counts), self.sum, self.count)


class Slope:
    """Least-squares slope of y against x, from running integer sums.

    Census points are integers (iteration index, live arrays, pending nodes),
    so Python's exact integer sums give an exact slope with one final
    division: a count growing by exactly 1 per iteration gives exactly 1.0.
    """

    __slots__ = ("n", "sx", "sy", "sxx", "sxy")

    def __init__(self):
        self.n = self.sx = self.sy = self.sxx = self.sxy = 0

    def add(self, x: int, y: int) -> None:
        self.n += 1
        self.sx += x
        self.sy += y
        self.sxx += x * x
        self.sxy += x * y

    def value(self) -> float:
        """The slope; NaN with fewer than two distinct x values."""
        den = self.n * self.sxx - self.sx * self.sx
        if den == 0:
            return math.nan
        return (self.n * self.sxy - self.sx * self.sy) / den
