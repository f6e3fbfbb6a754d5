"""The genmlx-observe command: the demo (posteriors against exact values), progress, catalog."""

from __future__ import annotations

import io
import json
import math
import re
import socket

import numpy as np
import pytest
from scipy import special, stats

from genmlx_observe import demo_models as dm
from genmlx_observe.catalog import CATALOG
from genmlx_observe.cli import main
from genmlx_observe.progress import Progress

from .helpers import run_mh


def test_catalog_prints_both_dialect_names(capsys):
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    for m in CATALOG:
        assert re.search(rf"^{re.escape(m.otel_name)}\s+{re.escape(m.prometheus_name)}\s", out, re.MULTILINE)


def _exact_independently() -> dict:
    """The exact answers, computed here without genmlx_observe.demo_models' formulas (scipy, numpy)."""
    k, n = sum(dm.COIN), len(dm.COIN)
    post = stats.beta(2 + k, 2 + n - k)
    log_ml = special.betaln(2 + k, 2 + n - k) - special.betaln(2, 2)
    # Regression: the Gaussian posterior from the joint Gaussian of (slope, intercept, ys).
    X = np.column_stack([dm.XS, np.ones(len(dm.XS))])
    prior = 100.0 * np.eye(2)
    cov_y = X @ prior @ X.T + np.eye(len(dm.XS))
    mean = prior @ X.T @ np.linalg.solve(cov_y, np.asarray(dm.YS))
    # State space: the joint Gaussian of ys (x_t a random walk from 0, sd 1; y_t = x_t + N(0, 0.5^2)).
    T = len(dm.SSM_YS)
    t = np.arange(1, T + 1)
    cov_x = np.minimum.outer(t, t).astype(float)
    cov = cov_x + 0.25 * np.eye(T)
    ys = np.asarray(dm.SSM_YS)
    ssm_ml = stats.multivariate_normal(np.zeros(T), cov).logpdf(ys)
    # Filtering mean of x_{T-1} given y_0..y_{T-1}: E[x_{T-1} | ys] = cov(x_{T-1}, ys) cov^-1 ys.
    x_last = cov_x[-1] @ np.linalg.solve(cov, ys)
    return {("importance", "mean of p"): post.mean(), ("importance", "log evidence"): log_ml,
            ("mh", "mean of p"): post.mean(), ("nuts", "mean of slope"): mean[0],
            ("nuts", "mean of intercept"): mean[1], ("smc", f"mean of x[{T - 1}]"): x_last,
            ("smc", "log evidence"): ssm_ml}


# Sanity bounds independent of the printed MC error, so a huge error cannot hide a wrong answer.
BOUNDS = {"mean of p": 0.06, "log evidence": 1.5, "mean of slope": 0.15, "mean of intercept": 0.2,
          "mean of x[15]": 0.3}


@pytest.mark.statistical
def test_demo_posteriors_match_their_exact_values(tmp_path, capsys):
    spans = tmp_path / "spans.jsonl"
    rc = main(["demo", "--iterations", "200", "--port", "0", "--spans-file", str(spans), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"^Prometheus endpoint: http://127\.0\.0\.1:\d+/metrics$", out, re.MULTILINE)
    rows = re.findall(r"^(importance|mh|nuts|smc)\s+(\w+)\s+(.+?)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(\d+\.\d+)\s+ok$",
                      out, re.MULTILINE)
    exact = _exact_independently()
    assert {(r[0], r[2]) for r in rows} == set(exact), out
    for alg, _, quantity, est, printed_exact, err in rows:
        truth = exact[(alg, quantity)]
        est, err = float(est), float(err)
        assert abs(float(printed_exact) - truth) < 1e-3, (alg, quantity, printed_exact, truth)
        # The demo's own rule (within 4 Monte Carlo standard errors; fixed keys), and a bound of our own.
        assert abs(est - truth) <= max(4 * err, 2e-3) + 1e-4, (alg, quantity, est, truth, err)
        assert abs(est - truth) < BOUNDS[quantity] and 0 < err < BOUNDS[quantity], (alg, quantity, est, err)
    # Every algorithm was observed: the run table and the spans file.
    for alg in ("importance_vectorized", "mh", "nuts", "vsmc"):
        assert re.search(rf"^{alg}\s", out, re.MULTILINE), alg
    names = {json.loads(line)["name"] for line in spans.read_text().splitlines()}
    assert {"mh run", "nuts run", "vsmc run", "mh step"} <= names


def test_demo_refuses_a_taken_port_and_too_few_iterations(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["demo", "--iterations", "20", "--port", str(port), "--spans-file", "-"]) == 2
    err = capsys.readouterr().err
    assert "already in use" in err and "--port 0" in err
    assert main(["demo", "--iterations", "5", "--port", "0"]) == 2
    assert "--iterations must be >= 20, got 5" in capsys.readouterr().err


def test_progress_says_so_while_the_first_step_is_slow():
    import time

    import mlx.core as mx

    from genmlx import events
    from genmlx.inference import driver
    from genmlx.inference.driver import Step

    def slow_first(key, state):
        if state.item() == 0:
            time.sleep(0.4)  # stands in for MLX compiling its kernels on a first run
        return Step(state + 1, state + 1, {})

    stream = io.StringIO()
    p = Progress(bars=True, notice_after_s=0.1, stream=stream)
    with events.subscribed(p):
        p.begin("slow on toy")
        driver.run(slow_first, mx.array(0), 30, algorithm="slow", model="toy", key=mx.random.key(0))
        p.begin("fast on toy")
        run_mh(30)
    p.close()
    assert len(p.notices) == 2, p.notices
    assert p.notices[0].startswith("  slow on toy: MLX is compiling its kernels")
    m = re.match(r"  slow on toy: first step done after (\d+\.\d) s", p.notices[1])
    assert m and float(m.group(1)) >= 0.3
    assert p.bars_done == [("slow toy", 30, 30), ("mh gauss", 30, 30)]
    text = stream.getvalue()
    assert "slow toy:   0%" in text and "mh gauss:   0%" in text and "0/30" in text  # drawn on the stream


def test_no_progress_draws_no_bar(capsys):
    p = Progress(bars=False, notice_after_s=math.inf)
    from genmlx import events

    with events.subscribed(p):
        run_mh(30)
    p.close()
    assert capsys.readouterr().err == "" and p.notices == []
