"""Benchmark: 1 rank against 2 ranks of `genmlx.distributed` on this machine (ring backend, loopback).

    python -m benchmarks.distributed [--reps 3] [--out benchmarks/results/distributed-<device>.json]

For each algorithm and total size N: a 1-rank job on N/2 (the floor: what one
rank of the 2-rank job computes), a 1-rank job on N and a 2-rank job on N,
every job started by `genmlx.distributed.launch` the same way, timed inside
the ranks (`benchmarks/distributed_worker.py`: median of `reps` calls after a
warm-up, the slowest rank's time for the 2-rank job). The issue's target: a
2-rank run of N costs no more than a 1-rank run of N/2 plus the collectives
(`ratio` = t2(N) / (t1(N/2) + collectives) <= 1 within noise). The JSON goes
to `benchmarks/results/`, the table to `docs/benchmarks-distributed.md`.

On a machine with fewer cores than ranks x MLX's threads the ranks compete for
cores and the ratio says so: read it with the `cpu_count` in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from genmlx.distributed import launch

from .common import device_description, device_tag

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(Path(__file__).with_name("distributed_worker.py"))
CASES = [("importance_sampling", 200_000, "5-site regression, vectorized IS, N particles"),
         ("chains", 8, "5-site regression, MH, N chains x 100 samples"),
         ("smc", 10_000, "linear-Gaussian SSM (unfold), T = 20, N particles, global resampling")]


def _job(algo: str, n: int, ranks: int, reps: int, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.json")
        launch([sys.executable, WORKER, out, algo, str(n), str(reps)], ranks, backend=backend, timeout_s=580,
               cwd=str(ROOT))
        files = [out] if ranks == 1 else [out.replace(".json", f"-rank{r}.json") for r in range(ranks)]
        got = [json.loads(Path(f).read_text()) for f in files]
    slowest = max(got, key=lambda x: x["seconds"])
    return {"ranks": ranks, "n": n, "seconds": slowest["seconds"], "per_rank_seconds": [x["seconds"] for x in got],
            "collective_seconds": max(x["collective_seconds"] for x in got), "device": got[0]["device"],
            "log_ml": got[0]["log_ml"]}


def run(reps: int = 3, backend: str = "ring", cases=CASES) -> dict:
    rows = []
    for algo, n, what in cases:
        half, one, two = (_job(algo, n // 2, 1, reps, backend), _job(algo, n, 1, reps, backend),
                          _job(algo, n, 2, reps, backend))
        rows.append({"algorithm": algo, "problem": what, "n": n, "one_rank_half": half, "one_rank": one,
                     "two_ranks": two, "speedup": one["seconds"] / two["seconds"],
                     "ratio": two["seconds"] / (half["seconds"] + two["collective_seconds"])})
        print(f"{algo}: 1 rank N/2 {half['seconds']*1e3:.1f} ms, 1 rank N {one['seconds']*1e3:.1f} ms, "
              f"2 ranks N {two['seconds']*1e3:.1f} ms (ratio {rows[-1]['ratio']:.2f})", flush=True)
    return {"machine": device_description(), "backend": backend, "reps": reps, "rows": rows}


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"Machine: {m.get('device_name', '?')}, {m.get('cpu_count', '?')} cores; backend `{res['backend']}` "
             f"on loopback; median of {res['reps']} calls after a warm-up, timed inside the ranks (the slowest "
             "rank for 2 ranks).", "",
             "| algorithm | problem | N | 1 rank, N/2 | 1 rank, N | 2 ranks, N | collective | speed-up (1 rank N / 2 ranks N) "
             "| t2(N) / (t1(N/2) + collective) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        ms = lambda x: f"{x * 1e3:.1f} ms"  # noqa: E731
        lines.append(f"| {r['algorithm']} | {r['problem']} | {r['n']:,} | {ms(r['one_rank_half']['seconds'])} | "
                     f"{ms(r['one_rank']['seconds'])} | {ms(r['two_ranks']['seconds'])} | "
                     f"{r['two_ranks']['collective_seconds'] * 1e6:.0f} us | {r['speedup']:.2f}x | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--backend", default="ring")
    p.add_argument("--out", default=None)
    p.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks-distributed.md"))
    a = p.parse_args(argv)
    res = run(a.reps, a.backend)
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"distributed-{device_tag()}.json")
    out.write_text(json.dumps(res, indent=1) + "\n")
    doc = Path(a.doc)
    doc.write_text("# genmlx.distributed: 1 rank against 2 ranks\n\nWritten by `python -m benchmarks.distributed` "
                   f"(results: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}`).\n\n" + markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
