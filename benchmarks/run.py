"""Run the whole benchmark suite on the default MLX device, save the JSON, write docs/benchmarks.md.

    python -m benchmarks.run [extra pytest arguments]

The JSON goes to benchmarks/results/<device tag>.json, the tag naming the
device MLX runs on (`benchmarks.common.device_tag`: `cpu-<cpu>-<arch>-<n>cores`
or `gpu-<device name>`), so runs on different machines sit side by side. With
GENMLX_BENCH_FULL=1 (the issue's workloads) the JSON is <device tag>-full.json
and the report docs/benchmarks-full.md.
Nothing here picks a device: MLX's default device is the one measured.

A full run (no extra pytest arguments) then runs the peers benchmark
(`python -m benchmarks.peers`: GenJAX and NumPyro beside genmlx, written to
results/peers-<device tag>.json, the report's Peers section) when the peers'
Python exists (GENMLX_PEERS_PYTHON, default /root/.venvs/peers/bin/python;
GENMLX_PEERS_PYTHON=none skips it), and says so when it does not.
"""

from __future__ import annotations

import os
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
    run_peers(partial=bool(argv))
    if out.exists():
        from benchmarks.report import main as report

        report([str(out), "--out", str(ROOT / "docs" / f"benchmarks{suffix}.md")])
    return rc


def run_peers(partial: bool) -> int | None:
    """The peers benchmark after a full suite run, if the peers' Python exists; its exit status or None."""
    from benchmarks.peers.run import DEFAULT_PYTHON, peers_python

    if partial:
        print("peers: not run (a partial suite run); run python -m benchmarks.peers for them", flush=True)
        return None
    python = peers_python()
    if python is None:
        print(f"peers: SKIPPED - no peers' Python at {os.environ.get('GENMLX_PEERS_PYTHON', DEFAULT_PYTHON)!r}; "
              "GenJAX and NumPyro were not measured and the report keeps the last peers JSON, if any "
              "(install them: benchmarks/peers/README.md)", flush=True)
        return None
    cmd = [sys.executable, "-m", "benchmarks.peers", "--peers-python", python]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
