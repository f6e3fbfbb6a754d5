"""Run hypothesis over every entry point through the worker pool; count outcomes; keep shrunk failures.

Each entry point gets `examples` generated inputs from a fixed seed. A bad
outcome (unnamed error, silent non-finite, crash, hang) fails the hypothesis
property, so hypothesis shrinks it to a minimal input (every shrinking step
runs in the worker too); the minimal input and its outcome are recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, seed, settings

from . import entries
from .worker import BAD, CLASSES, Pool


class _Bad(Exception):
    pass


@dataclass
class EntryReport:
    name: str
    tried: int = 0
    counts: Counter = field(default_factory=Counter)
    failure: tuple | None = None  # (minimal spec, outcome class, detail)
    seconds: float = 0.0


def fuzz_entry(name: str, pool: Pool, examples: int, seed_: int = 22) -> EntryReport:
    rep = EntryReport(name)
    last: list = []

    @seed(seed_)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink))
    @given(entries.strategy(name))
    def prop(spec):
        out = pool.run(name, spec)
        rep.tried += 1
        rep.counts[out.cls] += 1
        if out.cls in BAD:
            last[:] = [(spec, out.cls, out.detail)]
            raise _Bad(out.cls)

    t0 = time.perf_counter()
    try:
        prop()
    except _Bad:
        rep.failure = last[0] if last else None
    rep.seconds = time.perf_counter() - t0
    return rep


def campaign(names: list, examples: int, timeout_s: float = 30.0, seed_: int = 22, log=None,
             compiled: bool = False) -> list:
    reports = []
    with Pool(timeout_s, compiled=compiled) as pool:
        for name in names:
            r = fuzz_entry(name, pool, examples, seed_)
            reports.append(r)
            if log:
                log(f"{name:36s} {r.tried:6d} inputs  " + " ".join(f"{c}={r.counts[c]}" for c in CLASSES if r.counts[c])
                    + (f"  FAILED: {r.failure[1]} {r.failure[0]!r} {r.failure[2][:200]}" if r.failure else ""))
    return reports


FINDINGS = """
The CI test (`tests/fuzz/test_fuzz_campaign.py`) runs the same seed and entry points with
`GENMLX_FUZZ_EXAMPLES` inputs each (default 300: this run, about two minutes).

## What the campaign found (issue 22), and what stays outside it

