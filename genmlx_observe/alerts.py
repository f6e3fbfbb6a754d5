"""Prometheus alerting rules for the seed's failure, generated from the catalog.

`dashboards/genmlx-alerts.yml` is exactly `render()`; `genmlx-observe
dashboards --out DIR` writes it beside the dashboards and `--check` compares.
The rules (all labelled ``severity``):

* ``GenmlxBudgetNearLimit``: live arrays + pending nodes above 80% of the
  `genmlx.memory.budget` limit;
* ``GenmlxNearMetalBufferLimit``: the same count above 80% of Metal's
  499,000 buffers (a proxy: Metal also counts cached buffers), budget or not;
* ``GenmlxLiveArrayGrowth`` / ``GenmlxPendingNodeGrowth``: a run's growth
  per iteration above the leak gate's threshold (0.1), sustained;
* ``GenmlxRunStuck``: a run in progress that completed no driver step for
  `stuck_after`;
* ``GenmlxTelemetryDropped``: genmlx_observe could not deliver telemetry.

`tests/observe/promtool/` holds `promtool test rules` cases for each rule;
the end-to-end test renders the rules with short durations and lets a real
Prometheus fire the growth alert.
"""

from __future__ import annotations

import json
from pathlib import Path

from .catalog import BY_KEY
from .dashboards import GROWTH_THRESHOLD, METAL_LIMIT

__all__ = ["FILE", "BUDGET_PERCENT", "rules", "render", "write"]

FILE = "genmlx-alerts.yml"
BUDGET_PERCENT = 80
RUN_BY = "job, instance, rank, algorithm, model, chain"


def _n(key: str) -> str:
    return BY_KEY[key].prometheus_name


def rules(growth_for: str = "5m", stuck_after: str = "10m", budget_for: str = "1m",
          drops_window: str = "5m", threshold: float = GROWTH_THRESHOLD) -> list[dict]:
    """The alerting rules, as dicts in Prometheus's rule-file form."""
    used, limit = _n("memory.budget.used"), _n("memory.budget.limit")
    live, pending = _n("memory.live_arrays"), _n("memory.pending_nodes")
    active, steps, dropped = _n("inference.runs.active"), _n("inference.steps"), _n("observe.dropped")
    run = "{{ $labels.algorithm }} on {{ $labels.model }} (chain {{ $labels.chain }}) at {{ $labels.instance }}"
    growth = "Fix the loop (docs/troubleshooting.md), or find the site with genmlx-observe profile."
    return [
        {"alert": "GenmlxBudgetNearLimit", "expr": f"100 * {used} / {limit} > {BUDGET_PERCENT}", "for": budget_for,
         "labels": {"severity": "warning"},
         "annotations": {"summary": "genmlx resource budget above 80% at {{ $labels.instance }}",
                         "description": "Live arrays + pending graph nodes are at {{ $value | printf \"%.1f\" }}% of "
                                        "the genmlx.memory.budget limit: the run will raise ResourceLimitExceeded "
                                        "(on Metal, die) if they keep growing."}},
        {"alert": "GenmlxNearMetalBufferLimit", "expr": f"100 * ({live} + {pending}) / {METAL_LIMIT} > {BUDGET_PERCENT}",
         "for": budget_for, "labels": {"severity": "critical"},
         "annotations": {"summary": "genmlx near Metal's 499,000 buffers at {{ $labels.instance }}",
                         "description": "Live arrays + pending graph nodes are at {{ $value | printf \"%.1f\" }}% of "
                                        "Metal's 499,000 simultaneous buffers (cached buffers count too)."}},
        {"alert": "GenmlxLiveArrayGrowth", "expr": f"{_n('memory.live_arrays.growth')} > {threshold}",
         "for": growth_for, "labels": {"severity": "warning"},
         "annotations": {"summary": "genmlx loop leaks live arrays: " + run,
                         "description": "The latest run grows live mx.arrays by {{ $value | printf \"%.3g\" }} per "
                                        f"iteration (threshold {threshold}). " + growth}},
        {"alert": "GenmlxPendingNodeGrowth", "expr": f"{_n('memory.pending_nodes.growth')} > {threshold}",
         "for": growth_for, "labels": {"severity": "warning"},
         "annotations": {"summary": "genmlx loop grows pending graph nodes: " + run,
                         "description": "The latest run grows unevaluated graph nodes by {{ $value | printf \"%.3g\" }} "
                                        f"per iteration (threshold {threshold}): something accumulates lazily. "
                                        + growth}},
        {"alert": "GenmlxRunStuck",
         "expr": f"(sum by ({RUN_BY}) ({active}) > 0) unless on ({RUN_BY}) "
                 f"(sum by ({RUN_BY}) (increase({steps}[{stuck_after}])) > 0)",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "genmlx run stuck: " + run,
                         "description": f"A run is in progress but completed no driver step in {stuck_after}."}},
        {"alert": "GenmlxTelemetryDropped",
         "expr": f"(sum by (job, instance, signal) (increase({dropped}[{drops_window}])) > 0) or "
                 f"(sum by (job, instance, signal) ({dropped} unless {dropped} offset {drops_window}) > 0)",
         "labels": {"severity": "info"},
         "annotations": {"summary": "genmlx_observe dropped {{ $labels.signal }} at {{ $labels.instance }}",
                         "description": "Telemetry could not be delivered (collector or Pushgateway unreachable, "
                                        "span queue full); inference is not affected."}},
    ]


def _yaml(value, indent: int) -> str:
    """A small YAML emitter for the rule dicts (strings JSON-quoted: valid YAML double-quoted scalars)."""
    pad = " " * indent
    if isinstance(value, dict):
        return "".join(f"\n{pad}{k}:" + (" " + _yaml(v, indent + 2) if not isinstance(v, (dict, list))
                                          else _yaml(v, indent + 2)) for k, v in value.items())
    if isinstance(value, list):
        return "".join(f"\n{pad}-" + _yaml(v, indent + 2).replace("\n" + " " * (indent + 2), " ", 1)
                       for v in value)
    return json.dumps(value)


def render(**params) -> str:
    """The rule file's text (`params`: see `rules`)."""
    head = "# Generated by genmlx_observe.alerts from the metric catalog; do not edit by hand.\n"
    return head + _yaml({"groups": [{"name": "genmlx", "rules": rules(**params)}]}, 0).lstrip("\n") + "\n"


def write(directory: str | Path, **params) -> Path:
    p = Path(directory) / FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(**params))
    return p
