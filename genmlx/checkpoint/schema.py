"""An explicit schema for algorithm state: JSON for structure, raw bytes for arrays.

`encode(obj, refs)` returns `(body, blob)`: `body` is a JSON document whose
nodes name what they hold, and `blob` concatenates every array's bytes
(`np.asarray(a).tobytes()`, with its dtype and shape in the body).
`decode(body, blob, refs)` rebuilds the object. Nothing is pickled: each
kind of value the inference algorithms carry has its own node.

=========================  ====================================================
node                       value
=========================  ====================================================
``null``/bool/int/str/num  the same Python value (floats round-trip exactly)
``{"A": i}``               an `mx.array`: entry i of the body's array table
``{"N": i}``               a NumPy array (same table)
``{"X": dtype, "v": x}``   a NumPy scalar
``{"L"|"T": [...]}``       a list / a tuple
``{"D": [[k, v], ...]}``   a dict (keys are nodes too)
``{"NT": cls, "f": [...]}`` a NamedTuple of an allowed class
``{"TR": [...]}``          a `Trace` (gen_fn, args, retval, score, sites, batch, aux)
``{"K": cls, "ok": n}``    a deferred parameter check that passed (the driver raised otherwise)
``{"G": state}``           a `numpy.random.Generator` with its bit generator's state
``{"O": cls, "d": {...}}`` an object of an allowed class, by its `__dict__` / `__slots__`
``{"R": key}``             a generative function of the program, by reference (`refs`)
``{"F": "mod:qual"}``      a module-level function or class, by import path
``{"M": k}``               the k-th shared object of this body again
=========================  ====================================================

Allowed classes are those of `genmlx` and any registered with
`register_type`. A generative function is never stored by value: `refs`
names it (its import path, or its place in the program that runs the
algorithm), and the resumed program supplies the object itself.
"""

from __future__ import annotations

import importlib
import json
import types
from typing import Any, Callable

import mlx.core as mx
import numpy as np

__all__ = ["encode", "decode", "register_type", "SchemaError"]


class SchemaError(TypeError):
    """A value the schema cannot store (named, with where it was found)."""


_registered: set = set()
_SHARED = frozenset(("L", "T", "D", "TR", "O", "NT"))


def register_type(cls: type) -> type:
    """Allow checkpoints to store instances of `cls` (a NamedTuple or a plain class) by value."""
    _registered.add(cls)
    return cls


