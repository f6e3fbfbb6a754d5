"""The leak gate's markers: one function per marker, one registry.

Each marker function validates the marker's arguments (errors name the marker
and the argument) and returns the settings it overrides. The help line pytest
shows for a marker (``pytest --markers``) is generated from the function's
own signature and docstring, so it cannot drift from what the code accepts.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, NamedTuple

__all__ = [
    "limit_wrapper_growth",
    "no_leak_gate",
    "limit_buffers_per_site",
    "MARKERS",
    "Settings",
    "marker_help",
    "resolve",
]


def _limit(marker: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"@pytest.mark.{marker}: {name} must be a number >= 0, got {value!r}")
    return float(value)


def _count(marker: str, name: str, value: Any, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"@pytest.mark.{marker}: {name} must be an int >= {least}, got {value!r}")
    return int(value)


def limit_wrapper_growth(
    per_iteration: float | None = None,
    *,
    warmup: int | None = None,
    pending_per_iteration: float | None = None,
    enabled: bool = True,
) -> dict:
    """Judge this test's genmlx loops against these limits (arrays and pending graph nodes per iteration after `warmup` iterations); enabled=False opts the test out."""
    m = "limit_wrapper_growth"
    out: dict[str, Any] = {"explicit": True}
    if not isinstance(enabled, bool):
        raise ValueError(f"@pytest.mark.{m}: enabled must be True or False, got {enabled!r}")
    out["enabled"] = enabled
    if per_iteration is not None:
        out["limit"] = _limit(m, "per_iteration", per_iteration)
    if pending_per_iteration is not None:
        out["pending_limit"] = _limit(m, "pending_per_iteration", pending_per_iteration)
    if warmup is not None:
        out["warmup"] = _count(m, "warmup", warmup)
    return out


def no_leak_gate() -> dict:
    """Neither measure nor judge this test's genmlx loops (a closer limit_* marker still applies)."""
    return {"enabled": False, "site_budget": None}


def limit_buffers_per_site(max_nodes: int) -> dict:
    """Fail the test when one trace site adds more than `max_nodes` graph nodes (buffers once evaluated)."""
    return {"site_budget": _count("limit_buffers_per_site", "max_nodes", max_nodes), "explicit": True}


MARKERS: dict[str, Callable[..., dict]] = {
    "limit_wrapper_growth": limit_wrapper_growth,
    "no_leak_gate": no_leak_gate,
    "limit_buffers_per_site": limit_buffers_per_site,
}


def marker_help(name: str) -> str:
    """``name(signature): first docstring line``, as `config.addinivalue_line("markers", ...)` wants it."""
    fn = MARKERS[name]
    sig = str(inspect.signature(fn)).split(" ->")[0]
    doc = inspect.getdoc(fn) or ""
    return f"{name}{sig}: {doc.splitlines()[0] if doc else ''}"


class Settings(NamedTuple):
    """What applies to one test: suite defaults, overridden by its markers."""

    enabled: bool  # measured and judged
    limit: float  # arrays per iteration
    pending_limit: float  # pending graph nodes per iteration
    warmup: int | None  # iterations; None: max(20, 10% of the loop)
    census_every: int  # driver steps between censuses; 0: adaptive
    site_budget: int | None  # graph nodes per trace site; None: no budget
    explicit: bool = False  # a marker asked for the gate on this test


def resolve(markers: list, defaults: Settings) -> Settings:
    """Apply markers (closest last, e.g. from `item.iter_markers()` reversed) over `defaults`.

    Raises:
        ValueError: a marker's arguments are invalid (the message names them).
    """
    values = defaults._asdict()
    for mark in markers:
        fn = MARKERS.get(mark.name)
        if fn is None:
            continue
        try:
            values.update(fn(*mark.args, **mark.kwargs))
        except TypeError as e:  # wrong arguments: say which marker and what it takes
            raise TypeError(f"@pytest.mark.{mark.name}: {e}; expected {marker_help(mark.name)}") from None
    return Settings(**values)
