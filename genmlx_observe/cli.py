"""`genmlx-observe`: the demo, the profiler, the metric catalog, the dashboards.

    genmlx-observe demo [--iterations N] [--port P] [--otlp-endpoint URL] [--pushgateway URL]
                        [--sites] [--no-progress] [--linger S] [--spans-file PATH]
    genmlx-observe profile [--out DIR] [--sites] [--port P] SCRIPT.py [args...]
    genmlx-observe run (SCRIPT.py | -m MODULE) [args...]
    genmlx-observe catalog [-v]
    genmlx-observe dashboards [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]

DEFAULT_SITES = True  # site accounting is counted once per model structure (about 1.1-1.2x an observed step)


def _span_destination(path: str):
    """A tracer provider writing spans as JSON lines to `path` ('-': the console); returns (provider, file)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    out = sys.stdout if path == "-" else open(path, "w")
    tp = TracerProvider(resource=Resource.create({"service.name": "genmlx-demo"}))
    tp.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=lambda s: s.to_json(None) + "\n")))
    return tp, out


def _runs_table(snapshot: dict) -> str:
    runs: dict[tuple, dict] = {}
    for attrs, v in snapshot.get("inference.iterations", []):
        r = runs.setdefault((attrs["algorithm"], attrs["model"], attrs["chain"]), {"it": 0})
        r["it"] += v
    for key, field in (("inference.duration", "s"), ("memory.live_arrays.growth", "live"),
                       ("memory.pending_nodes.growth", "pending"), ("inference.syncs", "syncs")):
        for attrs, v in snapshot.get(key, []):
            runs.setdefault((attrs["algorithm"], attrs["model"], attrs["chain"]), {"it": 0})[field] = v
    rows = [("algorithm", "model", "iterations", "seconds", "it/s", "syncs", "arrays/it", "nodes/it")]
    for (alg, model, _), r in runs.items():
        s = r.get("s", 0.0)
        rows.append((alg, model, f"{r['it']:,}", f"{s:.2f}", f"{r['it'] / s:,.0f}" if s else "-",
                     str(r.get("syncs", 0)), f"{r['live']:.3f}" if "live" in r else "-",
                     f"{r['pending']:.3f}" if "pending" in r else "-"))
    widths = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in rows)


def _cmd_demo(a) -> int:
    import genmlx as gm
    from genmlx import events

    from .config import from_env
    from .demo import checks_table, run_workloads
    from .progress import Progress
    from .prometheus import PortInUseError
    from .session import observe

    if a.iterations < 20:
        print(f"genmlx-observe demo: --iterations must be >= 20, got {a.iterations}", file=sys.stderr)
        return 2
    kwargs = {"prometheus_port": a.port, "census_overhead": float("inf"), "site_metrics": a.sites,
              "service_name": "genmlx-demo", "pushgateway": a.pushgateway, "otlp_endpoint": a.otlp_endpoint}
    tp = spans_out = None
    if not from_env(otlp_endpoint=a.otlp_endpoint).otlp_traces_enabled:
        tp, spans_out = _span_destination(a.spans_file)
        kwargs["tracer_provider"] = tp
    try:
        o = observe(**kwargs).start()
    except PortInUseError as e:
        print(f"genmlx-observe demo: {e}; or pass --port 0", file=sys.stderr)
        return 2
    progress = Progress(bars=a.progress if a.progress is not None else sys.stderr.isatty())
    print("genmlx-observe demo: IS and MH on Beta-Bernoulli, NUTS on a linear regression, SMC on a state space "
          f"model; {a.iterations} iterations each" + (", site accounting on" if a.sites else ""))
    for d in o.destinations():
        if not d.startswith("spans: the tracer provider"):  # ours: said on the next line
            print(d)
    if tp is not None:
        print(f"spans: {'the console' if a.spans_file == '-' else a.spans_file} (no OTLP endpoint configured)")
    sys.stdout.flush()
    t0 = time.perf_counter()
    events.subscribe(progress)
    try:
        with gm.memory.budget(gm.memory.METAL_RESOURCE_LIMIT):  # the budget panels and alerts get data
            checks = run_workloads(a.iterations, a.seed,
                                   before=lambda w: progress.begin(f"{w.algorithm} on {w.model}"))
            o.census()
            if a.linger > 0 and o.server is not None:
                print(f"serving {o.server.url} for {a.linger:g} s ...", flush=True)
                time.sleep(a.linger)
    finally:
        events.unsubscribe(progress)
        progress.close()
        o.stop()
        if tp is not None:
            tp.shutdown()
            if spans_out is not sys.stdout:
                spans_out.close()
    print(f"\nruns ({time.perf_counter() - t0:.1f} s in all)")
    print(_runs_table(o.snapshot()))
    print("\nposteriors against their exact values (a check passes within 4 Monte Carlo standard errors)")
    print(checks_table(checks))
    failed = [c for c in checks if not c.ok]
    if o.drops.counts:
        print("dropped: " + ", ".join(f"{k}={v}" for k, v in sorted(o.drops.counts.items())))
    if failed:
        print(f"\n{len(failed)} of {len(checks)} checks FAILED")
    return 1 if failed else 0


