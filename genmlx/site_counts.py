"""Buffers per trace site, counted once per model structure and then reused.

Site accounting (`genmlx.handler`, on while an `on_site` observer listens)
reports the graph nodes each trace site adds: the nodes reachable from the
execution's score and weight terms and the site's value after the site, less
those reachable from the terms before it (`genmlx.memory.graph`). Walking the
graph at every site of every step made a Beta-Bernoulli MH step 15x slower, so
the count is taken by a walk the first times a site is met and looked up after.

What the count depends on (found by reading the handlers and checked against a
fresh walk in tests/core/test_site_counts.py):

* the code genmlx runs at the site: the operation (handler), the distribution's
  type and its parameters (Python numbers by value: a sampler may branch on
  them; arrays by shape and dtype), or the callee and its arguments; what the
  visit did (sampled, constrained, reused the old site, resampled: the numbers
  of score, weight and correction terms it added; the old site's presence);
  the value's and score's kinds, shapes and dtypes;
* the key stream's position (a split every 8 keys) and the sum's shape (a fused
  sum over 16 terms): the site's place in the execution;
* the pending graph behind the site's inputs that earlier terms do not reach:
  parameters the model body derived from earlier values (its code between the
  sites), the key (pending at a run's first step), old traces, arguments.

So a site's key is its own signature chained after the signatures of every
site before it in the same top-level execution (nested calls and combinator
elements included, in visit order), rooted at the operation, the generative
function, the address prefix and the pending nodes behind the execution's
key. Same chain, same model code path, same count. Two parts are outside
what a key can see, and are handled so:

* an old trace not yet evaluated by the loop driver (`Trace._ready` unset):
  such a site is always walked;
* pending arrays reaching the model from outside (arguments, closures, lazy
  globals) that change state between calls, e.g. evaluated by the driver after
  the first step: a count is trusted only after two walks in a row agree
  (`TRUSTED`), so the start of a run is walked.

The remaining assumption: a model body that, for the same chain of sites,
builds a different graph for a parameter (a branch on a value read with
`.item()` that changes only how a parameter is computed) is not detected.
Vectorized executions (under `mx.vmap`) are always walked.
"""

from __future__ import annotations

import io
import itertools
import re
import sys

import mlx.core as mx

__all__ = ["TRUSTED", "root", "entry", "record", "signature", "dist_signature", "verifying", "clear", "stats"]

TRUSTED = 2  # walks in a row that must agree before a count is reused
MAX_ENTRIES = 200_000  # the cache is cleared when it grows past this (each entry is a few hundred bytes)

_RECT = re.compile(r"shape=rectangle")


class Entry:
    """One chain position: the event of the site that leads to it and how many walks in a row agreed on it."""

    __slots__ = ("state", "event", "agreed", "pins")

    def __init__(self, state: int, pins):
        self.state = state
        self.event = None
        self.agreed = 0
        self.pins = pins  # objects whose id is in the key: kept alive so that ids are not reused


_entries: dict = {}  # (chain state, site signature) -> Entry; root signature -> Entry
warm_states: set = set()  # chain states with a trusted successor (the next site will likely be looked up)
verified: list | None = None  # while `verifying`: (address, cached event, walked event) of every would-be hit
counts = {"hits": 0, "walks": 0}
_ids = itertools.count(1)  # chain states: never reused, also across `clear`


def clear() -> None:
    """Forget every count (tests; also when the cache outgrows MAX_ENTRIES)."""
    _entries.clear()
    warm_states.clear()


def stats() -> dict:
    """Sites answered from the cache and sites walked since the process started, and the cache's size."""
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


def entry(state, sig, pins) -> Entry:
    """The entry of the site with signature `sig` after chain position `state` (created empty if new)."""
    k = (state, sig)
    e = _entries.get(k)
    if e is None:
        if len(_entries) >= MAX_ENTRIES:
            clear()
        e = _entries[k] = Entry(next(_ids), pins or None)
    return e


def root(handler, prefix: tuple) -> int | None:
    """The chain state a top-level execution starts from; None when it must be walked throughout."""
    vec = sys.modules.get("genmlx.vectorize")
    if vec is not None and vec.batching():
        return None
    gf = handler.gen_fn
    return entry(None, (type(handler), id(gf), prefix, _key_nodes(handler.keys)), (gf,)).state


def _key_nodes(keys) -> int:
    """Pending primitives behind the key the execution will draw from (0 once the driver evaluated it).

    A nested stream takes its key from its parent on first use: the root stream's
    key and unused pool are what it will reach.
    """
    if keys is None:
        return 0
    while keys._parent is not None:
        keys = keys._parent
    arrays = [a for a in (keys._key, *keys._pool) if type(a) is mx.array]
    if not arrays:
        return 0
    buf = io.StringIO()
    mx.export_to_dot(buf, *arrays)  # a key's graph is a few splits deep: no deep-recursion helper needed
    return len(_RECT.findall(buf.getvalue()))


def record(state, e: Entry, event, cacheable: bool) -> None:
    """A walked site's event for entry `e` (reached from `state`): two agreeing walks in a row trust it."""
    counts["walks"] += 1
    if verified is not None and e.agreed >= TRUSTED:
        verified.append((event.address, e.event, event))
    if not cacheable:
        e.agreed = 0
        return
    if event == e.event:
        e.agreed += 1
    else:
        e.event, e.agreed = event, 1
    if e.agreed >= TRUSTED:
        warm_states.add(state)


def signature(x, pins: list):
    """A hashable description of `x` that determines the graph genmlx builds from it.

    Python numbers and strings by value (a float as itself, other types with
    their type), arrays by shape and dtype, containers element-wise, a
    distribution by type and public parameters; other objects by identity
    (appended to `pins`).
    """
    t = type(x)
    if t is mx.array:
        return (x.shape, x.dtype)
    if t is float:
        return x
    if t is int or t is bool or t is str or x is None:
        return (t, x)
    if t is tuple or t is list:
        return (t, *[signature(y, pins) for y in x])
    if t is dict:
        return (t, *[(k, signature(v, pins)) for k, v in x.items()])
    if getattr(x, "_is_distribution", False):
        return dist_signature(x, pins)
    pins.append(x)
    return (t, id(x))


def dist_signature(d, pins: list) -> tuple:
    """A distribution's type and public parameters (as `signature` describes them)."""
    out = [type(d)]
    for k, v in d.__dict__.items():
        if k[0] == "_":
            continue
        t = type(v)
        if t is float:
            out.append(v)
        elif t is mx.array:
            out.append((v.shape, v.dtype))
        else:
            out.append((k, signature(v, pins)))
    return tuple(out)
