"""Dashboards, provisioning files and alert rules: generated from the catalog, committed verbatim."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from genmlx_observe import alerts, dashboards, provisioning
from genmlx_observe.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[2]
SERIES = {s for m in CATALOG for s in m.prometheus_series}
# Catalog attributes, the histogram's `le`, the scrape target's labels and `rank` (a process's rank in a
# distributed run: a bounded label on every series of such a run; absent labels match `=~".*"`).
LABELS = {a for m in CATALOG for a in m.attributes} | {"le", "instance", "job", "rank"}
VARIABLES = ["datasource", "job", "instance", "rank", "algorithm", "model", "chain"]


@pytest.mark.parametrize("where", ["dashboards", "genmlx_observe/dashboards"])
@pytest.mark.parametrize("name", sorted(provisioning.FILES))
def test_committed_file_is_the_generated_one(where, name):
    assert (ROOT / where / name).read_text() == provisioning.render(name), \
        f"{where}/{name} is stale: run genmlx-observe dashboards --out {where}"


def _boards():
    return [(n, json.loads(dashboards.render(n))) for n in sorted(dashboards.DASHBOARDS)]


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_every_query_names_catalog_metrics_and_labels_only(name):
    board = json.loads(dashboards.render(name))
    exprs = dashboards.exprs(board)
    assert exprs
    for expr in exprs:
        names = set(re.findall(r"\bgenmlx_[a-z0-9_]+", expr))
        assert names and names <= SERIES, (expr, names - SERIES)
        bare = re.sub(r"\{[^{}]*\}", "", expr)  # selectors apart: what remains in by (...) / label_values(...)
        for labels in re.findall(r"(?:by|on|label_values)\s*\(([^()]*)\)", bare):
            used = {x.strip() for x in labels.split(",") if x.strip() and not x.strip().startswith("genmlx_")}
            assert used <= LABELS, (expr, used - LABELS)
        for label in re.findall(r"\b([a-z_]+)=~?\"", expr):
            assert label in LABELS, (expr, label)


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_template_variables_and_descriptions(name):
    board = json.loads(dashboards.render(name))
    variables = board["templating"]["list"]
    assert [v["name"] for v in variables] == VARIABLES
    for v in variables[1:]:
        assert v["includeAll"] and v["allValue"] == ".*" and v["current"]["value"] == "$__all", v["name"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels and all(len(p["description"]) > 20 for p in panels), [p["title"] for p in panels]
    for title, expr in dashboards.panel_exprs(board):
        # every panel selects on the target variables, so job / instance / rank filter everything
        for var in ("job", "instance", "rank"):
            assert f'{var}=~"${var}"' in expr, (title, expr)


def test_every_catalog_metric_is_on_a_dashboard():
    text = "".join(dashboards.render(n) for n in dashboards.DASHBOARDS)
    missing = [m.key for m in CATALOG if not any(s in text for s in m.prometheus_series)]
    assert missing == []


def test_memory_dashboard_has_budget_percent_rss_and_top_sites():
    board = dict(_boards())["genmlx-memory.json"]
    by_title = {p["title"]: p for p in board["panels"]}
    budget = by_title["Budget use (% of the limit)"]
    assert budget["fieldConfig"]["defaults"]["unit"] == "percent"
    exprs = [t["expr"] for t in budget["targets"]]
    assert exprs[0].startswith("100 * genmlx_memory_budget_used{") and "/ genmlx_memory_budget_limit{" in exprs[0]
    assert exprs[1].endswith(f"/ {dashboards.METAL_LIMIT}") and dashboards.METAL_LIMIT == 499_000
    assert "genmlx_process_memory_rss_bytes" in by_title["Resident memory (RSS)"]["targets"][0]["expr"]
    assert by_title["Top sites: graph nodes per second"]["targets"][0]["expr"].startswith(
        "topk(10, sum by (site) (rate(genmlx_site_buffers_sum{")


def test_trace_sites_dashboard_exists_and_queries_site_series_only():
    board = dict(_boards())["genmlx-sites.json"]
    exprs = [e for _, e in dashboards.panel_exprs(board)]
    assert len(exprs) >= 5 and all("genmlx_site_buffers_" in e for e in exprs)


def test_substitute_replaces_every_variable_and_refuses_unknown_ones():
    for _, board in _boards():
        for _, expr in dashboards.panel_exprs(board):
            assert "$" not in dashboards.substitute(expr, "5s")
    assert dashboards.substitute('x{job=~"$job"}[$__rate_interval]', "5s", job="a") == 'x{job=~"a"}[5s]'
    with pytest.raises(ValueError, match=r"\$nope"):
        dashboards.substitute('x{a=~"$nope"}')


def test_panels_are_laid_out_without_overlap():
    for name, board in _boards():
        cells = set()
        for p in board["panels"]:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (name, p["title"])
                    cells.add((x, y))


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus():
    provider = provisioning.render("provisioning/dashboards/genmlx.yml")
    assert "type: file" in provider and "path: ${GENMLX_DASHBOARDS}" in provider
    ds = provisioning.render("provisioning/datasources/genmlx.yml")
    assert "type: prometheus" in ds and "url: http://localhost:9090" in ds and "isDefault: true" in ds
    cfg = provisioning.render("prometheus.yml")
    assert f"- {alerts.FILE}" in cfg and f"'127.0.0.1:{provisioning.DEMO_PORT}'" in cfg


def test_alert_rules_query_catalog_series_and_cover_the_seed_failures():
    rules = alerts.rules()
    assert {r["alert"] for r in rules} == {"GenmlxBudgetNearLimit", "GenmlxNearMetalBufferLimit",
                                           "GenmlxLiveArrayGrowth", "GenmlxPendingNodeGrowth", "GenmlxRunStuck",
                                           "GenmlxTelemetryDropped"}
    for r in rules:
        names = set(re.findall(r"\bgenmlx_[a-z0-9_]+", r["expr"]))
        assert names and names <= SERIES, (r["alert"], names - SERIES)
        assert r["labels"]["severity"] and r["annotations"]["summary"] and r["annotations"]["description"]
    growth = {r["alert"]: r for r in rules}["GenmlxLiveArrayGrowth"]
    assert growth["expr"] == "genmlx_memory_live_arrays_growth > 0.1" and growth["for"] == "5m"


def test_dashboards_check_command(tmp_path, capsys):
    from genmlx_observe.cli import main

    assert main(["dashboards", "--out", str(tmp_path), "--check"]) == 1
    assert main(["dashboards", "--out", str(tmp_path)]) == 0
    assert main(["dashboards", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / alerts.FILE).write_text("groups: []\n")
    assert main(["dashboards", "--out", str(tmp_path), "--check"]) == 1
    assert f"{tmp_path / alerts.FILE} differs from the catalog" in capsys.readouterr().out
