"""Buffers per trace site, counted once per model structure and then reused.

Site accounting (`genmlx.handler`, on while an `on_site` observer listens)
reports the graph nodes each trace site adds: the nodes reachable from the
execution's score and weight terms and the site's value after the site, less
those reachable from the terms before it (`genmlx.memory.graph`). Walking the
graph at every site of every step made a Beta-Bernoulli MH step 15x slower, so
a site's event is taken by a walk the first times the site is met and looked
up after.

What a site's count depends on (read from the handlers; tests/core/test_site_counts.py
checks cached counts against fresh walks):

* the code genmlx runs at the site: the operation (handler), the distribution's
  type and parameters (Python numbers by value, since a sampler may branch on
  them; arrays by shape and dtype), or the callee and its arguments; what the
  visit did (sampled, constrained, reused the old site, resampled: how many
  score, weight and correction terms it added; whether an old site exists);
  the value's and the score's kinds, shapes and dtypes;
* the site's place in its execution: the key stream splits once per 8 keys, the
  fused sums grow a node past 16 terms, and the model body's code between sites
  (how it derives parameters from earlier values) is what it is at that place;
* pending graph behind the inputs that earlier terms do not reach: the key (a
  run's first step draws from an unevaluated split), the arguments and the
  constraints, old traces.

So a site's key is its own signature chained after the signatures of every
site before it in the same top-level execution (nested calls, their callees and
arguments, and combinator elements included, in visit order), from a root made
of the operation, the generative function, its arguments, the address prefix
and the number of pending nodes behind the execution's key, array arguments and
constraint values (one graph export per execution, of arrays that are almost
always evaluated). Same chain, same code path, same count. What a key cannot
see is handled so:

* old traces (update, regenerate) not marked evaluated by the loop driver
  (`Trace._ready`) are probed once per execution: with any pending array the
  execution is walked;
* an input `signature` cannot describe (an object that cannot be weakly
  referenced): the rest of the execution is walked;
* pending arrays that reach a model body other than through its arguments
  (closures, globals) and change state between calls, e.g. evaluated by the
  driver after the first step: an event is trusted only after two walks in a
  row agreed on it (`TRUSTED`), so the start of a run is walked.

The one assumption left: for the same chain of sites, a model body builds the
same graph for a parameter. A body that branches on a value read with `.item()`
and changes only how it computes a parameter (not which sites it visits, nor a
parameter's kind, shape or dtype) is not detected. Vectorized executions
(under `mx.vmap`) are always walked.
"""

from __future__ import annotations

import io
import itertools
import re
import sys
import weakref

import mlx.core as mx

__all__ = ["TRUSTED", "root", "entry", "record", "signature", "dist_signature", "ref", "verifying", "clear", "stats"]

TRUSTED = 2  # walks in a row that must agree before an event is reused
MAX_ENTRIES = 100_000  # the cache is cleared when it grows past this (an entry holds no arrays)

_RECT = re.compile(r"shape=rectangle")


class Entry:
    """One chain position: the event of the site that leads to it and how many walks in a row agreed on it."""

    __slots__ = ("state", "event", "agreed", "refs")

    def __init__(self, refs: tuple):
        self.state = next(_ids)
        self.event = None
        self.agreed = 0
        self.refs = refs  # weak references to the objects whose id is in the key


_entries: dict = {}  # (chain state, site signature) -> Entry; (None, root signature) -> Entry
warm_states: set = set()  # chain states with a trusted successor (the next site is likely looked up, not walked)
verified: list | None = None  # while `verifying`: (address, cached event, walked event) of every would-be hit
counts = {"hits": 0, "walks": 0}
_ids = itertools.count(1)  # chain states: never reused, also across `clear`


def clear() -> None:
    """Forget every event (tests; also when the cache outgrows MAX_ENTRIES)."""
    _entries.clear()
    warm_states.clear()


def stats() -> dict:
    """Sites answered from the cache, sites walked (since the process started) and the cache's size."""
    return {**counts, "entries": len(_entries)}


class verifying:
    """Within: every site is walked; `.checks` lists (address, cached event, walked event) wherever a
    trusted cached event would have been used."""

    def __enter__(self):
        global verified
        self._prev, verified = verified, []
        self.checks = verified
        return self

    def __exit__(self, *exc):
        global verified
        verified = self._prev
        return False


