"""Merge several pytest-benchmark JSON files of one device into one.

    python -m benchmarks.merge OUT.json IN1.json IN2.json ...

For a suite run in parts (one pytest invocation per module or per `-k`
selection, e.g. on a leased GPU whose calls are time-limited):

* `benchmarks`: the parts' lists concatenated in order; a row of a later file
  replaces an earlier row with the same `fullname` (in the earlier row's place);
* `machine_info`, `commit_info`, `datetime`, `version`: the first file's;
* `genmlx`: rebuilt as conftest.py's `pytest_benchmark_update_json` builds it
  (`benchmarks.summary.trim_data` and `judge` on the merged rows); device,
  device tag, workload scale and clock come from the first file (the parts ran
  on that device, not on the machine that merges), `suite_wall_s` is the sum of
  the parts', and `parts` names the input files.

All inputs must come from the same device (`genmlx.device_tag`) and workload
scale; otherwise the merge is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.summary import judge, trim_data

__all__ = ["merge", "main"]


def merge(parts: list[dict], names: list[str] | None = None) -> dict:
    """One pytest-benchmark JSON (with its `genmlx` block) from `parts`, all of one device."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    g0 = first.get("genmlx", {})
    for i, p in enumerate(parts[1:], 1):
        g = p.get("genmlx", {})
        for key in ("device_tag", "full_workloads"):
            if g.get(key) != g0.get(key):
                raise ValueError(f"part {i} has {key}={g.get(key)!r}, the first {g0.get(key)!r}")

    rows: dict[str, dict] = {}  # fullname -> row; dicts keep first-insertion order
    for p in parts:
        for b in p.get("benchmarks", []):
            rows[b.get("fullname") or b.get("name")] = b

    out = {k: v for k, v in first.items() if k not in ("benchmarks", "genmlx")}
    out["benchmarks"] = list(rows.values())
    trim_data(out)
    targets = judge(out["benchmarks"])
    out["genmlx"] = {
        "device": g0.get("device"),
        "device_tag": g0.get("device_tag"),
        "full_workloads": g0.get("full_workloads"),
        "clock": g0.get("clock"),
        "clock_counts_children": g0.get("clock_counts_children", False),
        "suite_wall_s": sum(float(p.get("genmlx", {}).get("suite_wall_s") or 0.0) for p in parts),
        "targets": targets,
        "targets_met": sum(r["met"] for r in targets),
        "targets_total": len(targets),
    }
    if names:
        out["genmlx"]["parts"] = list(names)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="merged JSON to write")
    ap.add_argument("inputs", nargs="+", help="pytest-benchmark JSON files of this suite, one device")
    a = ap.parse_args(argv)
    parts = [json.loads(Path(f).read_text()) for f in a.inputs]
    merged = merge(parts, [Path(f).name for f in a.inputs])
    Path(a.out).write_text(json.dumps(merged, indent=4))
    g = merged["genmlx"]
    print(f"wrote {a.out}: {len(merged['benchmarks'])} benchmarks from {len(parts)} files, "
          f"{g['targets_met']} of {g['targets_total']} targets met, suite wall {g['suite_wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
