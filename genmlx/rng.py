"""genmlx's random stream: keys, seeding, and deterministic splitting.

Every GFI method and inference function takes an optional `key=`. Without one
they draw from genmlx's own stream, which `seed(n)` resets. The stream lives on
the host (Python's `random.Random`), so drawing a key creates a constant array,
never a lazy graph that would grow across calls.
"""

from __future__ import annotations

import random as _random

import mlx.core as mx

__all__ = ["seed", "next_key", "resolve", "KeyStream"]

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
