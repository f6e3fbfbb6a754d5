"""The flattened log density of a static-structure model: sites of the same form scored as one batch.

A model written the way users write it (`for i, x in enumerate(xs):
gm.trace(("y", i), dist.normal(slope * x + intercept, 1.0))`) has one scalar
site per observation. Scored through the GFI, every site is its own chain of
MLX kernels, so 100 observations cost 100 kernels (and their gradient as
many again), where the one-vector-site form of the same model costs one.
`FlatDensity` removes that difference for static-structure models:

1. Trace once. The model runs under a handler that gives each *variable*
   choice a symbolic value (`Sym`: a representative array plus the
   expression that made it) and each other choice its constant value.
   Python arithmetic and the `mlx.core` functions in `_FUNCTIONS` (patched
   for the duration of this one run) on symbolic values build expressions;
   a distribution receives them as parameters. Anything else — a Python
   decision on a variable (`if`, `.item()`, `float()`), a combinator, an
   unknown function — makes the model not flattenable (`build` returns None
   and callers use the GFI).
2. Group. Sites whose distribution class, expression shapes, operations and
   static arguments agree form one group; the numbers and arrays that differ
   between them (`x` above, the observed values, which variable a site
   reads) become stacked `[G]` inputs, built once.
3. Score. `log_density(values)` evaluates each group on its stacked inputs
   and sums: scalar sites whose expressions and distribution act elementwise
   directly (`[G]` inputs give the G densities), other forms as one `mx.vmap`
   of the site's log density. 100 scalar observations then cost what one
   vector site costs; the whole function works under `mx.grad`, `mx.vmap`
   and `mx.compile`. `batch=1` scores K states at once (compiled_mh's K
   proposals) with the states on a leading axis instead of a vmap.
4. Data. Choices named as `data` in `build` are symbols too, whose values
   come with each `log_density` call (vectorized IS's observations: inputs of
   its compiled pass, one vector for all of them), not constants fixed by
   the tracing run.

The flattened density equals the model's (`assess`) to float32 rounding
(tests/core/test_flat_density.py checks models of every shape against
`assess`). Parameter checks stay: a group whose parameters fail their check
makes the density NaN.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import mlx.core as mx

from . import handler as _handler
from .address import Path, to_path
from .choicemap import ChoiceMap
from .distributions.base import Distribution
from .dynamic import DynamicGenFn
from .evaluation import evaluate

__all__ = ["Sym", "FlatDensity", "build", "NotFlat"]


class NotFlat(Exception):
    """The model cannot be flattened (the message says why)."""


# -- symbolic values -----------------------------------------------------------------------------

class Sym:
    """A value computed from variable choices: a representative array `v` and its expression `node`.

    Nodes: ("var", k) for variable k, ("const", x) for a constant, ("op", fn, args, kwargs)."""

    __slots__ = ("v", "node")
    _genmlx_symbolic = True

    def __init__(self, v, node):
        self.v, self.node = v, node

    shape = property(lambda self: self.v.shape)
    ndim = property(lambda self: self.v.ndim)
    dtype = property(lambda self: self.v.dtype)
    size = property(lambda self: self.v.size)

    def __getattr__(self, name):
        attr = getattr(self.v, name)
        if callable(attr):
            return lambda *a, **k: _apply(_Method(name), (self, *a), k, numeric=False)
        if isinstance(attr, mx.array):
            return _apply(_Attr(name), (self,), {}, numeric=False)
        return attr

    def _concrete(self, *_):
        raise NotFlat("the model's Python code needs the value of a random choice")

    __bool__ = __float__ = __int__ = __index__ = item = tolist = __array__ = _concrete

    def __len__(self):
        return len(self.v)

    def __iter__(self):
        raise NotFlat("the model iterates over a random choice")

    def __getitem__(self, idx):
        return _apply(operator.getitem, (self, idx), {}, numeric=False)

    def __repr__(self):
        return f"Sym({self.node[0]}, shape={tuple(self.v.shape)})"


def _binary(fn, reflected=False):
    if reflected:
        return lambda self, other: _apply(fn, (other, self), {})
    return lambda self, other: _apply(fn, (self, other), {})


for _name, _fn in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("pow", operator.pow), ("matmul", operator.matmul),
                   ("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("eq", operator.eq), ("ne", operator.ne), ("and", operator.and_), ("or", operator.or_),
                   ("floordiv", operator.floordiv), ("mod", operator.mod)]:
    setattr(Sym, f"__{_name}__", _binary(_fn))
    if _name not in ("lt", "le", "gt", "ge", "eq", "ne"):  # (Python reflects comparisons itself)
        setattr(Sym, f"__r{_name}__", _binary(_fn, reflected=True))
# `a == 1` on a random value is an array, as on an MLX array: Python's default `==` (identity) would
# make it a plain False and silently drop the dependence. Syms stay hashable by identity.
Sym.__hash__ = object.__hash__
Sym.__neg__ = lambda self: _apply(operator.neg, (self,), {})
Sym.__abs__ = lambda self: _apply(operator.abs, (self,), {})
Sym.__invert__ = lambda self: _apply(operator.invert, (self,), {})


class _Method(NamedTuple):
    name: str

    def __call__(self, obj, *a, **k):
        return getattr(obj, self.name)(*a, **k)


class _Attr(NamedTuple):
    name: str

    def __call__(self, obj):
        return getattr(obj, self.name)


def _real(a):
    if isinstance(a, Sym):
        return a.v
    if isinstance(a, (list, tuple)):
        return type(a)(_real(x) for x in a)
    return a


def _node(a, numeric: bool):
    """A Sym's expression; arrays (and numbers, for numeric arguments) as constants; the rest static."""
    if isinstance(a, Sym):
        return a.node
    if isinstance(a, mx.array):
        return ("const", a)
    if numeric and isinstance(a, (int, float)) and not isinstance(a, bool):
        return ("const", a)
    if getattr(a, "_is_distribution", False):  # a distribution inside another (iid, mixture, product)
        return ("dist", type(a), _dist_attrs(a))
    if isinstance(a, (list, tuple)) and any(isinstance(x, (Sym, mx.array)) or getattr(x, "_is_distribution", False)
                                            for x in a):
        return ("seq", type(a), tuple(_node(x, numeric) for x in a))
    if any(isinstance(x, Sym) for x in getattr(a, "__dict__", {}).values()):
        raise NotFlat(f"a {type(a).__name__} holds a random choice's value")
    return ("static", a)


