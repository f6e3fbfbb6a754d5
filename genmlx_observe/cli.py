"""`genmlx-observe`: the demo, the metric catalog, the dashboards.

    genmlx-observe demo [--iterations N] [--prometheus-port P] [--otlp-endpoint URL] [--sites]
    genmlx-observe catalog
    genmlx-observe dashboards [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main", "demo", "DEMO_DATA"]

DEMO_DATA = (1, 1, 0, 1, 1, 1, 0, 1, 1, 0)


def _model():
    import genmlx as gm
    from genmlx import dist

    @gm.gen
    def beta_bernoulli(n):
        p = gm.trace("p", dist.beta(2.0, 2.0))
        for i in range(n):
            gm.trace(f"y{i}", dist.bernoulli(p))
        return p

    return beta_bernoulli


def demo(iterations: int = 1000, burn: int = 100, seed: int = 0, linger: float = 0.0, **observe_kwargs) -> tuple:
    """MH on p ~ Beta(2, 2), y_i ~ Bernoulli(p) with `DEMO_DATA`, observed.

    Args:
        linger: keep the Prometheus endpoint up this many seconds after the run.
        observe_kwargs: passed to `observe()`.

    Returns:
        `(InferenceResult, Observation)`; the observation is stopped.
    """
    import mlx.core as mx

    import genmlx as gm
    from genmlx import inference as infer

    from .session import observe

    model = _model()
    obs = gm.choicemap({f"y{i}": bool(v) for i, v in enumerate(DEMO_DATA)})
    # A short run would get few censuses within the default 1% of its time: the demo takes one at
    # every sampled step, so that the growth slopes have points (a long run gets them at the defaults).
    observe_kwargs = {"census_overhead": float("inf"), **observe_kwargs}
    with observe(**observe_kwargs) as o:
        res = infer.mh(model, (len(DEMO_DATA),), obs, selection=gm.select("p"), n_samples=iterations, burn=burn,
                       key=mx.random.key(seed))
        o.census()  # a fresh pending-node count for the final numbers
        if linger > 0 and o.server is not None:
            print(f"serving {o.server.url} for {linger:g} s ...", file=sys.stderr, flush=True)
            time.sleep(linger)
    return res, o


def _cmd_demo(a) -> int:
    kwargs = {}
    if a.prometheus_port is not None:
        kwargs["prometheus_port"] = a.prometheus_port
    if a.otlp_endpoint:
        kwargs["otlp_endpoint"] = a.otlp_endpoint
    if a.pushgateway:
        kwargs["pushgateway"] = a.pushgateway
    if a.sites:
        kwargs["site_metrics"] = True
    t0 = time.perf_counter()
    res, o = demo(a.iterations, a.burn, linger=a.linger, **kwargs)
    ps = res.values("p")
    mean = sum(ps) / len(ps) if ps else float("nan")
    k, n = sum(DEMO_DATA), len(DEMO_DATA)
    print(f"MH on Beta-Bernoulli ({n} observations, {k} ones): {a.iterations} samples after {a.burn} burn-in "
          f"in {time.perf_counter() - t0:.2f} s")
    print(f"posterior mean of p: {mean:.3f} (exact: {(2 + k) / (4 + n):.3f}); "
          f"acceptance rate {res.stats.get('acceptance_rate', float('nan')):.3f}\n")
    print(o.summary())
    return 0


def _cmd_catalog(a) -> int:
    from .catalog import CATALOG

    rows = [("OpenTelemetry", "Prometheus", "kind", "unit", "attributes")]
    rows += [(m.otel_name, m.prometheus_name, m.kind + (" (opt-in)" if m.opt_in else ""), m.unit,
              ",".join(m.attributes)) for m in CATALOG]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    if a.verbose:
        print()
        for m in CATALOG:
            print(f"{m.prometheus_name}: {m.description}")
    return 0


def _cmd_dashboards(a) -> int:
    from pathlib import Path

    from .dashboards import DASHBOARDS, render, write

    if a.check:
        stale = [n for n in DASHBOARDS if not (Path(a.out) / n).exists() or (Path(a.out) / n).read_text() != render(n)]
        for n in stale:
            print(f"{Path(a.out) / n} differs from the catalog: run genmlx-observe dashboards --out {a.out}")
        return 1 if stale else 0
    for p in write(a.out):
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="genmlx-observe", description="Observability for genmlx inference runs.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run MH on a Beta-Bernoulli model, observed, and print the metrics")
    d.add_argument("--iterations", type=int, default=1000, help="samples to keep (default 1000)")
    d.add_argument("--burn", type=int, default=100, help="burn-in iterations (default 100)")
    d.add_argument("--prometheus-port", type=int, default=None,
                   help="serve /metrics on 127.0.0.1:PORT during the run (0: any free port)")
    d.add_argument("--otlp-endpoint", default=None,
                   help="send spans and metrics over OTLP/HTTP, e.g. http://localhost:4318 "
                        "(default: OTEL_EXPORTER_OTLP_ENDPOINT, else off)")
    d.add_argument("--pushgateway", default=None, help="push the metrics to this Pushgateway URL at the end")
    d.add_argument("--sites", action="store_true", help="also measure buffers per trace site (opt-in)")
    d.add_argument("--linger", type=float, default=0.0, help="keep the Prometheus endpoint up this many seconds")
    d.set_defaults(fn=_cmd_demo)
    c = sub.add_parser("catalog", help="print the metric catalog (both dialect names)")
    c.add_argument("-v", "--verbose", action="store_true", help="also print each description")
    c.set_defaults(fn=_cmd_catalog)
    g = sub.add_parser("dashboards", help="write the Grafana dashboards generated from the catalog")
    g.add_argument("--out", default="dashboards", help="directory (default ./dashboards)")
    g.add_argument("--check", action="store_true", help="only check that the files there are up to date")
    g.set_defaults(fn=_cmd_dashboards)
    a = p.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
