"""The public entry points under fuzz: each a strategy (parent side) and a runner (worker side).

A runner builds the call from a generated spec, runs it, materializes what it
returned (the contract: array parameters are checked at materialization) and
returns ("result", summary) when every number it checks is sound, or
("nonfinite", what) when one is NaN (or a sample is infinite) with no error.
Exceptions are classified by `classify_error`: named (the message names the
parameter, the address, the distribution or the algorithm) or unnamed.
"""

from __future__ import annotations

import math
import re

from hypothesis import strategies as st

from . import specs as S

DISTS = {  # name: number of parameters
    "normal": 2, "uniform": 2, "bernoulli": 1, "beta": 2, "gamma": 2, "exponential": 1, "laplace": 2,
    "cauchy": 2, "poisson": 1, "binomial": 2, "geometric": 1, "lognormal": 2, "inv_gamma": 2,
    "student_t": 3, "categorical": 1, "dirichlet": 1, "mvn": 2, "neg_binomial": 2, "discrete_uniform": 2,
    "truncated_normal": 4, "von_mises": 2, "wishart": 2, "inv_wishart": 2, "wrapped_cauchy": 2,
    "wrapped_normal": 2, "delta": 1, "piecewise_uniform": 2,
}
COMBINATORS = ["map_", "unfold", "switch", "vmap", "scan", "mix", "mask", "recurse"]
INFERENCE = ["importance_sampling", "mh", "smc", "gibbs", "elliptical_slice", "hmc", "mala", "nuts", "vi",
             "enumerative", "compiled_mh", "mh_chains", "compiled_gibbs", "compiled_elliptical_slice"]
GFI = ["simulate", "generate", "update", "regenerate", "assess", "project"]
# a user's bare call with generated (often mx.array) parameters, its result read raw (no materialize):
# the boundary checks of genmlx.boundary are all that stands between an invalid parameter and a NaN
BARE = ["simulate", "generate", "update", "regenerate", "assess", "project", "propose", "log_prob"]
PLUGIN = ["observe_config", "observe_env", "observe_run"]

NAMED_WORDS = ("parameter", "address", "argument", "constraint", "selection", "observation", "index",
               "n_particles", "n_samples", "step_size", "ess_threshold", "grid", "key",
               # the plugin's configuration fields and variables
               "sample_every", "census_overhead", "site_top_k", "prometheus_port", "GENMLX_", "OTEL_", "endpoint")


def strategy(name: str):
    kind, _, what = name.partition(":")
    if kind == "dist":
        return st.lists(S.param, min_size=DISTS[what], max_size=DISTS[what])
    if kind == "dist_combinator":
        return st.tuples(st.sampled_from(["mixture", "product", "iid"]), S.count, S.small_list)
    if kind == "gfi":
        return st.tuples(S.constraints, S.selection, S.value)
    if kind == "bare":  # (mu, sigma, a value for x); half of them scalar arrays, valid or not, as models make them
        scalar = st.sampled_from([0.0, 0.5, 2.0, -1.0, math.nan, math.inf, 1e-30])
        as_array = st.tuples(st.just("mx"), scalar, st.sampled_from(["float32", "float16"]))
        return st.one_of(st.tuples(as_array, as_array, st.one_of(scalar, as_array)),
                         st.tuples(S.param, S.param, S.value))
    if kind == "combinator":
        return st.tuples(S.count, S.param, S.small_list, S.count)
    if kind == "inference":
        sane = st.fixed_dictionaries({  # mostly valid runs, so the algorithms' own paths are fuzzed too
            "n": st.integers(1, 6), "m": st.integers(1, 4), "sel": st.sampled_from([None, ("select", ["mu"])]),
            "obs": st.sampled_from([{"y0": 0.5}, {"y0": 0.5, "y1": -1.0}, {"y1": 2.0}]),
            "step": st.sampled_from([0.05, 0.2]), "addrs": st.sampled_from([["mu"], ["k"], ["mu", "k"]]),
            "y": st.just(0.5),
        })
        return st.one_of(sane, st.fixed_dictionaries({
            "n": S.count, "m": S.count, "sel": S.selection, "obs": S.constraints, "step": S.step,
            "addrs": st.lists(S.address, max_size=3), "y": S.value,
        }))
    if kind == "plugin":
        return st.fixed_dictionaries({
            "port": st.one_of(st.integers(-5, 70000), st.sampled_from([None, "80", 1.5, True, 0])),
            "every": S.count, "overhead": S.step, "top_k": S.count,
            "endpoint": st.sampled_from([None, "http://127.0.0.1:1", "not a url", "http://[::1", "ftp://x", ""]),
            "label": st.one_of(st.text(max_size=8), st.sampled_from(["", "a" * 300, "\n", "é", "{}"])),
        })
    raise KeyError(name)


