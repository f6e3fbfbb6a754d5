"""The result object every inference function returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..deferred import Deferred

__all__ = ["InferenceResult", "Floats", "Stats"]


class Floats(Sequence):
    """Read-only Python floats backed by one float64 array: a list's behaviour (indexing, slicing,
    iteration, `==` with a list, `np.asarray`) without making N float objects up front
    (vectorized importance sampling has 100,000 weights). Given an `mx.array`, the values are
    copied to the host on first use (on a GPU the weights stay there until read)."""

    __slots__ = ("_src", "_host")

    def __init__(self, values):
        self._src = values
        self._host = None

    @property
    def _a(self) -> np.ndarray:
        if self._host is None:
            a = np.array(self._src, dtype=np.float64).ravel()
            a.flags.writeable = False
            self._host, self._src = a, None
        return self._host

    def __len__(self) -> int:
        if self._host is None and hasattr(self._src, "size"):  # an array: its length without a copy
            return int(self._src.size)
        return self._a.size

    def __getitem__(self, i):
        return self._a[i].tolist()  # a float, or a list of floats for a slice

    def __iter__(self):
        return iter(self._a.tolist())

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)

    def tolist(self) -> list:
        return self._a.tolist()

    def __eq__(self, other):
        if isinstance(other, Floats):
            return np.array_equal(self._a, other._a)
        if isinstance(other, (list, tuple)):
            return self.tolist() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        if self._a.size <= 8:
            return repr(self.tolist())
        head = ", ".join(repr(x) for x in self._a[:3].tolist())
        return f"Floats([{head}, ...], n={self._a.size})"


class Stats(dict):
    """A result's stats: a plain dict whose chain summaries are made on first read.

    The summaries (`ess_bulk`, `ess_tail`, `r_hat`: rank normalization and an FFT per site) cost
    milliseconds at the end of a run, as much as a GPU takes for hundreds of fused MH
    iterations, and many runs never read them. `Stats(entries, summaries)` holds
    `summaries() -> dict` and calls it once, on the first read that can see them: a summary
    key (`[]`, `get`, `in`, `pop`, `del`, `setdefault`) or the whole mapping (iteration, `len`,
    `items`, `==`, `repr`, copies, pickling). Reading or writing another key makes nothing; an
    entry written before the summaries are made wins over theirs. After that it is a dict.
    """

    __slots__ = ("_pending",)
    SUMMARY_KEYS = frozenset({"ess_bulk", "ess_tail", "r_hat"})

    def __init__(self, entries=(), summaries: Callable[[], dict] | None = None):
        super().__init__(entries)
        self._pending = summaries

    def _fill(self) -> None:
        make = self._pending
        if make is not None:
            self._pending = None
            for k, v in make().items():
                dict.setdefault(self, k, v)

    def _fill_for(self, key) -> None:
        if self._pending is not None and key in self.SUMMARY_KEYS:
            self._fill()

    def __getitem__(self, key):
        self._fill_for(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._fill_for(key)
        return dict.get(self, key, default)

    def __contains__(self, key):
        self._fill_for(key)
        return dict.__contains__(self, key)

    def pop(self, key, *default):
        self._fill_for(key)
        return dict.pop(self, key, *default)

    def __delitem__(self, key):
        self._fill_for(key)
        dict.__delitem__(self, key)

    def setdefault(self, key, default=None):
        self._fill_for(key)
        return dict.setdefault(self, key, default)

    def clear(self) -> None:
        self._pending = None
        dict.clear(self)

    def __eq__(self, other):
        self._fill()
        if isinstance(other, Stats):
            other._fill()
        return dict.__eq__(self, other)

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __reduce__(self):  # pickled and copied as a plain dict, summaries included
        self._fill()
        return (dict, (dict(self.items()),))

    def __reduce_ex__(self, protocol):
        return self.__reduce__()


def _whole(name: str):
    """A dict method that reads the whole mapping: it first makes the pending summaries."""
    base = getattr(dict, name)

    def method(self, *args, **kwargs):
        self._fill()
        return base(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in ("__iter__", "__len__", "__repr__", "__or__", "__ror__", "keys", "items", "values", "copy", "popitem",
              "__reversed__"):
    setattr(Stats, _name, _whole(_name))


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """What an inference run produced.

    Attributes:
        traces: the kept traces (posterior samples / final particles), a list of `Trace`.
        log_weights: per-trace log importance weights (plain floats, a `Floats` sequence), where they apply.
        log_ml: log marginal likelihood estimate (a float), where it applies.
        stats: plain Python numbers and lists, never arrays: `acceptance_rate`,
            per-iteration `accepted`, `accept_prob`, `step_size`, `num_steps`,
            `diverging`, per-step `ess`, `resampled`, summaries `ess_bulk`,
            `ess_tail`, `r_hat`, ... plus `iterations`, `steps`, `syncs`, `duration_s`.
        posterior: algorithm-specific fitted quantities (VI: addr -> (mean, std)).
        state: the final algorithm state (for resuming or inspection); given as a
            `Deferred`, it is made on first access.
    """

    traces: list
    stats: dict
    log_weights: Sequence | None = None
    log_ml: float | None = None
    posterior: dict = field(default_factory=dict)
    state: Any = None

    def __getattribute__(self, name):
        v = object.__getattribute__(self, name)
        if name == "state" and type(v) is Deferred:
            v = v.get()
            object.__setattr__(self, "state", v)
        return v

    def __len__(self) -> int:
        return len(self.traces)

    def values(self, addr) -> list:
        """The value at `addr` in every kept trace, as Python numbers (or nested lists)."""
        batched = getattr(self.traces, "values", None)  # views over batched or stacked storage
        if batched is not None:
            v = batched(addr)
            return v.tolist() if hasattr(v, "tolist") else list(v)
        out = []
        for t in self.traces:
            v = t[addr]
            out.append(v.item() if v.size == 1 else v.tolist())
        return out
