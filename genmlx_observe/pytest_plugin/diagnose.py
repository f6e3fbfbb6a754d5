"""What keeps a leak alive: holders, the growing graph, the trace site, the line.

The leak gate calls `diagnose` at the end of a loop it judged leaky (the
frames of the test are still live then); `genmlx-observe profile` can call it
the same way. Everything it returns is plain data (JSON-ready), and `lines`
renders it for a report section.

Typical use, around one loop::

    base = snapshot()                       # before (or early in) the loop
    ...                                     # the loop runs
    new = survivors(base, exclude=store)    # arrays alive now that were not then
    d = diagnose(new, store=store, state=state, iterations=span)
    print("\\n".join(lines(d)))
"""

from __future__ import annotations

import gc
import sys
import time
import weakref
from typing import Any

from . import graphs, holders

__all__ = ["snapshot", "survivors", "diagnose", "lines", "graph_snapshot"]

try:
    from mlx.core import array as _ARRAY
except ImportError:  # pragma: no cover - mlx is a dependency
    _ARRAY = None

MAX_TARGETS = 20_000  # arrays searched for (the first, by age)
MAX_GROUPS = 5
MIN_RATE = 0.01  # holders growing slower are left out of the report lines (not of the data)


def snapshot() -> list:
    """Weak references to every live array: the baseline `survivors` compares with."""
    gc.collect()
    return [weakref.ref(a) for a in gc.get_objects() if type(a) is _ARRAY]


def survivors(baseline: list, exclude: Any = None) -> list:
    """Arrays alive now that were not alive at `baseline`, minus those reachable from `exclude`."""
    from .census import kept_array_ids

    old = {id(a) for r in baseline if (a := r()) is not None}
    skip: set[int] = set()
    if exclude is not None:
        kept_array_ids(exclude, skip)
    return [a for a in gc.get_objects() if type(a) is _ARRAY and id(a) not in old and id(a) not in skip]


def graph_snapshot(arrays: list, iteration: int, origins: Any = None) -> dict | None:
    """The shape of the largest pending graph among `arrays` now (`None` if nothing is pending)."""
    top, n, _ = graphs.largest(arrays)
    if top is None:
        return None
    shape = dict(graphs.shape_of(top), iteration=iteration)
    if origins is not None:
        shape["created_at"] = origins.line_of(top)
    return shape


def _group(found: dict, root_list: list, targets: list) -> list[dict]:
    groups: dict[tuple, list] = {}
    for a in targets:
        hit = found.get(id(a))
        if hit is None:
            continue
        ri, chain = hit
        steps = holders.describe(root_list[ri], chain)
        key = (ri if root_list[ri].kind != "module" else -1,
               tuple((s.kind, "*" if s.kind == "item" else s.text) for s in steps))
        groups.setdefault(key, []).append((a, ri, chain, steps))
    out = []
    for members in groups.values():
        _, ri, chain, steps = members[0]
        vary = [k for k, s in enumerate(steps) if s.kind == "item"
                and any(m[3][k].item != s.item for m in members[1:])]
        cut = vary[0] if vary else (len(steps) - 1 if steps and steps[-1].kind == "item" else len(steps))
        head, tail = steps[:cut], steps[cut:]
        container = chain[steps[cut].frm] if cut < len(steps) else chain[-1]
        out.append({
            "holder": " -> ".join(s.text for s in head) or root_list[ri].name,
            "container": type(container).__name__,
            "path": " -> ".join(s.text for s in tail),
            "root": root_list[ri].kind,
            "by_design": root_list[ri].by_design,
            "count": len(members),
            "members": [m[0] for m in members],
        })
    out.sort(key=lambda g: -g["count"])
    return out


def _unreached(arrays: list, n: int = 3) -> list[str]:
    """Type names of what directly refers to a few unreached arrays (one heap scan each)."""
    out = []
    me = sys._getframe()
    for a in arrays[:n]:
        refs = [type(r).__qualname__ for r in gc.get_referrers(a) if r is not arrays and r is not me]
        out.append(", ".join(sorted(set(refs))) or "nothing Python can see (C code)")
    return out