def all_entries() -> list:
    return ([f"dist:{d}" for d in DISTS] + ["dist_combinator:all"] + [f"gfi:{g}" for g in GFI]
            + [f"bare:{b}" for b in BARE]
            + [f"combinator:{c}" for c in COMBINATORS] + [f"inference:{a}" for a in INFERENCE]
            + [f"plugin:{p}" for p in PLUGIN])


def classify_error(name: str, spec, e: BaseException) -> str:
    """`error` when the message names the parameter, the address, the distribution or the algorithm;
    an exception raised by the fuzzed model's own Python code (runners.py) is the user's, also `error`."""
    if not isinstance(e, Exception):
        return "unnamed"
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None and tb.tb_frame.f_code.co_filename.endswith("runners.py") \
            and tb.tb_frame.f_code.co_name.startswith("_"):
        return "error"  # raised in the model's own body (a `_`-named function of runners.py)
    msg = str(e)
    words = (name.partition(":")[2], *NAMED_WORDS, *DISTS, *COMBINATORS, *INFERENCE, "mixture", "product", "iid")
    return "error" if any(w in msg for w in words) or re.search(r"'[^']+'", msg) else "unnamed"


def extreme_only(spec) -> bool:
    """True when the input holds a valid but extreme finite number and no NaN or inf anywhere."""
    nums = []

    def walk(v):
        if isinstance(v, bool):
            return
        if isinstance(v, (int, float)):
            nums.append(float(v))
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(spec)
    if any(math.isnan(x) or math.isinf(x) for x in nums):
        return False
    return any(abs(x) >= 1e6 or 0 < abs(x) <= 1e-6 for x in nums)


def run(name: str, spec):
    from . import runners

    kind, _, what = name.partition(":")
    if kind == "selftest":  # the harness's own test: a signal, a hang, a plain result
        import os
        import signal
        import time

        if what == "signal":
            os.kill(os.getpid(), signal.SIGFPE)
        if what == "hang":
            time.sleep(3600)
        return "result", ""
    return getattr(runners, "dist_" if kind == "dist" else kind)(what, spec)


def finite_or_neg_inf(*xs) -> str | None:
    """None when no value is NaN or +inf (a log density of -inf is a legal answer), else what is wrong."""
    import mlx.core as mx
    import numpy as np

    for x in xs:
        if x is None:
            continue
        a = np.asarray(mx.array(x).astype(mx.float32)) if not isinstance(x, (int, float)) else np.asarray(x)
        if np.isnan(a).any() or (a == np.inf).any():
            return f"NaN or +inf in a log density / weight: {a.ravel()[:4].tolist()}"
    return None


def all_finite(*xs) -> str | None:
    import mlx.core as mx
    import numpy as np

    for x in xs:
        if x is None:
            continue
        a = np.asarray(mx.array(x).astype(mx.float32)) if not isinstance(x, (int, float)) else np.asarray(x, float)
        if not np.isfinite(a).all():
            return f"a non-finite value: {a.ravel()[:4].tolist()}"
    return None


def isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
