"""Where the arrays of one watched driver step come from: source line and trace site.

Armed for one driver step of a loop that already looks leaky (never on a
loop that measures flat), `Origins` records for every `mx.array` created
during that step:

* **the source line of the user's code** that was executing when the array
  came into existence (the innermost frame of code outside the standard
  library, site-packages, genmlx and mlx; an array made inside genmlx on the
  user's behalf is attributed to the user's line that called it). A
  `sys.settrace` function scans, at every line, call and return event of the
  user's code, the objects allocated since the previous event (automatic
  collection is off during the step, so the youngest generation holds them
  in allocation order, after a marker object of ours). Each array found is
  remembered by a weak reference, so a wrapper that is freed and whose memory
  is reused by a later array can never inherit the earlier one's line
  (`tracemalloc.get_object_traceback` misattributes exactly there);
* **the trace site** whose value or score it is: while armed, `on_site` (a
  `genmlx.events` site observer) reads the site trace that the handler has
  just recorded, with its address and the generative function.

Nothing here runs unless a loop is watched; a step watched costs a few
milliseconds for a small model (about 2 us per traced event plus the scan).
"""

from __future__ import annotations

import gc
import linecache
import os
import sys
import time
import weakref
from typing import Any

from .holders import user_file

__all__ = ["Origins"]

try:
    from mlx.core import array as _ARRAY
except ImportError:  # pragma: no cover - mlx is a dependency
    _ARRAY = None

BUDGET_S = 2.0  # tracing stops (and says so) when scanning exceeds this


class _Marker:
    """A tracked object of ours: everything after it in generation 0 is newer."""

    __slots__ = ("__weakref__", "x")

    def __init__(self):
        self.x = None


class Origins:
    """Source lines and trace sites of the arrays created during one watched step."""

    def __init__(self, events: Any = None):
        self._events = events
        self.lines: dict[int, tuple] = {}  # id -> (weakref, file, line, function)
        self.sites: dict[int, tuple] = {}  # id -> (weakref, address, gen_fn, model, part)
        self.armed = False
        self.truncated = False
        self.iteration: int | None = None
        self.traced_events = 0
        self._stack: list = []
        self._cur: tuple | None = None
        self._marker: Any = None
        self._gc_was = False
        self._spent = 0.0
        self._saved_trace = None

    # -- arming --------------------------------------------------------------
    def arm(self, iteration: int) -> bool:
        """Watch from now until `disarm` (the next driver step). False if another tracer is set."""
        if self.armed or sys.gettrace() is not None or self.truncated:
            return False
        self.armed = True
        if self.iteration is None:
            self.iteration = iteration
        f = sys._getframe(1)
        outer = []
        while f is not None:
            if user_file(f.f_code.co_filename):
                outer.append(f)
            f = f.f_back
        self._stack = outer[::-1]  # enclosing user frames: after a return, the line that called in
        self._cur = self._context()
        self._gc_was = gc.isenabled()
        gc.disable()
        self._marker = _Marker()
        if self._events is not None:
            self._events.subscribe(self)
        sys.settrace(self._global)
        return True

    def disarm(self) -> None:
        if not self.armed:
            return
        sys.settrace(None)
        self._scan()
        self.armed = False
        if self._events is not None:
            self._events.unsubscribe(self)
        if self._gc_was:
            gc.enable()
        self._stack, self._cur, self._marker = [], None, None

    # -- the tracer ----------------------------------------------------------
    def _context(self) -> tuple | None:
        if not self._stack:
            return None
        f = self._stack[-1]
        return (f.f_code.co_filename, f.f_lineno, f.f_code.co_qualname)

    def _scan(self) -> None:
        t0 = time.perf_counter()
        objs = gc.get_objects(0)
        marker = self._marker
        start = 0
        for j in range(len(objs) - 1, -1, -1):
            if objs[j] is marker:
                start = j + 1
                break
        cur, lines, array = self._cur, self.lines, _ARRAY
        for o in objs[start:]:
            if type(o) is array:
                e = lines.get(id(o))
                if e is None or e[0]() is not o:
                    lines[id(o)] = (weakref.ref(o), *cur) if cur is not None else (weakref.ref(o), None, None, None)
        del objs
        self._marker = _Marker()
        self._spent += time.perf_counter() - t0
        if self._spent > BUDGET_S and self.armed:
            self.truncated = True
            sys.settrace(None)

    def _global(self, frame, event, arg):
        if event != "call" or not user_file(frame.f_code.co_filename):
            return None
        self.traced_events += 1
        self._scan()
        self._stack.append(frame)
        self._cur = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_qualname)
        return self._local

    def _local(self, frame, event, arg):
        if event == "line":
            self.traced_events += 1
            self._scan()
            self._cur = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_qualname)
        elif event == "return":
            self.traced_events += 1
            self._scan()
            if self._stack and self._stack[-1] is frame:
                self._stack.pop()
            self._cur = self._context()
        return self._local

    # -- trace sites ---------------------------------------------------------
    def on_site(self, ev) -> None:
        from genmlx.handler import current_handler

        h = current_handler()
        sites = getattr(h, "sites", None)
        if not sites:
            return
        addr = tuple(ev.address)
        for path in reversed(sites):  # the site just handled is the last one recorded
            if addr[len(addr) - len(path):] == tuple(path):
                st = sites[path]
                model = getattr(h.gen_fn, "name", None) or type(h.gen_fn).__name__
                for part, a in (("value", st.retval), ("score", st.score)):
                    if type(a) is _ARRAY:
                        self.sites[id(a)] = (weakref.ref(a), list(addr), ev.gen_fn, model, part)
                return

    # -- lookups ---------------------------------------------------------------
    def line_of(self, a: Any) -> dict | None:
        """`{"file", "line", "function", "code"}` for an array created in the watched step, else None."""
        e = self.lines.get(id(a))
        if e is None or e[0]() is not a or e[1] is None:
            return None
        code = linecache.getline(e[1], e[2]).strip()
        return {"file": e[1], "short": f"{os.path.basename(e[1])}:{e[2]}", "line": e[2], "function": e[3],
                "code": code}

    def created(self) -> list:
        """The arrays created during the watched step that are still alive."""
        return [a for e in self.lines.values() if (a := e[0]()) is not None]

    def site_of(self, a: Any) -> dict | None:
        """`{"address", "gen_fn", "model", "part"}` if `a` is a trace site's value or score."""
        e = self.sites.get(id(a))
        if e is None or e[0]() is not a:
            return None
        return {"address": e[1], "gen_fn": e[2], "model": e[3], "part": e[4]}
