"""Which named root keeps an object alive: reference chains, shortest first.

A breadth-first search over Python's own references (`gc.get_referents`)
from named roots finds, for each target, one shortest chain of references
from a root to it. Roots, in the order that breaks ties between chains of
equal length:

* what the run keeps by design: its result store and its algorithm state;
* the local variables of live frames of the calling thread, innermost first
  (a running frame's locals are read through `f_locals`: the collector does
  not report them as referents);
* module globals (`sys.modules`), the user's modules before libraries';
* the live frames of other threads.

The search never descends into modules (each is a root of its own) or into
the leak gate's own objects. `describe` turns a chain of objects into steps a
user recognises: a module global, a local of a frame, a closure cell, an
attribute, an item of a list or dict, an `lru_cache` entry, a traceback's
frame, a trace's site.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
import types
from typing import Any, NamedTuple

__all__ = ["Root", "Step", "roots", "find_chains", "describe", "release", "user_file"]

_ATOMS = frozenset((int, float, bool, str, bytes, complex, type(None)))
_HERE = os.path.dirname(os.path.abspath(__file__))
_LRU = type(functools.lru_cache(maxsize=None)(lambda: None))
_LIB: tuple[str, ...] | None = None
_TOUCHED: list = []  # frames whose `f_locals` snapshot this module made (see `release`)


class Root(NamedTuple):
    """A named starting point of the search."""

    obj: Any  # a module's __dict__, a frame, the store, the state
    kind: str  # "store", "state", "frame", "module", "thread"
    name: str  # how the report names it
    by_design: bool = False  # the run keeps it on purpose: what it holds is not a leak


class Step(NamedTuple):
    """One readable step of a chain."""

    kind: str  # "root", "global", "local", "closure", "attr", "item", "lru", "cell", "traceback", "site", "ref"
    text: str
    item: Any = None  # for "item" and "lru" steps: the index or key (varies across the items of a container)
    frm: int = 0  # index in the chain of the object this step leaves (for an item: its container)


def _library_dirs() -> tuple[str, ...]:
    global _LIB
    if _LIB is None:
        import sysconfig

        import genmlx
        import mlx.core

        paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        paths |= {os.path.dirname(os.path.abspath(m.__file__)) for m in (genmlx, mlx.core)}
        paths.add(os.path.dirname(_HERE))  # genmlx_observe
        _LIB = tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)
    return _LIB


@functools.lru_cache(maxsize=4096)
def user_file(filename: str) -> bool:
    """True for code the user wrote: not the standard library, site-packages, genmlx or mlx."""
    if not isinstance(filename, str) or not filename or filename.startswith("<"):
        return False
    path = os.path.join(os.path.realpath(filename), "")
    return not any(path.startswith(d) for d in _library_dirs())


def _ours(filename: str) -> bool:
    return filename.startswith(_HERE) or filename.endswith(os.path.join("genmlx", "events.py"))


def _where(code: types.CodeType, line: int | None) -> str:
    return f"{code.co_qualname} ({os.path.basename(code.co_filename)}:{line if line is not None else code.co_firstlineno})"


def roots(store: Any = None, state: Any = None, frame: types.FrameType | None = None) -> list[Root]:
    """The named roots, in tie-breaking order (see the module docstring)."""
    out: list[Root] = []
    if store is not None:
        out.append(Root(store, "store", "the run's result store", True))
    if state is not None:
        out.append(Root(state, "state", "the algorithm's state", True))
    f = frame if frame is not None else sys._getframe(1)
    while f is not None:
        if not _ours(f.f_code.co_filename):
            out.append(Root(f, "frame", _where(f.f_code, f.f_lineno)))
        f = f.f_back
    mods = [(n, m) for n, m in list(sys.modules.items()) if isinstance(m, types.ModuleType)]
    mods.sort(key=lambda nm: not user_file(getattr(nm[1], "__file__", None)))
    for name, m in mods:
        d = getattr(m, "__dict__", None)
        if isinstance(d, dict) and not name.startswith("genmlx_observe.pytest_plugin"):
            out.append(Root(d, "module", name))
    here = threading.get_ident()
    for tid, f in sys._current_frames().items():
        while f is not None and tid != here:
            if not _ours(f.f_code.co_filename):
                out.append(Root(f, "thread", f"thread {tid}: {_where(f.f_code, f.f_lineno)}"))
            f = f.f_back
    return out


def _children(o: Any) -> list:
    if type(o) is types.FrameType:
        return list(_locals(o).values())
    return gc.get_referents(o)


def _locals(f: types.FrameType) -> dict:
    if f.f_code.co_flags & 1:  # CO_OPTIMIZED: a function's frame, whose f_locals is a snapshot
        _TOUCHED.append(f)
    return f.f_locals


def release() -> None:
    """Empty the `f_locals` snapshots the search made.

    Reading `f_locals` of a function's frame stores a dict of its locals in
    the frame; a frame that runs on (pytest's own, the test's) would keep the
    values it later rebinds alive through that stale dict. Emptying it is
    safe: the next reader rebuilds it from the frame.
    """
    while _TOUCHED:
        f = _TOUCHED.pop()
        try:
            f.f_locals.clear()
        except Exception:  # a frame that went away meanwhile
            pass


def _skip(o: Any) -> bool:
    t = type(o)
    if t is types.ModuleType or t is types.CodeType:
        return True
    m = getattr(t, "__module__", "")
    return isinstance(m, str) and m.startswith("genmlx_observe.pytest_plugin")  # (some types' is a descriptor)


def find_chains(targets: list, root_list: list[Root], limit_objects: int = 5_000_000) -> dict[int, tuple[int, list]]:
    """For each target reachable from a root: `id(target) -> (root index, [root obj, ..., target])`.

    Breadth-first, so each chain is a shortest one; ties go to the earlier root.
    Targets are compared by identity.
    """
    want = {id(t) for t in targets}
    parent: dict[int, int] = {}
    objs: dict[int, Any] = {}
    origin: dict[int, int] = {}
    frontier: list = []
    for ri, r in enumerate(root_list):
        i = id(r.obj)
        if i not in parent:
            parent[i], objs[i], origin[i] = -1, r.obj, ri
            frontier.append(r.obj)
    found: dict[int, tuple[int, list]] = {}
    atoms = _ATOMS
    while frontier and len(found) < len(want) and len(objs) < limit_objects:
        nxt = []
        for o in frontier:
            oi = id(o)
            for c in _children(o):
                t = type(c)
                if t in atoms:
                    continue
                ci = id(c)
                if ci in parent:
                    continue
                parent[ci], objs[ci], origin[ci] = oi, c, origin[oi]
                if ci in want:
                    found[ci] = (origin[ci], _chain(ci, parent, objs))
                if not _skip(c):
                    nxt.append(c)
        frontier = nxt
    return found


def _chain(i: int, parent: dict, objs: dict) -> list:
    out = []
    while i != -1:
        out.append(objs[i])
        i = parent[i]
    return out[::-1]


def _short(x: Any, n: int = 40) -> str:
    r = repr(x)
    return r if len(r) <= n else r[: n - 3] + "..."


def _key_of(d: dict, c: Any) -> Any:
    for k, v in d.items():
        if v is c:
            return k
    for k in d:
        if k is c:
            return k
    return None


def _attr_of(p: Any, c: Any) -> str | None:
    d = getattr(p, "__dict__", None)
    if isinstance(d, dict):
        k = _key_of(d, c)
        if k is not None:
            return str(k)
    for cls in type(p).__mro__:
        for name in getattr(cls, "__slots__", ()):
            try:
                if getattr(p, name) is c:
                    return name
            except AttributeError:
                pass
    return None


def describe(root: Root, chain: list) -> list[Step]:
    """Readable steps for `chain` (`[root.obj, ..., target]`), collapsing internal links."""
    steps: list[Step] = []
    if root.kind in ("store", "state"):
        steps.append(Step("root", root.name))
    i, n = 0, len(chain)
    while i < n - 1:
        p, c = chain[i], chain[i + 1]
        skip, first = 1, len(steps)
        if i == 0 and root.kind == "module":
            steps.append(Step("global", f"`{root.name}.{_key_of(p, c)}`"))
        elif type(p) is types.FrameType:
            name = _key_of(_locals(p), c)
            if p.f_code.co_name == "<module>":  # a script's (or an import's) top level: its globals
                steps.append(Step("global", f"`{p.f_globals.get('__name__', '?')}.{name}`"))
            elif i == 0:
                steps.append(Step("local", f"local `{name}` of {root.name.split(': ', 1)[-1]}"))
            else:
                steps.append(Step("local", f"local `{name}`"))
        elif isinstance(p, types.FunctionType) and c is p.__closure__ and i + 2 < n:
            idx = next(j for j, cell in enumerate(c) if cell is chain[i + 2])
            steps.append(Step("closure", f"closure cell `{p.__code__.co_freevars[idx]}` of {_where(p.__code__, None)}"))
            skip = 3
        elif isinstance(p, _LRU):
            qual = getattr(p, "__qualname__", repr(p))
            steps.append(Step("lru", f"functools.lru_cache of `{p.__module__}.{qual}`"))
            if type(c) is dict and i + 2 < n:
                k = _key_of(c, chain[i + 2])
                steps.append(Step("item", f"[{_short(k)}]", k, i + 1))
                skip = 2
            else:
                steps.append(Step("item", "[entry]", id(c)))
        elif isinstance(p, types.GeneratorType):
            fr = p.gi_frame
            name = _key_of(_locals(fr), c) if fr is not None else None
            where = _where(p.gi_code, fr.f_lineno if fr is not None else None)
            steps.append(Step("local", f"local `{name}` of suspended generator {where}"))
        elif isinstance(p, BaseException):
            label = "__traceback__" if c is p.__traceback__ else _attr_of(p, c) or "args"
            steps.append(Step("traceback", f"{type(p).__name__}.{label}"))
        elif isinstance(p, types.TracebackType):
            if c is p.tb_frame:
                steps.append(Step("traceback", f"frame of {_where(c.f_code, p.tb_lineno)}"))
            else:
                steps.append(Step("traceback", "tb_next"))
        elif type(p) is types.CellType:
            steps.append(Step("cell", "cell contents"))
        elif _is_trace(p):
            skip = _trace_step(p, chain, i, steps)
        elif type(p) is dict:
            k = _key_of(p, c)
            steps.append(Step("item", f"[{_short(k)}]", k))
        elif isinstance(p, (list, tuple)):
            j = next((j for j, x in enumerate(p) if x is c), None)
            steps.append(Step("item", f"[{j}]", j))
        elif isinstance(p, (set, frozenset)):
            steps.append(Step("item", "{...}", id(c)))
        elif isinstance(p, type):
            k = _key_of(vars(p), c) if type(c) is not dict else None
            if k is None and i + 2 < n:  # class -> its __dict__ -> value
                k, skip = _key_of(c, chain[i + 2]), 2
            steps.append(Step("attr", f"class attribute `{p.__qualname__}.{k}`"))
        else:
            d = getattr(p, "__dict__", None)
            if c is d and i + 2 < n:
                name, skip = _key_of(d, chain[i + 2]), 2
            else:
                name = _attr_of(p, c)
            if name is not None:
                steps.append(Step("attr", f"attribute `{type(p).__qualname__}.{name}`"))
            else:
                steps.append(Step("ref", f"(held by a {type(p).__qualname__})"))
        i += skip
        for j in range(first, len(steps)):
            if steps[j].frm == 0:
                steps[j] = steps[j]._replace(frm=i - skip)
    return steps


def _is_trace(o: Any) -> bool:
    from genmlx.trace import Trace

    return isinstance(o, Trace)


def _trace_step(tr: Any, chain: list, i: int, steps: list[Step]) -> int:
    """A trace's links: site dict, site path, value / score. Returns the links consumed."""
    from genmlx.address import from_path

    c = chain[i + 1]
    gen = getattr(tr.gen_fn, "name", None) or type(tr.gen_fn).__name__
    if c is tr.sites and i + 2 < len(chain):
        st = chain[i + 2]
        path = _key_of(c, st)
        sub = getattr(st.gen_fn, "name", None) or type(st.gen_fn).__name__
        steps.append(Step("site", f"site {from_path(path)!r} ({sub}) of a trace of `{gen}`"))
        return 2
    part = "value" if c is tr.retval else "score" if c is tr.score else _attr_of(tr, c) or "part"
    steps.append(Step("site", f"trace {part}"))
    return 1
