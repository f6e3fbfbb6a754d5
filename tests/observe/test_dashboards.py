"""Dashboards: generated from the catalog, committed verbatim, querying catalog metrics only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from genmlx_observe import dashboards
from genmlx_observe.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[2]
SERIES = {s for m in CATALOG for s in m.prometheus_series}
LABELS = {a for m in CATALOG for a in m.attributes} | {"le", "instance", "job"}


@pytest.mark.parametrize("where", ["dashboards", "genmlx_observe/dashboards"])
@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_committed_json_is_the_generated_one(where, name):
    assert (ROOT / where / name).read_text() == dashboards.render(name), \
        f"{where}/{name} is stale: run genmlx-observe dashboards --out {where}"


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_every_query_names_catalog_metrics_and_labels_only(name):
    board = json.loads(dashboards.render(name))
    exprs = dashboards.exprs(board)
    assert exprs
    for expr in exprs:
        names = set(re.findall(r"\bgenmlx_[a-z0-9_]+", expr))
        assert names and names <= SERIES, (expr, names - SERIES)
        for labels in re.findall(r"(?:by|label_values)\s*\(([^()]*)\)", expr):
            used = {x.strip() for x in labels.split(",") if x.strip() and not x.strip().startswith("genmlx_")}
            assert used <= LABELS, (expr, used - LABELS)
        for label in re.findall(r"\b([a-z_]+)=~?\"", expr):
            assert label in LABELS, (expr, label)


def test_every_catalog_metric_is_on_a_dashboard():
    text = "".join(dashboards.render(n) for n in dashboards.DASHBOARDS)
    missing = [m.key for m in CATALOG if not any(s in text for s in m.prometheus_series)]
    assert missing == []


def test_panels_are_laid_out_without_overlap():
    for name in dashboards.DASHBOARDS:
        cells = set()
        for p in json.loads(dashboards.render(name))["panels"]:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (name, p["title"])
                    cells.add((x, y))
