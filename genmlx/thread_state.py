"""Per-thread state of the tracing machinery: two threads running inference never see each other's.

The handler stack, the address prefix of the call being handled, the site
accounting's sinks and chain, the ids of given and optional constraint
values, the shared-key lane layout and the vmap depth are each a thread's
own. `PerThread(factory)` is a container that behaves like the object
`factory()` returns (a list or a set), one instance per thread.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

__all__ = ["PerThread", "Value", "handler_stack"]


class PerThread(threading.local):
    """A list or set, one per thread (made by `factory` on a thread's first use)."""

    def __init__(self, factory: Callable[[], Any]):
        self.v = factory()

    def __getattr__(self, name):  # append, pop, extend, add, update, difference_update, ...
        return getattr(self.v, name)

    def __getitem__(self, i):
        return self.v[i]

    def __setitem__(self, i, x):
        self.v[i] = x

    def __len__(self) -> int:
        return len(self.v)

    def __bool__(self) -> bool:
        return bool(self.v)

    def __iter__(self):
        return iter(self.v)

    def __contains__(self, x) -> bool:
        return x in self.v

    def __rsub__(self, other):  # `ids - _given`
        return other - self.v

    def __sub__(self, other):
        return self.v - other


class Value(threading.local):
    """One value per thread (`.v`), `initial` until the thread sets it."""

    def __init__(self, initial: Any = None):
        self.v = initial


# The handlers of the models executing in this thread, innermost last (`genmlx.handler._stack`; here so
# that `genmlx.boundary` can tell a model body from user code without importing the handler).
handler_stack = PerThread(list)
