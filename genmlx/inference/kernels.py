"""Kernel combinators and the driver loop for kernels.

A kernel is `kernel(key, trace) -> (trace, stats)` with `stats` a dict of
arrays or numbers (`mh_kernel(selection)`, `gibbs_kernel(addresses)`,
`custom_mh_kernel(...)`, `involutive_mh_kernel(...)`,
`elliptical_slice_kernel(...)`, or your own). Combinators build kernels from
kernels; `run_kernel` / `collect` drive one through the loop driver, one
driver step per application of the (combined) kernel.

Statistics of combined kernels: when several sub-kernels report the same
name, their values are stacked (`repeat(mh_kernel(s), 3)` reports `accepted`
as 3 values per iteration); values whose shapes differ are reported under
`"<i>.<name>"` instead.
"""

from __future__ import annotations

from typing import Callable, Sequence

import mlx.core as mx

from ..trace import Trace
from . import driver
from ._common import check_count
from .result import InferenceResult

__all__ = ["chain", "repeat", "cycle", "mix", "run_kernel", "collect"]

Kernel = Callable


def _merge(parts: list[dict]) -> dict:
    names: dict[str, list] = {}
    for i, st in enumerate(parts):
        for k, v in st.items():
            names.setdefault(k, []).append((i, v))
    out: dict = {}
    for k, vals in names.items():
        if len(vals) == 1:
            out[k] = vals[0][1]
            continue
        arrs = [v if isinstance(v, mx.array) else mx.array(v) for _, v in vals]
        if all(a.shape == arrs[0].shape for a in arrs):
            out[k] = mx.stack(arrs)
        else:
            for (i, v) in vals:
                out[f"{i}.{k}"] = v
    return out


def _check_kernels(name: str, kernels) -> list:
    ks = list(kernels)
    if not ks:
        raise ValueError(f"{name}: needs at least one kernel")
    for k in ks:
        if not callable(k):
            raise TypeError(f"{name}: a kernel must be callable as kernel(key, trace), got {type(k).__name__}")
    return ks


def chain(*kernels: Kernel) -> Kernel:
    """Apply the kernels in order (each with its own key)."""
    ks = _check_kernels("chain", kernels)
    if len(ks) == 1:
        return ks[0]

    def kernel(key, trace):
        keys = mx.random.split(key, len(ks))
        parts = []
        for i, k in enumerate(ks):
            trace, st = k(keys[i], trace)
            parts.append(st)
        return trace, _merge(parts)

    kernel.__name__ = "chain(" + ", ".join(getattr(k, "__name__", "kernel") for k in ks) + ")"
    return kernel


def repeat(kernel: Kernel, n: int) -> Kernel:
    """Apply `kernel` `n` times."""
    n = check_count("repeat", "n", n, 1)
    return chain(*([kernel] * n))


def cycle(kernels: Sequence[Kernel], n: int = 1) -> Kernel:
    """Apply the kernels in order, the whole cycle `n` times."""
    ks = _check_kernels("cycle", kernels)
    n = check_count("cycle", "n", n, 1)
    return chain(*(ks * n))


def mix(kernels: Sequence[Kernel], weights: Sequence[float] | None = None) -> Kernel:
    """Apply one kernel chosen at random with probabilities proportional to `weights`.

    Which Python code runs is a host decision: one counted sync per application.
    The stats gain `kernel` (the index chosen).
    """
    ks = _check_kernels("mix", kernels)
    w = [1.0] * len(ks) if weights is None else [float(x) for x in weights]
    if len(w) != len(ks):
        raise ValueError(f"mix: {len(ks)} kernels but {len(w)} weights")
    if any(not x >= 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"mix: weights must be >= 0 with a positive sum, got {w}")
    logits = mx.log(mx.array(w))

    def kernel(key, trace):
        k1, k2 = mx.random.split(key)
        i = driver.host(mx.random.categorical(logits, key=k1))
        trace, st = ks[i](k2, trace)
        return trace, {**st, "kernel": i}

    kernel.__name__ = "mix"
    return kernel


def run_kernel(kernel: Kernel, trace: Trace, n_samples: int, *, burn: int = 0, thin: int = 1, key=None,
               callback=None, progress=None, algorithm: str = "kernel") -> InferenceResult:
    """Drive `kernel` from `trace`: `burn` warm-up applications, then keep every `thin`-th trace.

    Returns an `InferenceResult` (traces, per-iteration stats of the kernel,
    `acceptance_rate` when the kernel reports `accepted`, `syncs`, ...).
    """
    from .mh import run_chain

    if not isinstance(trace, Trace):
        raise TypeError(f"run_kernel: trace must be a Trace, got {type(trace).__name__}")
    if not callable(kernel):
        raise TypeError(f"run_kernel: kernel must be callable as kernel(key, trace), got {type(kernel).__name__}")
    return run_chain(algorithm, kernel, trace, n_samples, burn=burn, thin=thin, key=key, callback=callback,
                     progress=progress, params={"kernel": getattr(kernel, "__name__", "kernel")})


def collect(kernel: Kernel, trace: Trace, n_samples: int, *, burn: int = 0, thin: int = 1, key=None,
            callback=None, progress=None) -> list:
    """`run_kernel(...).traces`: the kept traces only."""
    return run_kernel(kernel, trace, n_samples, burn=burn, thin=thin, key=key, callback=callback,
                      progress=progress).traces
