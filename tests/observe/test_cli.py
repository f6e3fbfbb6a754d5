"""The genmlx-observe command: demo, catalog, dashboards."""

from __future__ import annotations

import re

from genmlx_observe.catalog import CATALOG
from genmlx_observe.cli import main


def test_catalog_prints_both_dialect_names(capsys):
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    for m in CATALOG:
        assert re.search(rf"^{re.escape(m.otel_name)}\s+{re.escape(m.prometheus_name)}\s", out, re.MULTILINE)


def test_demo_runs_mh_and_prints_the_summary(capsys):
    assert main(["demo", "--iterations", "40", "--burn", "10", "--prometheus-port", "0"]) == 0
    out = capsys.readouterr().out
    assert "posterior mean of p" in out and "(exact: 0.643)" in out
    row = re.search(r"^genmlx_inference_iterations_total\s+\S*phase=sampling\s+(\d+)$", out, re.MULTILINE)
    assert row and int(row.group(1)) == 40
    assert re.search(r"^genmlx_inference_acceptance_ratio\s+\S+\s+0\.\d+", out, re.MULTILINE)
    assert re.search(r"Prometheus endpoint: http://127\.0\.0\.1:\d+/metrics", out)


def test_demo_without_destinations_says_console_only(capsys):
    assert main(["demo", "--iterations", "5", "--burn", "0"]) == 0
    assert "console only" in capsys.readouterr().out


def test_dashboards_check(tmp_path, capsys):
    assert main(["dashboards", "--out", str(tmp_path), "--check"]) == 1
    assert main(["dashboards", "--out", str(tmp_path)]) == 0
    assert main(["dashboards", "--out", str(tmp_path), "--check"]) == 0
