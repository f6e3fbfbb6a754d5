"""`fused`: one MLX kernel (one graph node) per call of an elementwise function.

MLX's `mx.compile` fuses chains of elementwise primitives into one `Compiled`
primitive, so a log-density that is 60 primitives eager becomes 1 graph node
(1 buffer when evaluated). Its fusion pass (MLX 0.32, `compile.cpp`) has three
limits that decide whether a function really becomes one node; every kernel in
`genmlx.special` and `genmlx.distributions` is written for them:

* depth: a fused region reaches at most 11 primitives back from its output
  (`max_compile_depth`), so polynomials use Estrin's scheme and sums are
  balanced trees;
* inputs: at most 24 distinct inputs per region (`max_compile_arrays`), and
  every distinct scalar constant counts, as does an intermediate shared by two
  consumers while the pass has seen only one of them;
* `shapeless=True` inserts a `Broadcast` per constant that does not fuse, so we
  compile per input shape (a retrace costs about a millisecond of Python; the
  generated C++ kernel is shared between shapes of the same layout).

Python numbers passed to a fused function become float32 arrays: a constant
array is not a graph node, and changing its value never triggers a recompile.
Integer or boolean arrays are cast inside the kernel (`as_float`), where the
cast fuses. CPU fusion needs a C++ compiler at run time; without one MLX runs
the primitives one by one (same values, more nodes) — the node-count tests
catch that. Work done once per run (a sampler's setup) runs under `one_shot()`,
where fused and `compiled` functions run as plain primitives: a kernel that runs
once is not worth its compilation.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Callable, Iterator

import mlx.core as mx

__all__ = ["fused", "compiled", "as_float", "farray", "one_shot"]

_F32 = mx.float32
_ONE_SHOT = contextvars.ContextVar("genmlx_fuse_one_shot", default=False)


@contextlib.contextmanager
def one_shot() -> Iterator[None]:
    """Fused functions called inside run as their plain primitives, with no kernel compiled.

    For work done once per run (a sampler's setup: one model execution, one
    density at the start). A fused kernel is compiled the first time a machine
    meets it (C++ on a CPU, ~0.4 s each here; NVRTC on a GPU, ~3.5 s each on an H100; MLX
    keeps them on disk), and a kernel that runs once pays that for nothing. Loops never run
    inside. A context of its thread (and task): other threads compile as usual.
    """
    token = _ONE_SHOT.set(True)
    try:
        yield
    finally:
        _ONE_SHOT.reset(token)


def farray(v) -> mx.array:
    """A float32 constant for Python numbers (not a graph node); arrays pass unchanged."""
    if isinstance(v, mx.array):
        return v
    return mx.array(v, dtype=_F32)


def as_float(x: mx.array) -> mx.array:
    """`x` as a floating array (inside a fused function the cast fuses)."""
    return x if mx.issubdtype(x.dtype, mx.floating) else x.astype(_F32)


def fused(fn: Callable) -> Callable:
    """Compile `fn` (arrays in, arrays out, elementwise) into one kernel per input shape.

    The wrapper converts Python numbers to float32 arrays. Inside another
    compiled function, under `mx.grad` or under `mx.vmap` the call is traced
    through (MLX inlines it), so fused functions compose freely. `fn.raw` is the
    plain function, which the call runs instead inside `one_shot()`.
    """
    inner = compiled(fn)

    @functools.wraps(fn)
    def call(*args):
        return inner(*[a if isinstance(a, mx.array) else mx.array(a, dtype=_F32) for a in args])

    call.raw = fn
    return call


def compiled(fn: Callable) -> Callable:
    """`mx.compile(fn)`, except inside `one_shot()`, where `fn` runs as it is (nothing to compile)."""
    kernel = mx.compile(fn)

    @functools.wraps(fn)
    def call(*args):
        return fn(*args) if _ONE_SHOT.get() else kernel(*args)

    call.raw = fn
    return call
