"""Involutive MCMC (Gen's `mh(trace, proposal, proposal_args, involution)`).

An auxiliary proposal q(u; trace, *args) draws choices u; a deterministic
involution maps (trace choices, u) to (new trace choices, u'), and applying it
twice gives back where it started. Accept with probability min(1, exp(alpha)),

    alpha = log p(new) - log p(old) + log |det J| - log q(u; old) + log q(u'; new)

where J is the Jacobian of the involution on the continuous values it moves
(1 for discrete moves and permutations). The involution is a Python function

    involution(trace, fwd_choices, fwd_retval, proposal_args) -> (new_trace, bwd_choices, weight)

with `weight = log p(new) - log p(old) + log |det J|`: build `new_trace` with
`model.update(trace, constraints)` (its weight is the first part) and add the
log-Jacobian, by hand or with `log_abs_det_jacobian`. Examples are in
docs/inference.md and tests/inference/test_involutive.py (a swap, a reflected
random walk, a multiplicative scaling move whose Jacobian is e^u).
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx

from ..rng import KeyStream
from ..trace import Trace
from ._common import mh_accept, select_trace
from .mh import _mcmc
from .result import InferenceResult

__all__ = ["involutive_mh", "involutive_mh_step", "involutive_mh_kernel", "log_abs_det_jacobian"]


def involutive_mh_step(key, trace: Trace, proposal, proposal_args: tuple, involution: Callable) -> tuple[Trace, dict]:
    """One involutive MH iteration; a kernel once the last three arguments are bound."""
    ks = KeyStream(key)
    ptr = proposal._simulate((trace, *proposal_args), ks.child())
    new, bwd_choices, w = involution(trace, ptr.get_choices(), ptr.retval, proposal_args)
    bwd, _ = proposal._assess((new, *proposal_args), _as_cm(bwd_choices))
    accept, stats = mh_accept(ks(), w - ptr.score + bwd)
    return select_trace(accept, new, trace), stats


def _as_cm(c):
    from ..gfi import as_choicemap

    return as_choicemap(c)


def involutive_mh_kernel(proposal, proposal_args: tuple, involution: Callable) -> Callable:
    args = tuple(proposal_args)

    def kernel(key, trace):
        return involutive_mh_step(key, trace, proposal, args, involution)

    kernel.__name__ = "involutive_mh_kernel"
    return kernel


def involutive_mh(model, args: tuple, observations=None, *, proposal, involution: Callable,
                  proposal_args: tuple = (), n_samples: int, burn: int = 0, thin: int = 1, key=None,
                  init: Trace | None = None, callback=None, progress=None) -> InferenceResult:
    """Involutive MH: `proposal(trace, *proposal_args)` draws auxiliary choices, `involution` maps them.

    Returns the same result as `mh` (per-iteration `accepted`, `accept_prob`,
    `acceptance_rate`, summaries of the unobserved sites).
    """
    if not hasattr(proposal, "_simulate"):
        raise TypeError(f"involutive_mh: proposal must be a generative function, got {type(proposal).__name__}")
    if not callable(involution):
        raise TypeError(f"involutive_mh: involution must be callable, got {type(involution).__name__}")
    return _mcmc("involutive_mh", model, args, observations, None, n_samples, burn, thin, key, init, callback,
                 progress, lambda sel, tr: involutive_mh_kernel(proposal, proposal_args, involution))


def log_abs_det_jacobian(f: Callable[[mx.array], mx.array], x: mx.array) -> mx.array:
    """log |det df/dx| for `f: R^d -> R^d` at `x` (a lazy scalar; d forward-mode products).

    For a scalar `x`, `f` maps scalars to scalars.
    """
    x = mx.array(x) if not isinstance(x, mx.array) else x
    if x.ndim == 0:
        _, (t,) = mx.jvp(f, [x], [mx.array(1.0, dtype=x.dtype)])
        return mx.log(mx.abs(t))
    d = x.shape[0]
    eye = mx.eye(d, dtype=x.dtype)
    cols = [mx.jvp(f, [x], [eye[i]])[1][0] for i in range(d)]
    jac = mx.stack(cols, axis=1)
    _, logdet = mx.linalg.slogdet(jac, stream=mx.cpu)
    return logdet
