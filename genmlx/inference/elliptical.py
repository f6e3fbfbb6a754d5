"""Elliptical slice sampling (Murray, Adams and MacKay 2010) for sites with Gaussian priors.

For sites x with prior N(mu, sigma^2) (each `dist.normal`, possibly
array-valued; jointly updated sites must not be each other's parents), the
target is prior(x) L(x) with L everything else in the model. Each iteration
draws nu ~ N(0, sigma^2), a slice level log y = log L(x) + log u and an angle
theta, then proposes x' = mu + (x - mu) cos(theta) + nu sin(theta), shrinking
the angle bracket towards 0 until log L(x') > log y. There is no rejection:
every iteration moves. log L(x') - log L(x) comes from `update`: its weight
minus the change in the sites' own prior log densities.

Whether a proposal is on the slice is a host decision: each shrink round is
one sync through `driver.host` (counted; the number of rounds per iteration is
the statistic `num_steps`). Everything else stays lazy.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import mlx.core as mx

from ..address import from_path, to_path
from ..choicemap import ChoiceMap
from ..rng import KeyStream
from ..trace import Trace
from . import driver
from ._common import start_site_chain
from .mh import run_chain
from .result import InferenceResult

__all__ = ["elliptical_slice", "elliptical_slice_step", "elliptical_slice_kernel"]

MAX_ROUNDS = 200
_TWO_PI = 2.0 * math.pi


def _gaussian_site(trace: Trace, path):
    st = trace._find(path)
    if st is None or st.sites is not None:
        raise ValueError(f"elliptical_slice: address {from_path(path)!r} is not a random choice of {trace.gen_fn.name}")
    d = st.gen_fn
    if getattr(d, "name", None) != "normal" or not hasattr(d, "mu") or not hasattr(d, "sigma"):
        raise ValueError(f"elliptical_slice: the prior at address {from_path(path)!r} is "
                         f"{getattr(d, 'name', type(d).__name__)}, not normal (elliptical slice sampling "
                         "needs a Gaussian prior)")
    return st, d


def elliptical_slice_step(key, trace: Trace, addresses: Sequence) -> tuple[Trace, dict]:
    """One elliptical slice iteration over `addresses` jointly. A kernel once `addresses` is bound."""
    paths = [to_path(a) for a in addresses]
    ks = KeyStream(key)
    model = trace.gen_fn
    sites = [_gaussian_site(trace, p) for p in paths]
    xs = [st.retval for st, _ in sites]
    nus = [d.sigma * mx.random.normal(x.shape, key=ks()) for x, (_, d) in zip(xs, sites)]
    log_u = mx.log(mx.random.uniform(key=ks()))
    theta = mx.random.uniform(0.0, _TWO_PI, key=ks())
    lo, hi = theta - _TWO_PI, theta
    old_prior = sum(mx.sum(st.score) for st, _ in sites)
    for rounds in range(1, MAX_ROUNDS + 1):
        c, s = mx.cos(theta), mx.sin(theta)
        leaves = {p: (x - d.mu) * c + nu * s + d.mu for p, x, nu, (_, d) in zip(paths, xs, nus, sites)}
        new, w, _ = model._update(trace, ChoiceMap._from_leaves(leaves), trace.args, ks.child())
        new_prior = sum(mx.sum(new._find(p).score) for p in paths)
        on_slice = (w - (new_prior - old_prior)) > log_u
        if driver.host(on_slice):
            return new, {"num_steps": rounds}
        lo = mx.where(theta < 0, theta, lo)
        hi = mx.where(theta < 0, hi, theta)
        theta = mx.random.uniform(lo, hi, key=ks())
    raise RuntimeError(f"elliptical_slice: no point on the slice after {MAX_ROUNDS} shrink rounds at "
                       f"{[from_path(p) for p in paths]} (is the likelihood of the current trace NaN or -inf?)")


def elliptical_slice_kernel(addresses: Sequence) -> Callable:
    addrs = list(addresses)

    def kernel(key, trace):
        return elliptical_slice_step(key, trace, addrs)

    kernel.__name__ = "elliptical_slice_kernel"
    return kernel


def elliptical_slice(model, args: tuple, observations=None, *, addresses: Sequence, n_samples: int, burn: int = 0,
                     thin: int = 1, key=None, init: Trace | None = None, callback=None,
                     progress=None) -> InferenceResult:
    """Elliptical slice sampling of the Gaussian-prior sites `addresses` (updated jointly).

    `.stats["num_steps"]` holds the shrink rounds of each iteration (each one a
    counted sync); `.stats["syncs_per_iteration"]` their mean.

    Raises:
        ValueError: an address that is not a normal-prior random choice, or that
            is observed; n_samples < 0, burn < 0, thin < 1.
    """
    tr, obs, addresses, paths, k_run = start_site_chain("elliptical_slice", model, args, observations, addresses, init, key,
                                                        n_samples=n_samples, burn=burn, thin=thin)
    for p in paths:
        _gaussian_site(tr, p)
    return run_chain("elliptical_slice", elliptical_slice_kernel(addresses), tr, n_samples, burn=burn, thin=thin,
                     key=k_run, callback=callback, progress=progress, summary_paths=paths)
