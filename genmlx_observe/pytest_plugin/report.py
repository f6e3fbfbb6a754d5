"""What the leak gate says: the verdict, the one-line failure, the report
section, the terminal summary and the JSON artifact.

Everything here works on plain data (dicts, lists, numbers) so a verdict
travels unchanged from an xdist worker to the controller on the test report.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Iterable

__all__ = ["judge", "number", "section", "summary_lines", "write_json", "EPS"]

EPS = 1e-9  # growth within EPS (relative) of the limit is "at the limit": it passes
SUMMARY_KEYS = ("live_arrays", "pending_nodes", "active_bytes", "cache_bytes", "peak_bytes", "budget_limit")


def number(x: float | None, near: float | None = None) -> str:
    """Two decimals, or as many more (up to 6) as it takes to differ visibly from `near`."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if near is not None and x != near:
        for d in range(2, 7):
            if round(x, d) != round(near, d):
                return f"{x:,.{d}f}"
        return f"{x:,.6g}" if abs(x) < 1e-3 else f"{x:,.6f}"
    return f"{x:,.2f}"


def _over(growth: float | None, limit: float) -> bool:
    return growth is not None and not math.isnan(growth) and growth > limit + EPS * max(1.0, abs(limit))


def _leaks(r: dict, what: int, limit: float) -> bool:
    """Loop `r` grows over `limit` in slope and, where it was checked, end to end."""
    g = r["wrapper_growth"] if what == 0 else r["pending_growth"]
    c = r.get("confirm_growth")
    return _over(g, limit) and (c is None or _over(c[what], limit))


def _address(addr: list) -> str:
    return repr(addr[0]) if len(addr) == 1 else repr(tuple(addr))


def judge(loops: list[dict], sites: list[dict], settings) -> dict:
    """Compare per-loop records (`LoopRecord.to_dict()`) and ranked sites with the limits.

    Returns a plain dict: the worst growths, `failures` (one line each, worst
    first within each kind) and `message` (the one-line longrepr, or None).
    """
    judged = [r for r in loops if r["wrapper_growth"] is not None and r["verdict"] != "raised"]
    failures: list[str] = []
    worst_w = max(judged, key=lambda r: r["wrapper_growth"], default=None)
    worst_p = max(judged, key=lambda r: r["pending_growth"], default=None)
    if settings.enabled:
        leak_w = [r for r in judged if _leaks(r, 0, settings.limit)]
        leak_p = [r for r in judged if _leaks(r, 1, settings.pending_limit)]
        for r in leak_w + leak_p:
            r["verdict"] = "leak"
        if leak_w:
            r = max(leak_w, key=lambda r: r["wrapper_growth"])
            g, lim = r["wrapper_growth"], settings.limit
            failures.append(
                f"wrapper growth {number(g, lim)} arrays/iteration over {r['iterations']:,} "
                f"iterations exceeds limit {number(lim)}"
            )
        if leak_p:
            r = max(leak_p, key=lambda r: r["pending_growth"])
            g, lim = r["pending_growth"], settings.pending_limit
            failures.append(
                f"pending graph node growth {number(g, lim)} nodes/iteration over {r['iterations']:,} "
                f"iterations exceeds limit {number(lim)}"
            )
    budget = settings.site_budget
    if budget is not None:
        over = [s for s in sites if s["leaf"] and s["nodes"] > budget]
        if over:
            s = over[0]
            more = f" (and {len(over) - 1} more sites)" if len(over) > 1 else ""
            failures.append(
                f"trace site {_address(s['address'])} ({s['gen_fn']}, {s['op']}) adds {s['nodes']:,} "
                f"graph nodes, over the budget of {budget:,} per site{more}"
            )
    return {
        "judged": bool(settings.enabled),
        "limit": settings.limit,
        "pending_limit": settings.pending_limit,
        "warmup": settings.warmup,
        "site_budget": budget,
        "wrapper_growth": None if worst_w is None else worst_w["wrapper_growth"],
        "pending_growth": None if worst_p is None else worst_p["pending_growth"],
        "iterations": sum(r["iterations"] for r in loops),
        "census_s": sum(r["census_s"] for r in loops),
        "loop_s": sum(r["loop_s"] for r in loops),
        "loops": loops,
        "sites": sites,
        "failures": failures,
        "message": "; ".join(failures) or None,
    }


