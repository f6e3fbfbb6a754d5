"""Helpers shared by the MCMC and importance-sampling modules.

The central one is `select_trace(accept, new, old)`: an MH accept decision
that stays lazy. When the proposed trace has the same structure as the
current one (same sites, same shapes and dtypes — every static-structure
model), the kept trace is built leaf by leaf with `mx.where(accept, new,
old)`, so the decision costs no host sync: the driver's one `mx.eval` per
step evaluates it with everything else. When the structures differ (a
dynamic model whose proposal visited other sites), the decision is brought
to the host through `driver.host`, which counts it as a sync.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import mlx.core as mx
import numpy as np

from ..address import from_path, to_path
from ..checks import DeferredCheck, ok_or_rejected, raise_failed
from ..choicemap import ChoiceMap
from ..evaluation import evaluate
from ..gfi import as_choicemap, same_callee
from ..rng import resolve
from ..selection import Selection
from ..trace import Trace
from . import driver
from .result import Stats

__all__ = [
    "check_count", "select_trace", "same_structure", "mh_accept", "init_trace", "resolve_selection",
    "check_selection", "check_selects_latent", "check_addresses", "observed_union",
    "split_key", "site_values", "latent_paths", "finish_stats", "run_name",
]


# -- argument checks ---------------------------------------------------------------------------

def check_count(algorithm: str, name: str, value: Any, minimum: int) -> int:
    """`value` as an int >= `minimum`, else a ValueError / TypeError naming the parameter."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{algorithm}: {name} must be an int, got {type(value).__name__} {value!r}")
    v = value.__index__()
    if v < minimum:
        raise ValueError(f"{algorithm}: {name} must be >= {minimum}, got {v}")
    return v


def run_name(model) -> str:
    return getattr(model, "name", type(model).__name__)


def split_key(key, n: int = 2) -> list:
    """`n` fresh keys from `key` (or genmlx's stream), evaluated (a setup cost, not a step's)."""
    ks = mx.random.split(resolve(key), n)
    evaluate(ks)
    return [ks[i] for i in range(n)]


# -- initial trace -----------------------------------------------------------------------------

def init_trace(algorithm: str, model, args: tuple, observations, key) -> tuple[Trace, ChoiceMap]:
    """`model.generate(args, observations)`, checked: observations must have positive density.

    An observation outside its distribution's support gives a trace of score
    -inf, from which MCMC can never move; raise a ValueError naming it.
    """
    obs = as_choicemap(observations)
    tr, _ = model.generate(args, obs, key=key)
    score = driver.host(tr.score)
    if not math.isfinite(score):
        if tr.checks:  # an invalid array parameter (a covariance that is not positive definite, ...)
            evaluate([c.ok for c in tr.checks])
            raise_failed(tr.checks)
        raise ValueError(_bad_score(algorithm, tr, obs, score))
    return tr, obs


def start_site_chain(algorithm: str, model, args: tuple, observations, addresses, init, key, *,
                     n_samples: int, burn: int, thin: int):
    """Validate a per-address kernel's inputs and start its chain (Gibbs, elliptical slice).

    Returns (initial trace, observations, the addresses as a list, their paths, the key for the run).
    """
    check_count(algorithm, "n_samples", n_samples, 0)
    check_count(algorithm, "burn", burn, 0)
    check_count(algorithm, "thin", thin, 1)
    k_init, k_run = split_key(key)
    if init is None:
        tr, obs = init_trace(algorithm, model, args, observations, k_init)
    else:
        tr, obs = init, as_choicemap(observations)
    addresses = check_addresses(algorithm, addresses, tr, obs)
    paths = [to_path(a) for a in addresses]
    return tr, obs, addresses, paths, k_run


def _bad_score(algorithm: str, tr: Trace, obs: ChoiceMap, score: float) -> str:
    bad = []
    leaves = _leaf_scores(tr)
    vals = [s for _, s in leaves]
    if vals:
        evaluate(vals)
    for p, s in leaves:
        v = s.item() if s.size == 1 else float(mx.sum(s).item())
        if not math.isfinite(v):
            bad.append((p, v))
    if not bad:
        return f"{algorithm}: the initial trace has log density {score} (no single site is to blame)"
    p, v = bad[0]
    kind = "observation" if obs.has_value(p) else "latent choice"
    return (f"{algorithm}: {kind} at address {from_path(p)!r} has log density {v} under the model "
            f"(outside its distribution's support?): the posterior is undefined")


