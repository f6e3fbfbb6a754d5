"""Selection: a set of addresses (selecting a prefix selects everything under it)."""

from __future__ import annotations

from .address import Address, Path, from_path, to_path

__all__ = ["Selection", "select", "select_all", "select_none"]


class Selection:
    """Immutable address set. `select("a", ("sub", "x"))`, `select_all()`, `.complement()`."""

    __slots__ = ("_paths", "_all", "_neg")

    def __init__(self, paths=(), *, all_: bool = False, negate: bool = False):
        self._paths = frozenset(paths)
        self._all = all_
        self._neg = negate

    # membership ---------------------------------------------------------------
    def _hit(self, path: Path) -> bool:
        if self._all:
            return True
        ps = self._paths
        for i in range(1, len(path) + 1):
            if path[:i] in ps:
                return True
        return False

    def contains_path(self, path: Path) -> bool:
        return self._hit(path) != self._neg

    def __contains__(self, addr: Address) -> bool:
        return self.contains_path(to_path(addr))

    def get_subselection(self, addr: Address) -> "Selection":
        """What this selection selects under `addr`, with `addr` stripped."""
        p = to_path(addr)
        if self._all or self._hit(p):
            return SELECT_NONE if self._neg else SELECT_ALL
        n = len(p)
        sub = [q[n:] for q in self._paths if len(q) > n and q[:n] == p]
        return Selection(sub, negate=self._neg)

    def is_empty(self) -> bool:
        """True when nothing can be selected (select_none())."""
        return (not self._neg and not self._all and not self._paths) or (self._neg and self._all)

    def is_all(self) -> bool:
        return (self._all and not self._neg) or (self._neg and not self._all and not self._paths)

    def complement(self) -> "Selection":
        return Selection(self._paths, all_=self._all, negate=not self._neg)

    def addresses(self) -> list:
        return [from_path(p) for p in sorted(self._paths, key=repr)]

    @classmethod
    def from_choicemap(cls, cm) -> "Selection":
        return cls(cm.paths())

    def __or__(self, other: "Selection") -> "Selection":
        if self._neg or other._neg:
            raise ValueError("union of complemented selections is not supported")
        return Selection(self._paths | other._paths, all_=self._all or other._all)

    def __eq__(self, other) -> bool:
        return isinstance(other, Selection) and (self._paths, self._all, self._neg) == (other._paths, other._all, other._neg)

    def __hash__(self):
        return hash((self._paths, self._all, self._neg))

    def __repr__(self) -> str:
        if self._all:
            base = "select_all()"
        else:
            base = "select(" + ", ".join(repr(a) for a in self.addresses()) + ")"
        return f"{base}.complement()" if self._neg else base


SELECT_ALL = Selection(all_=True)
SELECT_NONE = Selection()


def select(*addrs: Address) -> Selection:
    """Select these addresses (and everything under each)."""
    return Selection(to_path(a) for a in addrs)


def select_all() -> Selection:
    return SELECT_ALL


def select_none() -> Selection:
    return SELECT_NONE
