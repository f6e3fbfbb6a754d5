"""Plumbing shared by MALA, HMC and NUTS (and used by VI): argument checks, setup, traces, result statistics."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from ..choicemap import ChoiceMap
from ..evaluation import evaluate
from ..memory import materialize
from ..rng import resolve
from ..special.fuse import one_shot
from ..tiered_compile import MODES as FUSE_MODES
from ..trace import TraceViews
from . import driver
from .result import InferenceResult, Stats
from .transforms import unconstrained_logdensity

__all__ = ["check_int", "check_positive", "check_step_size", "Setup", "setup", "initial_gradient", "build_traces",
           "finish", "summarize"]


def check_int(algorithm: str, name: str, value: Any, minimum: int) -> int:
    """`value` as an int >= `minimum`; otherwise an error naming the parameter."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{algorithm}: {name} must be an int, got {type(value).__name__} {value!r}")
    v = value.__index__()
    if v < minimum:
        raise ValueError(f"{algorithm}: {name} must be >= {minimum}, got {v}")
    return v


def check_positive(algorithm: str, name: str, value: Any, high: float | None = None) -> float:
    """`value` as a finite float > 0 (and < `high`); otherwise a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{algorithm}: {name} must be a positive number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0 and (high is None or v < high)):
        bound = f" and < {high}" if high is not None else ""
        raise ValueError(f"{algorithm}: {name} must be finite and > 0{bound}, got {value!r}")
    return v


def check_step_size(algorithm: str, step_size: Any) -> float:
    return check_positive(algorithm, "step_size", step_size)


def check_fuse(algorithm: str, fuse: Any) -> str:
    """`fuse` is one of `genmlx.tiered_compile.MODES`."""
    if not isinstance(fuse, str) or fuse not in FUSE_MODES:
        raise ValueError(f"{algorithm}: fuse must be one of {', '.join(map(repr, FUSE_MODES))}, got {fuse!r}")
    return fuse


class Setup(NamedTuple):
    logp: Any  # the unconstrained log density (with .layout)
    z0: mx.array
    key: mx.array  # for the driver
    aux_key: mx.array  # for anything else the sampler draws at setup (chain starts)


def setup(algorithm: str, model, args: tuple, observations, addresses, key, init=None) -> Setup:
    """Split the key, build the unconstrained density, check the initial point has finite density."""
    ks = mx.random.split(resolve(key), 3)
    evaluate(ks)
    with one_shot():  # one model execution and one density: no kernel compiled for them
        logp = unconstrained_logdensity(model, args, observations, addresses, key=ks[0], init=init)
        z0 = logp.layout.z0
        lp0 = driver.host(logp(z0))
    if not math.isfinite(lp0):
        vals = {a: np.asarray(v).tolist() for a, v in logp.to_constrained(z0).items()}
        raise ValueError(f"{algorithm}: the initial point {vals} has log density {lp0} "
                         "(an observation outside its support, or a bad init?)")
    return Setup(logp, z0, ks[1], ks[2])


def initial_gradient(value_and_grad, z0):
    """`(logp, grad)` at the chain's start: one call, so run plainly (`one_shot`); a compiled call
    would build kernels that nothing else uses, each 0.4-3.5 s on a new machine."""
    with one_shot():
        return value_and_grad(z0)


_KEY = None


def _const_key():
    global _KEY
    if _KEY is None:
        _KEY = mx.random.key(0)
    return _KEY


def build_traces(model, args: tuple, layout, zs: list, chains: bool = False) -> list:
    """Traces in each address's own space for the kept unconstrained points, made when first read.

    The sampled addresses' values are computed now (`KeptTraces.values` reads
    them); the traces themselves come from one `mx.vmap` pass of
    `model.generate` over all kept points, run on the first access to a trace
    (each trace then gets constant arrays: no graph per trace). With `chains`,
    points are [C, dim] and each trace is vectorized (batch = C).
    """
    if not zs:
        return []
    z = mx.stack(zs)
    n, c = z.shape[0], (z.shape[1] if chains else None)
    vals = layout.to_constrained(z.reshape(-1, layout.dim))
    sampled = {s.address: np.asarray(vals[s.address]).reshape((n, c) + s.shape if chains else (n,) + s.shape)
               for s in layout.sites}
    box: dict = {}

    def view(i):
        if "make" not in box:
            box["make"] = _trace_maker(model, args, layout, vals, n, c, chains)
        return box["make"](i)

    return KeptTraces(view, sampled, n)


def _trace_maker(model, args, layout, vals, n, c, chains):
    """`i -> trace i` from one vmapped `generate` over the kept points (scalar runs if it cannot batch)."""
    from ..checks import raise_failed
    from ..rng import KeyStream
    from ..tree import flatten
    from ..vectorize import VectorizationError, _checks_out, _pack_top, _reduce_checks, _unpack, vmap_tree

    sites, obs = layout.sites, layout.observations._leaves

    def lane_fn(xs):
        leaves = dict(obs)
        for s, x in zip(sites, xs):
            leaves[s.path] = x
        tr, _ = model._generate(args, ChoiceMap._from_leaves(leaves), KeyStream(_const_key()))
        return _pack_top(tr), _checks_out(tr)

    try:
        node, cs = vmap_tree(lane_fn, (tuple(vals[s.address] for s in sites),), model.name, "traces")
    except VectorizationError:
        if chains:
            raise
        return _scalar_traces(model, args, layout, vals, n).__getitem__
    leaves, rebuild = flatten(node)
    checks = _reduce_checks(cs)
    evaluate(leaves, [k.ok for k in checks])
    raise_failed(checks)
    host = [np.asarray(x) for x in leaves]
    if chains:
        host = [h.reshape((n, c) + h.shape[1:]) for h in host]
    return lambda i: _unpack(rebuild([mx.array(h[i]) for h in host]), args, c, ())


class KeptTraces(TraceViews):
    """The kept traces of a gradient-based run, each made on access from host copies of its arrays
    (a 102-site model's 1,000 traces are not built unless read); `values(addr)` reads a sampled
    address's values without building any."""

    noun = "sample"

    def __init__(self, view, sampled: dict, n: int):
        super().__init__(n)
        self._make, self._sampled = view, sampled

    def _view(self, i: int):
        return self._make(i)

    def values(self, addr) -> list:
        from ..address import from_path, to_path

        a = from_path(to_path(addr))
        if a in self._sampled:
            return self._sampled[a].tolist()
        return [t[addr].tolist() for t in self]


def _scalar_traces(model, args, layout, vals, n) -> list:
    host = {a: np.asarray(v) for a, v in vals.items()}
    obs = layout.observations._leaves
    out = []
    for i in range(n):
        leaves = dict(obs)
        for s in layout.sites:
            leaves[s.path] = mx.array(host[s.address][i])
        out.append(model.generate(args, ChoiceMap._from_leaves(leaves), key=_const_key())[0])
    return materialize(out)


def _draws(layout, zs: list, chains: bool) -> dict:
    """{address: np [chains, draws, *shape]} in each address's own space."""
    z = mx.stack(zs)  # [draws, dim] or [draws, C, dim]
    vals = layout.to_constrained(z)
    out = {}
    for a, v in vals.items():
        v = np.asarray(v, dtype=np.float64)
        out[a] = np.moveaxis(v, 1, 0) if chains else v[None]
    return out


def _mean(xs) -> float:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()) if a.size else math.nan