def _leaf_scores(tr: Trace, prefix=()) -> list:
    out = []
    for p, st in (tr.sites or {}).items():
        if st.sites is None:
            out.append((prefix + p, st.score))
        else:
            out.extend(_leaf_scores(st, prefix + p))
    return out


def latent_paths(tr: Trace, obs: ChoiceMap) -> list:
    """Paths of the trace's random choices that are not observed."""
    return [p for p in tr.get_choices().paths() if not obs.has_value(p)]


def check_selection(algorithm: str, selection, observations: ChoiceMap, *, param: str = "selection") -> Selection:
    """The one validation of a selection every algorithm shares (no trace needed).

    Normalizes `selection` (None: every unobserved choice; an address; a list of
    addresses; a `Selection`) and refuses one that selects an observed address:
    a TypeError or ValueError naming the parameter `param` and the address.
    """
    if selection is None:
        return Selection(observations.paths()).complement()
    if isinstance(selection, (str, int, tuple)) and not isinstance(selection, bool):
        selection = Selection([to_path(selection)])
    elif isinstance(selection, (list, set, frozenset)):
        selection = Selection(to_path(a) for a in selection)
    if not isinstance(selection, Selection):
        raise TypeError(f"{algorithm}: {param} must be a Selection (gm.select(...)), got {type(selection).__name__}")
    observed = [p for p in observations.paths() if selection.contains_path(p)]
    if observed:
        raise ValueError(f"{algorithm}: {param} includes the observed address {from_path(observed[0])!r} "
                         "(observations are fixed: they cannot be resampled or enumerated)")
    return selection


def check_selects_latent(algorithm: str, tr: Trace, obs: ChoiceMap, selection: Selection, *,
                         param: str = "selection") -> None:
    """A ValueError naming `param` when `selection` names no unobserved choice of `tr`."""
    latent = latent_paths(tr, obs)
    if not any(selection.contains_path(p) for p in latent):
        names = ", ".join(repr(a) for a in selection.addresses()) or repr(selection)
        have = ", ".join(repr(from_path(p)) for p in latent[:8]) or "none"
        raise ValueError(f"{algorithm}: {param} ({names}) names no unobserved random choice of "
                         f"{run_name(tr.gen_fn)} (its latent addresses: {have})")


def resolve_selection(algorithm: str, tr: Trace, obs: ChoiceMap, selection, *, param: str = "selection") -> Selection:
    """The selection to resample, validated against the initial trace (`check_selection`, `check_selects_latent`).

    A selection must name at least one unobserved choice of the model and no
    observation; otherwise a ValueError names the parameter `param`.
    """
    selection = check_selection(algorithm, selection, obs, param=param)
    check_selects_latent(algorithm, tr, obs, selection, param=param)
    return selection


def check_addresses(algorithm: str, addresses, tr: Trace, obs: ChoiceMap) -> list:
    """Per-address algorithms' (Gibbs, elliptical slice) `addresses`: each a latent choice of `tr`."""
    addresses = [addresses] if isinstance(addresses, (str, int)) else list(addresses)
    if not addresses:
        raise ValueError(f"{algorithm}: addresses is empty (name at least one random choice)")
    paths = [to_path(a) for a in addresses]
    check_selection(algorithm, Selection(paths), obs, param="addresses")
    have = set(tr.get_choices().paths())
    for a, p in zip(addresses, paths):
        if p not in have:
            shown = ", ".join(repr(from_path(q)) for q in latent_paths(tr, obs)[:8]) or "none"
            raise ValueError(f"{algorithm}: addresses: {a!r} is not a random choice of "
                             f"{run_name(tr.gen_fn)} (its latent addresses: {shown})")
    return addresses


def observed_union(observations_seq) -> ChoiceMap:
    """Every address observed at any step of a sequence of choicemaps (SMC's observations)."""
    leaves: dict = {}
    for o in observations_seq:
        leaves.update(o._leaves)
    return ChoiceMap._from_leaves(leaves)


# -- the lazy accept decision ------------------------------------------------------------------

class _Mismatch(Exception):
    pass


def same_structure(a: Trace, b: Trace) -> bool:
    """True when `select_trace` can merge the two traces leaf by leaf."""
    try:
        _check(a, b)
        return True
    except _Mismatch:
        return False


def _check(a: Trace, b: Trace) -> None:
    if (a.sites is None) != (b.sites is None) or a.batch != b.batch:
        raise _Mismatch
    if a.sites is None:
        if type(a.gen_fn) is not type(b.gen_fn):
            raise _Mismatch
        return
    if a.gen_fn is not b.gen_fn or a.sites.keys() != b.sites.keys() or a.aux != b.aux:
        raise _Mismatch
    for p, s in a.sites.items():
        _check(s, b.sites[p])


