"""ChoiceMap: an immutable map from hierarchical addresses to choice values."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import mlx.core as mx

from .address import Address, AddressError, Path, from_path, to_path

__all__ = ["ChoiceMap", "choicemap", "as_value"]


def as_value(v: Any, path: Path = ()) -> mx.array:
    """Convert a constraint value to an `mx.array`, with a clear error when it is not numeric."""
    t = type(v)
    if t is float or t is mx.array:  # the common cases first: this runs once per observation
        return mx.array(v) if t is float else v
    if isinstance(v, mx.array):
        return v
    if isinstance(v, bool):
        return mx.array(int(v))
    if isinstance(v, (int, float)):
        return mx.array(v)
    try:
        import numpy as np

        if isinstance(v, (np.ndarray, np.generic)):
            if v.dtype.kind not in "biuf":
                raise TypeError
            return mx.array(v)
        if isinstance(v, (list, tuple)):
            a = np.asarray(v)
            if a.dtype.kind not in "biuf":
                raise TypeError
            return mx.array(a)
    except (TypeError, ValueError):
        pass
    where = f" at address {from_path(path)!r}" if path else ""
    raise TypeError(f"non-numeric choice value{where}: {type(v).__name__} {v!r}")


class ChoiceMap:
    """Immutable map from leaf addresses to values (flat storage keyed by path).

    `ChoiceMap({"a": 1.0, "sub": {"x": 2.0}})` or `gm.choicemap(...)`; tuple keys
    are hierarchical paths: `{("sub", "x"): 2.0}` is the same map.
    """

    # `_given` (set only when built from user data): [the first address whose value, given as a Python
    # number, list or NumPy array, is NaN (None if none), the addresses given as arrays or choicemaps]:
    # what genmlx.boundary checks on the host for free and what it must evaluate. Unset: all unknown.
    __slots__ = ("_leaves", "_children", "_given")

    def __init__(self, data: Mapping | "ChoiceMap" | None = None):
        if isinstance(data, ChoiceMap):
            self._leaves = data._leaves
            g = getattr(data, "_given", None)
            if g is not None:
                self._given = g
        else:
            leaves: dict[Path, mx.array] = {}
            given = [None, []]
            if data:
                _flatten_into(data, (), leaves, given)
            self._leaves = leaves
            self._given = given
        self._children = None

    @classmethod
    def _from_leaves(cls, leaves: dict) -> "ChoiceMap":
        cm = cls.__new__(cls)
        cm._leaves = leaves
        cm._children = None
        return cm

    @classmethod
    def from_dict(cls, d: Mapping) -> "ChoiceMap":
        return cls(d)

    def to_dict(self) -> dict:
        """Nested dict form (tuple paths become nested dicts)."""
        out: dict = {}
        for path, v in self._leaves.items():
            node = out
            for a in path[:-1]:
                node = node.setdefault(a, {})
            node[path[-1]] = v
        return out

    # -- queries -------------------------------------------------------------
    def __contains__(self, addr: Address) -> bool:
        return self.has_value(addr)

    def has_value(self, addr: Address = ()) -> bool:
        return (addr if addr == () else to_path(addr)) in self._leaves

    def value(self):
        """The value of a value map (the submap at a leaf address), else None."""
        return self._leaves.get(())

    def has_submap(self, addr: Address) -> bool:
        p = to_path(addr)
        n = len(p)
        return any(k[:n] == p and len(k) > n for k in self._leaves)

    def __getitem__(self, addr: Address) -> mx.array:
        p = to_path(addr)
        try:
            return self._leaves[p]
        except KeyError:
            raise AddressError(f"no value at address {addr!r} in choicemap (addresses: {self._show()})") from None

    def get(self, addr: Address, default=None):
        return self._leaves.get(to_path(addr), default)

    def _index(self) -> dict:
        if self._children is None:
            ch: dict = {}
            for k, v in self._leaves.items():
                if k:
                    ch.setdefault(k[0], {})[k[1:]] = v
            self._children = {a: ChoiceMap._from_leaves(d) for a, d in ch.items()}
        return self._children

    def get_submap(self, addr: Address) -> "ChoiceMap":
        """Choices under `addr`, with `addr` stripped (empty when none).

        The submap at a leaf address is a value map: its one address is `()`.
        """
        p = to_path(addr)
        sub = self._index().get(p[0], EMPTY)
        return sub if len(p) == 1 else sub.get_submap(p[1:])

    def _get_submap_path(self, p: Path) -> "ChoiceMap":
        if not self._leaves:
            return EMPTY
        sub = self._index().get(p[0], EMPTY)
        return sub if len(p) == 1 else sub._get_submap_path(p[1:])

    def addresses(self) -> list:
        """Leaf addresses, in insertion order (atoms for top-level leaves)."""
        return [from_path(p) for p in self._leaves]

    def paths(self):
        return self._leaves.keys()

    def __iter__(self) -> Iterator:
        return iter(self.addresses())

    def items(self):
        return [(from_path(p), v) for p, v in self._leaves.items()]

    def values(self):
        return list(self._leaves.values())

    def __len__(self) -> int:
        return len(self._leaves)

    def is_empty(self) -> bool:
        return not self._leaves

    def __bool__(self) -> bool:
        return bool(self._leaves)

    # -- building --------------------------------------------------------------
    def merge(self, other: "ChoiceMap | Mapping") -> "ChoiceMap":
        """Union of two maps; an address present in both is an error."""
        other = other if isinstance(other, ChoiceMap) else ChoiceMap(other)
        clash = [from_path(p) for p in other._leaves if p in self._leaves]
        if clash:
            raise AddressError(f"cannot merge choicemaps: address {clash[0]!r} is in both")
        d = dict(self._leaves)
        d.update(other._leaves)
        return ChoiceMap._from_leaves(d)

    def set(self, addr: Address, value) -> "ChoiceMap":
        p = to_path(addr)
        d = dict(self._leaves)
        d[p] = as_value(value, p)
        return ChoiceMap._from_leaves(d)

    def prefixed(self, addr: Address) -> "ChoiceMap":
        """This map nested under `addr`."""
        p = to_path(addr)
        return ChoiceMap._from_leaves({p + k: v for k, v in self._leaves.items()})

    def _genmlx_arrays(self):
        return self._leaves.values()

    def __eq__(self, other) -> bool:
        if not isinstance(other, ChoiceMap) or self._leaves.keys() != other._leaves.keys():
            return False
        return all(mx.array_equal(v, other._leaves[k]).item() for k, v in self._leaves.items())

    __hash__ = None

    def _show(self, limit: int = 8) -> str:
        addrs = self.addresses()
        s = ", ".join(repr(a) for a in addrs[:limit])
        return s + (f", ... ({len(addrs)} in all)" if len(addrs) > limit else "") if addrs else "none"

    def __repr__(self) -> str:
        inner = ", ".join(f"{from_path(p)!r}: {_fmt(v)}" for p, v in list(self._leaves.items())[:20])
        more = ", ..." if len(self._leaves) > 20 else ""
        return f"ChoiceMap({{{inner}{more}}})"


def _fmt(v) -> str:
    try:
        return repr(v.item()) if v.size == 1 else f"array{tuple(v.shape)}"
    except Exception:
        return "array"


def _flatten_into(data, prefix: Path, out: dict, given: list | None = None) -> None:
    if isinstance(data, ChoiceMap):
        for p, v in data._leaves.items():
            out[prefix + p] = v
            if given is not None:
                given[1].append(prefix + p)
        return
    if not isinstance(data, Mapping):
        raise TypeError(f"choicemap data must be a mapping, got {type(data).__name__}")
    for k, v in data.items():
        p = prefix + ((k,) if type(k) is str else to_path(k))
        t = type(v)
        if t is not float and t is not mx.array and isinstance(v, (Mapping, ChoiceMap)):  # (ABC checks are slow)
            _flatten_into(v, p, out, given)
        else:
            if p in out:
                raise AddressError(f"address {from_path(p)!r} given twice in choicemap data")
            out[p] = as_value(v, p)
            if given is not None:
                if t is mx.array:
                    given[1].append(p)
                elif given[0] is None and _host_nan(v):
                    given[0] = p


def _host_nan(v) -> bool:
    """A value given as host data (a number, a list, a NumPy array) holds a NaN (no MLX evaluation)."""
    if type(v) is float:
        return v != v
    if isinstance(v, (int, bool)):
        return False
    try:
        import numpy as np

        a = np.asarray(v)
        return a.dtype.kind == "f" and bool(np.isnan(a).any())
    except (TypeError, ValueError):
        return False


EMPTY = ChoiceMap._from_leaves({})


def choicemap(data: Mapping | ChoiceMap | None = None, **kwargs) -> ChoiceMap:
    """Build a ChoiceMap from nested dicts / tuple paths (and keyword addresses)."""
    if kwargs:
        data = {**(dict(data) if isinstance(data, Mapping) else {}), **kwargs} if not isinstance(data, ChoiceMap) else ChoiceMap(data).merge(kwargs)
    if isinstance(data, ChoiceMap):
        return data
    return ChoiceMap(data)
