"""The metric catalog: every metric genmlx_observe exports, defined once.

Each `Metric` holds a key, a kind, a UCUM unit, a description and the
attributes it may carry. Both dialects are *derived* from it, so they cannot
disagree (DESIGN.md, "Metrics: one catalog, two dialects"):

* OpenTelemetry: ``genmlx.`` + key, dotted, the UCUM unit as the instrument's
  unit, no ``_total`` (``genmlx.inference.iterations``, unit ``{iteration}``).
* Prometheus: ``genmlx_`` + key with dots as underscores, the base unit as a
  suffix (``By`` -> ``_bytes``, ``s`` -> ``_seconds``, ``1`` -> ``_ratio``;
  annotations such as ``{iteration}`` add nothing), and ``_total`` on
  counters (``genmlx_inference_iterations_total``).

The exporters (`metrics`, `prometheus`), the dashboards (`dashboards`) and the
docs table (`markdown_table`) all read this module.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = [
    "Metric",
    "CATALOG",
    "BY_KEY",
    "RUN_ATTRIBUTES",
    "DURATION_BUCKETS",
    "NODE_BUCKETS",
    "metric",
    "prometheus_unit",
    "markdown_table",
]

Kind = Literal["counter", "updowncounter", "gauge", "histogram"]

RUN_ATTRIBUTES = ("algorithm", "model", "chain")

# Seconds per iteration: a fused kernel iteration (~20 us) up to a slow eager step.
DURATION_BUCKETS = (
    1e-05, 2.5e-05, 5e-05, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
# Graph nodes per trace site: a constant (0) up to a large nested call.
NODE_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

# UCUM unit -> Prometheus base-unit suffix. Annotations ("{node}") give none.
_PROM_UNITS = {"By": "bytes", "s": "seconds", "1": "ratio"}


def prometheus_unit(unit: str) -> str:
    """The Prometheus unit suffix of a UCUM unit (``""`` for annotations like ``{node}``)."""
    return _PROM_UNITS.get(unit, "")


class Metric(NamedTuple):
    """One metric, as both dialects see it.

    Attributes:
        key: dotted name below the ``genmlx`` namespace (``inference.iterations``).
        kind: ``counter`` (monotonic), ``updowncounter``, ``gauge`` or ``histogram``.
        unit: UCUM unit (``By``, ``s``, ``1``, ``{iteration}``, ...).
        description: one sentence; exported as OTel description and Prometheus HELP.
        attributes: the only attribute (label) names it may carry, all bounded.
        group: dashboard row / docs section (``inference``, ``memory``, ``process``, ...).
        buckets: histogram bucket upper bounds.
        opt_in: only exported when the user enabled it (site accounting).
    """

    key: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    group: str = "inference"
    buckets: tuple[float, ...] = ()
    opt_in: bool = False

    @property
    def otel_name(self) -> str:
        return "genmlx." + self.key

    @property
    def prometheus_base(self) -> str:
        """The Prometheus family name without ``_total`` (what prometheus_client calls the name)."""
        name = "genmlx_" + self.key.replace(".", "_")
        suffix = prometheus_unit(self.unit)
        if suffix and not name.endswith("_" + suffix):
            name += "_" + suffix
        return name

    @property
    def prometheus_name(self) -> str:
        """The exposed name: counters end in ``_total``."""
        return self.prometheus_base + ("_total" if self.kind == "counter" else "")

    @property
    def prometheus_type(self) -> str:
        """The Prometheus metric type (an up-down counter is a gauge there)."""
        return {"updowncounter": "gauge"}.get(self.kind, self.kind)

    @property
    def prometheus_series(self) -> tuple[str, ...]:
        """Every sample name the family exposes (histograms: bucket, sum, count)."""
        if self.kind == "histogram":
            b = self.prometheus_base
            return (b + "_bucket", b + "_sum", b + "_count")
        return (self.prometheus_name,)


_RUN = RUN_ATTRIBUTES

CATALOG: tuple[Metric, ...] = (
    # -- inference: recorded by the observer from the driver's events ----------
    Metric("inference.runs", "counter", "{run}", "Inference runs finished, by outcome (ok or error).",
           _RUN + ("outcome",)),
    Metric("inference.runs.active", "updowncounter", "{run}", "Inference runs in progress.", _RUN),
    Metric("inference.steps", "counter", "{step}",
           "Driver steps completed (a fused K-iteration kernel is one step).", _RUN),
    Metric("inference.iterations", "counter", "{iteration}",
           "Iterations completed, by phase (warmup or sampling).", _RUN + ("phase",)),
    Metric("inference.syncs", "counter", "{sync}",
           "Host syncs inside steps besides the driver's one evaluation per step.", _RUN),
    Metric("inference.duration", "counter", "s",
           "Wall time spent in driver steps, materialization included.", _RUN),
    Metric("inference.iteration.duration", "histogram", "s",
           "Wall time per iteration, observed on sampled steps (every k-th driver step).", _RUN,
           buckets=DURATION_BUCKETS),
    Metric("inference.proposals", "counter", "{proposal}",
           "Iterations that made an accept/reject decision (sampler statistic `accepted`).", _RUN),
    Metric("inference.accepted", "counter", "{proposal}", "Accepted proposals.", _RUN),
    Metric("inference.acceptance.ratio", "gauge", "1",
           "Acceptance rate of the latest run so far (accepted / proposals; else mean accept_prob).", _RUN),
    Metric("inference.divergences", "counter", "{divergence}",
           "Divergent transitions (HMC, NUTS: sampler statistic `diverging`).", _RUN),
    Metric("inference.particle.ess", "gauge", "{particle}",
           "Effective sample size of the particles at the latest step (particle methods).", _RUN),
    # -- checkpoints: the driver's Checkpointed events (genmlx.checkpoint) ---------
    Metric("checkpoint.writes", "counter", "{checkpoint}",
           "Checkpoints the loop driver wrote, by outcome (ok, or error: a full disk, an unwritable path).",
           _RUN + ("outcome",), group="checkpoint"),
    Metric("checkpoint.written", "counter", "By", "Bytes written to checkpoint databases.", _RUN,
           group="checkpoint"),
    Metric("checkpoint.duration", "counter", "s",
           "Wall time spent writing checkpoints (encoding the state and the SQLite transaction).", _RUN,
           group="checkpoint"),
    # -- growth: least-squares slopes of census points within the latest run --
    Metric("memory.live_arrays.growth", "gauge", "{array}/{iteration}",
           "Growth of live mx.array objects per iteration in the latest run (least-squares slope).",
           _RUN, group="memory"),
    Metric("memory.pending_nodes.growth", "gauge", "{node}/{iteration}",
           "Growth of pending graph nodes per iteration in the latest run (least-squares slope).",
           _RUN, group="memory"),
    # -- memory: read from genmlx.memory at collection time --------------------
    Metric("memory.active", "gauge", "By", "Bytes held by live MLX array buffers.", group="memory"),
    Metric("memory.cache", "gauge", "By", "Bytes of freed buffers MLX keeps for reuse (its cache).",
           group="memory"),
    Metric("memory.peak", "gauge", "By", "High-water mark of active bytes.", group="memory"),
    Metric("memory.live_arrays", "gauge", "{array}", "Live mx.array Python objects (wrappers).",
           group="memory"),
    Metric("memory.pending_nodes", "gauge", "{node}",
           "Unevaluated graph nodes reachable from live arrays (latest census on the MLX thread).",
           group="memory"),
    Metric("memory.budget.limit", "gauge", "{object}",
           "Resource budget on live arrays + pending nodes (absent without a budget).", group="memory"),
    Metric("memory.budget.used", "gauge", "{object}",
           "Live arrays + pending nodes as the budget last measured them.", group="memory"),
    Metric("memory.resource.limit", "gauge", "{buffer}",
           "The device's cap on simultaneous buffers (Metal only).", group="memory"),
    # -- trace sites: opt-in site accounting ------------------------------------
    Metric("site.buffers", "histogram", "{node}",
           "Graph nodes (future buffers) genmlx adds per trace site visit; `site` is capped with `other`.",
           ("site", "model", "algorithm", "op"), group="sites", buckets=NODE_BUCKETS, opt_in=True),
    # -- process: psutil at collection time ---------------------------------------
    Metric("process.memory.rss", "gauge", "By", "Resident set size of the process.", group="process"),
    Metric("process.cpu.time", "counter", "s", "CPU time of the process (user + system).", group="process"),
    Metric("process.cpu.utilization", "gauge", "1",
           "CPU time / wall time since the previous collection (1 = one core busy).", group="process"),
    # -- the plugin itself ----------------------------------------------------------
    Metric("observe.dropped", "counter", "{item}",
           "Telemetry genmlx_observe could not deliver (spans, metric exports, pushes).", ("signal",),
           group="observe"),
)

BY_KEY: dict[str, Metric] = {m.key: m for m in CATALOG}


def metric(key: str) -> Metric:
    """The catalog entry for `key`; a `KeyError` naming the known keys otherwise."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no metric {key!r} in the genmlx_observe catalog; known: {', '.join(BY_KEY)}") from None


def markdown_table() -> str:
    """The catalog as a Markdown table (docs/observability.md embeds it verbatim)."""
    rows = [
        "| OpenTelemetry | Prometheus | kind | unit | attributes | description |",
        "|---|---|---|---|---|---|",
    ]
    for m in CATALOG:
        attrs = ", ".join(m.attributes) or "-"
        desc = m.description + (" (opt-in)" if m.opt_in else "")
        rows.append(f"| `{m.otel_name}` | `{m.prometheus_name}` | {m.kind} | `{m.unit}` | {attrs} | {desc} |")
    return "\n".join(rows) + "\n"


def _check() -> None:
    names = [m.prometheus_base for m in CATALOG]
    if len(set(names)) != len(names):
        raise AssertionError(f"duplicate Prometheus names in the catalog: {names}")


_check()
