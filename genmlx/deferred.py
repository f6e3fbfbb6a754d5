"""`Deferred`: a value made on first use.

Vectorized importance sampling makes the batched trace of its particles only
when someone asks for it (`.state`, `.traces`): for a model of 100 sites that
Python work costs as much as the particles' pass itself.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["Deferred", "resolve"]


class Deferred:
    """`make()` called once, on the first `get()`."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Any]):
        self._make, self._value = make, None

    def get(self) -> Any:
        if self._make is not None:
            self._value, self._make = self._make(), None
        return self._value


def resolve(x: Any) -> Any:
    """`x`, or the value of a `Deferred`."""
    return x.get() if type(x) is Deferred else x