def select_trace(accept: mx.array, new: Trace, old: Trace, *, lane_axis: bool = False) -> Trace:
    """`new` where `accept` else `old`: lazily by `mx.where` when the structures agree, else on the host.

    Only what differs is merged: a sub-trace (or site) shared by both is kept as
    is, a site whose value and parameters are the same objects keeps the old
    site, and a distribution parameter is selected only where it changed.

    Args:
        accept: a boolean scalar (or `[C]` per chain with `lane_axis=True`).
        lane_axis: leaves carry a leading chain axis; `accept` is broadcast along it.
    """
    try:
        return _Merge(accept, lane_axis).trace(new, old)
    except _Mismatch:
        if lane_axis:
            raise ValueError("select_trace: per-chain selection needs traces of the same structure") from None
        return new if driver.host(accept) else old


def _same_dist(a, b) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    da, db = getattr(a, "__dict__", None), getattr(b, "__dict__", None)
    if da is None or db is None or da.keys() != db.keys():
        return False
    for k, v in da.items():
        if k.startswith("_"):
            continue  # validation bookkeeping, not parameters
        w = db[k]
        if v is w:
            continue
        if isinstance(v, mx.array) or isinstance(w, mx.array) or v != w:
            return False
    return True


_ARRAY = mx.array
_where = mx.where


class _Merge:
    __slots__ = ("accept", "lanes", "memo", "rejected")

    def __init__(self, accept, lanes: bool):
        self.accept = accept
        self.lanes = lanes
        self.memo: dict = {}
        self.rejected = None

    def trace(self, new: Trace, old: Trace) -> Trace:
        # Structure checks (a mismatch raises _Mismatch: the host decides) interleaved with the merge.
        if new is old:
            return new
        if new.batch != old.batch:
            raise _Mismatch
        ns, os_ = new.sites, old.sites
        if ns is None:
            if os_ is not None:
                raise _Mismatch
            g, h = new.gen_fn, old.gen_fn
            if type(g) is not type(h):
                raise _Mismatch
            d = self.dist(g, h)
            nv, ov = new.retval, old.retval
            if nv is ov:
                if d is None:
                    return old  # same value, same parameters: same log density, nothing to select
                v = nv
            else:
                v = self.value(nv, ov)
            if d is None:
                d = g
            a, b = new.score, old.score
            if a is b:
                sc = a
            elif type(a) is _ARRAY and type(b) is _ARRAY and not self.lanes:  # a site's own score: no memo
                if a.shape != b.shape or a.dtype != b.dtype:
                    raise _Mismatch
                sc = _where(self.accept, a, b)
            else:
                sc = self.value(a, b)
            return Trace(d, new.args, v, sc, None, (), new.batch, new.aux)
        if os_ is None or not same_callee(new.gen_fn, old.gen_fn) or ns.keys() != os_.keys() or new.aux != old.aux:
            raise _Mismatch
        sites = {}
        T = Trace
        for p, s in ns.items():
            o = os_[p]
            if s is o:
                sites[p] = s
            elif type(s) is T and type(o) is T:
                sites[p] = self.trace(s, o)
            else:
                raise _Mismatch
        return Trace(new.gen_fn, self.value(new.args, old.args), self.value(new.retval, old.retval),
                     self.value(new.score, old.score), sites, self.checks(new.checks), new.batch, new.aux)

    def dist(self, a, b):
        """The merged distribution, or None when `a` and `b` have the same parameters.

        A site's distribution holds array parameters computed from other choices (the
        prior mean of a child, say): those are selected too, so the kept trace is all
        old or all new.
        """
        if a is b:
            return None
        da, db = getattr(a, "__dict__", None), getattr(b, "__dict__", None)
        if da is None or db is None or da.keys() != db.keys():
            return a
        changed = None
        other = False
        for k, v in da.items():
            w = db[k]
            if v is w:
                continue
            if type(v) is _ARRAY and type(w) is _ARRAY:
                if changed is None:
                    changed = {}
                changed[k] = self.value(v, w)
            elif k[0] != "_" and not other:
                other = isinstance(v, _ARRAY) or isinstance(w, _ARRAY) or v != w
        if changed is None:
            return a if other else None
        d = type(a).__new__(type(a))
        dd = d.__dict__
        dd.update(da)
        dd.update(changed)
        return d

    def checks(self, cs: tuple) -> tuple:
        # A proposal's parameter checks matter only if it is accepted.
        if not cs:
            return ()
        if self.lanes:
            rejected = mx.logical_not(self.accept)
            return tuple(type(c)(mx.all(mx.logical_or(c.ok, rejected)), c.error) for c in cs)
        acc = self.accept
        return tuple(type(c)(ok_or_rejected(c.ok, acc), c.error) for c in cs)

    def value(self, a, b):
        if a is b:
            return a
        if type(a) is _ARRAY or isinstance(a, mx.array):
            if not isinstance(b, mx.array) or a.shape != b.shape or a.dtype != b.dtype:
                raise _Mismatch
            k = (id(a), id(b))
            out = self.memo.get(k)
            if out is None:
                acc = self.accept
                if self.lanes and a.ndim > 1:
                    acc = acc.reshape(acc.shape + (1,) * (a.ndim - 1))
                out = self.memo[k] = (mx.where(acc, a, b), a, b)
            return out[0]
        if isinstance(a, (tuple, list)):
            if type(a) is not type(b) or len(a) != len(b):
                raise _Mismatch
            vals = [self.value(x, y) for x, y in zip(a, b)]
            return type(a)(*vals) if hasattr(a, "_fields") else type(a)(vals)
        if isinstance(a, dict):
            if type(b) is not dict or a.keys() != b.keys():
                raise _Mismatch
            return {k: self.value(v, b[k]) for k, v in a.items()}
        if isinstance(a, (int, float, str, bool, type(None))):
            if a != b:
                raise _Mismatch
            return a
        if isinstance(a, Trace) and isinstance(b, Trace):
            return self.trace(a, b)
        raise _Mismatch  # an opaque object that differs: only the host can choose


