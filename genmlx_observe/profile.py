"""`genmlx-observe profile SCRIPT.py [args]`: run a program observed and write a report on its loops.

The script runs unedited as `__main__`. Meanwhile:

* `LoopTimeline` (an events observer) records, for every inference run, where
  it was called from (the innermost frame of the user's code), and per driver
  step the wall time, the time per iteration and MLX's active and cache bytes
  (thinned to at most `MAX_POINTS` points per run);
* the leak gate's recorder (`pytest_plugin.growth.TestRecorder`, which needs
  no pytest) takes censuses of live arrays and pending graph nodes, the run's
  kept samples and state excluded, and fits the growth per iteration; its
  site tap ranks the trace sites by graph nodes for a few steps of each loop;
* with `sites=True`, `observe(site_metrics=True)` counts buffers per trace
  site for the whole run.

`profile_report` turns the result into report.json, PNG plots, index.html
and the terminal summary, with a verdict per loop.
"""

from __future__ import annotations

import math
import os
import runpy
import sys
import time
import traceback
from typing import Any

__all__ = ["LoopTimeline", "ProfileResult", "profile_script", "slope_and_error", "MAX_POINTS"]

MAX_POINTS = 4000  # per run; past it every other point is dropped and the stride doubles
_OURS = (os.path.dirname(os.path.abspath(__file__)),)


def _ours(filename: str) -> bool:
    import genmlx

    roots = _OURS + (os.path.dirname(os.path.abspath(genmlx.__file__)),)
    f = os.path.abspath(filename)
    return f.startswith(roots) or "<frozen" in filename or f.startswith(os.path.dirname(runpy.__file__))


def call_site(script: str | None = None) -> str:
    """`file:line (function)` of the innermost caller outside genmlx, genmlx_observe and the stdlib runner."""
    frame = sys._getframe(1)
    fallback = None
    while frame is not None:
        f = frame.f_code.co_filename
        if script is not None and os.path.abspath(f) == script:
            return f"{os.path.basename(f)}:{frame.f_lineno} ({frame.f_code.co_name})"
        if fallback is None and not _ours(f):
            fallback = f"{os.path.basename(f)}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return fallback or "?"


class _Run:
    __slots__ = ("run_id", "algorithm", "model", "chain", "site", "t0", "points", "stride", "seen", "steps",
                 "iterations", "error", "duration_s")

    def __init__(self, e, site: str):
        self.run_id, self.algorithm, self.model, self.chain = e.run_id, e.algorithm, e.model, e.chain
        self.site = site
        self.t0 = time.perf_counter()
        self.points: list[list] = []  # [seconds since start, iterations done, s per iteration, active, cache]
        self.stride, self.seen, self.steps, self.iterations = 1, 0, 0, 0
        self.error: str | None = None
        self.duration_s = 0.0

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "algorithm": self.algorithm, "model": self.model, "chain": self.chain,
                "call_site": self.site, "steps": self.steps, "iterations": self.iterations,
                "duration_s": self.duration_s, "error": self.error, "stride": self.stride,
                "timeline": {"columns": ["t_s", "iteration", "s_per_iteration", "active_bytes", "cache_bytes"],
                             "points": self.points}}


class LoopTimeline:
    """Events observer: per run, its call site and a thinned per-step timeline."""

    def __init__(self, script: str | None = None):
        self.script = None if script is None else os.path.abspath(script)
        self.runs: dict[int, _Run] = {}

    def on_run_start(self, e) -> None:
        self.runs[e.run_id] = _Run(e, call_site(self.script))

    def on_step(self, e) -> None:
        r = self.runs.get(e.run_id)
        if r is None:
            return
        r.steps += 1
        r.iterations = e.iteration + e.iterations
        r.seen += 1
        if r.seen % r.stride:
            return
        import mlx.core as mx

        r.points.append([time.perf_counter() - r.t0, r.iterations, e.duration_s / max(e.iterations, 1),
                         mx.get_active_memory(), mx.get_cache_memory()])
        if len(r.points) >= MAX_POINTS:
            r.points = r.points[::2]
            r.stride *= 2

    def on_run_end(self, e) -> None:
        r = self.runs.get(e.run_id)
        if r is not None:
            r.duration_s = e.duration_s
            r.error = None if e.error is None else f"{type(e.error).__name__}: {e.error}"


