"""Run one algorithm's soak; the command line (one process per algorithm, rows appended as JSON lines)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import mlx.core as mx

from genmlx import events, memory

from .algorithms import ALGORITHMS
from .census import Census, summarize


def run(alg: str, n: int, every: int = 0) -> dict:
    """`alg`'s soak of n iterations under budget(499_000); its row (slopes, verdict, seconds)."""
    if alg not in ALGORITHMS:
        raise ValueError(f"soak: unknown algorithm {alg!r}; known: {', '.join(ALGORITHMS)}")
    fn, per_step = ALGORITHMS[alg]
    c = Census(every or max(1, n // 50), n // 10, per_step)
    t0 = time.perf_counter()
    with memory.budget(499_000), events.subscribed(c):
        fn(n, c, mx.random.key(0))
    return summarize(c, alg, n, time.perf_counter() - t0, {"budget": 499_000})


def _isolated(alg: str, a) -> dict:
    """One algorithm in a child process; a crash becomes a row with its error."""
    cmd = [sys.executable, "-m", "benchmarks.soak", "--algorithms", alg, "--iterations", str(a.iterations),
           "--every", str(a.every)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    rows = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode == 0 and rows:
        return rows[-1]
    return {"algorithm": alg, "iterations": a.iterations, "seconds": time.perf_counter() - t0,
            "error": f"exit {p.returncode}: {p.stderr[-2000:]}"}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    ap.add_argument("--iterations", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=0, help="census interval (default: iterations / 50)")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--out", default="", help="append one JSON line per algorithm (each in its own process)")
    a = ap.parse_args()
    for alg in a.algorithms.split(","):
        if a.out:
            row = _isolated(alg, a)
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")
        else:
            row = run(alg, a.iterations, a.every)
        print(json.dumps(row), flush=True)
