"""Spans: one per inference run, a child per sampled driver step.

A run span starts at `RunStarted` and ends at `RunEnded`; it is the child of
the enclosing run's span when runs nest (SMC rejuvenation calling MH), else
of the caller's current OpenTelemetry context. Step spans are written after
the fact (the step already ended when `StepEnded` arrives) with the step's
own start and end times, and only for sampled steps.

Attribute names (all under ``genmlx.``):

* run: ``algorithm``, ``model``, ``chain``, ``run.id``, ``run.total_steps``,
  ``param.<name>``; at the end ``run.steps``, ``run.iterations``,
  ``run.syncs``, ``run.acceptance_rate``, ``run.divergences``, ``run.ess``,
  ``run.live_arrays.growth``, ``run.pending_nodes.growth`` (what the observer
  saw) and ``diagnostics.<name>`` (the algorithm's final diagnostics:
  ``acceptance_rate``, ``ess_bulk``, ``r_hat``, ``log_ml``, ...).
* step: ``step.index``, ``step.phase``, ``step.first_iteration``,
  ``step.iterations``, ``step.syncs``, ``stats.<name>`` (sampler statistics),
  ``memory.live_arrays``, ``memory.pending_nodes`` (when a census was taken
  at that step), ``memory.active_bytes``, ``memory.cache_bytes``,
  ``step.buffers`` (graph nodes added at trace sites, with site accounting).
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

__all__ = ["plain", "prefixed", "start_run", "end_run", "step_span", "MAX_SEQUENCE"]

MAX_SEQUENCE = 64  # longer lists become their last value (a 10,000-step ESS trace is no attribute)


def plain(value: Any):
    """`value` as an OpenTelemetry attribute value, or None when it has no faithful one."""
    if isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        if len(value) > MAX_SEQUENCE:
            return plain(value[-1])
        if all(isinstance(v, bool) for v in value):
            return list(value)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            if all(isinstance(v, int) for v in value):
                return list(value)
            return [float(v) for v in value]
        if all(isinstance(v, str) for v in value):
            return list(value)
        return None
    if hasattr(value, "__index__"):
        return int(value)
    if hasattr(value, "__float__"):
        return float(value)
    return None


def prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`{prefix + key: plain(value)}` for the values that have a plain form."""
    out = {}
    for k, v in values.items():
        p = plain(v)
        if p is not None:
            out[prefix + str(k)] = p
    return out


def start_run(tracer, e, parent_span=None):
    """Start the span of run `e` (a `RunStarted`)."""
    attrs = {
        "genmlx.algorithm": e.algorithm,
        "genmlx.model": e.model,
        "genmlx.chain": e.chain,
        "genmlx.run.id": e.run_id,
    }
    if e.total_steps is not None:
        attrs["genmlx.run.total_steps"] = e.total_steps
    attrs.update(prefixed("genmlx.param.", e.params))
    ctx = trace.set_span_in_context(parent_span) if parent_span is not None else None
    return tracer.start_span(f"{e.algorithm} run", context=ctx, kind=trace.SpanKind.INTERNAL, attributes=attrs)


def end_run(span, e, observed: Mapping[str, Any]) -> None:
    """End a run span with the run's totals, what the observer saw and the final diagnostics."""
    attrs = {
        "genmlx.run.steps": e.steps,
        "genmlx.run.iterations": e.iterations,
        "genmlx.run.syncs": e.syncs,
    }
    for k, v in observed.items():
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            attrs["genmlx.run." + k] = v
    attrs.update(prefixed("genmlx.diagnostics.", e.summary or {}))
    span.set_attributes(attrs)
    if e.error is not None:
        span.record_exception(e.error)
        span.set_status(Status(StatusCode.ERROR, f"{type(e.error).__name__}: {e.error}"))
    span.end()


def step_span(tracer, run_span, e, extra: Mapping[str, Any]) -> None:
    """Write the (already finished) step `e` as a child span of `run_span`."""
    end = time.time_ns()
    start = end - int(e.duration_s * 1e9)
    attrs = {
        "genmlx.step.index": e.step,
        "genmlx.step.phase": e.phase,
        "genmlx.step.first_iteration": e.iteration,
        "genmlx.step.iterations": e.iterations,
        "genmlx.step.syncs": e.syncs,
    }
    if e.stats:
        attrs.update(prefixed("genmlx.stats.", e.stats))
    attrs.update(extra)
    span = tracer.start_span(
        f"{e.algorithm} step",
        context=trace.set_span_in_context(run_span),
        attributes=attrs,
        start_time=start,
    )
    span.end(end_time=end)
