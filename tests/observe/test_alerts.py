"""The alert rules through Prometheus's own tools: `promtool check rules` and `promtool test rules`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from genmlx_observe import alerts, provisioning

from .binaries import require

ROOT = Path(__file__).resolve().parents[2]
UNIT = Path(__file__).parent / "promtool" / "genmlx-alerts.test.yml"


def _promtool(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([require("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules_accepts_the_committed_rules():
    for where in ("dashboards", "genmlx_observe/dashboards"):
        r = _promtool("check", "rules", str(ROOT / where / alerts.FILE))
        assert r.returncode == 0 and "SUCCESS: 6 rules found" in r.stdout, r.stdout + r.stderr


def test_promtool_check_config_accepts_the_prometheus_configuration():
    r = _promtool("check", "config", str(ROOT / "dashboards" / "prometheus.yml"))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_promtool_test_rules_passes_on_the_input_series():
    r = _promtool("test", "rules", str(UNIT))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_promtool_test_rules_fails_for_wrong_rules(tmp_path):
    # The unit tests discriminate: the same cases against rules with a growth threshold of 2 and a
    # stuck window of 20 minutes fail (the leaking series' slope is 1; the stuck run stalls 12 minutes).
    rules = tmp_path / "dashboards" / alerts.FILE
    rules.parent.mkdir()
    rules.write_text(alerts.render(threshold=2.0, stuck_after="20m"))
    unit = tmp_path / "a" / "b" / "c" / UNIT.name
    unit.parent.mkdir(parents=True)
    shutil.copy(UNIT, unit)
    r = _promtool("test", "rules", str(unit))
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr
    assert "GenmlxLiveArrayGrowth" in r.stdout + r.stderr and "GenmlxRunStuck" in r.stdout + r.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(alerts.render().replace("> 0.1", "> > 0.1", 1))
    assert _promtool("check", "rules", str(bad)).returncode != 0
    assert provisioning.render(alerts.FILE) == alerts.render()


def test_a_missing_binary_skips_locally_and_fails_in_ci(monkeypatch):
    import pytest

    from . import binaries

    monkeypatch.setattr(binaries.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="`promtool` binary is not installed .* CI is set"):
        binaries.require("promtool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus"):
        binaries.require("promtool")