def _path(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def import_path(path: str):
    mod, _, qual = path.partition(":")
    obj = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def importable(obj) -> str | None:
    """`module:qualname` of `obj` when importing that name gives `obj` itself, else None."""
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(mod, str) or not isinstance(qual, str) or "<" in qual:
        return None
    try:
        return f"{mod}:{qual}" if import_path(f"{mod}:{qual}") is obj else None
    except Exception:
        return None


def _allowed(cls: type) -> bool:
    return cls in _registered or cls.__module__.split(".")[0] == "genmlx"


def _dtype_name(dt) -> str:
    return str(dt).rsplit(".", 1)[-1]


class _Encoder:
    def __init__(self, refs):
        self.refs = refs
        self.table: list = []  # [kind, dtype, shape, offset, nbytes]
        self.parts: list = []
        self.offset = 0
        self.arrays: dict = {}
        self.shared: dict = {}
        self.alive: list = []  # keep encoded objects alive so their ids stay unique

    def array(self, kind: str, a) -> dict:
        hit = self.arrays.get(id(a))
        if hit is not None:
            return {kind: hit}
        if kind == "A":
            dt = _dtype_name(a.dtype)
            h = np.asarray(a.view(mx.uint16)) if a.dtype == mx.bfloat16 else np.asarray(a)
        else:
            h, dt = a, a.dtype.str
        b = np.ascontiguousarray(h).tobytes()
        i = len(self.table)
        self.table.append([kind, dt, list(a.shape), self.offset, len(b)])
        self.parts.append(b)
        self.offset += len(b)
        self.arrays[id(a)] = i
        self.alive.append(a)
        return {kind: i}

    def __call__(self, o, where: str = "state") -> Any:
        t = type(o)
        if o is None or t is bool or t is int or t is float or t is str:
            return o
        if t is mx.array:
            return self.array("A", o)
        k = self.shared.get(id(o))
        if k is not None:
            return {"M": k}
        node = self._node(o, t, where)
        if type(node) is dict and _SHARED.intersection(node):  # post-order numbering, as the decoder's
            node["k"] = len(self.shared)
            self.shared[id(o)] = node["k"]
            self.alive.append(o)
        return node

    def _node(self, o, t, where):  # noqa: C901 - one branch per node kind
        from ..checks import DeferredCheck
        from ..gfi import GenerativeFunction
        from ..trace import Trace

        if t is not Trace and isinstance(o, Trace) and hasattr(o, "full"):  # a compiled chain's state
            o, t = o.full(), Trace  # (`ChainTrace`): written, and restored, as its full trace
        if t is Trace:
            sites = None if o.sites is None else {"D": [[self(p, where), self(s, f"{where}/{p}")]
                                                        for p, s in o.sites.items()]}
            gf = o.gen_fn
            g = self(gf, where) if getattr(gf, "_is_distribution", False) else self.ref(gf, where)
            return {"TR": [g, self(o.args, where), self(o.retval, where), self(o.score, where), sites,
                           o.batch, self(o.aux, where)]}
        if isinstance(o, np.generic):
            return {"X": o.dtype.str, "v": o.item()}
        for base in (bool, int, float, str):  # subclasses (IntEnum, ...) keep their plain value
            if isinstance(o, base):
                return base(o)
        if isinstance(o, mx.array):
            return self.array("A", o)
        if t is np.ndarray:
            if o.dtype == object:
                raise SchemaError(f"checkpoint: an object-dtype NumPy array at {where} cannot be stored")
            return self.array("N", o)
        if isinstance(o, DeferredCheck):
            return {"K": _path(t), "ok": self(o.ok, where)}
        if isinstance(o, tuple) and hasattr(o, "_fields"):
            if not _allowed(t) and importable(t) is None:
                raise SchemaError(f"checkpoint: cannot store {t.__qualname__} at {where}: "
                                  "register it with genmlx.checkpoint.register_type")
            return {"NT": _path(t), "f": [self(x, f"{where}.{n}") for n, x in zip(t._fields, o)]}
        if t is list:
            return {"L": [self(x, f"{where}[{i}]") for i, x in enumerate(o)]}
        if t is tuple:
            return {"T": [self(x, f"{where}[{i}]") for i, x in enumerate(o)]}
        if t is dict:
            return {"D": [[self(k, where), self(v, f"{where}[{k!r}]")] for k, v in o.items()]}
        if isinstance(o, np.random.Generator):
            return {"G": o.bit_generator.state}
        if isinstance(o, GenerativeFunction) and not getattr(o, "_is_distribution", False):
            return self.ref(o, where)
        if isinstance(o, (types.FunctionType, types.BuiltinFunctionType, type)):
            p = importable(o)
            if p is None:
                return self.ref(o, where)
            return {"F": p}
        if _allowed(t):
            return {"O": _path(t), "d": self._fields(o, where)}
        raise SchemaError(f"checkpoint: cannot store a {t.__module__}.{t.__qualname__} at {where} "
                          "(register its class with genmlx.checkpoint.register_type)")

    def _fields(self, o, where):
        out = []
        d = getattr(o, "__dict__", None)
        if d is not None:
            out.extend([k, self(v, f"{where}.{k}")] for k, v in d.items())
        for cls in type(o).__mro__:
            for k in getattr(cls, "__slots__", ()):
                if k != "__dict__" and hasattr(o, k):
                    out.append([k, self(getattr(o, k), f"{where}.{k}")])
        return out

    def ref(self, o, where):
        key = self.refs.key(o) if self.refs is not None else None
        if key is None:
            name = getattr(o, "name", None) or getattr(o, "__qualname__", type(o).__name__)
            raise SchemaError(f"checkpoint: cannot store a reference to {name!r} ({type(o).__qualname__}) at {where}: "
                              "define it at module level, or make it reachable from the algorithm's arguments")
        return {"R": key}


def encode(obj, refs=None) -> tuple[str, bytes]:
    """`(body, blob)` for `obj`; `refs.key(obj)` names generative functions (None: not storable)."""
    e = _Encoder(refs)
    root = e(obj)
    body = json.dumps({"v": root, "arrays": e.table}, separators=(",", ":"))
    return body, b"".join(e.parts)


def _passed_check_error() -> Exception:  # a restored check had passed: never called
    return RuntimeError("a restored parameter check was called (it had passed before the checkpoint)")


def decode(body: str, blob: bytes, refs=None):
    """Rebuild what `encode` stored; traces come back evaluated and marked ready."""
    doc = json.loads(body)
    table = doc["arrays"]
    made: dict = {}
    shared: dict = {}
    mv = memoryview(blob)

    def array(kind, i):
        a = made.get((kind, i))
        if a is None:
            _, dt, shape, off, n = table[i]
            if kind == "N":
                a = np.frombuffer(mv[off:off + n], dtype=np.dtype(dt)).reshape(shape).copy()
            elif dt == "bfloat16":
                a = mx.array(np.frombuffer(mv[off:off + n], dtype=np.uint16).reshape(shape)).view(mx.bfloat16)
            else:
                a = mx.array(np.frombuffer(mv[off:off + n], dtype=np.dtype(dt)).reshape(shape))
            made[(kind, i)] = a
        return a

    return _Decoder(array, shared, refs)(doc["v"])


class _Decoder:
    def __init__(self, array: Callable, shared: dict, refs):
        self.array, self.shared, self.refs = array, shared, refs

    def __call__(self, n):
        if not isinstance(n, dict):
            return n
        if "A" in n:
            return self.array("A", n["A"])
        if "N" in n:
            return self.array("N", n["N"])
        if "M" in n:
            return self.shared[n["M"]]
        out = self._node(n)
        if "k" in n:
            self.shared[n["k"]] = out
        return out

    def _node(self, n):  # noqa: C901
        from ..trace import Trace
        from ..tree import mark_ready

        if "L" in n:
            return [self(x) for x in n["L"]]
        if "T" in n:
            return tuple(self(x) for x in n["T"])
        if "D" in n:
            return {self(k): self(v) for k, v in n["D"]}
        if "TR" in n:
            g, args, ret, score, sites, batch, aux = n["TR"]
            gf = self(g)
            tr = Trace(gf, self(args), self(ret), self(score), None if sites is None else self(sites), (),
                       batch, self(aux))
            mark_ready([tr])
            return tr
        if "X" in n:
            return np.dtype(n["X"]).type(n["v"])
        if "NT" in n:
            return import_path(n["NT"])(*[self(x) for x in n["f"]])
        if "K" in n:
            return import_path(n["K"])(self(n["ok"]), _passed_check_error)
        if "G" in n:
            st = n["G"]
            bg = getattr(np.random, st["bit_generator"])()
            bg.state = st
            return np.random.Generator(bg)
        if "O" in n:
            cls = import_path(n["O"])
            o = cls.__new__(cls)
            for k, v in n["d"]:
                object.__setattr__(o, k, self(v))
            return o
        if "R" in n:
            if self.refs is None:
                raise SchemaError(f"checkpoint: the stored state refers to {n['R']!r} and no program was given")
            return self.refs.get(n["R"])
        if "F" in n:
            return import_path(n["F"])
        raise SchemaError(f"checkpoint: unknown node {sorted(n)!r} (a newer schema?)")