def entry(state, sig: tuple, refs: list) -> Entry:
    """The entry of the site with signature `sig` after chain position `state` (created empty if new).

    An entry whose referenced objects died was made for another object that had
    the same id: it starts over, with a new chain position.
    """
    k = (state, sig)
    e = _entries.get(k)
    if e is None:
        if len(_entries) >= MAX_ENTRIES:
            clear()
        e = _entries[k] = Entry(tuple(refs))
    elif e.refs and any(r() is None for r in e.refs):
        e.__init__(tuple(refs))
    return e


def record(state, e: Entry, event) -> None:
    """A walked site's event for entry `e` (reached from `state`): two agreeing walks in a row trust it."""
    counts["walks"] += 1
    if verified is not None and e.agreed >= TRUSTED:
        verified.append((event.address, e.event, event))
    if event == e.event:
        e.agreed += 1
    else:
        e.event, e.agreed = event, 1
    if e.agreed >= TRUSTED:
        warm_states.add(state)


def root(handler, prefix: tuple) -> int | None:
    """The chain state a top-level execution starts from; None when it must be walked throughout."""
    vec = sys.modules.get("genmlx.vectorize")
    if vec is not None and vec.batching():
        return None
    prev = getattr(handler, "prev", None)
    if prev and _unevaluated(prev.values()):  # an old trace with pending arrays: walk
        return None
    gf = handler.gen_fn
    refs: list = [ref(gf)]
    args = handler.args
    sig = (type(handler), id(gf), prefix, signature(args, refs), _pending(handler, args))
    if None in refs:
        return None
    return entry(None, sig, refs).state


def _unevaluated(traces) -> bool:
    """Whether the old sites hold pending arrays (those the loop driver evaluated are marked and skipped)."""
    from .tree import arrays_and_checks

    arrays, _ = arrays_and_checks(list(traces))
    return bool(arrays) and _rectangles(arrays) > 0


def _rectangles(arrays: list) -> int:
    """Pending primitives behind `arrays` (shallow graphs: no deep-recursion helper needed)."""
    buf = io.StringIO()
    mx.export_to_dot(buf, *arrays)
    return len(_RECT.findall(buf.getvalue()))


def _pending(handler, args) -> int:
    """Pending primitives behind the execution's key, array arguments and constraint values.

    A nested key stream takes its key from its parent on first use: the root
    stream's key and unused pool are what it will reach.
    """
    arrays: list = []
    keys = handler.keys
    if keys is not None:
        while keys._parent is not None:
            keys = keys._parent
        arrays.extend(a for a in (keys._key, *keys._pool) if type(a) is mx.array)
    _arrays(args, arrays)
    c = getattr(handler, "constraints", None)
    if c is not None and c._leaves:
        arrays.extend(v for v in c._leaves.values() if type(v) is mx.array)
    return _rectangles(arrays) if arrays else 0


def _arrays(x, out: list) -> None:
    t = type(x)
    if t is mx.array:
        out.append(x)
    elif isinstance(x, (tuple, list)):
        for y in x:
            if type(y) is not float:
                _arrays(y, out)
    elif isinstance(x, dict):
        for y in x.values():
            _arrays(y, out)


def ref(x):
    try:
        return weakref.ref(x)
    except TypeError:
        return None  # not describable: the caller walks instead


def signature(x, refs: list):
    """A hashable description of `x` that determines the graph genmlx builds from it.

    Python numbers and strings by value (a float as itself, other types with
    their type), arrays by shape and dtype, containers element-wise, a
    distribution by type and public parameters; other objects by identity
    (a weak reference appended to `refs`; None there when `x` has none).
    """
    t = type(x)
    if t is mx.array:
        return (x.shape, x.dtype)
    if t is float:
        return x
    if t is int or t is bool or t is str or x is None:
        return (t, x)
    if isinstance(x, (tuple, list)):
        return (t, *[signature(y, refs) for y in x])
    if isinstance(x, dict):
        return (t, *[(k, signature(v, refs)) for k, v in x.items()])
    if getattr(x, "_is_distribution", False):
        return dist_signature(x, refs)
    refs.append(ref(x))
    return (t, id(x))


def dist_signature(d, refs: list) -> tuple:
    """A distribution's type and public parameters (as `signature` describes them)."""
    out = [type(d)]
    for k, v in d.__dict__.items():
        t = type(v)
        if t is float:
            out.append(v)
        elif t is mx.array:
            out.append((v.shape, v.dtype))
        elif k[0] != "_":
            out.append((k, signature(v, refs)))
    return tuple(out)