def _accept(key, log_alpha):
    logu = mx.log(mx.random.uniform(shape=log_alpha.shape, key=key))
    return logu < log_alpha, mx.exp(mx.minimum(log_alpha, 0.0))


_accept_compiled = mx.compile(_accept)


def mh_accept(key: mx.array, log_alpha: mx.array) -> tuple[mx.array, dict]:
    """Accept with probability min(1, exp(log_alpha)); lazy (one fused node). NaN never accepts."""
    accept, prob = _accept_compiled(key, log_alpha)
    return accept, {"accepted": accept, "accept_prob": prob}


# -- results -----------------------------------------------------------------------------------

def site_values(traces: list, path) -> np.ndarray:
    """Values at `path` across traces as a float64 array `[draws, *shape]` (one batched copy; views
    over stacked storage, `compiled_mh`'s, give theirs at once)."""
    if not traces:
        return np.zeros((0,))
    stacked = getattr(traces, "array", None)
    if stacked is not None:
        return np.asarray(stacked(path), dtype=np.float64)
    vals = [t._choice_value(path) for t in traces]
    return np.asarray(mx.stack(vals).astype(mx.float32) if vals[0].dtype == mx.bool_ else mx.stack(vals), dtype=np.float64)


def finish_stats(res: driver.RunResult, traces: list | None = None, paths: Iterable | None = None,
                 *, chains_axis: bool = False) -> dict:
    """The result's plain-Python stats: per-iteration history, run counts and summaries (made on
    first read: `Stats`)."""
    from .diagnostics import chain_summaries

    stats: dict = dict(res.stats)
    stats.update(iterations=res.iterations, steps=res.steps, syncs=res.syncs, duration_s=res.duration_s,
                 syncs_per_iteration=(res.syncs / res.iterations) if res.iterations else 0.0)
    acc = stats.get("accepted")
    if acc:
        flat = _flatten_numbers(acc)
        if len(flat):
            stats["acceptance_rate"] = float(flat.mean())
    paths = list(paths or ())
    if traces and paths and len(traces) >= 4:
        def summaries() -> dict:
            draws = {}
            for p in paths:
                v = site_values(traces, p)
                draws[from_path(p)] = np.moveaxis(v, 1, 0) if chains_axis else v[None]  # [C, draws, ...]
            return chain_summaries(draws)

        return Stats(stats, summaries)
    return stats


def _flatten_numbers(x) -> np.ndarray:
    """The numbers in a nested list (None skipped) as one float64 array."""
    try:
        a = np.asarray(x, dtype=np.float64)  # the common case: a regular nest of numbers
        return a.ravel()
    except (ValueError, TypeError):
        pass
    out: list = []
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif v is not None:
            out.append(float(v))
    return np.asarray(out, dtype=np.float64)


def scalar_paths(tr: Trace, selection: Selection, obs: ChoiceMap, limit: int = 50) -> list:
    """Selected latent paths of the trace (for the ESS / R-hat summaries in stats)."""
    return [p for p in latent_paths(tr, obs) if selection.contains_path(p)][:limit]