def _dist_attrs(d) -> tuple:
    """A distribution's attributes as nodes (its unguarded parameter checks as one `_lazy_checks` node)."""
    if d._invalid is not None:
        raise NotFlat("invalid parameters")
    attrs = []
    for name, a in sorted(vars(d).items()):
        if name == "_invalid":
            continue
        if name == "_lazy_checks":
            # a guarded parameter (`Distribution._score_guards`) that fails makes the density NaN or
            # -inf by itself; the others are checked when the site is scored
            a = [c for c in a if c[0] not in d._score_guards]
            if a:
                attrs.append(("_lazy_checks", ("seq", list, tuple(
                    ("seq", tuple, (("static", n), ("static", m), _node(x, False), ("static", ok)))
                    for n, m, x, ok in a))))
            continue
        attrs.append((name, _node(a, True)))
    return tuple(attrs)


def _apply(fn, args, kwargs, numeric: bool = True):
    real = fn(*_real(args), **{k: _real(v) for k, v in kwargs.items()})
    node = ("op", fn, tuple(_node(a, numeric) for a in args), tuple(sorted((k, _node(v, False))
                                                                          for k, v in kwargs.items())))
    if isinstance(real, mx.array):
        return Sym(real, node)
    if isinstance(real, (list, tuple)) and all(isinstance(r, mx.array) for r in real):
        return type(real)(Sym(r, ("op", operator.getitem, (node, ("static", i)), ())) for i, r in enumerate(real))
    raise NotFlat(f"{getattr(fn, '__name__', fn)} returned {type(real).__name__}")


