"""Configuration: keyword arguments over environment variables over defaults.

Standard OpenTelemetry variables are honoured (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_ENDPOINT` and its
`_TRACES_`/`_METRICS_` variants, `OTEL_EXPORTER_OTLP_HEADERS`,
`OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`
= ``none``, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`);
most are read by the OpenTelemetry SDK itself, this module only decides what
to switch on. genmlx's own knobs are `GENMLX_OBSERVE_*` and
`GENMLX_PROMETHEUS_*` / `GENMLX_PUSHGATEWAY_*` (table in docs/observability.md).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Config", "ConfigError", "from_env", "ENV"]


class ConfigError(ValueError):
    """A keyword argument or environment variable has an unusable value (named in the message)."""


# field name -> (environment variable, parser name)
ENV: dict[str, tuple[str, str]] = {
    "sample_every": ("GENMLX_OBSERVE_SAMPLE_EVERY", "int"),
    "step_spans": ("GENMLX_OBSERVE_STEP_SPANS", "bool"),
    "census_overhead": ("GENMLX_OBSERVE_CENSUS_OVERHEAD", "float"),
    "site_metrics": ("GENMLX_OBSERVE_SITES", "bool"),
    "site_top_k": ("GENMLX_OBSERVE_SITES_TOP_K", "int"),
    "prometheus_port": ("GENMLX_PROMETHEUS_PORT", "port"),
    "prometheus_addr": ("GENMLX_PROMETHEUS_ADDR", "str"),
    "pushgateway": ("GENMLX_PUSHGATEWAY_URL", "str"),
    "pushgateway_job": ("GENMLX_PUSHGATEWAY_JOB", "str"),
    "service_name": ("OTEL_SERVICE_NAME", "str"),
    "rank": ("GENMLX_RANK", "int"),
    "world_size": ("GENMLX_WORLD_SIZE", "int"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Config:
    """Everything `observe()` can be told.

    Attributes:
        service_name: OpenTelemetry `service.name` (default: `OTEL_SERVICE_NAME`,
            else ``genmlx``).
        resource_attributes: extra resource attributes (merged over
            `OTEL_RESOURCE_ATTRIBUTES`).
        sample_every: every k-th driver step is *sampled*: it gets a span, its
            duration enters the iteration-duration histogram and it may take a
            live-array census. 1 samples every step.
        step_spans: emit a child span per sampled step (False: run spans only).
        census_overhead: largest share of observed step time spent on
            censuses of live arrays / pending nodes (0 disables them in runs,
            ``inf`` takes one at every sampled step).
        site_metrics: enable site accounting (buffers per trace site). Each
            site is counted by a graph walk the first times it is met, then
            looked up (docs/observability.md, "Cost"): opt-in.
        site_top_k: sites with their own `site` label; the rest share ``other``.
        prometheus_port: serve ``/metrics`` on this port (0: any free port;
            None: no server).
        prometheus_addr: address to bind (default 127.0.0.1: local only).
        pushgateway: Pushgateway URL; metrics are pushed when observation stops.
        pushgateway_job: the `job` grouping key of the push.
        otlp_endpoint: OTLP/HTTP base URL (``http://host:4318``); None uses the
            `OTEL_EXPORTER_OTLP_*` variables, and without any, no OTLP export.
        otlp_timeout_s: timeout of one OTLP export (None: the SDK's,
            `OTEL_EXPORTER_OTLP_TIMEOUT`).
        max_queue_size: spans buffered for export; more are dropped (counted).
        shutdown_timeout_s: how long `stop()` waits for the last exports.
        tracer_provider, meter_provider, registry: bring your own
            OpenTelemetry providers / prometheus_client registry; what is given
            is used and never shut down by genmlx_observe.
        summary: print the console summary when observation stops.
        rank, world_size: this process's place in a distributed job (default:
            `GENMLX_RANK` / `GENMLX_WORLD_SIZE`, else MLX's `MLX_RANK` and the job's size,
            else the `genmlx.distributed` world group; None: not part of a job). When
            set: resource attributes `genmlx.rank` / `genmlx.world_size`, a `rank`
            label on every Prometheus series (values 0 .. world_size - 1), the
            /metrics port `prometheus_port + rank`, and `rank` in the Pushgateway
            grouping key.
    """

    service_name: str | None = None
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    sample_every: int = 100
    step_spans: bool = True
    census_overhead: float = 0.01
    site_metrics: bool = False
    site_top_k: int = 20
    prometheus_port: int | None = None
    prometheus_addr: str = "127.0.0.1"
    pushgateway: str | None = None
    pushgateway_job: str = "genmlx"
    otlp_endpoint: str | None = None
    otlp_timeout_s: float | None = None
    max_queue_size: int = 2048
    shutdown_timeout_s: float = 5.0
    tracer_provider: Any = None
    meter_provider: Any = None
    registry: Any = None
    summary: bool = False
    rank: int | None = None
    world_size: int | None = None

    def __post_init__(self):
        if isinstance(self.sample_every, bool) or not isinstance(self.sample_every, int) or self.sample_every < 1:
            raise ConfigError(f"sample_every must be an int >= 1, got {self.sample_every!r}")
        if isinstance(self.census_overhead, bool) or not float(self.census_overhead) >= 0.0:
            raise ConfigError(f"census_overhead must be a number >= 0 (inf: every sampled step), "
                              f"got {self.census_overhead!r}")
        if isinstance(self.site_top_k, bool) or not isinstance(self.site_top_k, int) or self.site_top_k < 0:
            raise ConfigError(f"site_top_k must be an int >= 0, got {self.site_top_k!r}")
        p = self.prometheus_port
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535):
            raise ConfigError(f"prometheus_port must be an int in [0, 65535] or None, got {p!r}")
        if self.max_queue_size < 1:
            raise ConfigError(f"max_queue_size must be >= 1, got {self.max_queue_size!r}")
        r, w = self.rank, self.world_size
        if (r is None) != (w is None):
            raise ConfigError(f"rank and world_size go together, got rank={r!r}, world_size={w!r}")
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ConfigError(f"world_size must be an int >= 1, got {w!r}")
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < w):
            raise ConfigError(f"rank must be an int in [0, world_size={w}), got {r!r}")
        if p and r is not None and p + r > 65535:
            raise ConfigError(f"prometheus_port + rank = {p + r} is not a port (prometheus_port={p}, rank={r})")

    @property
    def distributed(self) -> bool:
        """Part of a distributed job: telemetry carries the rank."""
        return self.rank is not None

    @property
    def exporter_port(self) -> int | None:
        """The /metrics port of this process: `prometheus_port + rank` in a job (0 stays 0: any free port)."""
        p = self.prometheus_port
        if p is None or not p or not self.distributed:
            return p
        return p + self.rank

    @property
    def grouping_key(self) -> dict:
        """Extra Pushgateway grouping key: `{"rank": "<r>"}` in a job (each rank its own group)."""
        return {"rank": str(self.rank)} if self.distributed else {}

    @property
    def rank_attributes(self) -> dict:
        """Resource attributes of the rank (empty outside a job)."""
        return {"genmlx.rank": self.rank, "genmlx.world_size": self.world_size} if self.distributed else {}

    @property
    def otlp_traces_enabled(self) -> bool:
        return self._otlp_enabled("TRACES")

    @property
    def otlp_metrics_enabled(self) -> bool:
        return self._otlp_enabled("METRICS")

    def _otlp_enabled(self, signal: str) -> bool:
        env = os.environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        chosen = env.get(f"OTEL_{signal}_EXPORTER", "").strip().lower()
        if chosen == "none":
            return False
        return bool(
            self.otlp_endpoint
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
            or chosen == "otlp"
        )

    def otlp_url(self, signal: str) -> str | None:
        """Full URL for `signal` ("traces"/"metrics") from `otlp_endpoint`.

        None when only environment variables configure OTLP: the SDK's
        exporters then read `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT` or
        `OTEL_EXPORTER_OTLP_ENDPOINT` + ``/v1/<signal>`` themselves.
        """
        if not self.otlp_endpoint:
            return None
        return self.otlp_endpoint.rstrip("/") + f"/v1/{signal}"


def _parse(kind: str, name: str, raw: str) -> Any:
    raw = raw.strip()
    try:
        if kind == "int":
            return int(raw)
        if kind == "port":
            return None if raw.lower() in ("", "off", "none") else int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a valid {kind}") from None
    return raw or None


def from_env(environ: Mapping[str, str] | None = None, **kwargs: Any) -> Config:
    """A `Config` from keyword arguments, falling back to environment variables.

    Raises:
        ConfigError: an unknown keyword, or a bad value (named).
        TypeError: never for unknown keywords: they raise `ConfigError` listing the valid ones.
    """
    env = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = set(kwargs) - names
    if unknown:
        raise ConfigError(f"unknown observe() option(s) {sorted(unknown)}; valid: {sorted(names)}")
    values = dict(kwargs)
    for fname, (var, kind) in ENV.items():
        if fname not in values and var in env:
            v = _parse(kind, var, env[var])
            if v is not None:
                values[fname] = v
    if "rank" not in values and "world_size" not in values:
        values.update(_job_rank(env if environ is not None else None))
    return Config(**values)


def _job_rank(environ) -> dict:
    """rank / world_size from MLX's launcher variables, else from an initialized `genmlx.distributed` group."""
    from genmlx.distributed import group as dist

    got = dist.rank_from_env(environ)
    if got is None and environ is None and dist._world is not None and dist._world.size > 1:
        got = (dist._world.rank, dist._world.size)
    return {} if got is None else {"rank": got[0], "world_size": got[1]}
