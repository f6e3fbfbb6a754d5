"""The console summary: every metric's current value, by its Prometheus name, and the destinations."""

from __future__ import annotations

from .aggregate import HistogramPoint
from .catalog import CATALOG

__all__ = ["render", "format_value"]


def format_value(value) -> str:
    if isinstance(value, HistogramPoint):
        mean = value.sum / value.count if value.count else float("nan")
        return f"count={value.count} sum={value.sum:.6g} mean={mean:.4g}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(snapshot: dict[str, list], destinations: list[str], drops: dict[str, int] | None = None) -> str:
    """A plain-text table of `snapshot` (catalog key -> `[(attributes, value)]`)."""
    rows = []
    for m in CATALOG:
        for attrs, value in snapshot.get(m.key, ()):
            labels = ",".join(f"{k}={v}" for k, v in attrs.items() if v != "")
            rows.append((m.prometheus_name, labels, format_value(value)))
    w0 = max([len(r[0]) for r in rows] + [6])
    w1 = max([len(r[1]) for r in rows] + [6])
    lines = ["genmlx_observe summary", f"{'metric':<{w0}}  {'labels':<{w1}}  value", "-" * (w0 + w1 + 20)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    lines.append("")
    lines.append("sent to:")
    lines += [f"  {d}" for d in destinations] or ["  (console only: no Prometheus port, Pushgateway or OTLP endpoint configured)"]
    if drops:
        lines.append("dropped: " + ", ".join(f"{k}={v}" for k, v in sorted(drops.items())))
    return "\n".join(lines)