def diagnose(
    arrays: list,
    *,
    store: Any = None,
    state: Any = None,
    iterations: int | None = None,
    pending: list | None = None,
    graph_before: dict | None = None,
    origins: Any = None,
    iteration: int | None = None,
    frame: Any = None,
    max_groups: int = MAX_GROUPS,
    wrappers: bool = True,
    pending_fallback: list | None = None,
    min_nodes: int = 1,
) -> dict:
    """Name what holds `arrays` (the survivors of a leaky loop), and the graph that grows.

    Args:
        arrays: the arrays to explain (e.g. `survivors(...)`); the first
            `MAX_TARGETS` are searched for.
        store, state: what the run keeps by design (named roots: an array
            held there is reported as kept by design, not a leak).
        iterations: iterations over which `arrays` accumulated; per-holder
            counts are divided by it (None: counts only).
        pending: arrays among which to look for a growing pending graph
            (None: no graph analysis), e.g. the arrays new since the loop
            began: an old array's graph that has stopped growing is not it.
        pending_fallback, min_nodes: where the largest graph among `pending`
            has fewer than `min_nodes` nodes, look among these instead (e.g.
            every array: an old array grown in place by ``s += x``).
        graph_before: an earlier `graph_snapshot` of the same loop; with it,
            the graph's growth per iteration in nodes, depth and each op.
        origins: an `origins.Origins` that watched one step of the loop
            (source lines and trace sites of the arrays it saw created).
        iteration: the loop's iteration now (for the graph's per-iteration rates).
        frame: the innermost frame whose locals are roots (default: the caller's).
        wrappers: explain `arrays` (False: only the pending graph, e.g. when
            only pending nodes grew).

    Returns:
        A plain dict: `holders` (largest first: `holder`, `container`,
        `path`, `root`, `by_design`, `count`, `per_iteration`, `site`,
        `created_at`), `unreached` (count) and `unreached_referrers`,
        `graph` (or None), `arrays`, `iterations`, `seconds`.
    """
    t0 = time.perf_counter()
    targets = list(arrays[:MAX_TARGETS]) if wrappers else []
    graph = None
    top = None
    if pending is not None:
        top, n, holding = graphs.largest(pending)
        if n < min_nodes and pending_fallback:
            top, n, holding = graphs.largest(pending_fallback)
        if top is not None:
            graph = dict(graphs.shape_of(top), arrays_pending=holding)
    search = targets + ([top] if top is not None and all(t is not top for t in targets) else [])
    root_list = holders.roots(store, state, frame if frame is not None else sys._getframe(1))
    found = holders.find_chains(search, root_list)
    groups = _group(found, root_list, targets)
    span = iterations if iterations else None
    out_groups = []
    for g in groups[:max_groups]:
        members = g.pop("members")
        g["per_iteration"] = g["count"] / span if span else None
        g["site"] = _first(members, origins.site_of) if origins is not None else None
        g["created_at"] = _first(members, origins.line_of) if origins is not None else None
        out_groups.append(g)
    unreached = [a for a in targets if id(a) not in found]
    if graph is not None:
        graph["holder"] = None
        if id(top) in found:
            ri, chain = found[id(top)]
            graph["holder"] = " -> ".join(s.text for s in holders.describe(root_list[ri], chain))
        graph["created_at"] = origins.line_of(top) if origins is not None else None
        if graph["created_at"] is None and graph_before:
            graph["created_at"] = graph_before.get("created_at")
        graph["per_iteration"] = _graph_rates(graph, graph_before, iteration)
    result = {
        "arrays": len(targets),
        "iterations": iterations,
        "holders": out_groups,
        "unreached": len(unreached),
        "unreached_referrers": _unreached(unreached) if unreached else [],
        "graph": graph,
        "watched_iteration": getattr(origins, "iteration", None),
        "watch_truncated": bool(getattr(origins, "truncated", False)),
    }
    del found, root_list, targets, search, top
    holders.release()
    result["seconds"] = time.perf_counter() - t0
    return result


