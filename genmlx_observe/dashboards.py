"""Grafana dashboards, generated from the catalog so they cannot drift from it.

`dashboards/*.json` (and the copies shipped in `genmlx_observe/dashboards/`)
are exactly `render(name)`; a test checks it, and `genmlx-observe dashboards
--out dashboards` rewrites them (`--check` only compares). Every query names
metrics through `Metric.prometheus_name` / `prometheus_series`, never as typed
strings, and every panel has a description.

Template variables: `datasource`, then `job`, `instance` and `rank` (the
scrape target and, for distributed runs, the process's rank; absent labels
match the default All), then `algorithm`, `model`, `chain` (the run labels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .catalog import BY_KEY, Metric

__all__ = ["DASHBOARDS", "render", "write", "exprs", "panel_exprs", "substitute", "METAL_LIMIT",
           "GROWTH_THRESHOLD", "inference_dashboard", "memory_dashboard", "sites_dashboard"]

METAL_LIMIT = 499_000  # Apple's Metal cap on simultaneous buffers (genmlx.memory.METAL_RESOURCE_LIMIT)
GROWTH_THRESHOLD = 0.1  # the leak gate's default limit (arrays or pending nodes per iteration)
TARGET = 'job=~"$job", instance=~"$instance", rank=~"$rank"'
PROC = "{" + TARGET + "}"
RUN = "{" + TARGET + ', algorithm=~"$algorithm", model=~"$model", chain=~"$chain"}'
SITES = "{" + TARGET + ', model=~"$model"}'
BY = "job, instance, rank, algorithm, model, chain"
RATE = "$__rate_interval"
RUN_LEGEND = "{{algorithm}} {{model}} {{chain}}"


def _m(key: str) -> Metric:
    return BY_KEY[key]


def _rate(key: str, by: str = BY, sel: str = RUN, series: int = 0) -> str:
    name = _m(key).prometheus_series[series]
    return f"sum by ({by}) (rate({name}{sel}[{RATE}]))"


def _ratio(num: str, den: str) -> str:
    return f"{_rate(num)} / {_rate(den)}"


def _gauge(key: str) -> str:
    return _m(key).prometheus_name + (RUN if _m(key).attributes else PROC)


def _quantile(key: str, q: float, by: str = BY, sel: str = RUN) -> str:
    bucket = _m(key).prometheus_series[0]
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}{sel}[{RATE}])))"


def _panel(title: str, targets: list[tuple[str, str]], unit: str, description: str, threshold: float | None = None,
           kind: str = "timeseries") -> dict:
    if not description:
        raise ValueError(f"dashboard panel {title!r} needs a description")
    defaults: dict = {"unit": unit}
    if threshold is not None:  # a red line where the value means trouble
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                 {"color": "red", "value": threshold}]}
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    ds = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": ds,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [{"datasource": ds, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                    for i, (expr, legend) in enumerate(targets)],
    }


def _row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def _layout(panels: list[dict]) -> list[dict]:
    """Rows span the width; other panels go two per line, 12 x 8 each."""
    out, y, x = [], 0, 0
    for i, p in enumerate(panels, start=1):
        p = dict(p, id=i)
        if p["type"] == "row":
            if x:
                y, x = y + 8, 0
            p["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y += 1
        else:
            p["gridPos"] = {"h": 8, "w": 12, "x": x, "y": y}
            x = 12 - x
            if x == 0:
                y += 8
        out.append(p)
    return out


def _variables() -> list[dict]:
    rss = _m("process.memory.rss").prometheus_name
    steps = _m("inference.steps").prometheus_name

    def label(name: str, source: str, sel: str) -> dict:
        q = f"label_values({source}{sel}, {name})"
        return {
            "type": "query", "name": name, "label": name,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": q, "refId": name}, "definition": q,
            "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
            "current": {"text": "All", "value": "$__all"},
        }

    return [
        {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
         "current": {}, "hide": 0},
        label("job", rss, ""),
        label("instance", rss, '{job=~"$job"}'),
        label("rank", rss, '{job=~"$job", instance=~"$instance"}'),
        label("algorithm", steps, PROC),
        label("model", steps, PROC),
        label("chain", steps, PROC),
    ]


def _dashboard(uid: str, title: str, panels: list[dict], links: list[str]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": "Generated by genmlx_observe.dashboards from the metric catalog; do not edit by hand.",
        "tags": ["genmlx", "mlx", "inference"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["genmlx"], "asDropdown": False, "includeVars": True,
                   "keepTime": True, "title": "genmlx"}] if links else [],
        "panels": _layout(panels),
    }


def _process_panels() -> list[dict]:
    return [
        _panel("Resident memory (RSS)", [(_gauge("process.memory.rss"), "RSS {{instance}}"),
                                         (_gauge("memory.active"), "MLX active {{instance}}")], "bytes",
               "Resident set size of the process (psutil) beside the bytes MLX's live buffers hold: RSS growing "
               "while MLX's active bytes stay flat points at Python objects or the buffer cache."),
        _panel("CPU", [(_gauge("process.cpu.utilization"), "utilization {{instance}}"),
                       (f"rate({_m('process.cpu.time').prometheus_name}{PROC}[{RATE}])", "rate {{instance}}")],
               "percentunit", "CPU seconds per wall second of the process (1 = one core busy)."),
    ]


def _rank_panels() -> list[dict]:
    """The cross-rank view: every rank of a job side by side (one series per rank)."""
    it, by = "inference.iterations", "job, rank"
    per_it = f"{_rate('inference.duration', by)} / {_rate(it, by)}"
    return [
        _panel("Slowest rank: seconds per iteration", [(f"sort_desc({per_it})", "rank {{rank}}"),
                                                       (f"max by (job) ({per_it})", "slowest")], "s",
               "Mean wall time per iteration of each rank over the rate window; a collective waits for the "
               "slowest rank, so the top line is the job's pace."),
        _panel("Memory per rank", [(f"sum by ({by}) ({_gauge('memory.active')})", "MLX active rank {{rank}}"),
                                   (f"sum by ({by}) ({_gauge('process.memory.rss')})", "RSS rank {{rank}}")],
               "bytes", "Bytes MLX's live buffers hold and the resident set size, per rank."),
        _panel("Particles per rank (ESS)", [(f"sum by ({by}) ({_gauge('inference.particle.ess')})", "rank {{rank}}")],
               "short", "Effective sample size of each rank's particles at its latest step (distributed importance "
                        "sampling and SMC shard the particles across ranks)."),
    ]


def inference_dashboard() -> dict:
    """Throughput, latency, sampler health, syncs, process resources, telemetry drops."""
    it = "inference.iterations"
    return _dashboard("genmlx-inference", "genmlx / inference", [
        _row("Throughput and latency"),
        _panel("Iterations per second", [(_rate(it, BY + ", phase"), RUN_LEGEND + " {{phase}}")], "ops",
               "Iterations completed per second, warm-up and sampling apart (a fused K-iteration step counts K)."),
        _panel("Iteration duration (sampled steps)", [
            (_quantile("inference.iteration.duration", 0.5), "p50 " + RUN_LEGEND),
            (_quantile("inference.iteration.duration", 0.95), "p95 " + RUN_LEGEND),
            (_ratio("inference.duration", it), "mean " + RUN_LEGEND),
        ], "s", "Wall time per iteration: quantiles from the sampled steps (every k-th), the mean from all steps."),
        _panel("Runs in progress", [(_gauge("inference.runs.active"), RUN_LEGEND)], "short",
               "Inference runs started and not yet finished."),
        _panel("Runs finished", [(_rate("inference.runs", BY + ", outcome"), "{{outcome}} " + RUN_LEGEND)], "ops",
               "Runs finishing per second, by outcome (ok or error: an exception, e.g. ResourceLimitExceeded)."),
        _row("Sampler health"),
        _panel("Acceptance rate", [
            (_gauge("inference.acceptance.ratio"), "latest run " + RUN_LEGEND),
            (_ratio("inference.accepted", "inference.proposals"), "window " + RUN_LEGEND),
        ], "percentunit", "Accepted / proposed, for the latest run so far and over the rate window (MH, HMC)."),
        _panel("Particle ESS", [(_gauge("inference.particle.ess"), RUN_LEGEND)], "short",
               "Effective sample size of the particles at the latest step (importance sampling, SMC)."),
        _panel("Divergences per second", [(_rate("inference.divergences"), RUN_LEGEND)], "ops",
               "Divergent transitions of HMC and NUTS: more than a few means the step size is too large."),
        _panel("Host syncs per iteration", [(_ratio("inference.syncs", it), RUN_LEGEND)], "short",
               "Syncs besides the driver's one evaluation per step (accept decisions, resampling); 0 is ideal."),
        _row("Checkpoints"),
        _panel("Checkpoint writes", [(_rate("checkpoint.writes", BY + ", outcome"), "{{outcome}} " + RUN_LEGEND)],
               "ops", "Checkpoints written per second by the loop driver (genmlx.checkpoint), by outcome: an error "
                      "is a write that failed (a full disk, an unwritable path); the earlier checkpoints are kept."),
        _panel("Checkpoint cost", [(_rate("checkpoint.written"), "bytes/s " + RUN_LEGEND),
                                   (_rate("checkpoint.duration"), "s/s " + RUN_LEGEND)], "short",
               "Bytes written to checkpoint databases per second, and the share of wall time spent writing them "
               "(seconds per second: 0.01 is 1% of the run)."),
        _row("Across ranks (distributed jobs: genmlx.distributed)"),
        *_rank_panels(),
        _row("Process"),
        *_process_panels(),
        _panel("Telemetry dropped", [(f"sum by (job, instance, signal) "
                                      f"(rate({_m('observe.dropped').prometheus_name}{PROC}[{RATE}]))", "{{signal}}")],
               "ops", "Spans, metric exports and pushes genmlx_observe could not deliver (the run is never "
                      "affected); anything above 0 means a collector or Pushgateway is unreachable or too slow."),
    ], links=["genmlx"])


def _budget_use() -> list[tuple[str, str]]:
    used, limit = _gauge("memory.budget.used"), _gauge("memory.budget.limit")
    live, pending = _gauge("memory.live_arrays"), _gauge("memory.pending_nodes")
    return [(f"100 * {used} / {limit}", "of the budget {{instance}}"),
            (f"100 * ({live} + {pending}) / {METAL_LIMIT}", "of Metal's 499,000 buffers {{instance}}")]


def _top_sites(k: int = 10) -> str:
    return f"topk({k}, {_rate('site.buffers', 'site', SITES, series=1)})"


def memory_dashboard() -> dict:
    """MLX memory, process RSS, live arrays, pending nodes, growth, budget use, top trace sites."""
    return _dashboard("genmlx-memory", "genmlx / memory", [
        _row("MLX memory"),
        _panel("MLX bytes", [(_gauge("memory.active"), "active {{instance}}"), (_gauge("memory.cache"), "cache"),
                             (_gauge("memory.peak"), "peak {{instance}}")], "bytes",
               "Bytes held by live MLX buffers, by the buffer cache (freed buffers kept for reuse: on Metal each "
               "counts toward the 499,000 limit) and the high-water mark."),
        _process_panels()[0],
        _panel("Live arrays and pending graph nodes", [(_gauge("memory.live_arrays"), "live arrays {{instance}}"),
                                                       (_gauge("memory.pending_nodes"), "pending nodes {{instance}}")],
               "short", "Live mx.array wrappers in the process and unevaluated graph nodes reachable from them: "
                        "a leak grows one or the other (a lazily accumulated score grows only the second)."),
        _panel("Growth per iteration (latest run)", [
            (_gauge("memory.live_arrays.growth"), "live arrays " + RUN_LEGEND),
            (_gauge("memory.pending_nodes.growth"), "pending nodes " + RUN_LEGEND),
        ], "short", f"Least-squares slope of the census within the latest run: 0 is flat; above the leak gate's "
                    f"{GROWTH_THRESHOLD} per iteration (red line) the loop leaks.", threshold=GROWTH_THRESHOLD),
        _row("Resource budget"),
        _panel("Budget use (% of the limit)", _budget_use(), "percent",
               f"Live arrays + pending nodes as a share of the active genmlx.memory.budget limit, and of Metal's "
               f"{METAL_LIMIT:,}-buffer cap (a proxy: Metal also counts cached buffers). The alert fires at 80%.",
               threshold=80),
        _panel("Resource budget", [(_gauge("memory.budget.used"), "used {{instance}}"),
                                   (_gauge("memory.budget.limit"), "limit {{instance}}"),
                                   (_gauge("memory.resource.limit"), "device limit (Metal) {{instance}}")], "short",
               "The budget's limit and what it last measured (live arrays + pending nodes); the device limit "
               "exists only on Metal."),
        _row("Trace sites (opt-in: site_metrics=True)"),
        _panel("Top sites: graph nodes per second", [(_top_sites(), "{{site}}")], "short",
               "The 10 trace sites adding the most graph nodes (future buffers) per second; the genmlx / trace "
               "sites dashboard has the rest."),
    ], links=["genmlx"])


def sites_dashboard() -> dict:
    """Buffers per trace site (site accounting): top sites, nodes per visit, visits, by op and model."""
    sb = "site.buffers"
    return _dashboard("genmlx-sites", "genmlx / trace sites", [
        _row("Which sites add buffers (site_metrics=True)"),
        _panel("Top sites: graph nodes per second", [(_top_sites(), "{{site}}")], "short",
               "The 10 sites adding the most graph nodes per second. Each node becomes a buffer when "
               "evaluated; `other` holds every site beyond the top-K labels."),
        _panel("Graph nodes per visit (mean)", [
            (f"{_rate(sb, 'site, op', SITES, 1)} / {_rate(sb, 'site, op', SITES, 2)}", "{{site}} {{op}}")], "short",
               "Graph nodes one visit of the site adds (sampling, log-prob, score and weight), averaged over the "
               "rate window."),
        _panel("Graph nodes per visit (p95)", [(_quantile(sb, 0.95, "site, op", SITES), "{{site}} {{op}}")], "short",
               "95th percentile of the nodes per visit: a site whose p95 is far above its mean adds nodes "
               "only sometimes (a branch, a growing argument)."),
        _panel("Site visits per second", [(_rate(sb, "site, op", SITES, 2), "{{site}} {{op}}")], "ops",
               "How often each site is handled (generate, update, regenerate, ...)."),
        _row("By operation and model"),
        _panel("Graph nodes per second by operation", [(_rate(sb, "model, op", SITES, 1), "{{model}} {{op}}")],
               "short", "Nodes added at trace sites per second, by the GFI operation that handled them."),
        _panel("Graph nodes per second by model", [(_rate(sb, "model", SITES, 1), "{{model}}")], "short",
               "Nodes added at trace sites per second, by model."),
    ], links=["genmlx"])


DASHBOARDS: dict[str, Callable[[], dict]] = {
    "genmlx-inference.json": inference_dashboard,
    "genmlx-memory.json": memory_dashboard,
    "genmlx-sites.json": sites_dashboard,
}


def render(name: str) -> str:
    """The JSON text of dashboard file `name` (stable: sorted keys, 2-space indent)."""
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=True) + "\n"


def write(directory: str | Path) -> list[Path]:
    """Write every dashboard into `directory`; returns the paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name in DASHBOARDS:
        p = d / name
        p.write_text(render(name))
        out.append(p)
    return out


def panel_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """`(panel title, expression)` of every panel query."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", ())]


def exprs(dashboard: dict) -> list[str]:
    """Every query expression in a dashboard (panels and variables)."""
    out = [e for _, e in panel_exprs(dashboard)]
    out += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    return out


def substitute(expr: str, rate_interval: str = "1m", **values: str) -> str:
    """`expr` with Grafana's variables replaced, as Grafana sends it (default: every variable All = `.*`)."""
    out = expr.replace("$__rate_interval", rate_interval)
    for name in ("datasource", "job", "instance", "rank", "algorithm", "model", "chain"):
        out = out.replace("$" + name, values.get(name, ".*"))
    if "$" in out:
        raise ValueError(f"unknown Grafana variable left in {out!r}")
    return out
