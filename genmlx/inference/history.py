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

On a GPU a statistic given as an MLX array (evaluated, on the device) is not
read at once: reading it back is a device-to-host copy per step, which costs
more than a fused block of iterations (83-281 us a block of 50 on an H100,
against the whole block's 430-620 us). The arrays of a series wait, `DEFER`
steps at most, and are read back as one array; any read of the history reads
them first. On the CPU reading an evaluated array costs a fraction of a
microsecond (and one batched read an evaluation, ~140 us here), so there they
are read at once.
"""

from __future__ import annotations

from array import array
from typing import Any

import mlx.core as mx
import numpy as np

from ..evaluation import evaluate

__all__ = ["History", "to_python"]

DEFER = 32  # steps whose array statistics wait before one read back (live arrays: at most 32 a series)

_CODES = {float: "d", bool: "b"}  # exact types: an int is not a float here, nor a bool an int
# dtypes whose arrays wait (NumPy reads them as they are); others (bfloat16, complex) are read at once
_DEFERRABLE = {mx.bool_, mx.float32, mx.float64, mx.float16, mx.int8, mx.int16, mx.int32, mx.int64,
                mx.uint8, mx.uint16, mx.uint32, mx.uint64}


def to_python(v):
    """A statistic as plain Python: an array's `.item()` or `.tolist()`, anything else as it is."""
    if isinstance(v, mx.array):
        return v.item() if v.ndim == 0 else v.tolist()
    return v


def defers_by_default() -> bool:
    """Array statistics wait when MLX's default device is a GPU."""
    return mx.default_device().type == mx.DeviceType.gpu


class History:
    """Per-iteration statistics by name: `add(stats, per_step)` after each step, `lists()` at the end."""

    __slots__ = ("_series", "_waiting", "_defer")

    def __init__(self, lists: dict[str, list] | None = None, defer: bool | None = None):
        """`defer`: let array statistics wait (default: when MLX's default device is a GPU)."""
        self._series: dict[str, Any] = {}
        self._waiting: dict[str, tuple[list, bool]] = {}  # a series' arrays not yet read, per-iteration rows?
        self._defer = defers_by_default() if defer is None else defer
        for k, v in (lists or {}).items():
            self.extend(k, v)

    def add(self, stats: dict, per_step: int) -> None:
        """One step's statistics: a list value (or an array with a leading axis) of a multi-iteration
        step adds one entry per iteration; an array waits to be read back with later steps' (`DEFER`)."""
        for k, v in stats.items():
            if type(v) is mx.array:
                if self._defer and v.dtype in _DEFERRABLE:
                    self._wait(k, v, per_step > 1 and v.ndim > 0)
                    continue
                v = to_python(v)
            if isinstance(v, list) and per_step > 1:
                self.extend(k, v)
            else:
                self.append(k, v)

    def _wait(self, key: str, v: mx.array, rows: bool) -> None:
        w = self._waiting.get(key)
        if w is not None and (w[1] != rows or w[0][0].shape != v.shape or w[0][0].dtype != v.dtype):
            self._read(key)
            w = None
        if w is None:
            w = self._waiting[key] = ([], rows)
            self._series.setdefault(key, None)  # (the series keeps its place among the others)
        w[0].append(v)
        if len(w[0]) >= DEFER:
            self._read(key)

    def _read(self, key: str) -> None:
        """The series' waiting arrays, read back as one array and added as its entries."""
        arrays, rows = self._waiting.pop(key)
        both = mx.stack(arrays)
        evaluate(both)
        values = np.asarray(both)
        del both, arrays
        if rows:  # a multi-iteration step's rows: one entry per iteration
            values = values.reshape(-1, *values.shape[2:])
        code = "b" if values.dtype == np.bool_ else "d" if values.dtype.kind == "f" else None
        s = self._series.get(key)
        if values.ndim == 1 and code is not None and (s is None or (type(s) is array and s.typecode == code)):
            if s is None:
                s = self._series[key] = array(code)
            s.frombytes(values.astype(np.int8 if code == "b" else np.float64).tobytes())  # no object per value
            return
        for v in values.tolist():  # (NumPy's tolist gives the types MLX's does)
            self.append(key, v)

    def _read_all(self) -> None:
        for key in list(self._waiting):
            self._read(key)

    def _genmlx_arrays(self):  # the waiting statistics
        for arrays, _ in self._waiting.values():
            yield from arrays

    def append(self, key: str, v: Any) -> None:
        if key in self._waiting:
            self._read(key)
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
        if key in self._waiting:
            self._read(key)
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
        if key in self._waiting:
            self._read(key)
        s = self._series[key]
        if type(s) is array:
            return _as_list(s[start:])
        return [] if s is None else s[start:]

    def lengths(self) -> dict[str, int]:
        self._read_all()
        return {k: 0 if s is None else len(s) for k, s in self._series.items()}

    def since(self, lengths: dict[str, int]) -> dict[str, list]:
        """Every series' entries after `lengths` (a checkpoint's increment)."""
        self._read_all()
        return {k: self.values(k, lengths.get(k, 0)) for k in self._series}

    def lists(self) -> dict[str, list]:
        self._read_all()
        return {k: self.values(k) for k in self._series}


def _as_list(s: array) -> list:
    if s.typecode == "b":
        return np.frombuffer(s, dtype=np.int8).astype(bool).tolist() if len(s) else []
    return s.tolist()