def _first(members: list, look) -> dict | None:
    for a in members:
        r = look(a)
        if r is not None:
            return r
    return None


def _graph_rates(now: dict, before: dict | None, iteration: int | None) -> dict | None:
    if not before or iteration is None or iteration <= before["iteration"]:
        return None
    span = iteration - before["iteration"]
    ops = {k: (v - before["ops"].get(k, 0)) / span for k, v in now["ops"].items()}
    return {"nodes": (now["nodes"] - before["nodes"]) / span, "depth": (now["depth"] - before["depth"]) / span,
            "ops": {k: v for k, v in ops.items() if v > 0}, "since_iteration": before["iteration"]}


def _num(x: float) -> str:
    return f"{x:,.2f}"


def lines(d: dict, verbosity: int = 0) -> list[str]:
    """The diagnosis as report lines (`-q` gives the first holder only)."""
    out: list[str] = []
    g = d.get("graph")
    if g:
        rate = g.get("per_iteration")
        if rate and rate["ops"]:
            ops = ", ".join(f"`{k}` x{_num(v)}" for k, v in sorted(rate["ops"].items(), key=lambda kv: -kv[1]))
            out.append(f"growing graph: {ops} per iteration, graph depth {g['depth']:,} "
                       f"(+{_num(rate['depth'])} per iteration), {g['nodes']:,} pending nodes")
        else:
            ops = ", ".join(f"`{k}` x{v:,}" for k, v in g["ops"].items())
            out.append(f"pending graphs: {g.get('arrays_pending', 1):,} arrays have one; the largest: "
                       f"{g['nodes']:,} node{'s' if g['nodes'] != 1 else ''} ({ops}), graph depth {g['depth']:,}")
        out[-1] += f"; held by {g['holder'] or 'no named root'}"
        if g.get("created_at"):
            c = g["created_at"]
            out.append(f"  created at {c['short']} in {c['function']}: {c['code']}")
    hs = [h for h in d["holders"] if h["per_iteration"] is None or h["per_iteration"] >= MIN_RATE]
    rest = len(d["holders"]) - len(hs)
    if verbosity < 0:  # one line: the graph, else the main holder, with its line
        if out:
            return out[:1]
        if not hs:
            return []
        h = hs[0]
        rate = f"{_num(h['per_iteration'])} arrays/iteration" if h["per_iteration"] is not None else f"{h['count']:,} arrays"
        at = f", created at {h['created_at']['short']}" if h.get("created_at") else ""
        return [f"{rate} held by {h['container']} {h['holder']}{at}"]
    for h in hs:
        rate = f"{_num(h['per_iteration'])} arrays/iteration" if h["per_iteration"] is not None else f"{h['count']:,} arrays"
        head = f"{rate} held by {h['container']} {h['holder']}"
        if h["by_design"]:
            head = f"{rate} kept by design in {h['holder']}: not a leak"
        out.append(head)
        if h["path"] and verbosity >= 0:
            out.append(f"  reached as (one of them): {h['holder']} -> {h['path']}")
        if h.get("site"):
            s = h["site"]
            addr = s["address"][0] if len(s["address"]) == 1 else tuple(s["address"])
            out.append(f"  trace site {addr!r} ({s['gen_fn']}) of `{s['model']}`: its {s['part']}")
        if h.get("created_at"):
            c = h["created_at"]
            out.append(f"  created at {c['short']} in {c['function']}: {c['code']}")
    if rest and verbosity >= 0:
        out.append(f"({rest} more holders under {MIN_RATE} arrays/iteration; the JSON report lists them)")
    if d["unreached"] and verbosity >= 0:
        refs = "; ".join(d["unreached_referrers"])
        out.append(f"{d['unreached']:,} arrays reachable from no named root (referred to by: {refs})")
    if d.get("watched_iteration") is None and verbosity >= 0 and (d["holders"] or d.get("graph")):
        out.append("(no step of the loop was watched: source lines and trace sites unknown)")
    if not out:
        out.append("no surviving array found (the growth was freed before the end of the loop)")
    return out
