"""Gibbs sampling for finite discrete sites, by enumerating each site's support.

For a site x with finite support {v_1..v_K}, `update(trace, {x: v_j})` gives
w_j = log p(x = v_j, rest) - log p(trace); the new value is drawn from the
full conditional p(x = v_j | rest) = softmax(w)_j. With a static structure the
K candidate traces are merged by `mx.where(idx == j, ...)` leaf by leaf — no
host sync; when a value changes which sites exist, the index is brought to the
host (a counted sync). Supports: `bernoulli` {0, 1}, `categorical` 0..K-1,
`discrete_uniform` lo..hi, and any distribution with an `enumerate_support()`
method or a finite integer support (`support.low`..`support.high`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import mlx.core as mx

from ..address import from_path, to_path
from ..checks import DeferredCheck
from ..choicemap import ChoiceMap
from ..rng import KeyStream
from ..trace import Trace
from . import driver
from ._common import same_structure, select_trace, start_site_chain
from .mh import run_chain
from .result import InferenceResult

__all__ = ["gibbs", "gibbs_step", "gibbs_kernel", "enumerate_support"]

_MAX_SUPPORT = 1024


def enumerate_support(d, address=None) -> list:
    """The finite support of distribution `d` as Python numbers, else a ValueError naming the site."""
    f = getattr(d, "enumerate_support", None)
    if f is not None:
        return list(f())
    s = getattr(d, "support", None)
    where = f" at address {address!r}" if address is not None else ""
    if s is not None and s.kind == "boolean":
        return [0, 1]
    if getattr(d, "name", "") == "categorical":
        logits = getattr(d, "logits", None)
        if logits is None:
            logits = getattr(d, "probs", None)
        if logits is not None and hasattr(logits, "shape") and len(logits.shape) == 1:
            return list(range(int(logits.shape[-1])))
    if s is not None and s.discrete and isinstance(s.low, (int, float)) and isinstance(s.high, (int, float)):
        if math.isfinite(s.low) and math.isfinite(s.high) and s.high - s.low < _MAX_SUPPORT:
            return list(range(int(s.low), int(s.high) + 1))
    for lo_name, hi_name in (("lo", "hi"), ("low", "high")):
        lo, hi = getattr(d, lo_name, None), getattr(d, hi_name, None)
        if getattr(d, "name", "") == "discrete_uniform" and isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return list(range(int(lo), int(hi) + 1))
    raise ValueError(f"gibbs: the site{where} has distribution {getattr(d, 'name', type(d).__name__)}, "
                     "whose support is not finite and enumerable (Gibbs needs bernoulli, categorical, "
                     "discrete_uniform or another finite discrete distribution)")


def _site(trace: Trace, path):
    st = trace._find(path)
    if st is None or st.sites is not None:
        raise ValueError(f"gibbs: address {from_path(path)!r} is not a random choice of {trace.gen_fn.name}")
    return st


def gibbs_step(key, trace: Trace, addresses: Sequence) -> tuple[Trace, dict]:
    """One sweep: each address in turn drawn from its full conditional. A kernel `(key, trace) -> (trace, stats)`."""
    paths = [to_path(a) for a in addresses]
    ks = KeyStream(key)
    model = trace.gen_fn
    nan_checks: list = []
    for path in paths:
        st = _site(trace, path)
        support = enumerate_support(st.gen_fn, from_path(path))
        old = st.retval
        cands, ws = [], []
        for v in support:
            val = mx.array(v, dtype=old.dtype) if isinstance(old, mx.array) else mx.array(v)
            new, w, _ = model._update(trace, ChoiceMap._from_leaves({path: val}), trace.args, ks.child())
            cands.append(new)
            ws.append(w)
        lw = mx.stack(ws)
        idx = mx.random.categorical(lw, key=ks())
        # a NaN weight (invalid parameters at that value; its checks are guarded by the weight) leaves the
        # conditional undefined, and MLX's draw would pick it: raised by the driver, naming the address
        nan_checks.append(DeferredCheck(mx.logical_not(mx.any(mx.isnan(lw))), _nan_conditional(path)))
        if all(same_structure(c, cands[0]) for c in cands[1:]):
            merged = cands[-1]
            for j in range(len(cands) - 2, -1, -1):
                merged = select_trace(idx == j, cands[j], merged)
            trace = merged
        else:
            trace = cands[driver.host(idx)]
    return Trace(trace.gen_fn, trace.args, trace.retval, trace.score, trace.sites, (*trace.checks, *nan_checks),
                 trace.batch, trace.aux), {}


def _nan_conditional(path):
    def error() -> Exception:
        return ValueError(f"gibbs: the full conditional of address {from_path(path)!r} is NaN at one of its "
                          "values: a distribution that reads it has invalid parameters there")

    return error


def gibbs_kernel(addresses: Sequence) -> Callable:
    addrs = list(addresses)

    def kernel(key, trace):
        return gibbs_step(key, trace, addrs)

    kernel.__name__ = "gibbs_kernel"
    return kernel


def gibbs(model, args: tuple, observations=None, *, addresses: Sequence, n_samples: int, burn: int = 0,
          thin: int = 1, key=None, init: Trace | None = None, callback=None, progress=None) -> InferenceResult:
    """Gibbs sampling over finite discrete `addresses` (one sweep per iteration).

    Raises:
        ValueError: an address that is not an unobserved random choice, a site
            whose support is not finite, n_samples < 0, burn < 0, thin < 1.
    """
    tr, obs, addresses, paths, k_run = start_site_chain("gibbs", model, args, observations, addresses, init, key,
                                                        n_samples=n_samples, burn=burn, thin=thin)
    for p in paths:
        enumerate_support(_site(tr, p).gen_fn, from_path(p))
    return run_chain("gibbs", gibbs_kernel(addresses), tr, n_samples, burn=burn, thin=thin, key=k_run,
                     callback=callback, progress=progress, params={"addresses": [repr(a) for a in addresses]},
                     summary_paths=paths)
