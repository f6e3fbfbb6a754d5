"""Naming the program's objects a checkpoint refers to: generative functions and closures.

A trace's generative function (a `@gen` model, a combinator) is code, not
data: a checkpoint stores a name for it and the resumed program supplies the
object. The name is its import path when it has one (a module-level
`@gm.gen` function), else its place among the objects reachable from the
algorithm's step function and initial state, walked in a fixed order
(closure cells, defaults, the globals its code names, object attributes):
`DynamicGenFn:model#0`. Re-running the same call builds the same closures,
so the same walk finds the same objects under the same names.
"""

from __future__ import annotations

import types
from typing import Any

from .schema import SchemaError, import_path, importable

__all__ = ["Program"]

_LIMIT = 100_000  # objects walked at most (a program, not its data)


class Program:
    """The generative functions and closures reachable from `roots`, by stable name."""

    def __init__(self, *roots: Any):
        self._by_key: dict | None = None
        self._by_id: dict = {}
        self._build(roots)  # now: the roots (an initial state) are not kept alive

    def key(self, obj) -> str | None:
        """A name for `obj` that `get` resolves in a re-run program (None: none exists).

        The place in the program comes first (it survives a model defined in a
        script and resumed from another one); the import path is the fallback.
        """
        names = [self._by_id.get(id(obj))]
        p = importable(obj)
        names.append(None if p is None else "import:" + p)
        names = [n for n in names if n is not None]
        return "|".join(names) if names else None

    def get(self, key: str):
        errors = []
        for k in key.split("|"):
            if k.startswith("import:"):
                try:
                    return import_path(k[7:])
                except Exception as e:
                    errors.append(f"cannot import {k[7:]!r} ({type(e).__name__}: {e})")
            else:
                obj = self._by_key.get(k)
                if obj is not None:
                    return obj
                errors.append(f"the resumed program has no {k!r}")
        raise SchemaError(f"checkpoint: {'; '.join(errors)}, which the checkpoint refers to "
                          "(was the call or its model changed?)")

    def _build(self, roots) -> None:
        from ..gfi import GenerativeFunction
        from ..trace import Trace

        by_key: dict = {}
        counts: dict = {}
        seen: set = set()
        stack = list(reversed(roots))
        while stack and len(seen) < _LIMIT:
            o = stack.pop()
            if o is None or isinstance(o, (int, float, str, bytes, type, types.ModuleType)):
                continue
            if id(o) in seen:
                continue
            seen.add(id(o))
            kids: list = []
            if isinstance(o, GenerativeFunction):
                if getattr(o, "_is_distribution", False):
                    continue
                self._name(o, f"{type(o).__qualname__}:{getattr(o, 'name', '')}", by_key, counts)
                kids = list(vars(o).values()) if hasattr(o, "__dict__") else []
            elif isinstance(o, types.FunctionType):
                self._name(o, f"function:{o.__qualname__}", by_key, counts)
                kids = [c.cell_contents for c in (o.__closure__ or ()) if _filled(c)]
                kids += list(o.__defaults__ or ()) + list((o.__kwdefaults__ or {}).values())
                g = o.__globals__
                kids += [g[n] for n in _names(o.__code__) if n in g]
            elif isinstance(o, types.MethodType):
                kids = [o.__func__, o.__self__]
            elif isinstance(o, Trace):
                kids = [o.gen_fn] + (list(o.sites.values()) if o.sites is not None else [])
            elif isinstance(o, (list, tuple, set, frozenset)):
                kids = list(o) if len(o) < 10_000 else []
            elif isinstance(o, dict):
                kids = list(o.values()) if len(o) < 10_000 else []
            elif type(o).__module__.split(".")[0] in ("genmlx", "functools") and hasattr(o, "__dict__"):
                kids = list(vars(o).values())
            stack.extend(reversed(kids))
        self._by_key = by_key

    def _name(self, o, base: str, by_key: dict, counts: dict) -> None:
        n = counts.get(base, 0)
        counts[base] = n + 1
        k = f"{base}#{n}"
        by_key[k] = o
        self._by_id[id(o)] = k


def _filled(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _names(code) -> list:
    out = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out.extend(_names(c))
    return out
