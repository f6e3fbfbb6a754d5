"""Shared machinery of the benchmark suites: sizes, paired timing, memory peaks, device naming.

Paired timing. The machine a benchmark runs on is shared and its load moves
by factors of several within minutes, so a genmlx time and its baseline
measured minutes apart do not make a ratio worth reading. `paired` runs the
baselines (the plain-MLX floors) in pytest-benchmark's per-round `setup`,
right before each round of the genmlx target, with the same timer: every
round gives one time of each, taken seconds apart. The report gives both
the ratio of the minima (each side's least-disturbed round) and the median of
the per-round ratios. Nothing here asserts a time.

Memory. Each side's peak MLX memory (`gm.memory.peak_bytes()` after
`reset_peak()`) and peak resident set size (Linux: `VmHWM`, reset through
`/proc/self/clear_refs`; elsewhere the process's lifetime peak from
`getrusage`, which cannot be reset) are taken around its own runs only.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import re
import resource
import statistics
import sys
import time
from typing import Any, Callable, Mapping

import mlx.core as mx
import psutil

import genmlx as gm
from genmlx import events

from benchmarks.peers.clock import cpu_seconds  # CPU time, finished child processes (compilers) included

__all__ = ["FULL", "size", "device_tag", "device_description", "primary_clock", "clock_name", "PeakMemory", "StepTimes",
           "paired", "summary_of"]

# GENMLX_BENCH_FULL=1: the workloads (MH 20,000 iterations, sequential IS N = 1,000,
# HMC/NUTS 1,000 + 1,000 everywhere). The default sizes keep the suite under ~10 minutes
# on a 2-core CPU box; every figure is per unit (particle, iteration, gradient), and the
# growth benchmarks show the per-unit cost does not drift with the run's length.
FULL = os.environ.get("GENMLX_BENCH_FULL", "") not in ("", "0")


def size(quick: int, full: int) -> int:
    return full if FULL else quick


# -- device naming -----------------------------------------------------------------------------

def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()


def device_description() -> dict:
    dev = mx.default_device()
    info = {}
    try:
        info = dict(mx.device_info())
    except Exception:  # an older MLX, or a backend without device info
        pass
    return {
        "device": str(dev),
        "device_type": "gpu" if dev.type == mx.DeviceType.gpu else "cpu",
        "device_name": str(info.get("device_name") or platform.processor() or platform.machine()),
        "architecture": str(info.get("architecture") or platform.machine()),
        "cpu_count": os.cpu_count(),
        "mlx": mx.__version__,
        "python": platform.python_version(),
        "platform": sys.platform,
        "full_workloads": FULL,
    }


def device_tag() -> str:
    """File-name tag of the default device, e.g. `cpu-amd-epyc-x86-64-2cores` or `gpu-nvidia-h200`."""
    d = device_description()
    if d["device_type"] == "gpu":
        return f"gpu-{_slug(d['device_name'])}"
    return f"cpu-{_slug(d['device_name'])}-{_slug(d['architecture'])}-{d['cpu_count']}cores"


# -- memory peaks ----------------------------------------------------------------------------

_HWM = re.compile(r"VmHWM:\s+(\d+)\s+kB")


class PeakMemory:
    """Peak MLX memory and peak RSS between `reset()` and `read()`."""

    def __init__(self):
        self._proc = psutil.Process()
        self.resettable_rss = sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")

    def reset(self) -> None:
        gm.memory.reset_peak()
        if self.resettable_rss:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current RSS
            except OSError:
                self.resettable_rss = False

    def read(self) -> dict:
        out = {"peak_mlx_bytes": int(gm.memory.peak_bytes()), "rss_bytes": int(self._proc.memory_info().rss)}
        if self.resettable_rss:
            with open("/proc/self/status") as f:
                m = _HWM.search(f.read())
            out["peak_rss_bytes"] = int(m.group(1)) * 1024 if m else out["rss_bytes"]
            out["peak_rss_scope"] = "since reset"
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["peak_rss_bytes"] = int(peak if sys.platform == "darwin" else peak * 1024)
            out["peak_rss_scope"] = "process lifetime"
        return out


def _max_peak(a: dict | None, b: dict) -> dict:
    if a is None:
        return dict(b)
    return {k: max(a[k], b[k]) if isinstance(b[k], int) else b[k] for k in b}


# -- statistics ------------------------------------------------------------------------------

def summary_of(times: list[float], per: int) -> dict:
    """min / median / mean of `times` (seconds per run) and the same per unit."""
    if not times:
        return {}
    mn, md = min(times), statistics.median(times)
    return {"rounds": len(times), "min_s": mn, "median_s": md, "mean_s": statistics.fmean(times),
            "per": per, "per_unit_min_s": mn / per, "per_unit_median_s": md / per}


# -- clocks -----------------------------------------------------------------------------------

def primary_clock() -> Callable[[], float]:
    """The clock ratios are judged on: process CPU time on a CPU device, wall time on a GPU.

    The CPU boxes this suite runs on are shared: wall time there measures the
    neighbours' load as much as our work (a 2-core box at load 7 gives a
    process a fraction of a core), while the process's CPU time (all its
    threads, MLX's included) does not wait for them. It counts finished child
    processes too (`benchmarks.peers.clock.cpu_seconds`): MLX builds a CPU
    kernel by running the C++ compiler, which a first call's time must
    include. On a GPU, time spent waiting for the device is real work, so wall
    time. GENMLX_BENCH_CLOCK=wall or =cpu overrides.
    """
    env = os.environ.get("GENMLX_BENCH_CLOCK", "").lower()
    if env in ("wall", "perf_counter"):
        return time.perf_counter
    if env in ("cpu", "process_time"):
        return cpu_seconds
    return time.perf_counter if mx.default_device().type == mx.DeviceType.gpu else cpu_seconds


def _other(timer):
    return time.perf_counter if timer in (cpu_seconds, time.process_time) else cpu_seconds


def clock_name(timer) -> str:
    names = {cpu_seconds: "cpu", time.process_time: "cpu", time.perf_counter: "wall"}
    return names.get(timer, getattr(timer, "__name__", str(timer)))


# -- steady state: driver step times ----------------------------------------------------------

class StepTimes:
    """An observer of `genmlx.events`: the time between consecutive driver step ends, per run.

    The steady-state cost of a run excludes its first driver step (where
    `mx.compile` traces and the C++ kernels are built) and whatever the
    algorithm does before its loop and after it. A step's time is taken
    between two step-end events with the suite's clock (CPU time on a CPU
    device), so it includes all of the driver's per-step work. Subscribing
    costs the driver one event per step (about a microsecond: see
    test_bench_observe.py).
    """

    reads_stats = False  # the driver then times the run as unobserved: its statistics read back in batches

    def __init__(self, timer):
        self.timer = timer
        self.total = 0.0
        self.iterations = 0
        self._last = None

    def on_run_start(self, ev) -> None:
        self._last = None

    def on_step(self, ev) -> None:
        now = self.timer()
        if self._last is not None:
            self.total += now - self._last
            self.iterations += ev.iterations
        self._last = now

    def per_iteration(self) -> float | None:
        return self.total / self.iterations if self.iterations else None


# -- paired timing ---------------------------------------------------------------------------

Baseline = Callable[[], Any] | tuple  # fn, or (fn, per)


class _Timed:
    """Runs of one side (genmlx or a baseline): both clocks and the memory peak."""

    def __init__(self, fn, per):
        self.fn, self.per = fn, per
        self.primary: list[float] = []
        self.secondary: list[float] = []
        self.steady: list[float] = []
        self.peak: dict | None = None

    def summary(self, timer) -> dict:
        s = summary_of(self.primary, self.per)
        s["clock"] = clock_name(timer)
        s["times_s"] = self.primary
        s[f"{clock_name(_other(timer))}_times_s"] = self.secondary
        if self.steady:
            s["steady_per_unit_s"] = self.steady
        s["memory"] = self.peak
        return s


def _ratios(a: list[float], a_per, b: list[float], b_per) -> dict:
    per_round = [(x / a_per) / (y / b_per) for x, y in zip(a, b)]
    return {"of_min": (min(a) / a_per) / (min(b) / b_per), "paired_median": statistics.median(per_round),
            "per_round": per_round}


def paired(benchmark, target: Callable[[], Any], baselines: Mapping[str, Baseline], *, rounds: int,
           per: int | Callable[[Any], int], unit: str, warmup: bool | str = True, steady: bool = False,
           info: Mapping[str, Any] | None = None):
    """Benchmark `target` with pytest-benchmark; time each baseline in the same rounds.

    Args:
        target: the genmlx computation (what pytest-benchmark times).
        baselines: name -> fn or (fn, per): the floors, run (and timed with
            pytest-benchmark's timer) in each round's setup, order alternating.
        rounds: measured rounds (each: every baseline once, then the target once).
        per: units of work in one target call (particles, iterations, ...), or
            a function of the target's (warm-up) result giving it; a baseline
            given as a bare fn does the same number of units.
        unit: the unit's name, for the report.
        warmup: call everything once first (compilation, caches); the
            first-call times go to `extra_info["first_call_s"]`. "baselines":
            only the floors (for a target that compiles on every call anyway).
        steady: also measure the target's steady state (driver steps after
            each run's first, per iteration: `StepTimes`), giving the ratios
            `steady_of_min` and `steady_paired_median` against each baseline
            (whose time per unit is its whole run's).

    Returns:
        The target's result from its last round. `benchmark.extra_info` gets
        the times (both clocks), per-unit summaries, ratios (on the
        benchmark's timer) and memory peaks.
    """
    timer = getattr(benchmark, "_timer", None) or primary_clock()
    other = _other(timer)
    mem = PeakMemory()
    first: dict[str, float] = {}
    warm_result = None
    sides = [("genmlx", target), *((k, v[0] if isinstance(v, tuple) else v) for k, v in baselines.items())]
    if warmup == "baselines" and not callable(per):
        sides = sides[1:]
    if warmup or callable(per):
        for name, fn in sides:
            gc.collect()
            t0 = timer()
            out = fn()
            first[name] = timer() - t0
            if name == "genmlx":
                warm_result = out
    if callable(per):
        per = int(per(warm_result))
    base = {k: _Timed(*(v if isinstance(v, tuple) else (v, per))) for k, v in baselines.items()}
    own = _Timed(target, per)
    names = list(base)
    state = {"round": 0}

    def setup():
        order = names if state["round"] % 2 == 0 else names[::-1]
        state["round"] += 1
        for name in order:
            side = base[name]
            gc.collect()
            mem.reset()
            t0, u0 = timer(), other()
            side.fn()
            side.primary.append(timer() - t0)
            side.secondary.append(other() - u0)
            side.peak = _max_peak(side.peak, mem.read())
        gc.collect()
        mem.reset()

    def timed():
        obs = StepTimes(timer) if steady else None
        if obs is not None:
            events.subscribe(obs)
        try:
            t0, u0 = timer(), other()
            out = target()
            own.primary.append(timer() - t0)
            own.secondary.append(other() - u0)
        finally:
            if obs is not None:
                events.unsubscribe(obs)
        if obs is not None and obs.per_iteration() is not None:
            own.steady.append(obs.per_iteration())
        return out

    def teardown(*_a, **_k):
        own.peak = _max_peak(own.peak, mem.read())

    result = benchmark.pedantic(timed, setup=setup, teardown=teardown, rounds=rounds)
    if own.peak is None:  # --benchmark-disable: setup and target once, no teardown
        own.peak = mem.read()
    ex = benchmark.extra_info
    ex.update(dict(info or {}))
    ex.update(unit=unit, per=per, clock=clock_name(timer), first_call_s=first)
    ex["genmlx"] = own.summary(timer)
    ex["baselines"] = {k: b.summary(timer) for k, b in base.items()}
    ex["ratios"] = {}
    for name, b in base.items():
        if not (own.primary and b.primary):
            continue
        r = _ratios(own.primary, per, b.primary, b.per)
        r[f"{clock_name(other)}_paired_median"] = _ratios(own.secondary, per, b.secondary, b.per)["paired_median"]
        if len(own.steady) == len(own.primary):
            st = _ratios(own.steady, 1, b.primary, b.per)
            r["steady_of_min"], r["steady_paired_median"] = st["of_min"], st["paired_median"]
        ex["ratios"][name] = r
    return result


def finite(x) -> float | None:
    """A float for JSON (None for NaN/inf)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