Fixed, each now an `error` or a `result` above: `gm.vmap` over zero elements (SIGFPE
in MLX's vmap of a sampler over zero keys); `dist.mvn` with a covariance that is
not positive definite (array covariances draw NaN and their check names `cov`);
SMC rejuvenation selecting observations (the shared selection validator); `gm.switch`
changing branch (shared addresses kept, Gen's weight); and, found by this harness:
gamma / beta / inv_gamma / neg_binomial / poisson / binomial samplers over an empty
parameter array (MLX cannot argmax a zero-size axis), `wishart`/`mvn` with a float16
matrix (MLX's linear algebra takes float32/float64 only), `von_mises` with a float16
kappa of 0 (NaN draws), `gm.mix` with NaN or all -inf logits (a NaN score),
Python-number parameters that are valid in float64 but 0 or inf in float32
(`normal(0, 1e-141)`: now refused by the parameter's own check), `dirichlet` draws whose
components underflow float32 to exactly 0 (scored +inf; now kept at the smallest normal
float32), and `inv_wishart(1e30, [[1e-30, 0], [0, 1e30]])`, whose draws are singular in
float32 and whose scoring reached MLX's triangular inverse, which raises an unnamed
`RuntimeError` at evaluation on a zero diagonal: every solve of mvn / wishart / inv_wishart
now turns such a zero into NaN first (a singular value scores -inf; an array cov / scale is
named by its check), and a host matrix whose Cholesky factor or its inverse leaves float32
(`[[1e-90, 0], [0, 1]]`) is refused naming `cov` / `scale`.

A user's bare call (the `bare:*` entries: parameters generated as arrays, numbers or junk,
results read raw with `np.asarray`, never `gm.memory.materialize`): array parameter
checks are deferred (no eval on the hot path), so a bare `assess`, `generate`, `update`,
... with an invalid `mx.array` parameter used to return a NaN score silently. A public
call made from user code now evaluates the checks of what it returns as a bare array
(weights, `assess`'s score, `log_prob`, draws) before returning: the checks alone, one
`mx.eval`, the result's graph left lazy; a trace carries its checks to its getters
(`get_score`, `get_retval`, `get_choices`, `tr[addr]`; evaluated once); a NaN value to
score (a constraint, an observation) is refused naming its address. genmlx's own calls
(the inference loops, whose driver evaluates the checks with the step), model bodies and
`gm.defer_checks()` evaluate nothing (genmlx/boundary.py).

Not covered: MLX compilation is off in the worker by default (`--compiled` runs the same
inputs with it, at a C++ compile per new kernel shape); `range` outcomes are valid
parameters beyond float32's range (e.g. `lognormal(0, 1e6)` draws inf) and are counted,
not failed. What cannot be closed: a bare score or weight computed inside the user's own
`mx.compile` or `mx.vmap` (no evaluation is possible while MLX traces; a trace returned
from it still carries its checks, a bare array has nothing to carry them), the raw fields
`Trace.score` / `.retval` (genmlx's own record, read unchecked), and calls made under
`gm.defer_checks()` (the caller takes materialization on) -- MLX has no hook on a read
of a lazy array, so a check can only run at an evaluation genmlx makes.
"""


def markdown(reports: list, examples: int, seconds: float, seed_: int, compiled: bool = False) -> str:
    total = Counter()
    for r in reports:
        total.update(r.counts)
    n = sum(r.tried for r in reports)
    lines = [
        "# Fuzzing campaign (issue 22)",
        "",
        "Generated bad and good inputs against every public entry point, each run in a",
        "child process (`tests/fuzz/worker.py`: one persistent worker, restarted after a",
        "crash or a hang), so that a signal, a hang or a silent NaN is caught, counted and",
        "shrunk by hypothesis to a minimal input instead of killing the run.",
        "",
        "Reproduce: `python -m tests.fuzz --examples N` (this report); the reduced CI run is",
        "`tests/fuzz/test_fuzz_campaign.py` (marker `fuzz`).",
        "",
        f"Seed {seed_}, up to {examples} generated inputs per entry point (hypothesis stops",
        "early when an entry point's input space is exhausted, and adds shrinking steps",
        f"after a failure), {len(reports)} entry points, {n} inputs in all, {seconds:.0f} s.",
        "MLX compilation " + ("on (`--compiled`)." if compiled else "off in the worker (`mx.disable_compile()`: the CPU "
                                                                      "backend's C++ compile of every new kernel shape costs 10-40 s a case here; "
                                                                      "`--compiled` keeps it)."),
        "",
        "Outcome classes: `result` (returned; every number it checks is sound), `error` (a",
        "Python exception naming the parameter, the address, the distribution or the",
        "algorithm; or raised by the fuzzed model's own Python code), `range` (a non-finite",
        "result from valid but extreme finite parameters, |x| >= 1e6 or 0 < |x| <= 1e-6, with",
        "no NaN or inf in the input: float32's range, not invalid input), `unnamed` (an",
        "exception naming none of them), `nonfinite` (a NaN, or an infinite sample, returned",
        "without an error for any other input), `crash` (the worker died of a signal), `hang`",
        "(past the timeout). The last four are failures.",
        "",
        "| outcome | count |",
        "|---|---:|",
        *[f"| {c} | {total[c]} |" for c in CLASSES],
        "",
        "| entry point | inputs | " + " | ".join(CLASSES) + " | minimal failing input |",
        "|---|---:|" + "---:|" * len(CLASSES) + "---|",
    ]
    for r in reports:
        fail = "" if r.failure is None else f"`{r.failure[1]}`: `{r.failure[0]!r}` ({r.failure[2][:120]})".replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.name} | {r.tried} | " + " | ".join(str(r.counts[c]) for c in CLASSES) + f" | {fail} |")
    return "\n".join(lines) + "\n" + FINDINGS