# mlx.core functions that build expressions when given a symbolic value (elementwise ones take
# numbers as per-site constants; the others take numbers as static arguments).
_ELEMENTWISE = ("exp", "log", "log1p", "expm1", "log2", "log10", "sqrt", "rsqrt", "square", "abs", "negative",
                "reciprocal", "sin", "cos", "tan", "tanh", "sinh", "cosh", "arcsin", "arccos", "arctan",
                "arctan2", "sigmoid", "erf", "erfinv", "maximum", "minimum", "where", "power", "logaddexp",
                "add", "subtract", "multiply", "divide", "clip", "floor", "ceil", "sign", "less", "greater",
                "less_equal", "greater_equal", "equal", "logical_and", "logical_or", "logical_not", "isnan",
                "isinf", "isfinite")
_STRUCTURAL = ("sum", "mean", "prod", "max", "min", "matmul", "inner", "outer", "stack", "concatenate",
               "reshape", "broadcast_to", "expand_dims", "squeeze", "transpose", "softmax", "logsumexp",
               "cumsum", "take", "einsum", "tensordot", "diag", "tril", "triu", "zeros_like", "ones_like")
_FUNCTIONS = _ELEMENTWISE + _STRUCTURAL
# the functions whose result at stacked [G] inputs is the G results at the scalar inputs
_ELEMENTWISE_FNS = frozenset(
    [getattr(mx, n) for n in _ELEMENTWISE if hasattr(mx, n)]
    + [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow, operator.neg, operator.abs,
       operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne, operator.and_, operator.or_,
       operator.invert, operator.floordiv, operator.mod])
# mx.array's own operators, which raise on a symbolic operand instead of deferring to its reflected
# operator (`X @ w`, `xs * slope`, `means[z]` with an MLX array on the left): within a trace they defer
_ARRAY_OPS = ("add", "sub", "mul", "truediv", "pow", "matmul", "lt", "le", "gt", "ge", "eq", "ne", "and", "or",
              "floordiv", "mod")


def _has_sym(a) -> bool:
    return isinstance(a, Sym) or (isinstance(a, (list, tuple)) and any(_has_sym(x) for x in a))


class _patched_mx:
    """Within: `mx.<fn>` of a symbolic value builds an expression (other calls go through unchanged)."""

    _depth = 0
    _saved: dict = {}
    _saved_ops: dict = {}  # mx.array's operators

    def __enter__(self):
        cls = _patched_mx
        if cls._depth == 0:
            for name in _FUNCTIONS:
                orig = getattr(mx, name, None)
                if orig is not None:
                    cls._saved[name] = orig
                    setattr(mx, name, _wrap(orig, name in _ELEMENTWISE))
            for name in _ARRAY_OPS:
                dunder = f"__{name}__"
                orig = getattr(mx.array, dunder)
                cls._saved_ops[dunder] = orig
                setattr(mx.array, dunder, _deferring(orig))
            cls._saved_ops["__getitem__"] = orig = mx.array.__getitem__
            mx.array.__getitem__ = _symbolic_index(orig)
        cls._depth += 1

    def __exit__(self, *exc):
        cls = _patched_mx
        cls._depth -= 1
        if cls._depth == 0:
            for name, orig in cls._saved.items():
                setattr(mx, name, orig)
            for dunder, orig in cls._saved_ops.items():
                setattr(mx.array, dunder, orig)
            cls._saved, cls._saved_ops = {}, {}


def _deferring(orig):
    """`mx.array`'s binary operator `orig`, deferring to a symbolic operand's reflected operator."""
    def op(self, other):
        if isinstance(other, Sym):
            return NotImplemented
        return orig(self, other)

    return op


def _symbolic_index(orig):
    """`mx.array.__getitem__`, building an expression when the index holds a symbolic value."""
    def getitem(self, idx):
        if _has_sym(idx):
            return _apply(operator.getitem, (self, idx), {}, numeric=False)
        return orig(self, idx)

    return getitem


def _wrap(orig, numeric: bool):
    def call(*args, **kwargs):
        if any(_has_sym(a) for a in args) or any(_has_sym(v) for v in kwargs.values()):
            return _apply(orig, args, kwargs, numeric)
        return orig(*args, **kwargs)

    call.__name__ = getattr(orig, "__name__", "fn")
    return call


# -- tracing the model ---------------------------------------------------------------------------

