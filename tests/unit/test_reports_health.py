"""The health pass in the report (results.json schema 5 ``cell.health``): read, drawn on top
of the cell as a node x layer grid, and listed in summary.md; older files have none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fixtures import health
from fixtures.health import DIRECT, VIA_SERVICE, Outcome
from reports.html import render_html
from reports.load import load_cell, load_cells
from reports.markdown import render_markdown
from reports.summary import build_summary

SAMPLES = Path(__file__).parent / "data" / "results"


def broken_verdict() -> dict:
    nodes = ["cp", "worker"]
    outcomes = {(k, a, b): Outcome(True, "answered") for k in (DIRECT, VIA_SERVICE) for a in nodes for b in nodes}
    outcomes[(VIA_SERVICE, "worker", "cp")] = Outcome(False, "curl exit 28: timeout", "kubectl exec x -- curl y")
    h = health.judge(nodes, outcomes, service_ready={"cp": True, "worker": True})
    h.actions.append("restarted kube-proxy on worker (pod kube-proxy-x): it lost its zone; now ok")
    return h.to_json()


def with_health(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(SAMPLES / "iptables-kindnet", root / "iptables-kindnet")
    path = root / "iptables-kindnet" / "results.json"
    doc = json.loads(path.read_text())
    doc["schema_version"] = 5
    doc["cell"]["health"] = broken_verdict()
    path.write_text(json.dumps(doc))
    return root


def test_a_schema_5_cell_carries_its_health_and_older_ones_none(tmp_path: Path) -> None:
    cell = load_cell(with_health(tmp_path) / "iptables-kindnet")
    h = cell.info.health
    assert h is not None
    assert not h.healthy
    assert h.summary == "Service proxy broken on worker"
    assert dict(h.nodes)["worker"][1] == ("Service proxy", "broken", h.broken[0].split(": ", 1)[1])
    assert h.actions[0].startswith("restarted kube-proxy on worker")
    assert load_cell(SAMPLES / "iptables-kindnet").info.health is None
    assert not any(k == "health" for k, _ in cell.info.extra)  # not repeated among the facts


def test_the_report_draws_the_grid_on_top_of_the_cell_and_the_summary_lists_it(tmp_path: Path) -> None:
    cells = load_cells(with_health(tmp_path))
    summary = build_summary(cells, generated="2026-12-07T00:00:00Z", vendor=None)
    page = render_html(cells, summary=summary, vendor=None, out_dir=tmp_path)
    assert 'data-health="broken"' in page
    assert 'data-layer="Service proxy" data-status="broken"' in page
    assert "Data-plane health pass" in page
    assert page.index('data-health="broken"') < page.index("results.json sha256")  # above the facts
    md = render_markdown(cells, summary=summary, vendor=None)
    assert "### Data-plane health pass" in md
    assert "❌ **iptables-kindnet**: Service proxy broken on worker" in md
    assert "harness: restarted kube-proxy on worker" in md
