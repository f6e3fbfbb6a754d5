"""genmlx's random stream: keys, seeding, and deterministic splitting.

Every GFI method and inference function takes an optional `key=`. Without one
they draw from genmlx's own stream, which `seed(n)` resets. The stream lives on
the host (Python's `random.Random`), so drawing a key creates a constant array,
never a lazy graph that would grow across calls.

Lane layouts of vectorized execution (`genmlx.vectorize`). Every random draw
of the built-in distributions goes through `lanewise` (directly or through
`uniform`, `categorical` and the samplers built on them), which makes the
two layouts one code path:

* per-lane (`layout="per_lane"`): N lane keys, the body run under `mx.vmap`
  over them; `lanewise(fn, key, shape)` is `fn(key, shape)` for the lane's
  own key. Lane i is the scalar run with key i, bit for bit.
* shared-key (`layout="shared"`, the default of vectorized inference): the
  body runs under `mx.vmap` over the lane index `mx.arange(N)` with the ONE
  unbatched key, so key splits happen once for all lanes; `lanewise` draws
  `(N,) + shape` values from the key and takes row `lane`: one random-bits
  call and one gather per draw for all lanes, as a plain MLX program drawing
  N values from one key. Lanes are independent draws and the pass is
  reproducible with a fixed key, but lane i is not the scalar run of any key.
  Inside a nested `gm.vmap` the inner lanes have their own (split) keys and
  the outer lane still picks its row.
"""

from __future__ import annotations

import random as _random
from contextlib import contextmanager
from typing import Callable

import mlx.core as mx

from .thread_state import Value

__all__ = ["seed", "next_key", "resolve", "KeyStream", "lanewise", "uniform", "categorical", "shared_lanes",
           "lane_layout", "row"]

_stream = _random.Random(0)


def seed(n: int) -> None:
    """Reset genmlx's stream: the same seed gives the same results."""
    _stream.seed(n)


def next_key() -> mx.array:
    """A fresh key from genmlx's stream (a constant array, no graph)."""
    return mx.array([_stream.getrandbits(32), _stream.getrandbits(32)], dtype=mx.uint32)


def resolve(key) -> mx.array:
    """`key` if given (validated), else the next key from the stream."""
    if key is None:
        return next_key()
    if not isinstance(key, mx.array) or key.dtype != mx.uint32 or key.shape[-1:] != (2,):
        raise TypeError(f"key must be an MLX key (mx.random.key(seed): uint32 array of shape (2,)), got {key!r}")
    return key


class KeyStream:
    """Splits one key into fresh keys in visit order, 8 at a time.

    Costs 2 graph nodes per 8 keys plus a reshape per key. A child stream (for a
    nested call) takes its key from the parent only when it first needs one, so
    sites that sample nothing cost no key at all.
    """

    __slots__ = ("_key", "_pool", "_parent")
    BATCH = 8

    def __init__(self, key: mx.array | None = None, parent: "KeyStream | None" = None):
        self._key = key
        self._pool: list = []
        self._parent = parent

    def child(self) -> "KeyStream":
        return KeyStream(None, self)

    def __call__(self) -> mx.array:
        if not self._pool:
            if self._key is None:
                self._key = self._parent()
            ks = mx.split(mx.random.split(self._key, self.BATCH + 1), self.BATCH + 1)
            self._key = ks[0].reshape(2)
            self._pool = [k.reshape(2) for k in reversed(ks[1:])]
        return self._pool.pop()


# -- lane layouts of vectorized execution (see the module docstring) ------------------------------

_lane_state = Value(None)  # (N, lane index) while a shared-key vectorized pass traces its body (per thread)


def shared_lanes() -> tuple | None:
    """(N, lane) inside a shared-key vectorized pass (lane: the traced lane index), else None."""
    return _lane_state.v


@contextmanager
def lane_layout(lanes: tuple | None):
    """Run the block with `lanes` = (N, lane index) (shared-key) or None (ordinary draws)."""
    prev = _lane_state.v
    _lane_state.v = lanes
    try:
        yield
    finally:
        _lane_state.v = prev


def lanewise(fn: Callable, key, shape: tuple, *extra):
    """`fn(key, shape, *extra)`, a draw whose leading dims are `shape`, made from `key` alone.

    In a shared-key pass: `fn(key, (N,) + shape, *extra)[lane]`. `extra` must not
    depend on the lane (parameters are applied after the draw).
    """
    shape = tuple(shape)
    lanes_ = _lane_state.v
    if lanes_ is None:
        return fn(key, shape, *extra)
    n, lane = lanes_
    return _pick_row(fn(key, (n,) + shape, *extra), lane)


def row(a: mx.array, i: int) -> mx.array:
    """`a[i]` (a Python int) as a view: in MLX an int index is a gather, a kernel launch on a GPU."""
    return mx.squeeze(a[i:i + 1], 0)


@mx.custom_function
def _pick_row(x, lane):
    """`x[lane]`: a shared-key lane's row of an (N, ...) draw.

    Under the shared-key pass's `mx.vmap` the lane index is `arange(N)` batched on
    axis 0, so every lane's row, stacked, is `x` itself: the vmap rule returns it
    (no gather, and the draw's consumers fuse with the sampler's kernel). That is
    the only batched lane index (a nested vmap sees the lane unbatched), so the rule
    only checks the shapes; anything else gathers.
    """
    return x[lane]


@_pick_row.vmap
def _pick_row_vmap(inputs, axes):
    x, lane = inputs
    xa, la = axes
    if xa is None and la == 0 and lane.ndim == 1 and x.ndim >= 1 and lane.shape[0] == x.shape[0]:
        return x, 0
    return mx.vmap(lambda a, i: a[i], in_axes=(xa, la))(x, lane), 0


def lane_key(key) -> mx.array:
    """A key of this lane's own in a shared-key pass (row `lane` of `split(key, N)`); else `key`.

    For samplers that call `mx.random` themselves (user-defined distributions):
    they then draw distinct values per lane, at the per-lane cost.
    """
    lanes_ = _lane_state.v
    if lanes_ is None:
        return key
    n, lane = lanes_
    return mx.random.split(key, n)[lane]


def _uniform(key, shape):
    return mx.random.uniform(shape=shape, key=key)


def uniform(key, shape=()) -> mx.array:
    """U[0, 1) float32 draws of `shape` (`mx.random.uniform`; lane-aware, see `lanewise`)."""
    return lanewise(_uniform, key, shape)


def _gumbel(key, shape):
    return mx.random.gumbel(shape=shape, key=key)


def categorical(logits, key, shape=None, axis: int = -1) -> mx.array:
    """`mx.random.categorical(logits, axis, shape, key)`, lane-aware (Gumbel-max in a shared-key pass)."""
    lanes_ = _lane_state.v
    if lanes_ is None:
        return mx.random.categorical(logits, axis=axis, shape=shape, key=key)
    logits = mx.moveaxis(logits, axis, -1) if axis not in (-1, logits.ndim - 1) else logits
    k = logits.shape[-1]
    out = tuple(logits.shape[:-1]) if shape is None else tuple(shape)
    g = lanewise(_gumbel, key, out + (k,))
    return mx.argmax(logits + g, axis=-1)