class _Site(NamedTuple):
    path: Path
    cls: type
    attrs: tuple  # ((name, node), ...) in name order; unguarded checks as one "_lazy_checks" node
    value: Any  # the value's node


class _Tracer:
    """The handler of the flattening run: variables and data become symbols, other choices constants."""

    def __init__(self, choices: ChoiceMap, variables: list, data: list = ()):
        self.choices = choices._leaves
        self.index = {p: k for k, p in enumerate(variables)}
        self.data = {p: j for j, p in enumerate(data)}
        self.prefix: Path = ()
        self.sites: list[_Site] = []
        self.seen: set = set()

    def call(self, path: Path, obj, args):
        full = self.prefix + path
        if full in self.seen:
            raise NotFlat(f"address {full!r} traced twice")
        self.seen.add(full)
        if getattr(obj, "_is_distribution", False):
            return self._choice(full, obj)
        body = getattr(obj, "fn", None)
        if type(obj) is not DynamicGenFn or body is None:
            raise NotFlat(f"{type(obj).__name__} at {full!r} is not a @gm.gen function")
        saved, self.prefix = self.prefix, full
        try:
            return body(*args)
        finally:
            self.prefix = saved

    def _choice(self, path: Path, d):
        if d._invalid is not None:
            raise NotFlat(f"invalid parameters at {path!r}")
        v = self.choices.get(path)
        if v is None:
            raise NotFlat(f"no value for the choice at {path!r}")
        k, j = self.index.get(path), self.data.get(path)
        value = Sym(v, ("var", k)) if k is not None else Sym(v, ("data", j, v)) if j is not None else v
        attrs = _dist_attrs(d)
        self.sites.append(_Site(path, type(d), attrs, _node(value, True)))
        return value


def _trace(model, args: tuple, choices: ChoiceMap, variables: list, data: list = ()) -> list[_Site]:
    if type(model) is not DynamicGenFn:
        raise NotFlat(f"{type(model).__name__} is not a @gm.gen function")
    tr = _Tracer(choices, variables, data)
    _handler._stack.append(tr)
    try:
        with _patched_mx():
            model.fn(*args)
    except NotFlat:
        raise
    except Exception as e:  # whatever the symbolic run cannot do, the GFI will (or will report)
        raise NotFlat(f"{type(e).__name__}: {e}") from None
    finally:
        _handler._stack.pop()
    missing = [p for p in (*variables, *data) if p not in tr.seen]
    if missing:
        raise NotFlat(f"variables {missing!r} are not choices of the model")
    return tr.sites


# -- grouping ------------------------------------------------------------------------------------

def _signature(node, leaves: list):
    """The structure of `node` (leaves listed in `leaves` in visit order)."""
    kind = node[0]
    if kind == "var":
        leaves.append(node)
        return ("var",)
    if kind == "data":
        leaves.append(node)
        return ("data", tuple(node[2].shape), node[2].dtype)
    if kind == "const":
        x = node[1]
        leaves.append(node)
        return ("const", tuple(x.shape), x.dtype) if isinstance(x, mx.array) else ("const", type(x))
    if kind == "static":
        x = node[1]
        code = getattr(x, "__code__", None)
        if code is not None and x.__closure__ is None and not x.__defaults__:
            return ("static", code)  # a predicate written inline: a new function per call, the same code
        try:
            hash(x)
            return ("static", type(x), x)
        except TypeError:
            return ("static", id(x))
    if kind == "seq":
        return ("seq", node[1], tuple(_signature(n, leaves) for n in node[2]))
    if kind == "dist":
        return ("dist", node[1], tuple((k, _signature(v, leaves)) for k, v in node[2]))
    _, fn, args, kwargs = node
    return ("op", fn, tuple(_signature(a, leaves) for a in args), tuple((k, _signature(v, leaves)) for k, v in kwargs))


