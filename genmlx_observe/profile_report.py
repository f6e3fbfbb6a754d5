"""The `profile` report: report.json, PNG plots (matplotlib, optional), index.html, a terminal summary.

Plots (one line per loop):

* ``latency.png``: seconds per iteration against iterations done;
* ``growth.png``: live arrays and pending graph nodes at each census, with
  the fitted growth lines;
* ``memory.png``: MLX active and cache bytes over time;
* ``sites.png``: the trace sites ranked by graph nodes (buffers once evaluated).

Without matplotlib (``pip install 'genmlx[profile]'``) the report has no PNGs
and says so; the JSON and HTML are written anyway.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

__all__ = ["write_report", "summary", "loop_name", "DOCS"]

DOCS = "docs/troubleshooting.md (a loop that grows) and docs/pytest-plugin.md (gate it in tests)"


def loop_name(loop: dict) -> str:
    return (f"loop {loop['run_id']} ({loop['algorithm']} on {loop['model'] or '?'}, chain {loop['chain']}) "
            f"at {loop.get('call_site', '?')}")


def _num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def _advice(result: dict, loop: dict) -> list[str]:
    out = []
    if loop["wrapper_growth"] is not None and loop["wrapper_growth"] > result["limits"]["arrays_per_iteration"]:
        out.append(f"it keeps {loop['wrapper_growth']:.3g} more live mx.arrays per iteration "
                   "(a callback, list or cache holding arrays across iterations)")
    if loop["pending_growth"] is not None and loop["pending_growth"] > result["limits"]["pending_per_iteration"]:
        out.append(f"its unevaluated graph grows by {loop['pending_growth']:.3g} nodes per iteration "
                   "(a value accumulated lazily and never evaluated)")
    sites = [s for s in result["sites"] if s.get("leaf", True)]
    if sites:
        s = sites[0]
        out.append(f"heaviest trace site: {tuple(s['address'])!r} ({s['gen_fn']}, {s['op']}) adds {s['nodes']} "
                   "graph nodes per visit")
    out.append(f"see {DOCS}")
    return out


def summary(result: dict) -> str:
    """The terminal summary: one line per loop with its verdict, then what to do about leaks."""
    lines = [f"genmlx-observe profile: {result['script']} ({result['wall_s']:.1f} s, exit {result['exit']})"]
    head = ("loop", "algorithm", "model", "called at", "iterations", "s/iteration", "arrays/it", "nodes/it", "verdict")
    rows = [head]
    for lp in result["loops"]:
        per_it = lp["duration_s"] / lp["iterations"] if lp.get("iterations") and lp.get("duration_s") else None
        rows.append((str(lp["run_id"]), lp["algorithm"], lp["model"] or "-", lp.get("call_site", "?"),
                     f"{lp['iterations']:,}", _num(per_it),
                     f"{_num(lp['wrapper_growth'])} ± {_num(lp['wrapper_growth_se'], 2)}",
                     f"{_num(lp['pending_growth'])} ± {_num(lp['pending_growth_se'], 2)}", lp["verdict"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    leaks = [lp for lp in result["loops"] if lp["verdict"] == "leak"]
    for lp in leaks:
        lines.append(f"LEAK: {loop_name(lp)}")
        lines += [f"  - {a}" for a in _advice(result, lp)]
    if not result["loops"]:
        lines.append("no genmlx inference loop ran")
    elif not leaks:
        lines.append(f"no loop grows beyond {result['limits']['arrays_per_iteration']} arrays or "
                     f"{result['limits']['pending_per_iteration']} pending nodes per iteration")
    if result.get("error"):
        lines.append("the script raised:\n" + result["error"])
    return "\n".join(lines)


def _plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    loops = result["loops"]

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made.append(name)

    fig, ax = plt.subplots(figsize=(8, 4))
    for lp in loops:
        pts = lp.get("timeline", {}).get("points", [])
        if pts:
            ax.plot([p[1] for p in pts], [p[2] for p in pts], label=f"{lp['run_id']}: {lp['algorithm']} {lp['model']}")
    ax.set(xlabel="iterations done", ylabel="seconds per iteration", title="Iteration latency", yscale="log")
    ax.legend(fontsize=7)
    save(fig, "latency.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for lp in loops:
        pts = lp["points"]
        if not pts:
            continue
        xs = [p[0] for p in pts]
        for ax, col, key in ((axes[0], 1, "wrapper_growth"), (axes[1], 2, "pending_growth")):
            line, = ax.plot(xs, [p[col] for p in pts], "o-", ms=3,
                            label=f"{lp['run_id']}: {lp['algorithm']} {lp['model']} ({_num(lp[key])}/it, {lp['verdict']})")
            if lp[key] is not None:  # the fitted line through the points' centre
                mx_, my = sum(xs) / len(xs), sum(p[col] for p in pts) / len(pts)
                ax.plot([xs[0], xs[-1]], [my + lp[key] * (xs[0] - mx_), my + lp[key] * (xs[-1] - mx_)], "--",
                        color=line.get_color(), lw=1)
    axes[0].set(xlabel="iteration", ylabel="live arrays", title="Live arrays (kept samples excluded)")
    axes[1].set(xlabel="iteration", ylabel="pending graph nodes", title="Pending graph nodes")
    for ax in axes:
        ax.legend(fontsize=7)
    save(fig, "growth.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    for lp in loops:
        pts = lp.get("timeline", {}).get("points", [])
        if pts:
            line, = ax.plot([p[0] for p in pts], [p[3] / 2**20 for p in pts], label=f"{lp['run_id']} active")
            ax.plot([p[0] for p in pts], [p[4] / 2**20 for p in pts], ":", color=line.get_color(),
                    label=f"{lp['run_id']} cache")
    ax.set(xlabel="seconds since the loop started", ylabel="MiB", title="MLX memory")
    ax.legend(fontsize=7)
    save(fig, "memory.png")

    sites = [s for s in result["sites"] if s.get("leaf", True)][:15]
    if sites:
        fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(sites) + 1)))
        names = [f"{'/'.join(map(str, s['address']))} ({s['op']})" for s in sites][::-1]
        ax.barh(names, [s["nodes"] for s in sites][::-1])
        ax.set(xlabel="graph nodes per visit (future buffers)", title="Trace sites by buffers")
        save(fig, "sites.png")
    return made


def _html(result: dict, images: list[str], note: str) -> str:
    e = html.escape
    rows = "".join(
        f"<tr class='{e(lp['verdict'])}'><td>{lp['run_id']}</td><td>{e(lp['algorithm'])}</td><td>{e(lp['model'])}</td>"
        f"<td>{e(lp.get('call_site', '?'))}</td><td>{lp['iterations']:,}</td>"
        f"<td>{_num(lp['wrapper_growth'])} ± {_num(lp['wrapper_growth_se'], 2)}</td>"
        f"<td>{_num(lp['pending_growth'])} ± {_num(lp['pending_growth_se'], 2)}</td><td>{e(lp['verdict'])}</td></tr>"
        for lp in result["loops"])
    sites = "".join(f"<tr><td>{e('/'.join(map(str, s['address'])))}</td><td>{e(s['gen_fn'])}</td><td>{e(s['op'])}</td>"
                    f"<td>{s['nodes']}</td><td>{s['visits']}</td></tr>" for s in result["sites"][:30])
    imgs = "".join(f"<figure><img src='{e(i)}' alt='{e(i)}'><figcaption>{e(i)}</figcaption></figure>" for i in images)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>genmlx profile: {e(Path(result['script']).name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:3px 8px}} tr.leak{{background:#fdd}} img{{max-width:100%}} pre{{background:#f6f6f6;padding:1em}}</style>
</head><body>
<h1>genmlx profile: {e(result['script'])}</h1>
<pre>{e(summary(result))}</pre>
<h2>Loops</h2>
<table><tr><th>loop</th><th>algorithm</th><th>model</th><th>called at</th><th>iterations</th>
<th>live arrays / iteration</th><th>pending nodes / iteration</th><th>verdict</th></tr>{rows}</table>
<h2>Plots</h2>{imgs or '<p>' + e(note) + '</p>'}
<h2>Trace sites by graph nodes per visit</h2>
<table><tr><th>site</th><th>generative function</th><th>op</th><th>nodes</th><th>visits seen</th></tr>{sites}</table>
<p>Numbers: <a href="report.json">report.json</a>.</p>
</body></html>
"""


def write_report(result: dict, out: str | Path) -> dict:
    """Write report.json, the PNGs, index.html into `out`; returns `{"files": [...], "note": str}`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    note = ""
    try:
        images = _plots(result, out)
    except ImportError:
        images, note = [], "no plots: matplotlib is not installed (pip install 'genmlx[profile]')"
    (out / "report.json").write_text(json.dumps(result, indent=1, default=str, allow_nan=True) + "\n")
    (out / "index.html").write_text(_html(result, images, note))
    return {"files": ["report.json", "index.html", *images], "note": note}
