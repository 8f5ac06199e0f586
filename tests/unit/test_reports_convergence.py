"""The convergence section and the performance verdict in report.html, summary.md and
summary.json, from a results.json of schema 3 (per-node samples, kube-proxy histograms,
budgets and a baseline)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from fixtures import performance as perf
from fixtures.results import Budgeting, summarize, validate
from reports.convergence import convergence_of
from reports.html import render_html
from reports.load import load_cells
from reports.markdown import render_markdown
from reports.summary import build_summary
from tests.unit.test_results import valid_document

NODES = ("svcc-x-control-plane", "svcc-x-worker", "svcc-x-worker2")


def change(kind: str, per_node: list[list[float]], resolution: float) -> dict[str, Any]:
    samples = [x for xs in per_node for x in xs]
    return {**summarize(samples, "s"), "kind": kind, "resolution": resolution,
            "by_node": dict(zip(NODES, per_node, strict=True))}


def kube_proxy(p50: list[float | None], mean: float) -> dict[str, Any]:
    by_node = {n: {"count": 53, "sum": 53 * mean, "mean": mean, "p50": p50, "p99": [2.0, 3.0]} for n in NODES}
    return {**summarize([mean] * 3, "s"), "kind": "kube-proxy: change to rules programmed",
            "by_node": {n: [mean] for n in NODES},
            "histogram": {"metric": "kubeproxy_network_programming_duration_seconds",
                          "bounds": [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0], "by_node": by_node}}


def document(scale: float, min_sync: str) -> dict[str, Any]:
    doc = valid_document()
    doc["schema_version"] = 3
    doc["cell"]["detection"] = {"min_sync_period": {"value": min_sync,
                                                    "evidence": f"kube-proxy ConfigMap kube-proxy iptables.minSyncPeriod: {min_sync}"}}
    doc["tests"] = [
        {"id": "suite/test_convergence.py::test_created", "family": "convergence", "outcome": "passed",
         "duration_s": 9.0, "message": "", "diagnostics": None,
         "measurements": {
             "service_created_to_served": change("service created", [[0.3 * scale, 0.25 * scale, 0.4 * scale],
                                                                     [0.26 * scale, 1.07 * scale, 0.29 * scale],
                                                                     [0.28 * scale, 0.27 * scale, 0.3 * scale]], 0.06),
             "readiness_failed_to_no_traffic": change("readiness lost", [[1.3, 0.8, 1.0], [0.7, 0.7, 0.8],
                                                                         [1.4, 1.4, 1.4]], 0.08)}},
        {"id": "suite/test_convergence.py::test_kube_proxy", "family": "convergence", "outcome": "passed",
         "duration_s": 1.0, "message": "", "diagnostics": None,
         "measurements": {"kubeproxy_network_programming_duration_seconds":
                          kube_proxy([1.0, 2.0] if scale == 1 else [10.0, 20.0], 1.4 * scale)}},
    ]
    return doc


def write_cell(root: Path, name: str, doc: dict[str, Any]) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(doc))


def results_dir(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    healthy = document(1.0, "1s")
    healthy["performance"] = Budgeting().judge(healthy["tests"], healthy["cell"]["detection"])
    slow = document(30.0, "10s")
    slow["cell"]["name"] = "nftables-kindnet"
    slow["cell"]["proxy_mode"] = "nftables"
    slow["performance"] = Budgeting(baseline=healthy, baseline_source="healthy/results.json").judge(
        slow["tests"], slow["cell"]["detection"])
    assert validate(healthy) == []
    assert validate(slow) == []
    write_cell(root, "iptables-kindnet", healthy)
    write_cell(root, "nftables-kindnet", slow)
    return root


def test_the_convergence_view_splits_kinds_by_node(tmp_path: Path) -> None:
    cells = load_cells(results_dir(tmp_path))
    conv = convergence_of(cells[0])
    assert [c.kind for c in conv.changes] == ["service created", "readiness lost"]  # change order
    created = conv.changes[0]
    assert [r.label for r in created.nodes] == list(NODES)
    assert [r.n for r in created.nodes] == [3, 3, 3]
    assert created.overall.n == 9
    assert created.nodes[1].max == 1.07
    assert created.resolution == 0.06
    (hist,) = conv.histograms
    assert [n.p50.text() for n in hist.nodes if n.p50] == ["(1, 2] s"] * 3
    assert not conv.legacy


def test_html_shows_per_node_tables_buckets_budgets_and_one_comparison_plot(tmp_path: Path) -> None:
    root = results_dir(tmp_path)
    cells = load_cells(root)
    summary = build_summary(cells, generated="2026-12-06T05:00:00Z", vendor=None)
    page = render_html(cells, summary=summary, vendor=None, out_dir=root)
    # the matrix: the performance verdict beside the conformance one, naming what is over
    perf_tds = dict(re.findall(r'data-cell="([^"]+)" data-performance="([^"]+)"', page))
    assert perf_tds == {"iptables-kindnet": "within budget", "nftables-kindnet": "over budget"}
    assert "service_created_to_served p90" in page
    assert "1 regressions against the baseline" not in page
    assert "2 regressions against the baseline" in page
    # per change kind, per node
    tables = re.findall(r'<table class="conv" data-kind="([^"]+)"', page)
    assert tables == ["service created", "readiness lost"] * 2
    assert page.count('<tr data-node="svcc-x-worker">') == 2 * 2 + 2  # 2 kinds x 2 cells + 2 histograms
    assert "<th>p99</th>" in page
    assert "±60 ms" in page
    # kube-proxy: buckets, never a single number for a quantile, never plotted
    assert "(1, 2] s" in page
    assert "(10, 20] s" in page
    assert "p50 in" in page
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    for svg in svgs:
        ET.fromstring(svg)
        assert "kubeproxy" not in svg
        assert ">count" not in svg
    # one cross-cell plot: a group per change kind, a row per cell
    (compare,) = re.findall(r'<figure class="compare" data-kinds="([^"]+)">(.*?)</figure>', page, re.S)
    assert compare[0] == "service created,readiness lost"
    assert re.findall(r'<text class="group"[^>]*>([^<]+)</text>', compare[1]) == ["service created", "readiness lost"]
    assert re.findall(r'data-label="([^"]+)"', compare[1]) == ["iptables-kindnet", "nftables-kindnet"] * 2
    assert 'data-verdict="regression"' in page


def test_markdown_and_summary_carry_the_performance_verdict(tmp_path: Path) -> None:
    root = results_dir(tmp_path)
    cells = load_cells(root)
    summary = build_summary(cells, generated="2026-12-06T05:00:00Z", vendor=None)
    md = render_markdown(cells, summary=summary, vendor=None)
    assert "| **performance** (not conformance) | within budget | ⚠️ over budget: " \
           "`kubeproxy_network_programming_duration_seconds`, `service_created_to_served`; " \
           "2 regressions vs baseline |" in md
    assert "| `iptables-kindnet` | service created | `svcc-x-worker` | 3 |" in md
    assert "| `nftables-kindnet` | `kubeproxy_network_programming_duration_seconds` | `svcc-x-worker` | 53 |" in md
    assert "(10, 20] s" in md
    assert "| `nftables-kindnet` | `service_created_to_served` | p90 |" in md
    assert "⚠️ regression |" in md
    cell = {c["name"]: c for c in summary["cells"]}
    assert cell["nftables-kindnet"]["performance"] == {
        "verdict": perf.OVER, "over_budget": ["kubeproxy_network_programming_duration_seconds",
                                              "service_created_to_served"],
        "regressions": 2, "min_sync_period_s": 10.0}
    assert cell["iptables-kindnet"]["performance"]["verdict"] == perf.WITHIN
