"""The soak's markdown table from its JSON lines (verdicts recomputed with `census.verdict`).

    python -m benchmarks.soak.report benchmarks/results/soak-cpu-amd-epyc-x86-64-2cores.jsonl
"""

from __future__ import annotations

import json
import sys

from .census import verdict

HEAD = ("| algorithm | iterations | s | ms/it | RSS KB/1k (± SE) | history KB/1k | live arrays /1k (± SE) "
        "| pending /1k (± SE) | RSS / live / pending range | verdict |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|")


def _s(q: dict, scale: float = 1.0, fmt: str = "{:+.2f}") -> str:
    return f"{fmt.format(q['per_1000'] / scale)} ± {q['se_per_1000'] / scale:.2f}"


def row(r: dict) -> str:
    if "error" in r:
        return f"| {r['algorithm']} | {r['iterations']:,} | {r['seconds']:.0f} | | | | | | | error: {r['error'][-120:]!r} |"
    v = verdict(r)
    flat = "flat" if set(v.values()) == {"flat"} else "NOT flat: " + ", ".join(k for k, x in v.items() if x != "flat")
    rng = (f"{r['rss_bytes']['min'] / 2**20:.0f}-{r['rss_bytes']['max'] / 2**20:.0f} MiB / "
           f"{r['live_arrays']['min']:.0f}-{r['live_arrays']['max']:.0f} / "
           f"{r['pending_nodes']['min']:.0f}-{r['pending_nodes']['max']:.0f}")
    return (f"| {r['algorithm']} | {r['iterations']:,} | {r['seconds']:.0f} | {r['ms_per_iteration']:.3f} "
            f"| {_s(r['rss_bytes'], 1000.0)} | {r['history_bytes_per_1000'] / 1000:.1f} | {_s(r['live_arrays'])} "
            f"| {_s(r['pending_nodes'])} | {rng} | {flat} |")


def main() -> None:
    rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
    print(HEAD)
    for r in rows:
        print(row(r))


if __name__ == "__main__":
    main()
