"""Run the whole benchmark suite on the default MLX device, save the JSON, write docs/benchmarks.md.

    python -m benchmarks.run [extra pytest arguments]

The JSON goes to benchmarks/results/<device tag>.json, the tag naming the
device MLX runs on (`benchmarks.common.device_tag`: `cpu-<cpu>-<arch>-<n>cores`
or `gpu-<device name>`), so runs on different machines sit side by side. With
GENMLX_BENCH_FULL=1 (the issue's workloads) the JSON is <device tag>-full.json
and the report docs/benchmarks-full.md.
Nothing here picks a device: MLX's default device is the one measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.common import FULL, device_tag

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    suffix = "-full" if FULL else ""
    out = ROOT / "benchmarks" / "results" / f"{device_tag()}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", f"--benchmark-json={out}", *argv]
    print(" ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if out.exists():
        from benchmarks.report import main as report

        report([str(out), "--out", str(ROOT / "docs" / f"benchmarks{suffix}.md")])
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