class _Group:
    """Sites of one form: their stacked inputs and the vmapped site log density."""

    def __init__(self, sites: list, leaves: list[list]):
        self.paths = [s.path for s in sites]
        self.template = sites[0]
        self.n = len(sites)
        # per leaf position: ("fixed", node), ("const", stacked), ("var", [k...]) or ("data", [j...])
        self.slots = []
        for q in range(len(leaves[0])):
            col = [lv[q] for lv in leaves]
            first = col[0]
            if first[0] in ("var", "data"):
                ks = [c[1] for c in col]
                self.slots.append(("fixed", first) if len(set(ks)) == 1 else (first[0], ks))
            else:
                xs = [c[1] for c in col]
                if all(x is xs[0] or (not isinstance(x, mx.array) and x == xs[0]) for x in xs):
                    self.slots.append(("fixed", first))
                else:
                    stacked = mx.stack([mx.array(x) if not isinstance(x, mx.array) else x for x in xs])
                    evaluate(stacked)  # a constant: never a graph node of the functions that read it
                    self.slots.append(("const", stacked))
        self.batched = [i for i, s in enumerate(self.slots) if s[0] != "fixed"]
        # a data column holds a value that is not a scalar (then the elementwise form does not apply)
        self.data_nonscalar = any(lv[q][2].ndim for lv in leaves for q in range(len(lv)) if lv[q][0] == "data")
        self.checked = _has_checks(self.template.attrs)
        t = self.template
        self.elementwise = (t.cls.event_ndim == 0 and "event_ndim" not in dict(t.attrs)
                            and t.cls._score is Distribution._score
                            and all(_elementwise_attr(a, n) for a, n in t.attrs) and _elementwise(t.value))

    def log_density(self, values: list, batch: int = 0, data: list = ()):
        """The group's summed log density and its parameter checks' conjunction.

        With `batch`, every variable's value has `batch` leading axes (the same ones) and so do
        the results: one density per batch element. `data`: the data paths' values (no batch axes)."""
        if batch and not self._broadcasts(values, batch):
            if self.checked:
                return mx.vmap(lambda *vs: self.log_density(list(vs), batch - 1, data))(*values)
            return mx.vmap(lambda *vs: self.log_density(list(vs), batch - 1, data)[0])(*values), None
        fixed = {}
        for i, s in enumerate(self.slots):
            if s[0] == "fixed":
                node = s[1]
                fixed[i] = values[node[1]] if node[0] == "var" else data[node[1]] if node[0] == "data" else node[1]
        if not self.batched:
            return self._site(fixed, elementwise=batch > 0)  # with a batch: one density per element
        if batch or self._broadcasts(values, 0):
            # scalar sites whose expressions and density act elementwise: the sites' inputs stacked on
            # a last axis give their log densities directly (the same numbers as the vmap below, with
            # fewer graph nodes); batch axes stay in front
            for i, v in fixed.items():
                if batch and self.slots[i][1][0] == "var":
                    fixed[i] = mx.expand_dims(v, -1)
            ins = [x if kind == "const" else _data(data, x) if kind == "data" else _stacked(values, x, batch)
                   for kind, x in (self.slots[i] for i in self.batched)]
            leafs = dict(fixed)
            leafs.update(zip(self.batched, ins))
            lp, ok = self._site(leafs, elementwise=True)
            return mx.sum(lp, axis=-1), ok
        ins = []
        for i in self.batched:
            kind, x = self.slots[i]
            ins.append(x if kind == "const" else _data(data, x) if kind == "data" else mx.stack([values[k] for k in x]))

        def one(*xs):
            leafs = dict(fixed)
            leafs.update(zip(self.batched, xs))
            return self._site(leafs)

        if self.checked:
            lp, ok = mx.vmap(one)(*ins)
            return mx.sum(lp), mx.all(ok)
        return mx.sum(mx.vmap(lambda *xs: one(*xs)[0])(*ins)), None

    def _broadcasts(self, values, batch: int) -> bool:
        """Whether the elementwise evaluation applies: scalar sites (plus `batch` leading axes on every
        variable) whose expressions and density act elementwise; with a batch, no checks (theirs
        would be one conjunction over the whole batch instead of one per element)."""
        if not self.elementwise or (batch and self.checked):
            return False
        for kind, x in self.slots:
            if kind == "const":
                if x.ndim != 1:
                    return False
            elif kind == "var":
                if any(values[k].ndim != batch for k in x):
                    return False
            elif kind == "data":
                if self.data_nonscalar:
                    return False
            elif x[0] == "var":
                if values[x[1]].ndim != batch:
                    return False
            elif x[0] == "data":
                if x[2].ndim != 0:
                    return False
            elif getattr(x[1], "ndim", 0) != 0:
                return False
        return True

    def _site(self, leafs: dict, elementwise: bool = False):
        ev = _Evaluator(leafs)
        t = self.template
        d = ev(("dist", t.cls, t.attrs))
        lp = d._log_prob(ev(t.value)) if elementwise else d._score(ev(t.value))
        oks = ev.oks
        ok = None
        for o in oks:
            ok = o if ok is None else mx.logical_and(ok, o)
        return lp, ok


