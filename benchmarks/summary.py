"""Targets of issue 8, judged from a pytest-benchmark JSON (used by conftest's hook and by report.py).

A benchmark declares its targets in `extra_info["targets"]`, each a dict:

* ratio target: {"name", "ratio": <baseline name>, "statistic": "paired_median" | "steady_paired_median"
  | ..., "max": float} - judged on `extra_info["ratios"][baseline][statistic]`;
* value target: {"name", "value": float, "max": float} - a measured number (nodes, growth per iteration).

`judge(benchmarks)` returns one row per target: name, benchmark, value, limit, met.

Peer targets (issue 14) live in the peers JSON (`benchmarks.peers`): each row
of it declares targets {"name", "peer", "statistic": "paired_median" | "first",
"max"}, judged on `row["ratios"][peer][statistic]` (genmlx / peer) by
`judge_peers(peers_json)`, which returns rows of the same shape as `judge`'s.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["judge", "judge_peers", "target_value", "trim_data", "MAX_DATA"]

MAX_DATA = 100  # raw per-round timings kept per benchmark in the JSON


def target_value(bench: dict, t: dict) -> float | None:
    if "value" in t:
        v = t["value"]
    else:
        r = bench.get("extra_info", {}).get("ratios", {}).get(t["ratio"], {})
        v = r.get(t.get("statistic", "paired_median"))
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if not math.isnan(v) else None


def judge(benchmarks: Iterable[dict]) -> list[dict[str, Any]]:
    rows = []
    for b in benchmarks:
        for t in b.get("extra_info", {}).get("targets", []):
            v = target_value(b, t)
            rows.append({
                "target": t["name"],
                "benchmark": b.get("fullname") or b.get("name"),
                "param": b.get("param"),
                "value": v,
                "limit": t["max"],
                "statistic": t.get("statistic", "value" if "value" in t else "paired_median"),
                "baseline": t.get("ratio"),
                "met": v is not None and v <= t["max"],
            })
    return rows


def judge_peers(peers: dict) -> list[dict[str, Any]]:
    """The peer targets of a peers JSON (benchmarks/peers/run.py), judged: genmlx / peer <= max."""
    out = []
    for row in peers.get("rows", []):
        for t in row.get("targets", []):
            v = row.get("ratios", {}).get(t["peer"], {}).get(t["statistic"])
            try:
                v = float(v)
            except (TypeError, ValueError):
                v = None
            if v is not None and math.isnan(v):
                v = None
            out.append({"target": t["name"], "benchmark": row.get("id"), "param": None, "value": v,
                        "limit": t["max"], "statistic": t["statistic"], "baseline": t["peer"],
                        "met": v is not None and v <= t["max"]})
    return out


def trim_data(output_json: dict, max_data: int = MAX_DATA) -> None:
    """Drop the raw per-round timings of benchmarks with more than `max_data` rounds (in place).

    pytest-benchmark's `--benchmark-json` stores every round; the memory and
    observability micro-benchmarks run 10^5 rounds (30 MB of JSON). Their
    statistics stay; this suite's paired timings live in `extra_info`.
    """
    for b in output_json.get("benchmarks", []):
        st = b.get("stats")
        if isinstance(st, dict) and len(st.get("data") or ()) > max_data:
            st["data_dropped"] = len(st.pop("data"))