def slope_and_error(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of `ys` on `xs` and its standard error (NaN where undefined)."""
    n = len(xs)
    if n < 2:
        return math.nan, math.nan
    mx_, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx_) ** 2 for x in xs)
    if sxx == 0:
        return math.nan, math.nan
    b = sum((x - mx_) * (y - my) for x, y in zip(xs, ys)) / sxx
    if n < 3:
        return b, math.nan
    resid = sum((y - my - b * (x - mx_)) ** 2 for x, y in zip(xs, ys))
    return b, math.sqrt(resid / (n - 2) / sxx)


class ProfileResult(dict):
    """The report's data (JSON-ready): `script`, `argv`, `exit`, `loops`, `sites`, `limits`, ..."""


def profile_script(script: str, argv: list[str], *, sites: bool = False, prometheus_port: int | None = None,
                   limit: float = 0.1, pending_limit: float = 0.1) -> ProfileResult:
    """Run `script` with `argv` as `__main__`, observed; returns the report data.

    The script's exceptions and `sys.exit` are caught and reported (`exit`,
    `error`); a missing script raises `FileNotFoundError` naming it.
    """
    if not os.path.isfile(script):
        raise FileNotFoundError(f"genmlx-observe profile: no script {script!r}")
    from genmlx import events

    from .pytest_plugin import report
    from .pytest_plugin.growth import TestRecorder
    from .pytest_plugin.marks import Settings
    from .session import observe

    settings = Settings(enabled=True, limit=limit, pending_limit=pending_limit, warmup=None, census_every=0,
                        site_budget=None)
    timeline = LoopTimeline(script)
    recorder = TestRecorder(settings)
    obs = observe(site_metrics=sites, prometheus_port=prometheus_port, census_overhead=0.0)
    exit_code, error = 0, None
    old_argv, old_path = sys.argv, list(sys.path)
    t0 = time.perf_counter()
    obs.start()
    events.subscribe(timeline)
    recorder.start()
    try:
        sys.argv = [script, *argv]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        exit_code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # the report is still written: the loops before the error are measured
        exit_code, error = 1, "".join(traceback.format_exception(e)).rstrip()
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
        recorder.stop()
        events.unsubscribe(timeline)
        site_rows = obs.snapshot().get("site.buffers", []) if sites else []
        obs.stop()
    wall = time.perf_counter() - t0
    verdict = report.judge([r.to_dict() for r in recorder.records()], recorder.tap.ranked(), settings)
    loops = []
    for rec in verdict["loops"]:
        pts = rec["points"]
        xs = [p[0] for p in pts]
        live_se = slope_and_error(xs, [p[1] for p in pts])[1]
        pend_se = slope_and_error(xs, [p[2] for p in pts])[1]
        run = timeline.runs.get(rec["run_id"])
        loops.append({**rec, "wrapper_growth_se": live_se, "pending_growth_se": pend_se,
                      **({} if run is None else run.to_dict())})
    totals = [{"site": a.get("site"), "model": a.get("model"), "op": a.get("op"), "visits": h.count,
               "nodes": h.sum} for a, h in site_rows]
    return ProfileResult(
        script=os.path.abspath(script), argv=list(argv), exit=exit_code, error=error, wall_s=wall,
        limits={"arrays_per_iteration": limit, "pending_per_iteration": pending_limit},
        loops=loops, sites=verdict["sites"], site_totals=sorted(totals, key=lambda s: -s["nodes"]),
        failures=verdict["failures"], site_accounting=sites,
    )
