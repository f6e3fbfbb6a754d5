"""Time genmlx and its peers (GenJAX, NumPyro) in interleaved rounds; write results/peers-<device tag>.json.

    python -m benchmarks.peers [--only ID ...] [--merge] [--peers-python PATH] [--report]

The peers run under their own Python (GenJAX 1.0.x needs 3.12+): the
environment variable GENMLX_PEERS_PYTHON, else /root/.venvs/peers/bin/python
(benchmarks/peers/README.md says how to make it). That interpreter runs
`benchmarks.peers.worker`, which times one peer call per request; the genmlx
calls run in this process. Each row: every side's first call (compilation),
then rounds of genmlx, peer, peer, ..., genmlx, peer, ... so that the
machine's load falls on both. Ratios are per round, on the suite's clock
(process CPU time on a CPU device, wall time on a GPU: `common.primary_clock`),
and the report gives their median. The JSON is rewritten after every row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peers.clock import cpu_seconds
from benchmarks.peers.rows import ROWS, Row, rows as select_rows

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = "/root/.venvs/peers/bin/python"
CACHE_LIMIT = 1 << 30  # as benchmarks/conftest.py sets it for the suite (see its docstring)

__all__ = ["peers_python", "PeerWorker", "PeerError", "ratios", "measure", "kept_rows", "in_table_order", "main"]


class PeerError(RuntimeError):
    """The peers' worker failed a request (its traceback is the message) or died."""


def peers_python(explicit: str | None = None) -> str | None:
    """The peers' interpreter: `explicit`, else $GENMLX_PEERS_PYTHON, else the default venv; None if absent.

    GENMLX_PEERS_PYTHON set to an empty string or ``none`` turns the peers off.
    """
    cand = explicit if explicit is not None else os.environ.get("GENMLX_PEERS_PYTHON", DEFAULT_PYTHON)
    if not cand or cand.lower() == "none":
        return None
    return cand if Path(cand).exists() else None


