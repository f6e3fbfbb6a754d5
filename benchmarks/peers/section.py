"""The Peers section of docs/benchmarks.md: genmlx / GenJAX and genmlx / NumPyro from a peers JSON.

`benchmarks.report` calls `peers_section` when a `results/peers-<device tag>.json`
(written by `python -m benchmarks.peers`) sits beside the suite's JSON.
"""

from __future__ import annotations

import statistics

from benchmarks.report import num, t, table, x
from benchmarks.summary import judge_peers

__all__ = ["peers_section", "PEER_NAMES"]


PEER_NAMES = {
    "genjax_sites": "GenJAX, scalar sites", "genjax_vector": "GenJAX, vector site",
    "genjax_scan_sites": "GenJAX jit(scan(mh)), scalar sites", "genjax_scan_vector": "GenJAX jit(scan(mh)), vector site",
    "genjax_loop_sites": "GenJAX loop of jit(mh), scalar sites",
    "genjax_loop_vector": "GenJAX loop of jit(mh), vector site", "numpyro": "NumPyro",
}


def _check(side: dict) -> str:
    sm = side.get("summary") or {}
    keys = [k for k in ("log_ml", "mean_p", "mean_slope", "mean_v", "acceptance_rate") if sm.get(k) is not None]
    return ", ".join(f"{k} {sm[k]:.3g}" for k in keys[:2]) or "-"


def _per_unit(side: dict, clock: str) -> float | None:
    return side.get(f"{clock}_per_unit_median_s")


def peers_section(peers: dict) -> str:
    clock = peers.get("clock", "cpu")
    v = peers.get("versions", {})
    pv, gv = v.get("peers", {}), v.get("genmlx_side", {})
    commit = peers.get("commit", {})
    rows_t = judge_peers(peers)
    out = ["## Peers: GenJAX and NumPyro on the same models and data", "",
           "Measured by `python -m benchmarks.peers` (how the peers are written and run: benchmarks/peers/README.md).",
           "Each row runs every side's first call (compilation included), then rounds of genmlx and each peer in",
           f"turn. Times are medians over the rounds, per unit, on the "
           f"{'process CPU time' if clock == 'cpu' else 'wall'} clock; *ratio* is the median of the per-round",
           "genmlx / peer ratios (above 1: genmlx is slower); *first* compares the first calls.", "",
           table(["", ""], [
               ["run", f"{str(peers.get('datetime', '?'))[:19]} UTC, commit {str(commit.get('id', '?'))[:10]}"
                       f"{' (dirty tree)' if commit.get('dirty') else ''}"],
               ["peers", f"GenJAX {pv.get('genjax', '?')}, NumPyro {pv.get('numpyro', '?')}, jax / jaxlib "
                         f"{pv.get('jax', '?')} / {pv.get('jaxlib', '?')}, Python {pv.get('python', '?')}; "
                         f"JAX device {pv.get('jax_device', '?')}"],
               ["genmlx", f"MLX {gv.get('mlx', '?')}, Python {gv.get('python', '?')}"],
           ]), ""]
    if rows_t:
        met = sum(r["met"] for r in rows_t)
        out += [f"### Peer targets (issue 14): {met} of {len(rows_t)} met", "",
                table(["target", "genmlx / peer", "limit", "statistic", ""],
                      [[r["target"], x(r["value"]), f"<= {r['limit']:g}x", r["statistic"],
                        "met" if r["met"] else "**missed**"] for r in rows_t]), ""]
    per_unit, nuts, failed = [], [], []
    for row in peers.get("rows", []):
        if "error" in row:
            failed.append(f"- {row['id']}: failed ({row['error'].strip().splitlines()[-1]})")
            continue
        g = row["genmlx"]
        for name, side in row["peers"].items():
            r = row["ratios"].get(name, {})
            if row["group"] == "nuts":
                nuts.append([row["label"], name.replace("numpyro", "NumPyro"),
                             t((g.get("first_cold") or {}).get(f"{clock}_s")), t(g["first"][f"{clock}_s"]),
                             t(g.get(f"{clock}_median_s")), t(g.get("wall_median_s")),
                             t(side["first"][f"{clock}_s"]), t(side.get(f"{clock}_median_s")),
                             t(side.get("wall_median_s")),
                             f"{t(side['first'].get('compile_wall_s'))} / {t(_median(side.get('compile_wall_s')))}",
                             x(r.get("paired_median")), x(r.get("first_cold")), x(r.get("first")),
                             f"{num((g.get('summary') or {}).get('leapfrog_steps'))} / "
                             f"{num((side.get('summary') or {}).get('leapfrog_steps'))}"])
            else:
                per_unit.append([row["label"], row["unit"], t(_per_unit(g, clock)), PEER_NAMES.get(name, name),
                                 t(_per_unit(side, clock)), x(r.get("paired_median")), x(r.get("first")),
                                 f"{_check(g)} / {_check(side)}"])
    if per_unit:
        out += ["### Importance sampling and MH (per unit)", "",
                table(["row", "unit", "genmlx", "peer", "peer", "ratio", "first", "check: genmlx / peer"],
                      per_unit), ""]
    if nuts:
        out += ["### NUTS, 1 chain, whole run", "",
                "Every first run is a new process's. genmlx has two: on a *new machine* (MLX's kernel cache empty:",
                "it compiles each fused kernel, C++ on a CPU, NVRTC on a GPU) and in a *later* process (MLX keeps",
                "the kernels on disk, `benchmarks/peers/first_run.py`). On a CPU a new machine's first run includes",
                "the precompiled kernel preamble that `import genmlx` builds once (`genmlx/cpu_kernels.py`).",
                "NumPyro compiles in every process.",
                "`later`: the median of the runs after the first, in the same process (NumPyro's `mcmc.run` compiles",
                "again on each call: `compile` is the part of a run JAX spent tracing and compiling, wall clock).",
                "", table(["model (genmlx form)", "peer", "genmlx first, new machine", "genmlx first, later process",
                           "genmlx later", "genmlx later (wall)", "peer first", "peer later", "peer later (wall)",
                           "peer compile: first / later", "ratio (later)", "first: new machine",
                           "first: later process", "leapfrog steps genmlx / peer"], nuts), ""]
    out += failed
    return "\n".join(out).rstrip()


def _median(xs) -> float | None:
    return statistics.median(xs) if xs else None

