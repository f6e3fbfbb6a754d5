"""Addresses: where a random choice lives in a trace.

An address is a string, an int, or a tuple of those read as a hierarchical
path (`("sub", "x")`, `(3, "y")` inside `map_`/`unfold`). Internally every
address is a *path*: a non-empty tuple of atoms. Public methods return the atom
itself for one-component paths, so `"slope"` stays `"slope"`.
"""

from __future__ import annotations

from typing import Union

Atom = Union[str, int]
Address = Union[Atom, tuple]
Path = tuple

__all__ = ["Address", "Atom", "Path", "AddressError", "to_path", "from_path", "format_address"]


class AddressError(KeyError):
    """An address problem: unknown, duplicated, malformed, or unconstrained."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0]) if self.args else ""


def _check_atom(a, whole) -> None:
    if isinstance(a, bool) or not isinstance(a, (str, int)):
        raise TypeError(
            f"invalid address {whole!r}: components must be str or int, "
            f"got {type(a).__name__} {a!r} (an array is not an address)"
        )


def to_path(addr: Address) -> Path:
    """Normalize an address to a path tuple, raising TypeError when malformed."""
    if isinstance(addr, tuple):
        if not addr:
            raise TypeError("invalid address (): an address path cannot be empty")
        for a in addr:
            t = type(a)
            if t is not str and t is not int:  # (the common atoms checked by type alone: it is per choice)
                _check_atom(a, addr)
        return addr
    _check_atom(addr, addr)
    return (addr,)


def from_path(path: Path) -> Address:
    """The public form of a path: the atom for length-1 paths, else the tuple."""
    return path[0] if len(path) == 1 else path


def format_address(path: Path) -> str:
    return repr(from_path(path))
