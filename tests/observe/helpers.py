"""Test helpers: a plain-MLX MH step run by the driver; reading metrics back from both dialects."""

from __future__ import annotations

import mlx.core as mx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from genmlx.inference import driver
from genmlx.inference.driver import Step


def metric_points(reader, name: str) -> list:
    """Data points of metric `name` in one collection of an `InMemoryMetricReader`."""
    data = reader.get_metrics_data()
    out = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    out.extend(m.data.data_points)
    return out


def otel_value(reader, name: str, **attrs) -> float | None:
    """The value (or histogram point) of `name` whose attributes include `attrs`."""
    for p in metric_points(reader, name):
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            return p if hasattr(p, "bucket_counts") else p.value
    return None


def prometheus_families(registry) -> dict:
    """name -> family, parsed back from the text exposition."""
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def prometheus_value(registry, sample_name: str, **labels) -> float | None:
    for fam in prometheus_families(registry).values():
        for s in fam.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def gauss_mh(scale: float = 2.0):
    """Random-walk MH on N(0, 1) in plain MLX: one driver step per iteration, no host sync."""

    def step(key, state):
        x, lp = state
        k1, k2 = mx.random.split(key)
        xp = x + scale * mx.random.normal(key=k1)
        lpp = -0.5 * xp * xp
        la = lpp - lp
        acc = mx.log(mx.random.uniform(key=k2)) < la
        x2 = mx.where(acc, xp, x)
        return Step((x2, mx.where(acc, lpp, lp)), x2, {"accepted": acc, "accept_prob": mx.minimum(mx.exp(la), 1.0)})

    return step


def run_mh(n: int, burn: int = 0, seed: int = 0, model: str = "gauss", **kwargs):
    return driver.run(gauss_mh(), (mx.array(0.0), mx.array(0.0)), n, algorithm="mh", model=model,
                      key=mx.random.key(seed), burn=burn, summarize=_summarize, **kwargs)


def _summarize(r) -> dict:
    acc = r.stats.get("accepted", [])
    return {"acceptance_rate": sum(map(float, acc)) / len(acc) if acc else 0.0, "log_ml": -1.25, "r_hat": 1.01}
