"""Trace: the immutable record of one execution of a generative function."""

from __future__ import annotations

from collections.abc import Sequence

from typing import Any, Mapping

import mlx.core as mx

from .address import Address, AddressError, Path, from_path, to_path
from . import boundary as _boundary
from .choicemap import ChoiceMap

__all__ = ["Trace", "TraceViews"]


class Trace:
    """An execution record: generative function, args, choices, retval, score.

    A distribution's trace is a leaf (`sites is None`, its value is `retval`).
    A dynamic function's or combinator's trace maps each site's path to the
    site's own trace. Vectorized traces (`vsimulate`) have `batch = N` and
    `[N]`-shaped leaves. Treat traces as values: they are never mutated.
    """

    __slots__ = ("gen_fn", "args", "retval", "score", "sites", "checks", "batch", "aux", "_choices", "_ready",
                 "_checked")

    def __init__(self, gen_fn, args: tuple, retval: Any, score: mx.array,
                 sites: Mapping[Path, "Trace"] | None = None, checks: tuple = (),
                 batch: int | None = None, aux: Any = None):
        s = object.__setattr__
        s(self, "gen_fn", gen_fn)
        s(self, "args", args)
        s(self, "retval", retval)
        s(self, "score", score)
        s(self, "sites", sites)
        s(self, "checks", checks)
        s(self, "batch", batch)
        s(self, "aux", aux)  # combinator-specific static data (e.g. a switch's branch index)
        s(self, "_choices", None)
        s(self, "_ready", False)  # set by the loop driver once every array in it is evaluated and checked
        s(self, "_checked", False)  # set once its checks are evaluated and hold (genmlx.boundary)

    def __setattr__(self, name, value):
        raise AttributeError("Trace is immutable: use the GFI (update, regenerate) to make a new one")

    # -- getters (Gen's names) -------------------------------------------------
    def get_gen_fn(self):
        return self.gen_fn

    def get_args(self) -> tuple:
        return self.args

    # The getters are the user's reads: a trace with parameter checks not yet known to hold
    # evaluates them on the first (genmlx.boundary). The fields are the raw record.
    def get_retval(self):
        if self.checks and not (self._ready or self._checked):
            _boundary.read(self)
        return self.retval

    def get_score(self) -> mx.array:
        if self.checks and not (self._ready or self._checked):
            _boundary.read(self)
        return self.score

    def get_choices(self) -> ChoiceMap:
        if self.checks and not (self._ready or self._checked):
            _boundary.read(self)
        c = self._choices
        if c is None:
            leaves: dict = {}
            _collect(self, (), leaves)
            c = ChoiceMap._from_leaves(leaves)
            object.__setattr__(self, "_choices", c)
        return c

    def is_leaf(self) -> bool:
        return self.sites is None

    def __getitem__(self, addr: Address):
        """The value of the choice at `addr`."""
        if self.sites is None:
            raise AddressError(f"a {self.gen_fn!r} trace is a single value; it has no address {addr!r}")
        if self.checks and not (self._ready or self._checked):
            _boundary.read(self)
        return self.get_choices()[addr]

    def get_subtrace(self, addr: Address) -> "Trace":
        p = to_path(addr)
        st = self._find(p)
        if st is None:
            raise AddressError(f"no site at address {addr!r} in trace of {_name(self.gen_fn)}")
        return st

    def _choice_value(self, p: Path):
        """The value of the choice at path `p`: the raw record (`_find(p).retval`), no checks."""
        return self._find(p).retval

    def _find(self, p: Path):
        if self.sites is None:
            return None
        st = self.sites.get(p)
        if st is not None:
            return st
        for q, sub in self.sites.items():
            n = len(q)
            if len(p) > n and p[:n] == q:
                return sub._find(p[n:])
        return None

    # -- protocols -------------------------------------------------------------
    def _genmlx_arrays(self):
        yield self.score
        yield self.retval
        # A trace also holds its args, aux and (at a choice) its distribution's array
        # parameters; under vectorization these are lazy outputs of the batched pass, and
        # a materialization that missed them would let their graphs grow step after step.
        if self.args:
            yield self.args
        if self.aux is not None:
            yield self.aux
        if self.sites is not None:
            yield from self.sites.values()
        elif getattr(self.gen_fn, "_is_distribution", False):
            for v in getattr(self.gen_fn, "__dict__", {}).values():
                if type(v) is mx.array or (isinstance(v, (list, tuple)) and v):
                    yield v

    def _genmlx_tree(self):
        parts = (self.args, self.retval, self.score, dict(self.sites) if self.sites is not None else None)
        gen_fn, checks, batch, aux = self.gen_fn, self.checks, self.batch, self.aux

        def rebuild(p):
            return Trace(gen_fn, p[0], p[1], p[2], p[3], checks, batch, aux)

        return parts, rebuild

    def with_batch(self, n: int | None) -> "Trace":
        return Trace(self.gen_fn, self.args, self.retval, self.score, self.sites, self.checks, n, self.aux)

    def __repr__(self) -> str:
        b = f", batch={self.batch}" if self.batch is not None else ""
        n = len(self.get_choices()) if self.sites is not None else 1
        return f"Trace({_name(self.gen_fn)}, {n} choices{b})"


def _name(g) -> str:
    return getattr(g, "name", None) or type(g).__name__


def _collect(tr: Trace, prefix: Path, out: dict) -> None:
    for p, st in tr.sites.items():
        full = prefix + p
        if st.sites is None:
            out[full] = st.retval
        else:
            _collect(st, full, out)


class TraceViews(Sequence):
    """A read-only sequence of `n` traces, each made on access by `_view(i)` (batched or stacked storage)."""

    noun = "trace"  # as the index error names the items

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"{self.noun} index {i} out of range for {self.n} {self.noun}s")
        return self._view(i)

    def _view(self, i: int) -> "Trace":
        raise NotImplementedError
