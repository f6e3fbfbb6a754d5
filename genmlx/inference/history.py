"""A run's per-iteration statistics, kept compactly while the run lasts.

The driver keeps every iteration's statistics (accept flags and
probabilities, step sizes, tree depths, objective values) and returns them
as Python lists in `RunResult.stats`. Kept as lists during a long run they
are most of its memory growth: a float in a list costs 8 bytes of slot plus
a 24-byte float object, 40 bytes with the list's over-allocation (a million
NUTS iterations: about 100 MB). Here a series of floats is an
`array.array("d")` (8 bytes each) and a series of bools an
`array.array("b")` (1 byte each) until the run ends; any other value (an int,
None, a per-chain list) turns its series into a plain list from then on, so
nothing is ever converted lossily. `lists()` gives the lists back, with the
values' own types, when the run returns.
"""

from __future__ import annotations

from array import array
from typing import Any

__all__ = ["History"]

_CODES = {float: "d", bool: "b"}  # exact types: an int is not a float here, nor a bool an int


class History:
    """Per-iteration statistics by name: `add(stats, per_step)` after each step, `lists()` at the end."""

    __slots__ = ("_series",)

    def __init__(self, lists: dict[str, list] | None = None):
        self._series: dict[str, Any] = {}
        for k, v in (lists or {}).items():
            self.extend(k, v)

    def add(self, stats: dict, per_step: int) -> None:
        """One step's statistics: a list value of a multi-iteration step adds one entry per iteration."""
        for k, v in stats.items():
            if isinstance(v, list) and per_step > 1:
                self.extend(k, v)
            else:
                self.append(k, v)

    def append(self, key: str, v: Any) -> None:
        s = self._series.get(key)
        if s is None:
            code = _CODES.get(type(v))
            s = self._series[key] = array(code) if code is not None else []
        if type(s) is array and _CODES.get(type(v)) != s.typecode:
            s = self._series[key] = _as_list(s)
        s.append(v)

    def extend(self, key: str, values) -> None:
        """Append each of `values` (a multi-iteration step's list): one C call when they are all
        floats or all bools and the series holds that type."""
        values = values if type(values) is list else list(values)
        if not values:
            return
        t = type(values[0])
        code = _CODES.get(t)
        s = self._series.get(key)
        if code is not None and (s is None or (type(s) is array and s.typecode == code)) \
                and len(set(map(type, values))) == 1:
            if s is None:
                s = self._series[key] = array(code)
            s.extend(values)
            return
        for v in values:
            self.append(key, v)

    def values(self, key: str, start: int = 0) -> list:
        """The series `key` from entry `start` on, as a list of the values' own types."""
        s = self._series[key]
        if type(s) is array:
            return _as_list(s[start:])
        return s[start:]

    def lengths(self) -> dict[str, int]:
        return {k: len(s) for k, s in self._series.items()}

    def since(self, lengths: dict[str, int]) -> dict[str, list]:
        """Every series' entries after `lengths` (a checkpoint's increment)."""
        return {k: self.values(k, lengths.get(k, 0)) for k in self._series}

    def lists(self) -> dict[str, list]:
        return {k: self.values(k) for k in self._series}


def _as_list(s: array) -> list:
    out = s.tolist()
    return [bool(x) for x in out] if s.typecode == "b" else out