def _elementwise(node) -> bool:
    """Whether an expression (or a distribution's checks) maps stacked inputs elementwise."""
    kind = node[0]
    if kind in ("var", "const", "data", "static"):
        return True
    if kind == "op":
        _, fn, args, kwargs = node
        return fn in _ELEMENTWISE_FNS and all(_elementwise(a) for a in args) and all(
            _elementwise(v) for _, v in kwargs)
    return False  # a nested distribution, a sequence argument


def _elementwise_attr(name: str, node) -> bool:
    if name == "_lazy_checks":  # (name, message, value, predicate) per check; predicates act elementwise
        return all(_elementwise(c[2][2]) for c in node[2])
    return _elementwise(node)


def _has_checks(attrs) -> bool:
    return any(name == "_lazy_checks" or (node[0] == "dist" and _has_checks(node[2])) for name, node in attrs)


class _Evaluator:
    """Evaluates expression nodes; leaves are consumed in the order `_signature` listed them."""

    def __init__(self, leafs: dict):
        self.leafs, self.pos = leafs, 0
        self.oks: list = []  # the evaluated parameter checks of the distributions built

    def _dist(self, cls, attrs):
        d = cls.__new__(cls)
        for name, node in attrs:
            if name == "_lazy_checks":
                for chk in node[2]:
                    n, m, x, ok = chk[2]
                    self.oks.append(mx.all(ok[1](self(x))))
            else:
                d.__dict__[name] = self(node)
        d.__dict__["_invalid"] = None
        d.__dict__["_lazy_checks"] = []
        return d

    def __call__(self, node):
        kind = node[0]
        if kind in ("var", "const", "data"):
            x = self.leafs[self.pos]
            self.pos += 1
            return x
        if kind == "static":
            return node[1]
        if kind == "seq":
            return node[1](self(n) for n in node[2])
        if kind == "dist":
            return self._dist(node[1], node[2])
        _, fn, args, kwargs = node
        a = [self(x) for x in args]
        return fn(*a, **{k: self(v) for k, v in kwargs})


_MIN_GROUP = 4  # fewer sites of one form are scored one by one


def _data(data, js: list):
    """The data values `js` stacked: from a list of values, or read out of one vector of scalars
    (a slice when they lie side by side in it, as observations in visit order do)."""
    if isinstance(data, mx.array):
        if js == list(range(js[0], js[0] + len(js))):
            return data[js[0]:js[0] + len(js)]
        return data[mx.array(js)]
    return mx.stack([data[j] for j in js])


def _stacked(values, ks, batch: int):
    """The variables `ks`' scalar values on a last axis: one read of a `run` when `values` has one
    (`transforms.SiteValues`: G scalar sites side by side in HMC's `z` are one slice of it)."""
    run = getattr(values, "run", None)
    if run is not None and not batch:
        r = run(ks)
        if r is not None:
            return r
    return mx.stack([values[k] for k in ks], axis=-1)


