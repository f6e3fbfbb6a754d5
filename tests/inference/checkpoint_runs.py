"""The runs the checkpoint tests interrupt, kill and resume (not a test module; also a script).

    python -m inference.checkpoint_runs ALG DB MODE [MARK_AT] [MARKER] [SLOW_S]   (cwd or PYTHONPATH: tests/)

MODE "reference" prints the uninterrupted runs' digests of the comma-separated ALGs.
MODE "run" runs ALG with checkpointing every `EVERY` steps; after step
MARK_AT it creates MARKER and then sleeps SLOW_S per step (so a parent can
kill or signal it mid-run); an interruption prints a JSON line with the
partial result and the run span's status and exits 3. MODE "fsize" does the
same but, at MARK_AT, limits the process's file size (RLIMIT_FSIZE) to the
database's current size: the next checkpoint cannot be written. MODE
"resume" resumes DB and prints the result's digest as JSON.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import mlx.core as mx
import numpy as np

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer
from genmlx.checkpoint import CheckpointError, RunInterrupted, checkpointing, resume

EVERY = 5
XS = [0.5, 1.0, 1.5, 2.0]
OBS = {("y", i): v for i, v in enumerate([0.9, 2.1, 2.8, 4.2])}


@gm.gen
def regression(xs):
    slope = gm.trace("slope", dist.normal(0.0, 2.0))
    noise = gm.trace("noise", dist.gamma(2.0, 2.0))
    for i, x in enumerate(xs):
        gm.trace(("y", i), dist.normal(slope * x, noise))
    return slope


@gm.gen
def walk(T):
    """x_t ~ N(x_{t-1}, 1), y_t ~ N(x_t, 0.5)."""
    x = 0.0
    for t in range(T):
        x = gm.trace(("x", t), dist.normal(x, 1.0))
        gm.trace(("y", t), dist.normal(x, 0.5))
    return x


YS = [0.3, 0.8, 0.2, -0.4, -0.1, 0.6, 1.2, 1.0, 1.9, 2.2, 1.7, 2.5, 2.1, 2.8, 3.3, 2.9, 3.6, 3.1, 3.9, 4.4,
      4.0, 4.8, 4.3, 5.1, 5.6, 5.2, 5.9, 6.3, 5.8, 6.6]
STEPS = {"mh": 160, "mh_compiled": 160, "hmc": 120, "nuts": 100, "vi": 150, "smc": len(YS)}


def call(alg: str, seed: int = 7, **kw):
    """One inference call of `alg` (the same call in every process and every test)."""
    key = mx.random.key(seed)
    if alg in ("mh", "mh_compiled"):  # mh(compile=True)'s states are ChainTraces, written as full traces
        return infer.mh(regression, (XS,), OBS, n_samples=75, burn=10, thin=2, key=key,
                        compile=alg == "mh_compiled", **kw)
    if alg == "hmc":
        return infer.hmc(regression, (XS,), OBS, addresses=["slope", "noise"], n_samples=60, burn=60,
                         n_leapfrog=5, key=key, **kw)
    if alg == "nuts":
        return infer.nuts(regression, (XS,), OBS, addresses=["slope", "noise"], n_samples=50, burn=50,
                          key=key, **kw)
    if alg == "vi":
        return infer.vi(regression, (XS,), OBS, addresses=["slope", "noise"], iterations=150, n_traces=4,
                        n_posterior=500, key=key, **kw)
    if alg == "smc":
        args = [(t + 1,) for t in range(len(YS))]
        obs = [{("y", t): y} for t, y in enumerate(YS)]
        return infer.smc(walk, args, obs, n_particles=12, ess_threshold=0.7, vectorized=False, key=key, **kw)
    raise ValueError(f"unknown algorithm {alg!r}")


def _exact(x) -> str:
    a = np.asarray(x)
    return f"{a.dtype}{list(a.shape)}:{a.tobytes().hex()}"


def digest(res) -> dict:
    """Everything a result holds, exactly (arrays as bytes; timings left out)."""
    out = {"stats": {k: v for k, v in res.stats.items() if k != "duration_s"}}
    out["traces"] = [{str(p): _exact(v) for p, v in t.get_choices().items()} | {"score": _exact(t.get_score())}
                     for t in res.traces]
    if res.log_weights is not None:
        out["log_weights"] = [float(w).hex() for w in res.log_weights]
    if res.log_ml is not None:
        out["log_ml"] = float(res.log_ml).hex()
    if getattr(res, "posterior", None):
        out["posterior"] = {str(k): v for k, v in res.posterior.items()}
    return json.loads(json.dumps(out, default=repr))


@functools.cache
def reference(alg: str) -> dict:
    """The digest of the uninterrupted, unchecked run of `alg` (computed once per process)."""
    return digest(call(alg))


def _spans():
    """An in-memory span exporter observing every run (genmlx_observe), or None without the SDK."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import genmlx_observe as go

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    obs = go.observe(tracer_provider=provider, summary=False).start()
    return exporter, obs


def main(argv: list[str]) -> int:
    alg, db, mode = argv[:3]
    if mode == "reference":  # the uninterrupted runs of every algorithm in `alg` (comma-separated)
        print(json.dumps({a: digest(call(a)) for a in alg.split(",")}))
        return 0
    if mode == "resume":
        from genmlx import events

        class Steps:
            n = 0

            def on_step(self, e):
                self.n += 1

        rec = Steps()
        with events.subscribed(rec), resume(db):
            res = call(alg)
        print(json.dumps(digest(res) | {"resumed_steps": rec.n}))
        return 0
    mark_at, marker, slow = int(argv[3]), argv[4], float(argv[5])
    exporter, obs = _spans()
    failures = []
    from genmlx import events

    class Failed:
        def on_checkpoint(self, e):
            if e.error is not None:
                failures.append(str(e.error))

    events.subscribe(Failed())

    def callback(i, state, stats):
        if i == mark_at:
            if mode == "fsize":
                import resource
                import signal

                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a killed process
                size = max(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
                resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
            with open(marker, "w") as f:
                f.write(str(i))
        if i >= mark_at and slow:
            time.sleep(slow)

    out: dict = {}
    try:
        with checkpointing(db, every=EVERY):
            call(alg, callback=callback)
        out["finished"] = True
    except RunInterrupted as e:
        out.update(interrupted=e.signal, steps=e.result.steps, samples=len(e.result.samples),
                   checkpoint=e.checkpoint, history=len(next(iter(e.result.stats.values()), [])))
    except CheckpointError as e:
        out.update(checkpoint_error=str(e), partial=getattr(e, "partial_result", None) is not None)
    obs.stop()
    out["failures"] = failures
    out["spans"] = [{"name": s.name, "status": s.status.status_code.name, "description": s.status.description}
                    for s in exporter.get_finished_spans() if s.name.endswith(" run")]
    print(json.dumps(out))
    return 0 if out.get("finished") else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
