"""Handlers: what `gm.trace` does inside each GFI operation of a `@gen` function.

A handler is pushed on a stack while a dynamic function's body runs (popped in
`finally`, also when the body raised). `trace(addr, obj, *args)` dispatches to
the top handler; with no handler active it just samples (an untraced call).
Distributions take a fast path; other generative functions are called through
their GFI internals with the constraints / selection / sub-trace at the address.

Site accounting (buffers per trace site) runs only while someone subscribed an
`on_site` observer to `genmlx.events`: then each site's added graph nodes are
counted and emitted as `SiteHandled`, by a graph walk the first times a site is
met and from `genmlx.site_counts`' cache after.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from functools import partial
from typing import Any

import mlx.core as mx

from . import events, site_counts
from .checks import DeferredCheck, GuardedCheck, collapse
from .gfi import same_callee
from .sums import signed_sum, sum_nodes
from .address import AddressError, Path, from_path, to_path
from .choicemap import EMPTY, ChoiceMap
from .rng import KeyStream, next_key
from .selection import Selection
from .thread_state import PerThread, handler_stack
from .trace import Trace
from .memory.budget import check_budget, get_budget
from .memory.graph import pending_node_ids

__all__ = ["trace", "splice", "Handler", "current_handler", "current_root"]

# Each thread traces with its own stacks (genmlx.thread_state): two runs in two threads never mix.
_stack = handler_stack
_prefix = PerThread(lambda: [()])  # full path of the call being handled (for site events)
_given = PerThread(set)  # ids of constraint values that are given latents, not observations (see `given_latents`)
_optional = PerThread(set)  # ids of constraint values a generate may leave unvisited (see `optional_values`)


@contextmanager
def optional_values(values):
    """Within: a `generate` may leave these constraint values unvisited (no AddressError for them).

    `switch` changing branch generates the new branch from the old choices merged with the
    constraints (Gen's Switch): an old choice the new branch never visits is removed, not an error.
    """
    ids = {id(v) for v in values} - _optional
    _optional.update(ids)
    try:
        yield
    finally:
        _optional.difference_update(ids)


def is_optional(v) -> bool:
    return bool(_optional) and id(v) in _optional


def all_optional(c: ChoiceMap) -> bool:
    """True when every leaf of `c` is an optional value (a stray one is then not an error)."""
    return bool(_optional) and all(id(v) in _optional for v in c._leaves.values())


def current_handler():
    return _stack[-1] if _stack else None


def current_root():
    """The generative function of the outermost execution being handled (None outside any)."""
    return _stack[0].gen_fn if _stack else None


@contextmanager
def given_latents(values):
    """Within: a `generate` constrained to these values treats them as given latents, not observations.

    Their parameter checks are then not guarded by the weight (`checks.GuardedCheck`): the
    weight of a pass that re-scores particles from their values is not the one the caller
    checked (compiled_pass.checks_of_values).
    """
    ids = {id(v) for v in values} - _given
    _given.update(ids)
    try:
        yield
    finally:
        _given.difference_update(ids)


def _is_dist(obj) -> bool:
    return getattr(obj, "_is_distribution", False)


def _site_error(path: Path, gf, e: Exception) -> Exception:
    full = _prefix[-1] + path
    return type(e)(f"{e} (at trace address {from_path(full)!r} in {getattr(gf, 'name', gf)})")


class Handler:
    """Base handler: records sites, accumulates score, owns the key stream.

    Scores and weights are collected as lists and summed once, at the end of
    the execution, by one fused node (`sums.signed_sum`); the sites' array
    parameter checks are collected raw and collapsed into one `DeferredCheck`
    (`checks.collapse`) by `finish_checks`.
    """

    op = "simulate"
    __slots__ = ("gen_fn", "keys", "sites", "scores", "weights", "checks", "items", "guarded", "hits", "checked",
                 "chain", "args")

    def __init__(self, gen_fn, keys: KeyStream):
        self.gen_fn = gen_fn
        self.keys = keys
        self.sites: dict[Path, Trace] = {}
        self.scores: list = []
        self.weights: list = []
        self.checks: list = []  # DeferredChecks of nested calls
        self.items: list = []  # (array, predicate, message) of this execution's distribution parameters
        self.guarded: list = []  # the same, for parameters the weight guards (GuardedCheck)
        self.hits = 0  # constrained leaves consumed (to detect unknown constraint addresses)
        self.checked = None  # (array id, requirement) pairs already checked in this execution
        self.chain = _UNSET  # site accounting: this execution's position in genmlx.site_counts' chains
        self.args = ()  # the body's arguments (set by the caller that runs the body; site accounting reads them)

    def __enter__(self):
        _stack.append(self)
        return self

    def __exit__(self, *exc):
        _stack.pop()
        return False

    def add_score(self, s) -> None:
        self.scores.append(s)

    def add_weight(self, w) -> None:
        self.weights.append(w)

    @property
    def score(self):
        """The sum of the recorded site scores (None before any site)."""
        return signed_sum(self.scores) if self.scores else None

    @property
    def weight(self):
        return signed_sum(self.weights) if self.weights else None

    def record(self, path: Path, obj, st: Trace) -> None:
        self.sites[path] = st
        self.add_score(st.score)
        if st.checks:
            self.checks.extend(st.checks)

    def dist_checks(self, path: Path, d, weighted: bool = False) -> None:
        """Collect `d`'s array parameter checks; apart (GuardedCheck) the guarded ones of a site whose
        log density is in this execution's weight (a constrained site of generate, a retained one of
        regenerate)."""
        lazy = d._lazy_checks
        if lazy:
            if self.checked is None:
                self.checked = set()
            seen = self.checked
            guards = d._score_guards if weighted else ()
            full = None
            for name, must, v, ok in lazy:
                guarded = name in guards
                key = (id(v), type(d), name, must, guarded)
                if key in seen:
                    continue
                seen.add(key)
                if full is None:
                    full = _prefix[-1] + path
                (self.guarded if guarded else self.items).append(
                    (v, ok, partial(_check_message, d.name, name, must, full)))

    def finish_checks(self) -> tuple:
        """This execution's checks: the nested calls', one collapsed check of its own sites' parameters
        and one of its guarded ones."""
        if not self.items and not self.guarded:
            return tuple(self.checks)
        vec = sys.modules.get("genmlx.vectorize")
        batched = vec is not None and vec.batching()  # under mx.vmap: one check each (errors name their site)
        own = []
        for items, kind in ((self.items, DeferredCheck), (self.guarded, GuardedCheck)):
            if not items:
                continue
            if batched:
                own.extend(kind(_all(ok(v)), _message_error(m)) for v, ok, m in items)
            else:
                own.append(collapse(items, kind))
        return (*self.checks, *own)

    def visit(self, path: Path, obj, args: tuple):  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, path: Path, obj, args: tuple):
        """Visit a site; duplicate addresses are an error naming the address."""
        if path in self.sites:
            raise AddressError(
                f"address {from_path(_prefix[-1] + path)!r} is traced twice in one execution of "
                f"{self.gen_fn.name} (each trace site needs its own address)"
            )
        if _is_dist(obj):
            if obj._invalid is not None:
                raise obj._invalid_at(_prefix[-1] + path)
            if args:
                raise TypeError(f"gm.trace({from_path(path)!r}, {obj.name}(...)): a distribution takes no extra args")
        elif not hasattr(obj, "_simulate"):
            raise TypeError(
                f"gm.trace({from_path(path)!r}, ...): expected a distribution or generative function, "
                f"got {type(obj).__name__}"
            )
        else:
            obj._check_args(args)  # a nested call with the wrong args: a TypeError naming the callee
        try:
            if events.site_listeners:
                return self._counted(path, obj, args)
            return self.visit(path, obj, args)
        except ValueError as e:
            if getattr(e, "value_error", False) and _is_dist(obj):  # a value that does not fit: name its address
                raise _site_error(path, obj, e) from None
            raise

    def _counted(self, path: Path, obj, args: tuple):
        """Visit a site and emit its `SiteHandled` (see `genmlx.site_counts` for how nodes are counted)."""
        scores, weights = self.scores, self.weights
        n_scores, n_weights = len(scores), len(weights)
        prefix = _prefix[-1]
        full = prefix + path
        nested = bool(_sinks)
        if nested:  # inside another site's visit: the chain of the enclosing top-level execution
            state = _chain[0]
            if self.chain is _UNSET:  # this execution's first site: its generative function enters the chain
                self.chain = _NESTED
                if state is not None:
                    refs = [site_counts.ref(self.gen_fn)]
                    sig = (type(self), id(self.gen_fn), prefix, site_counts.signature(self.args, refs))
                    state = _advance(state, sig, refs)
        else:
            state = self.chain
            if state is _UNSET:
                state = self.chain = site_counts.root(self, prefix)
        is_dist = _is_dist(obj)
        if state is not None and not is_dist:  # a call: the callee and its arguments, before its sites
            refs = [site_counts.ref(obj)]
            state = _advance(state, (path, id(obj), site_counts.signature(args, refs)), refs)
        ids0 = None
        if state not in site_counts.warm_states:  # a site not met before: take the graph before it now
            ids0 = _pending_ids(scores, weights)
        _chain[0] = state
        sink: list = []
        if is_dist:  # no sites inside: nothing to prefix or collect
            retval = self.visit(path, obj, args)
        else:
            _prefix.append(full)
            _sinks.append(sink)
            try:
                retval = self.visit(path, obj, args)
            finally:
                _prefix.pop()
                _sinks.pop()
        st = self.sites[path]
        state = _chain[0]  # after the sites nested in this one
        e = ev = None
        if state is not None:
            refs = []
            sig = self._site_signature(path, obj, is_dist, st, n_scores, n_weights, refs)
            if None in refs:  # an input no signature describes: walk the rest of this execution
                state = None
            else:
                e = site_counts.entry(state, sig, refs)
                if e.agreed >= site_counts.TRUSTED and site_counts.verified is None:
                    ev = e.event  # the same site, reached the same way: the same event
                    site_counts.counts["hits"] += 1
                state = e.state
        if ev is None:
            walked = self._walk(ids0, n_scores, n_weights, st)
            # The score and weight are summed by fused nodes at the end of the execution: each site
            # owns the nodes its term adds to those sums.
            nodes = (walked + sum_nodes(len(scores)) - sum_nodes(n_scores)
                     + sum_nodes(len(weights)) - sum_nodes(n_weights))
            breakdown = {from_path(x.address): x.nodes for x in sink} if sink else {"site": nodes}
            ev = events.SiteHandled(full, getattr(obj, "name", type(obj).__name__), self.op, nodes, breakdown)
            if e is not None:
                site_counts.record(_chain[0], e, ev)
        if nested:
            _chain[0] = state
            _sinks[-1].append(ev)
        else:
            self.chain = state
        events.emit_site(ev)
        if get_budget() is not None:
            check_budget(f"trace site {from_path(full)!r}")
        return retval

    def _walk(self, ids0, n_scores: int, n_weights: int, st: Trace) -> int:
        """Pending nodes reachable from the terms and the value after the site, not from the terms before it."""
        if ids0 is None:  # not taken before the visit: the earlier terms' graph is unchanged by it
            ids0 = _pending_ids(self.scores[:n_scores], self.weights[:n_weights])
        after = [a for a in (*self.scores, *self.weights) if isinstance(a, mx.array)]
        if isinstance(st.retval, mx.array):
            after.append(st.retval)
        return len(pending_node_ids(*after) - ids0)

    def _site_signature(self, path, obj, is_dist, st, n_scores, n_weights, refs) -> tuple:
        """What determines this site's count besides its chain position (see `genmlx.site_counts`).

        A call's callee and arguments are in the chain already (before its sites).
        """
        r, sc = st.retval, st.score
        tr, ts = type(r), type(sc)
        rsig = (r.shape, r.dtype) if tr is mx.array else r if tr is float else site_counts.signature(r, refs)
        ssig = (sc.shape, sc.dtype) if ts is mx.array else sc if ts is float else site_counts.signature(sc, refs)
        return (path, type(self), site_counts.dist_signature(obj, refs) if is_dist else None, rsig, ssig,
                n_scores, n_weights, len(self.scores), len(self.weights), self.hits, *self._state_signature(path, st))

    def _state_signature(self, path, st) -> tuple:
        return ()


_UNSET = object()
_NESTED = object()


def _advance(state, sig: tuple, refs: list):
    """The chain position after `sig` (None, i.e. walk the rest, when an input has no signature)."""
    return None if None in refs else site_counts.entry(state, sig, refs).state
_chain = PerThread(lambda: [None])  # the chain state of the running top-level execution (genmlx.site_counts)


def _pending_ids(scores: list, weights: list) -> set:
    before = [a for a in (*scores, *weights) if isinstance(a, mx.array)]
    return pending_node_ids(*before) if before else set()


_sinks = PerThread(list)


def _check_message(dist_name, name, must, path) -> str:
    return f"{dist_name}: parameter {name} must be {must} (at trace address {from_path(path)!r})"


def _message_error(msg):
    return lambda: ValueError(msg())


def _all(p):
    return mx.all(p) if isinstance(p, mx.array) else mx.array(bool(p))


def trace(addr, obj, *args) -> Any:
    """Trace a random choice `trace(addr, dist)` or a call `trace(addr, gen_fn, *args)`."""
    if not _stack:
        if _is_dist(obj):
            if obj._invalid is not None:
                raise obj._invalid
            return obj.sample(key=next_key())
        return obj.simulate(args).retval
    return _stack[-1].call(to_path(addr), obj, args)


def splice(gen_fn, *args) -> Any:
    """Inline `gen_fn`'s sites at the caller's level (no address prefix)."""
    body = getattr(gen_fn, "fn", None)
    if body is None:
        raise TypeError(f"gm.splice needs a @gen function, got {type(gen_fn).__name__}")
    gen_fn._check_args(args)
    return body(*args)


# -- the handlers of each GFI operation ----------------------------------------


class SimulateHandler(Handler):
    op = "simulate"
    __slots__ = ()

    def visit(self, path, obj, args):
        if _is_dist(obj):
            v = obj._sample(self.keys(), ())
            st = Trace(obj, (), v, obj._score(v))
            self.dist_checks(path, obj)
        else:
            st = obj._simulate(args, self.keys.child())
        self.record(path, obj, st)
        return st.retval


class GenerateHandler(Handler):
    op = "generate"
    __slots__ = ("constraints",)

    def __init__(self, gen_fn, keys, constraints: ChoiceMap):
        super().__init__(gen_fn, keys)
        self.constraints = constraints

    def visit(self, path, obj, args):
        c = self.constraints
        if _is_dist(obj):
            v = c._leaves.get(path) if c._leaves else None
            constrained = v is not None and id(v) not in _given
            if v is None:
                if c._leaves and c.has_submap(path) and not all_optional(c._get_submap_path(path)):
                    raise AddressError(f"constraint under {from_path(_prefix[-1] + path)!r}, but that site is a single choice")
                v = obj._sample(self.keys(), ())
                lp = obj._score(v)
            else:
                lp = obj._score(v)
                self.add_weight(lp)
                self.hits += 1
            st = Trace(obj, (), v, lp)
            self.dist_checks(path, obj, constrained)
        else:
            sub = c._get_submap_path(path)
            st, w = obj._generate(args, sub, self.keys.child())
            if sub._leaves:
                self.add_weight(w)
                self.hits += len(sub)
        self.record(path, obj, st)
        return st.retval


class AssessHandler(Handler):
    op = "assess"
    __slots__ = ("constraints",)

    def __init__(self, gen_fn, constraints: ChoiceMap):
        super().__init__(gen_fn, None)
        self.constraints = constraints

    def visit(self, path, obj, args):
        c = self.constraints
        if _is_dist(obj):
            v = c._leaves.get(path)
            if v is None:
                raise AddressError(
                    f"assess: address {from_path(_prefix[-1] + path)!r} of {self.gen_fn.name} is not constrained "
                    "(assess needs a value for every random choice)"
                )
            st = Trace(obj, (), v, obj._score(v))
            self.dist_checks(path, obj)
            self.hits += 1
        else:
            sub = c._get_submap_path(path)
            _prefix.append(_prefix[-1] + path)
            try:
                s, r = obj._assess(args, sub)
            finally:
                _prefix.pop()
            st = Trace(obj, args, r, s, {})
            self.hits += len(sub)
        self.record(path, obj, st)
        return st.retval


class UpdateHandler(Handler):
    """weight = new score - old score - (log q of freshly sampled choices).

    Computed from the two scores plus a correction (`self.weights` holds its terms):
    a freshly sampled choice adds its log density to the correction, a nested
    call adds the gap between its score change and its own weight. Retained,
    constrained and removed sites need no per-site weight node at all.
    """

    op = "update"
    __slots__ = ("prev", "prev_score", "constraints", "discard")

    def __init__(self, gen_fn, keys, prev: Trace, constraints: ChoiceMap):
        super().__init__(gen_fn, keys)
        self.prev = prev.sites
        self.prev_score = prev.score
        self.constraints = constraints
        self.discard: dict = {}

    def visit(self, path, obj, args):
        c = self.constraints
        old = self.prev.get(path)
        if _is_dist(obj):
            v = c._leaves.get(path) if c._leaves else None
            if v is not None:
                self.hits += 1
                if old is not None:
                    _discard_trace(old, path, self.discard)
            elif old is not None and old.sites is None:
                if _same_params(old.gen_fn, obj):  # unchanged site: reuse its score, no new graph
                    self.record(path, obj, old)
                    return old.retval
                v = old.retval
            else:
                v = obj._sample(self.keys(), ())
                lp = obj._score(v)
                self.add_weight(lp)  # fresh: excluded from the weight
                if old is not None:
                    _discard_trace(old, path, self.discard)
                st = Trace(obj, (), v, lp)
                self.dist_checks(path, obj)
                self.record(path, obj, st)
                return v
            st = Trace(obj, (), v, obj._score(v))
            self.dist_checks(path, obj)
        else:
            sub = c._get_submap_path(path)
            self.hits += len(sub)
            if old is not None and same_callee(old.gen_fn, obj):
                st, w, d = obj._update(old, sub, args, self.keys.child())
                self.add_weight(st.score - old.score - w)
                for q, val in d._leaves.items():
                    self.discard[path + q] = val
            else:
                st, w = obj._generate(args, sub, self.keys.child())
                self.add_weight(st.score - w if sub._leaves else st.score)
                if old is not None:
                    _discard_trace(old, path, self.discard)
        self.record(path, obj, st)
        return st.retval

    def _state_signature(self, path, st) -> tuple:
        old = self.prev.get(path)
        return (old is None, st is old)

    def finish_removed(self) -> None:
        for p, old in self.prev.items():
            if p not in self.sites:
                _discard_trace(old, p, self.discard)

    def result_weight(self):
        # new score - old score - correction, as one fused node
        return signed_sum(self.scores or [0.0], [self.prev_score, *self.weights])


class RegenerateHandler(Handler):
    """weight = change in log density of the unselected, retained sites.

    Computed as (new score - old score) - (new log density of resampled and fresh
    choices) + (old log density of resampled and removed choices), so an MH step
    that resamples one site of many adds a few nodes, not two per site.
    """

    op = "regenerate"
    __slots__ = ("prev", "prev_score", "selection", "rn", "ro")

    def __init__(self, gen_fn, keys, prev: Trace, selection: Selection):
        super().__init__(gen_fn, keys)
        self.prev = prev.sites
        self.prev_score = prev.score
        self.selection = selection
        self.rn: list = []  # new log density of resampled / fresh choices
        self.ro: list = []  # old log density of resampled / removed choices

    def visit(self, path, obj, args):
        old = self.prev.get(path)
        if _is_dist(obj):
            if old is None or old.sites is not None or self.selection.contains_path(path):
                v = obj._sample(self.keys(), ())
                lp = obj._score(v)
                self.rn.append(lp)
                if old is not None:
                    self.ro.append(old.score)
                weighted = False
            else:
                if _same_params(old.gen_fn, obj):  # unchanged site: reuse its score, no new graph
                    self.record(path, obj, old)
                    return old.retval
                v = old.retval
                lp = obj._score(v)
                weighted = True  # a retained site: its new log density is in the weight
            st = Trace(obj, (), v, lp)
            self.dist_checks(path, obj, weighted)
        else:
            sub = self.selection.get_subselection(path)
            if old is not None and same_callee(old.gen_fn, obj):
                st, w = obj._regenerate(old, sub, args, self.keys.child())
                self.add_weight(st.score - old.score - w)
            else:
                st = obj._simulate(args, self.keys.child())
                self.rn.append(st.score)
                if old is not None:
                    self.ro.append(old.score)
        self.record(path, obj, st)
        return st.retval

    def _state_signature(self, path, st) -> tuple:
        old = self.prev.get(path)
        return (old is None, st is old, len(self.rn), len(self.ro))

    def result_weight(self):
        sites = self.sites
        ro = self.ro + [old.score for p, old in self.prev.items() if p not in sites]
        # (new score - old score) - new density of resampled + old density of resampled - nested
        # corrections, as one fused node
        return signed_sum([*(self.scores or [0.0]), *ro], [self.prev_score, *self.rn, *self.weights])


def _same_params(a, b) -> bool:
    """Same distribution type with the very same parameters (arrays by identity, numbers by value).

    Then a retained site's old score is still exact, and reusing it keeps an
    update's graph proportional to what changed (SMC on a growing dynamic
    model would otherwise re-score every earlier site at every step).
    """
    if type(a) is not type(b):
        return False
    da, db = a.__dict__, b.__dict__
    if da.keys() != db.keys():
        return False
    for k, x in da.items():
        if k[0] == "_":
            continue
        y = db[k]
        if x is y:
            continue
        if type(x) is float and type(y) is float and x == y:
            continue
        if type(x) is int and type(y) is int and x == y:
            continue
        return False
    return True


def _discard_trace(old: Trace, path: Path, out: dict) -> None:
    if old.sites is None:
        out[path] = old.retval
    else:
        for q, v in old.get_choices()._leaves.items():
            out[path + q] = v


def check_consumed(h: Handler, constraints: ChoiceMap) -> None:
    """Every constraint must name a visited site: else an error naming the first stray address."""
    if h.hits == len(constraints):
        return
    for p in constraints.paths():
        if not any(p[: len(q)] == q for q in h.sites) and not is_optional(constraints._leaves[p]):
            raise AddressError(
                f"constraint at address {from_path(_prefix[-1] + p)!r} names no random choice of "
                f"{h.gen_fn.name} (the model never visits it with these args)"
            )
