"""`genmlx-observe profile SCRIPT.py`: the report names the leaking loop, with real curves."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from genmlx_observe.profile import slope_and_error

SCRIPT = Path(__file__).parent / "scripts" / "two_loops.py"


def _profile(tmp_path, *args):
    out = tmp_path / "report"
    # A subprocess: the leaking loop runs there, outside this test's leak gate, as a user's script would.
    proc = subprocess.run([sys.executable, "-m", "genmlx_observe.cli", "profile", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    return proc, out


def test_profile_names_the_leaking_loop_and_writes_the_report(tmp_path):
    proc, out = _profile(tmp_path, str(SCRIPT), "150")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a leak was found
    assert "clean acceptance" in proc.stdout and "leaky kept 150 arrays" in proc.stdout  # the script ran, with argv
    assert {p.name for p in out.iterdir()} >= {"report.json", "index.html", "latency.png", "growth.png", "memory.png",
                                               "sites.png"}
    rep = json.loads((out / "report.json").read_text())
    clean, leaky = rep["loops"]
    assert clean["verdict"] == "ok" and leaky["verdict"] == "leak"
    assert clean["call_site"].startswith("two_loops.py:") and leaky["call_site"].startswith("two_loops.py:")
    leak_line = int(leaky["call_site"].split(":")[1].split()[0])
    assert SCRIPT.read_text().splitlines()[leak_line - 1].startswith("leaky = infer.mh(")
    # One kept array and one pending node per iteration, exactly; the clean loop is flat.
    assert leaky["wrapper_growth"] == pytest.approx(1.0, abs=0.02)
    assert leaky["pending_growth"] == pytest.approx(1.0, abs=0.02)
    assert abs(clean["wrapper_growth"]) < 0.1 and abs(clean["pending_growth"]) < 0.1
    assert leaky["wrapper_growth_se"] < 0.05
    # Real curves: a timeline per loop over every iteration, census points that rise for the leak.
    for lp in (clean, leaky):
        pts = lp["timeline"]["points"]
        assert len(pts) == 150 and [p[1] for p in pts] == list(range(1, 151))
        assert all(p[2] > 0 and p[3] > 0 for p in pts)
    pend = [p[2] for p in leaky["points"]]
    assert len(pend) >= 3 and pend == sorted(pend) and pend[-1] - pend[0] > 50
    assert rep["sites"] and rep["sites"][0]["address"] == ["p"]
    # The terminal summary and the HTML name the loop and what to do.
    assert f"LEAK: loop {leaky['run_id']} (mh on coin, chain 0) at {leaky['call_site']}" in proc.stdout
    assert "docs/troubleshooting.md" in proc.stdout
    page = (out / "index.html").read_text()
    assert "<img src='growth.png'" in page and "LEAK: loop" in page
    # The plots are drawn (matplotlib comes with the test extra; `profile` works without it, with no PNGs).
    import matplotlib.image as mpimg

    for name in ("latency.png", "growth.png", "memory.png", "sites.png"):
        img = mpimg.imread(out / name)
        assert img.shape[0] > 200 and img.shape[1] > 400
        assert img[..., :3].std() > 0.05, name  # lines and labels, not an empty canvas


def test_profile_of_a_missing_or_failing_script(tmp_path):
    proc, _ = _profile(tmp_path, str(tmp_path / "nope.py"))
    assert proc.returncode == 2 and "no script" in proc.stderr and "nope.py" in proc.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    proc, out = _profile(tmp_path, str(bad))
    assert proc.returncode == 1 and "RuntimeError: boom" in proc.stdout and "no genmlx inference loop ran" in proc.stdout
    assert json.loads((out / "report.json").read_text())["loops"] == []


def test_slope_and_error():
    b, se = slope_and_error([0, 1, 2, 3], [1, 3, 5, 7])
    assert b == 2 and se == 0
    b, se = slope_and_error([0, 1, 2, 3], [0, 1, 0, 1])
    assert b == pytest.approx(0.2) and se == pytest.approx(math.sqrt(0.8 / 2 / 5))  # residuals -0.2, 0.6, -0.6, 0.2
    assert all(math.isnan(v) for v in slope_and_error([1], [1]))
