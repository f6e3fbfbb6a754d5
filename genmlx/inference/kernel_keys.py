"""Cache keys for compiled kernels: what of a trace and its arguments a compiled function bakes in.

A compiled kernel (`compiled_mh`'s block, `mh`'s compiled proposal) is traced
once per model structure and reused while the key below is the same: the
structure of the trace (sites, distribution classes and their static
attributes, shapes and dtypes of arrays) and the model's arguments (arrays by
identity: the compiled function holds them as constants).
"""

from __future__ import annotations

import mlx.core as mx

from ..trace import Trace

__all__ = ["args_key", "structure_key", "KernelCache"]


def _key(x, array_key):
    """A hashable stand-in for `x` (containers walked; arrays as `array_key` makes them)."""
    if isinstance(x, mx.array):
        return array_key(x)
    if isinstance(x, (list, tuple)):
        return (type(x), tuple(_key(y, array_key) for y in x))
    if isinstance(x, dict):
        return (type(x), tuple((k, _key(v, array_key)) for k, v in x.items()))
    return (type(x), x) if _hashable(x) else ("id", id(x))


def _static_key(x):
    """A static part of a trace's structure: arrays by shape and dtype."""
    return _key(x, lambda a: ("a", tuple(a.shape), a.dtype))


def args_key(x):
    """The model's arguments as a key: baked into the compiled function, so arrays by identity."""
    return _key(x, lambda a: ("a", id(a)))


def structure_key(tr: Trace):
    """The structure of `tr`: generative functions, addresses, distribution classes and static
    parameters, array shapes and dtypes (not values)."""
    g = tr.gen_fn
    if tr.sites is None:
        d = getattr(g, "__dict__", {})
        return (type(g), _static_key(tr.retval), tuple((k, _static_key(v)) for k, v in d.items() if k[0] != "_"
                                                        or isinstance(v, mx.array)))
    return (id(g), _static_key(tr.retval) if isinstance(tr.retval, mx.array) else None, tr.aux if _hashable(tr.aux) else id(tr.aux),
            tuple((p, structure_key(st)) for p, st in tr.sites.items()))


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


class KernelCache:
    """The most recently used compiled kernels by key (a kernel's traced graph is reused across runs)."""

    def __init__(self, size: int = 16):
        self.size, self._d = size, {}

    def get(self, key, valid):
        """The kernel under `key` if `valid(kernel)` (marked most recently used), else None."""
        hit = self._d.get(key)
        if hit is None or not valid(hit):
            return None
        self._d[key] = self._d.pop(key)
        return hit

    def put(self, key, kernel):
        self._d[key] = kernel
        while len(self._d) > self.size:
            self._d.pop(next(iter(self._d)))
        return kernel

    def lookup(self, template: Trace, key, make, constants):
        """The kernel for traces shaped like `template`: cached under `key()` (the model's structure
        and arguments; not hashable: a new kernel, uncached) while `constants(kernel)` equals the
        kernel's own record of the values it baked in, else `make()`, cached."""
        try:
            k = key()
            hash(k)
        except TypeError:
            return make()
        hit = self.get(k, lambda h: h.gen_fn is template.gen_fn and h.constants == constants(h))
        return hit if hit is not None else self.put(k, make())

    def values(self):
        return self._d.values()

    def clear(self) -> None:
        self._d.clear()