def _loop_rows(loops: list[dict], limit: float, pending_limit: float) -> list[str]:
    head = ("loop", "algorithm", "model", "chain", "iterations", "points", "k",
            "arrays/it", "nodes/it", "kept", "state/it", "verdict")
    rows = [head]
    for r in loops:
        rows.append((
            str(r["run_id"]), r["algorithm"], r["model"] or "-", str(r["chain"]), f"{r['iterations']:,}",
            str(r["census_points"]), str(r["census_every"]), number(r["wrapper_growth"], limit),
            number(r["pending_growth"], pending_limit), f"{r['kept_arrays']:,}", number(r.get("state_growth")),
            r["verdict"],
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def section(verdict: dict, memory: dict | None, verbosity: int) -> str:
    """The "genmlx leak gate" report section; its length follows -q / -v."""
    loops = sorted(verdict["loops"], key=_growth_key, reverse=True)
    lim, plim = verdict["limit"], verdict["pending_limit"]
    warm = "max(3, 10% of the loop)" if verdict["warmup"] is None else f"{verdict['warmup']:,}"
    lines = [f"limits: {number(lim)} arrays/iteration, {number(plim)} pending graph nodes/iteration; "
             f"warm-up {warm} iterations"]
    if verdict["site_budget"] is not None:
        lines[0] += f"; {verdict['site_budget']:,} graph nodes per trace site"
    if verbosity < 0:
        loops = [r for r in loops if r["verdict"] == "leak"] or loops[:1]
    elif verbosity == 0 and len(loops) > 10:
        lines.append(f"(worst 10 of {len(loops)} loops; -v shows all)")
        loops = loops[:10]
    lines += _diagnoses(loops, verbosity)
    lines += ["", "growth per loop:"] + _loop_rows(loops, lim, plim)
    if verbosity >= 1:
        for r in loops:
            pts = r["points"]
            if r.get("confirm_growth"):
                c = r["confirm_growth"]
                lines.append(f"loop {r['run_id']} end-to-end check (full collection): "
                             f"{number(c[0])} arrays/it, {number(c[1])} nodes/it")
            if pts:
                shown = pts if len(pts) <= 6 or verbosity >= 2 else pts[:3] + [["..."]] + pts[-3:]
                lines.append(f"loop {r['run_id']} census (iteration, live, pending, state): "
                             + ", ".join("..." if p == ["..."] else f"({', '.join(map(str, p))})" for p in shown))
    sites = verdict["sites"]
    if verbosity >= 0 and sites:
        n = 5 if verbosity == 0 else 20 if verbosity == 1 else len(sites)
        lines += ["", f"trace sites by buffers (graph nodes per visit, sampled; top {min(n, len(sites))} of {len(sites)}):"]
        for s in sites[:n]:
            part = ""
            if verbosity >= 1 and s["breakdown"]:
                part = "  " + ", ".join(f"{k}={v}" for k, v in s["breakdown"].items())
            lines.append(f"  {s['nodes']:>7,}  {_address(s['address'])}  {s['gen_fn']}  {s['op']}"
                         f"{'' if s['leaf'] else '  (nested: sum of its sites)'}{part}")
    if verbosity >= 0 and memory:
        keys = list(memory) if verbosity >= 1 else [k for k in SUMMARY_KEYS if k in memory]
        lines += ["", "memory report (genmlx.memory.report()):"]
        lines += [f"  {k}: {memory[k]:,}" if isinstance(memory[k], int) and not isinstance(memory[k], bool)
                  else f"  {k}: {memory[k]}" for k in keys]
    if verdict["census_s"] and verbosity >= 0:
        lines += ["", f"census: {verdict['census_s'] * 1e3:,.1f} ms over {verdict['loop_s'] * 1e3:,.1f} ms of loops"]
    return "\n".join(lines)


def _diagnoses(loops: list[dict], verbosity: int) -> list[str]:
    """What holds each leaking loop's arrays (`diagnose.lines`), first in the section."""
    out: list[str] = []
    for r in loops:
        d = r.get("diagnosis")
        if r["verdict"] != "leak" or not d:
            continue
        from .diagnose import lines

        if verbosity < 0:
            out += [f"loop {r['run_id']}: {line}" for line in lines(d, verbosity)] if "error" not in d else []
            continue
        out += ["", f"what holds the growth of loop {r['run_id']} ({r['algorithm']}, {r['model'] or '-'}):"]
        if "error" in d:
            out.append(f"  (diagnosis failed: {d['error']})")
            continue
        out += ["  " + line for line in lines(d, verbosity)]
    return out


def _growth_key(r: dict) -> float:
    vals = [v for v in (r.get("wrapper_growth"), r.get("pending_growth")) if v is not None and not math.isnan(v)]
    return max(vals) if vals else -math.inf


def summary_lines(entries: list[dict], limits: tuple[float, float], n: int, verbosity: int) -> list[str]:
    """Terminal summary: headline, then the fastest- and slowest-growing tests."""
    loops = sum(len(e["loops"]) for e in entries)
    short = sum(1 for e in entries for r in e["loops"] if r["wrapper_growth"] is None)
    leaked = sum(1 for e in entries if e.get("leaked"))
    lines = [f"{len(entries)} tests measured ({loops} loops, {short} too short to judge), {leaked} leaked; "
             f"default limits {number(limits[0])} arrays/iteration, {number(limits[1])} pending nodes/iteration"]
    if verbosity < 0 or n <= 0:
        return lines
    ranked = sorted((e for e in entries if e["wrapper_growth"] is not None), key=_growth_key, reverse=True)
    if verbosity >= 2:
        n = len(ranked)

    def row(e):
        flag = "  LEAKED" if e.get("leaked") else ""
        return (f"  {number(e['wrapper_growth']):>8} arrays/it  {number(e['pending_growth']):>8} nodes/it  "
                f"{e['iterations']:>9,} it  {e['nodeid']}{flag}")

    if len(ranked) <= 2 * n:
        lines += ["tests by growth:"] + [row(e) for e in ranked]
    else:
        lines += ["fastest-growing:"] + [row(e) for e in ranked[:n]]
        lines += ["slowest-growing:"] + [row(e) for e in ranked[-n:]]
    return lines


def write_json(path: str, entries: Iterable[dict], limits: dict[str, Any]) -> str:
    """Write every measurement to `path` (parents created); returns the absolute path."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {
        "format": "genmlx-leak-gate",
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "limits": limits,
        "tests": sorted(entries, key=lambda e: e["nodeid"]),
    }
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, allow_nan=False, default=_plain)
    os.replace(tmp, path)
    return path


def _plain(x):
    return None if isinstance(x, float) and math.isnan(x) else str(x)