def finish(res: driver.RunResult, model, args: tuple, layout, *, burn: int, n_samples: int, thin: int,
           acceptance: str = "accepted", chains: bool = False, extra: dict | None = None) -> InferenceResult:
    """The `InferenceResult`: traces, per-iteration stats, summaries over the sampling phase."""
    from .diagnostics import chain_summaries

    stats: dict = dict(res.stats)
    it = res.iterations
    stats.update(iterations=it, steps=res.steps, syncs=res.syncs, duration_s=res.duration_s,
                 syncs_per_iteration=(res.syncs / it) if it else 0.0, burn=burn, n_samples=n_samples, thin=thin)
    post = {k: v[burn:] for k, v in res.stats.items()}
    if post.get(acceptance):
        stats["acceptance_rate"] = _mean(post[acceptance])
    if post.get("accept_prob"):
        stats["mean_accept_prob"] = _mean(post["accept_prob"])
    if "diverging" in res.stats:
        stats["divergences"] = int(np.sum(np.asarray(post["diverging"], dtype=bool)))
        stats["divergences_warmup"] = int(np.sum(np.asarray(res.stats["diverging"][:burn], dtype=bool)))
    if extra:
        stats.update(extra)
    zs = res.samples
    if len(zs) >= 4:  # made on first read
        stats = Stats(stats, lambda: chain_summaries(_draws(layout, zs, chains)))
    traces = build_traces(model, args, layout, zs, chains)
    return InferenceResult(traces, stats, state=res.state)


def summarize(acceptance: str = "accepted"):
    """The driver's `summarize` hook: acceptance and divergences for the RunEnded event."""

    def f(r: driver.RunResult) -> dict:
        out = {}
        if r.stats.get(acceptance):
            out["acceptance_rate"] = _mean(r.stats[acceptance])
        if "diverging" in r.stats:
            out["divergences"] = int(np.sum(np.asarray(r.stats["diverging"], dtype=bool)))
        return out

    return f
