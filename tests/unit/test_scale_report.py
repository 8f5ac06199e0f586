"""The report's Scale section: one SVG plot per figure (Services on x, one line per cell), the
same numbers as tables in report.html and summary.md, and a report of scale results alone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from reports.cli import main as reports_main
from reports.scale import FIGURES, Line, charts, line_chart, load_scale_runs, scale_html, scale_markdown
from tests.unit import scalekit

SAMPLES = Path(__file__).parent / "data" / "results"


# --- the report's Scale section ---------------------------------------------------------------


@pytest.fixture
def runs(tmp_path: Path) -> list:  # type: ignore[type-arg]
    scalekit.write(tmp_path, "iptables-kindnet", slow=2.0)
    scalekit.write(tmp_path, "nftables-kindnet", slow=0.2)
    scalekit.write(tmp_path, "none-cilium", slow=0.1, ladder=(100,), status="partial")
    return load_scale_runs(tmp_path)


def test_every_cells_scale_json_is_read_in_name_order(runs: list) -> None:  # type: ignore[type-arg]
    assert [r.key for r in runs] == ["iptables-kindnet", "nftables-kindnet", "none-cilium"]
    assert [len(r.steps) for r in runs] == [2, 2, 1]
    assert runs[2].status == "partial"


def test_an_unreadable_scale_json_is_named_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "iptables-kindnet").mkdir()
    (tmp_path / "iptables-kindnet" / "scale.json").write_text("{not json")
    (tmp_path / "nftables-kindnet").mkdir()
    (tmp_path / "nftables-kindnet" / "scale.json").write_text('{"kind": "results"}')
    found = load_scale_runs(tmp_path)
    assert "not JSON" in found[0].load_error
    assert "not a scale.json" in found[1].load_error
    html = scale_html(found)
    assert html.count("not read:") == 2
    assert "<svg" not in html


def test_one_svg_plot_per_figure_with_one_line_per_cell(runs: list) -> None:  # type: ignore[type-arg]
    html = scale_html(runs)
    section = html[html.index('<section class="scale"'):]
    figures = re.findall(r'<figure class="scale-figure" data-figure="([a-z-]+)">(.*?)</figure>', section)
    assert [key for key, _ in figures] == [f.key for f in FIGURES]  # every figure measured here
    for key, body in figures:
        assert body.count("<svg") == 1, key
        labels = re.findall(r'<g class="line" data-label="([^"]+)"', body)
        cells = {label.split()[0] for label in labels}
        assert cells == {"iptables-kindnet", "nftables-kindnet", "none-cilium"}, key
    one_more = dict(figures)["one-more"]
    assert 'data-label="iptables-kindnet p50" data-points="2"' in one_more
    assert 'data-label="iptables-kindnet p99" data-points="2"' in one_more  # the dotted tail
    assert 'data-label="none-cilium p50" data-points="1"' in one_more


def test_the_plots_put_services_on_x_and_say_their_unit(runs: list) -> None:  # type: ignore[type-arg]
    svg = {f.key: s for f, s in charts(runs)}["connect-first"]
    assert 'aria-label="First-packet TCP connect to the first-created Service, in ms by Services"' in svg
    assert ">Services</text>" in svg
    assert "at 300 Services</title>" in svg


def test_a_line_chart_is_deterministic_and_says_not_measured_without_points() -> None:
    lines = [Line("iptables-kindnet p50", "#0969da", ((1000.0, 0.5), (5000.0, 2.0))),
             Line("iptables-kindnet p99", "#0969da", ((1000.0, 0.9), (5000.0, 3.1)), dotted=True)]
    one = line_chart(lines, title="x", unit="s")
    assert one == line_chart(lines, title="x", unit="s")
    assert 'stroke-dasharray="2 3"' in one
    assert "not measured" in line_chart([], title="x", unit="s")


def test_the_table_has_a_row_per_cell_and_step_with_the_headline_numbers(runs: list) -> None:  # type: ignore[type-arg]
    html = scale_html(runs)
    rows = re.findall(r'<tr data-cell="([^"]+)" data-services="(\d+)">', html)
    assert rows == [("iptables-kindnet", "100"), ("iptables-kindnet", "300"), ("nftables-kindnet", "100"),
                    ("nftables-kindnet", "300"), ("none-cilium", "100")]
    assert "network programming p99, steady (pooled)" in html
    assert re.search(r"in \(\d[\d.]*, \d[\d.]*\] \(n=", html)  # the p99 with the bucket it lies in


def test_summary_md_gets_the_same_numbers_as_a_table(runs: list) -> None:  # type: ignore[type-arg]
    lines = scale_markdown(runs)
    assert lines[0] == "### Scale (beside the conformance verdict)"
    header = next(line for line in lines if line.startswith("| cell |"))
    assert "one more Service p50 / p90 / p99" in header
    assert "connect, last Service p50 / p99" in header
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 5
    assert rows[0].startswith("| `iptables-kindnet` | 100 | ")
    html_cells = re.findall(r'<td class="r">([^<]*)</td>', scale_html(runs))
    md_cells = [c.strip().replace("\\|", "|") for c in rows[0].split(" | ")[1:]]
    md_cells[-1] = md_cells[-1].removesuffix(" |")
    assert md_cells == html_cells[:len(md_cells)]


def test_no_scale_results_no_section() -> None:
    assert scale_html([]) == ""
    assert scale_markdown([]) == []


def test_the_report_shows_the_scale_section_beside_the_conformance_cells(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(SAMPLES, results)
    cell = sorted(p.name for p in results.iterdir() if (p / "results.json").is_file())[0]
    scalekit.write(results, "iptables-kindnet")
    assert reports_main([str(results), "--out", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert '<section class="scale" id="scale">' in html
    assert html.index('id="matrix"') < html.index('id="scale"')
    assert f'data-cell="{cell}"' in html  # the conformance cells are all still there
    assert "### Scale (beside the conformance verdict)" in (tmp_path / "out" / "summary.md").read_text()


def test_the_report_of_scale_results_alone(tmp_path: Path) -> None:
    scalekit.write(tmp_path, "nftables-kindnet")
    assert reports_main([str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert html.count('<figure class="scale-figure"') == len(FIGURES)
    assert not (tmp_path / "nftables-kindnet" / "results.json").exists()  # no conformance verdict invented