class FlatDensity:
    """The joint log density of a model's sites (or a subset) as a function of its variable choices."""

    def __init__(self, sites: list[_Site], variables: list):
        self.variables = list(variables)
        self.sites = sites
        self._groups: dict = {}
        consts: list = []
        for st in sites:
            _signature(("dist", st.cls, st.attrs), consts)
            _signature(st.value, consts)
        # constants computed by the model (a parameter derived from data) are evaluated once, here:
        # never a graph node of the functions that read them, never pending while the density lives
        evaluate([n[1] for n in consts if n[0] == "const" and isinstance(n[1], mx.array)])

    def groups(self, include=None) -> list[_Group]:
        key = None if include is None else frozenset(include)
        g = self._groups.get(key)
        if g is None:
            by_sig: dict = {}
            for s in self.sites:
                if key is not None and s.path not in key:
                    continue
                leaves: list = []
                sig = (s.cls, tuple((n, _signature(a, leaves)) for n, a in s.attrs), _signature(s.value, leaves))
                by_sig.setdefault(sig, []).append((s, leaves))
            g = []
            for m in by_sig.values():
                parts = [m] if len(m) >= _MIN_GROUP else [[x] for x in m]
                g.extend(_Group([s for s, _ in p], [lv for _, lv in p]) for p in parts)
            self._groups[key] = g
        return g

    def checked(self, include=None) -> bool:
        """Whether scoring these sites checks parameters (unguarded ones: see `Distribution._score_guards`)."""
        return any(g.checked for g in self.groups(include))

    def site_dist(self, path: Path, values):
        """The distribution at `path` with its parameters computed from the variables' `values`."""
        site = self._by_path()[path]
        leaves: list = []
        _signature(("dist", site.cls, site.attrs), leaves)
        ev = _Evaluator({i: values[n[1]] if n[0] == "var" else n[1] for i, n in enumerate(leaves)})
        return ev(("dist", site.cls, site.attrs))

    def depends(self, path: Path) -> bool:
        """Whether the distribution at `path` has parameters computed from variables."""
        site = self._by_path()[path]
        leaves: list = []
        _signature(("dist", site.cls, site.attrs), leaves)
        return any(n[0] == "var" for n in leaves)

    def readers(self, path: Path) -> list:
        """The paths of the sites whose distribution parameters read the variable at `path`, in visit
        order (with the variable's own site: the sites a Gibbs update of it must score)."""
        p = to_path(path)
        if p not in self.variables:
            raise ValueError(f"flat_density: {p!r} is not a variable of this density")
        reads = self.__dict__.get("_reads")
        if reads is None:  # each site's variables, found once (a sweep asks for every variable's readers)
            reads = self._reads = []
            for site in self.sites:
                leaves: list = []
                _signature(("dist", site.cls, site.attrs), leaves)
                reads.append((site.path, {n[1] for n in leaves if n[0] == "var"}))
        k = self.variables.index(p)
        return [q for q, ks in reads if k in ks]

    def _by_path(self) -> dict:
        d = self.__dict__.get("_paths")
        if d is None:
            d = self._paths = {s.path: s for s in self.sites}
        return d

    def log_density(self, values: list, include=None, batch: int = 0, data: list = ()):
        """Sum of the site log densities (all sites, or those in `include`) at the variables' `values`.

        With `batch`, every value has `batch` leading axes (K states at once: one density each).
        `data`: the values of the `data` paths `build` was given (the observations of a
        compiled pass, its inputs), in that order, without batch axes: a list, or one vector
        when they are all scalars (one input instead of one per observation).
        NaN when a parameter check fails (as the GFI's failed checks make a weight unusable)."""
        total, ok = None, None
        for g in self.groups(include):
            lp, o = g.log_density(values, batch, data)
            total = lp if total is None else total + lp
            if o is not None:
                ok = o if ok is None else mx.logical_and(ok, o)
        if total is None:
            return mx.array(0.0)
        return total if ok is None else mx.where(ok, total, mx.nan)


def build(model, args: tuple, choices: ChoiceMap, variables, data=()) -> FlatDensity | None:
    """The flattened density of `model` with `variables` (paths) free and every other choice at its
    value in `choices`; None when the model cannot be flattened.

    `data`: choices (paths) whose values are given at each `log_density` call (its `data`) instead
    of fixed now: observations that are inputs of a compiled pass. Their values in `choices`
    give the shapes."""
    variables = [to_path(v) for v in variables]
    data = [to_path(p) for p in data]
    try:
        return FlatDensity(_trace(model, args, choices, variables, data), variables)
    except NotFlat:
        return None