def _cmd_profile(a) -> int:
    from .profile import profile_script
    from .profile_report import summary, write_report

    if not a.script.endswith(".py"):
        print(f"genmlx-observe profile: SCRIPT must be a .py file, got {a.script!r}", file=sys.stderr)
        return 2
    try:
        result = profile_script(a.script, a.args, sites=a.sites, prometheus_port=a.port)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    written = write_report(result, a.out)
    print(summary(result))
    print(f"report: {a.out}/index.html ({', '.join(written['files'])})" + (f"; {written['note']}" if written["note"]
                                                                           else ""))
    return 1 if result["failures"] or result["exit"] else 0


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
    from . import provisioning

    if a.check:
        stale = provisioning.stale(a.out)
        for p in stale:
            print(f"{p} differs from the catalog: run genmlx-observe dashboards --out {a.out}")
        return 1 if stale else 0
    for p in provisioning.write(a.out):
        print(p)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genmlx-observe", description="Observability for genmlx inference runs.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="IS, MH, NUTS and SMC on standard models, observed, checked against exact "
                                    "posteriors")
    d.add_argument("--iterations", type=int, default=1000, help="iterations per algorithm (default 1000; IS "
                                                                 "uses 10x as many particles)")
    d.add_argument("--port", type=int, default=9464,
                   help="serve /metrics on 127.0.0.1:PORT during the run (default 9464; 0: any free port)")
    d.add_argument("--otlp-endpoint", default=None,
                   help="send spans and metrics over OTLP/HTTP, e.g. http://localhost:4318 "
                        "(default: OTEL_EXPORTER_OTLP_ENDPOINT, else spans go to --spans-file)")
    d.add_argument("--spans-file", default="genmlx-demo-spans.jsonl",
                   help="without an OTLP endpoint, write spans here as JSON lines ('-': the console)")
    d.add_argument("--pushgateway", default=None, help="push the metrics to this Pushgateway URL at the end")
    d.add_argument("--sites", action=argparse.BooleanOptionalAction, default=DEFAULT_SITES,
                   help=f"measure buffers per trace site (default {'on' if DEFAULT_SITES else 'off'})")
    d.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on a terminal)")
    d.add_argument("--linger", type=float, default=0.0, help="keep serving /metrics this many seconds at the end")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.set_defaults(fn=_cmd_demo)
    f = sub.add_parser("profile", help="run a script observed and write a report on its inference loops")
    f.add_argument("--out", default="genmlx-profile", help="report folder (default ./genmlx-profile)")
    f.add_argument("--sites", action=argparse.BooleanOptionalAction, default=DEFAULT_SITES,
                   help=f"count buffers per trace site for the whole run (default {'on' if DEFAULT_SITES else 'off'}"
                        "; a few steps per loop are always sampled)")
    f.add_argument("--port", type=int, default=None, help="also serve /metrics on 127.0.0.1:PORT while it runs")
    f.add_argument("script", help="the Python script to run (as __main__)")
    f.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    f.set_defaults(fn=_cmd_profile)
    r = sub.add_parser("run", help="run a program observed, configured from the environment (production)",
                       add_help=False)
    r.add_argument("argv", nargs=argparse.REMAINDER, help="SCRIPT.py [args...] or -m MODULE [args...]")
    r.set_defaults(fn=_cmd_run)
    c = sub.add_parser("catalog", help="print the metric catalog (both dialect names)")
    c.add_argument("-v", "--verbose", action="store_true", help="also print each description")
    c.set_defaults(fn=_cmd_catalog)
    g = sub.add_parser("dashboards", help="write the Grafana dashboards, provisioning files, alerting rules and a "
                                          "Prometheus configuration generated from the catalog")
    g.add_argument("--out", default="dashboards", help="directory (default ./dashboards)")
    g.add_argument("--check", action="store_true", help="only check that the files there are up to date")
    g.set_defaults(fn=_cmd_dashboards)
    return p


def _cmd_run(a) -> int:
    from .launch import main as launch

    launch(a.argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