class PeerWorker:
    """One `benchmarks.peers.worker` process under the peers' Python, spoken to in JSON lines."""

    def __init__(self, python: str):
        self.proc = subprocess.Popen([python, "-m", "benchmarks.peers.worker"], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def call(self, **req) -> dict:
        if self.proc.poll() is not None:
            raise PeerError(f"the peers' worker exited with status {self.proc.returncode}")
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise PeerError(f"the peers' worker closed its output (status {self.proc.wait()}); see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise PeerError(reply["error"])
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call(op="quit")
            except (PeerError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def timed(fn, summarize) -> dict:
    gc.collect()
    c0, w0 = cpu_seconds(), time.perf_counter()
    out = fn()
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    return {"cpu_s": cpu, "wall_s": wall, "summary": summarize(out)}


def suite_cache_limit() -> None:
    """MLX's buffer cache at least `CACHE_LIMIT`, as the suite runs."""
    import genmlx as gm

    previous = gm.memory.set_cache_limit(CACHE_LIMIT)
    if previous > CACHE_LIMIT:
        gm.memory.set_cache_limit(previous)


def ratios(g: list[float], p: list[float], g_first: float | None = None, p_first: float | None = None) -> dict:
    """genmlx / peer: median of the per-round ratios, ratio of the minima, and of the first calls."""
    out = {}
    if g and p:
        per_round = [a / b for a, b in zip(g, p)]
        out.update(paired_median=statistics.median(per_round), of_min=min(g) / min(p), per_round=per_round)
    if g_first is not None and p_first:
        out["first"] = g_first / p_first
    return out


def _side(first: dict, runs: list[dict], per: int) -> dict:
    cpu, wall = [r["cpu_s"] for r in runs], [r["wall_s"] for r in runs]
    out = {"first": first, "cpu_s": cpu, "wall_s": wall, "summary": runs[-1]["summary"] if runs else first["summary"]}
    for clock, times in (("cpu", cpu), ("wall", wall)):
        if times:
            out[f"{clock}_median_s"] = statistics.median(times)
            out[f"{clock}_per_unit_median_s"] = statistics.median(times) / per
    comp = [r.get("compile_wall_s") for r in runs if r.get("compile_wall_s") is not None]
    if comp:
        out["compile_wall_s"] = comp
    return out


def measure(row: Row, genmlx_side, peer_sides: dict, clock: str, device_type: str = "cpu",
            genmlx_first_runs=None) -> dict:
    """Time one row: each side's first call, then `row.rounds` rounds of genmlx then every peer.

    `genmlx_side` is `(fn, summarize)`; `peer_sides` maps a peer's name to a
    callable that times one call of it and returns the worker's reply. A target
    that names a `device` ("cpu" or "gpu") is kept only on that kind of device.
    `genmlx_first_runs() -> (cold, warm)`, for a row whose peers get a new
    process: genmlx's first runs in new processes too (`first_run.first_runs`),
    with MLX's kernel cache empty (`first_cold`) and kept (`first`); this
    process's own first call is then kept as `first_in_runner`.
    """
    cold = warm = None
    if genmlx_first_runs is not None:
        cold, warm = genmlx_first_runs()
    firsts = {"genmlx": timed(*genmlx_side)}
    for name, call in peer_sides.items():
        firsts[name] = call()
    runs: dict[str, list] = {name: [] for name in firsts}
    for _ in range(row.rounds):
        runs["genmlx"].append(timed(*genmlx_side))
        for name, call in peer_sides.items():
            runs[name].append(call())
    key = f"{clock}_s"
    g = _side(warm or firsts["genmlx"], runs["genmlx"], row.per)
    if cold is not None:
        g.update(first_cold=cold, first_in_runner=firsts["genmlx"])
    result = {"id": row.id, "group": row.group, "label": row.label, "unit": row.unit, "per": row.per,
              "rounds": row.rounds, "genmlx": {**g, "spec": row.genmlx}, "peers": {}, "ratios": {},
              "targets": [dict(t) for t in row.targets if t.get("device", device_type) == device_type]}
    for name in peer_sides:
        result["peers"][name] = {**_side(firsts[name], runs[name], row.per), "spec": row.peers[name]}
        r = ratios([x[key] for x in runs["genmlx"]], [x[key] for x in runs[name]],
                   g["first"][key], firsts[name][key])
        if cold is not None:
            r["first_cold"] = cold[key] / firsts[name][key]
        r[f"{'wall' if clock == 'cpu' else 'cpu'}_paired_median"] = ratios(
            [x["wall_s" if clock == "cpu" else "cpu_s"] for x in runs["genmlx"]],
            [x["wall_s" if clock == "cpu" else "cpu_s"] for x in runs[name]]).get("paired_median")
        result["ratios"][name] = r
    return result


def kept_rows(previous: dict, chosen: list[Row]) -> list[dict]:
    """The rows of an earlier peers JSON that this run does not measure again (`--merge`)."""
    measured = {row.id for row in chosen}
    return [r for r in previous.get("rows", []) if r.get("id") not in measured]


def in_table_order(results: list[dict]) -> list[dict]:
    order = {row.id: i for i, row in enumerate(ROWS)}
    return sorted(results, key=lambda r: order.get(r.get("id"), len(order)))


def _commit() -> dict:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "genmlx", "benchmarks"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
        return {"id": sha, "dirty": dirty}
    except OSError:
        return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], help="run the rows whose id contains this (repeatable)")
    ap.add_argument("--peers-python", default=None, help=f"the peers' interpreter (default: $GENMLX_PEERS_PYTHON "
                                                         f"or {DEFAULT_PYTHON})")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/peers-<device tag>.json)")
    ap.add_argument("--merge", action="store_true", help="keep the rows of an existing JSON that this run does not "
                                                         "measure (a run in parts, e.g. on a time-limited GPU lease)")
    ap.add_argument("--report", action="store_true", help="then regenerate docs/benchmarks.md from the suite's "
                                                          "results/<device tag>.json (its Peers section reads this JSON)")
    a = ap.parse_args(argv)
    python = peers_python(a.peers_python)
    if python is None:
        print(f"peers: no peers' Python at {a.peers_python or os.environ.get('GENMLX_PEERS_PYTHON', DEFAULT_PYTHON)!r}"
              " - GenJAX/NumPyro not measured (benchmarks/peers/README.md says how to install them)", flush=True)
        return 2
    chosen = select_rows(a.only)

    from benchmarks.common import clock_name, device_description, device_tag, primary_clock
    from benchmarks.peers import genmlx_rows
    from benchmarks.peers.first_run import FirstRunError, first_runs
    from benchmarks.summary import judge_peers

    suite_cache_limit()
    clock = clock_name(primary_clock())
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"peers-{device_tag()}.json"
    out.parent.mkdir(exist_ok=True)
    table = genmlx_rows.cases()
    shared = PeerWorker(python)
    data = {"kind": "genmlx-peers", "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
            "commit": _commit(), "device": device_description(), "device_tag": device_tag(), "clock": clock,
            "peers_python": python, "versions": {"genmlx_side": {"python": sys.version.split()[0],
                                                                 "mlx": device_description()["mlx"]},
                                                 "peers": shared.call(op="versions")},
            "rows": []}
    if a.merge and out.exists():
        data["rows"] = kept_rows(json.loads(out.read_text()), chosen)
        data["kept_from_earlier_run"] = [r["id"] for r in data["rows"]]
    t_start = time.time()
    try:
        for row in chosen:
            print(f"peers: {row.id} ({row.label})", flush=True)
            worker = PeerWorker(python) if row.fresh_worker else shared
            try:
                peer_sides = {name: (lambda spec=spec: worker.call(op="time", row=spec))
                              for name, spec in row.peers.items()}
                try:
                    result = measure(row, genmlx_rows.build(row.genmlx, table), peer_sides, clock,
                                     data["device"]["device_type"],
                                     (lambda spec=row.genmlx: first_runs(spec)) if row.fresh_worker else None)
                except (PeerError, FirstRunError) as e:
                    print(f"peers: {row.id} failed:\n{e}", file=sys.stderr, flush=True)
                    result = {"id": row.id, "group": row.group, "label": row.label, "error": str(e)}
            finally:
                if worker is not shared:
                    worker.close()
            data["rows"].append(result)
            data["rows"] = in_table_order(data["rows"])
            data["wall_s"] = time.time() - t_start
            data["targets"] = judge_peers(data)
            out.write_text(json.dumps(data, indent=1))
            for name, r in result.get("ratios", {}).items():
                print(f"  genmlx / {name}: {r.get('paired_median', float('nan')):.2f}x "
                      f"(first calls {r.get('first', float('nan')):.2f}x)", flush=True)
    finally:
        shared.close()
    met = sum(t["met"] for t in data.get("targets", []))
    print(f"wrote {out}: {met} of {len(data.get('targets', []))} peer targets met", flush=True)
    if a.report:
        suite = ROOT / "benchmarks" / "results" / f"{device_tag()}.json"
        if suite.exists():
            from benchmarks.report import main as report

            doc = "benchmarks.md" if data["device"]["device_type"] == "cpu" else "benchmarks-gpu.md"
            report([str(suite), "--peers", str(out), "--out", str(ROOT / "docs" / doc)])
        else:
            print(f"peers: no {suite.relative_to(ROOT)} to render the report from (run python -m benchmarks.run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
