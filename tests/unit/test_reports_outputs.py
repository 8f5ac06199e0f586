"""report.html, summary.md, the merged junit.xml, the SVG charts and --vendor-info."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.errors import ReportError
from reports.html import render_html
from reports.junit import merge_junit
from reports.load import load_cell, load_cells
from reports.markdown import MAX_FAILURES, fence, render_markdown, truncate
from reports.model import FAMILIES
from reports.repro import k_expression, pytest_command, tox_command
from reports.summary import build_summary
from reports.svg import Series, distribution_chart, fmt, nice_ticks
from reports.vendor import VendorInfo, load_vendor, parse_vendor

SAMPLES = Path(__file__).parent / "data" / "results"
VENDOR = VendorInfo(
    "Example <CNI>", "1.18.0", ("conformance@example.com", "@example"), "https://example.com/cni", "KPR on"
)


def _render(out_dir: Path = SAMPLES, vendor: VendorInfo | None = VENDOR) -> str:
    cells = load_cells(SAMPLES)
    summary = build_summary(cells, generated="2025-11-22T05:00:00Z", vendor=vendor)
    return render_html(cells, summary=summary, vendor=vendor, out_dir=out_dir)


class _Collector(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collector:
    c = _Collector()
    c.feed(page)
    return c


# --- HTML ----------------------------------------------------------------------------------


def test_html_is_self_contained() -> None:
    page = _render()
    tags = _parse(page).tags
    assert not [t for t, _ in tags if t in ("script", "link", "img", "iframe", "object", "embed")]
    for tag, attrs in tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value.startswith(("http:", "https:", "//")):
                # the only outside link is the vendor's own URL, which the vendor gave us
                assert (tag, value) == ("a", VENDOR.url)
    assert "@import" not in page
    assert "url(" not in page


def test_html_matrix_has_every_cell_and_family() -> None:
    tags = _parse(_render()).tags
    tds = [a for t, a in tags if t == "td" and a.get("data-family")]
    completed = {"iptables-kindnet", "nftables-kindnet", "nftables-flannel"}
    # a row per family of the registry, whether or not the (schema 1) samples have tests in it
    assert {(a["data-cell"], a["data-family"]) for a in tds} == {(c, f) for c in completed for f in FAMILIES}
    rows = [a["data-family"] for t, a in tags if t == "th" and a.get("data-family")]
    assert rows == list(FAMILIES)
    nodeport = next(a for a in tds if a["data-cell"] == "nftables-kindnet" and a["data-family"] == "nodeport")
    assert (nodeport["data-verdict"], nodeport["data-passed"], nodeport["data-failed"]) == (
        "failed",
        "2",
        "1",
    )
    assert "v-failed" in (nodeport["class"] or "")
    conv = next(a for a in tds if a["data-cell"] == "nftables-flannel" and a["data-family"] == "convergence")
    assert "ext-only" in (conv["class"] or "")  # amber, not red: only Extended failed


def test_unsupported_and_error_cells_are_never_green() -> None:
    tags = _parse(_render()).tags
    for cell, status in (("ipvs-kindnet", "unsupported"), ("iptables-cilium", "error")):
        tds = [a for t, a in tags if t == "td" and a.get("data-cell") == cell]
        assert tds
        for a in tds:
            assert "v-passed" not in (a.get("class") or "")
        spanning = [a for a in tds if a.get("rowspan")]
        assert len(spanning) == 1
        assert spanning[0]["data-verdict"] == status
        assert spanning[0]["rowspan"] == str(len(FAMILIES))
    page = _render()
    assert "kernel 6.18.0 has none" in page
    assert "ImagePullBackOff" in page


def test_html_profiles_and_cell_sections() -> None:
    tags = _parse(_render()).tags
    profiles = {a["data-cell"]: a["data-profile"] for t, a in tags if t == "td" and a.get("data-profile")}
    assert profiles == {
        "iptables-kindnet": "extended",
        "iptables-cilium": "none",
        "nftables-kindnet": "none",
        "nftables-flannel": "core",
        "ipvs-kindnet": "none",
    }
    sections = [a for t, a in tags if t == "section" and "cell" in (a.get("class") or "")]
    assert [a["data-cell"] for a in sections] == list(profiles)


def test_html_facts_of_a_cell() -> None:
    page = _render()
    section = page[page.index('id="cell--nftables-kindnet"') :]
    section = section[: section.index("</section>")]
    for fact in ("v1.34.4", "nftables", "kindnet", "6.18.0", "svcconform/node:v1.34.4", "1m 11s", "424242"):
        assert fact in section
    assert re.search(r'data-fact="images-air-gapped".*?<span class="v">yes</span>', section)


def test_messages_are_escaped_and_preformatted() -> None:
    page = _render()
    assert "endpoints on worker: &lt;none&gt;" in page
    assert "<none>" not in page
    assert "Example &lt;CNI&gt;" in page
    block = re.search(r'<pre class="msg">(.*?)</pre>', page, re.S)
    assert block is not None
    assert "\n  client@worker       .       X        .\n" in block.group(1)


def test_failed_tests_open_with_repro_and_diagnostics(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    page = _render(out_dir=out)
    tags = _parse(page).tags
    failed = [a for t, a in tags if t == "details" and a.get("data-outcome") == "failed"]
    assert len(failed) == 2
    assert all("open" in a for a in failed)
    assert "tox -e nftables-kindnet -- -k &#x27;test_nodeport_reachable_on_every_node_ip[udp]&#x27;" in page
    assert (
        "pytest --proxy-mode=nftables --cni=kindnet "
        "&#x27;suite/test_nodeport.py::test_nodeport_reachable_on_every_node_ip[udp]&#x27;"
    ) in page
    links = [a["href"] or "" for t, a in tags if t == "a" and "diag" in (a.get("class") or "")]
    assert len(links) == 2
    for link in links:  # relative to the page, and pointing at the real bundle
        assert not link.startswith("/")
        assert (out / link).resolve().is_dir()


def test_every_test_has_a_drill_down() -> None:
    tags = _parse(_render()).tags
    tests = [a for t, a in tags if t == "details" and a.get("data-outcome")]
    recorded = sum(len(c.tests) for c in load_cells(SAMPLES))
    assert len(tests) == recorded == 72


def test_html_has_charts_per_cell_and_across_cells() -> None:
    page = _render()
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    # 1 comparison plot (a group per change kind, a row per cell) + one per completed cell
    assert len(svgs) == 4
    for svg in svgs:
        ET.fromstring(svg)  # well-formed XML
    compare = re.findall(r'<figure class="compare" data-kinds="([^"]+)"', page)
    assert compare == ["endpoint_add_s,endpoint_remove_s"]
    groups = re.findall(r'<text class="group"[^>]*>([^<]+)</text>', svgs[0])
    assert groups == ["endpoint_add_s", "endpoint_remove_s"]


def test_diagnostics_link_says_when_the_bundle_is_missing(tmp_path: Path) -> None:
    dest = tmp_path / "results"
    shutil.copytree(SAMPLES, dest)
    shutil.rmtree(dest / "nftables-kindnet" / "diagnostics")
    cells = load_cells(dest)
    summary = build_summary(cells, generated="2025-11-22T05:00:00Z", vendor=None)
    page = render_html(cells, summary=summary, vendor=None, out_dir=dest)
    assert page.count("not found beside this report") == 1


# --- repro ---------------------------------------------------------------------------------


def test_repro_commands_for_variants_and_replacements(tmp_path: Path) -> None:
    cell = load_cell(SAMPLES / "nftables-kindnet")
    test = next(t for t in cell.tests if t.failed)
    v6 = replace(cell, info=replace(cell.info, extra=(("ip_family", "ipv6"),)))
    assert tox_command(v6, test) == (
        "tox -e nftables-kindnet -- --ip-family=ipv6 -k 'test_nodeport_reachable_on_every_node_ip[udp]'"
    )
    kpr = replace(cell, info=replace(cell.info, name="cilium-kpr", proxy_mode="none", cni="cilium"))
    assert pytest_command(kpr, test) is None
    assert tox_command(kpr, test).startswith("tox -e cilium-kpr -- -k ")
    odd = replace(test, id="suite/test_x.py::test_y[a b=c]")
    assert k_expression(odd) == "test_y"


# --- SVG -----------------------------------------------------------------------------------


def test_chart_marks_samples_and_percentiles() -> None:
    svg = distribution_chart(
        [Series("a", (1.0, 2.0, 3.0), 2.0, 3.0, 3.0), Series("b <x>", (), None, None, None)],
        unit="s",
        title="endpoint_add_s",
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f".//{ns}circle")) == 3
    marks = [e.get("class") for e in root.iter(f"{ns}line") if (e.get("class") or "").startswith("mark")]
    assert marks == ["mark mark-p50", "mark mark-p90", "mark mark-max"]
    assert "no samples" in svg
    assert "b &lt;x&gt;" in svg
    assert svg == distribution_chart(
        [Series("a", (1.0, 2.0, 3.0), 2.0, 3.0, 3.0), Series("b <x>", (), None, None, None)],
        unit="s",
        title="endpoint_add_s",
    ), "deterministic"


def test_chart_scale_puts_larger_values_further_right() -> None:
    svg = distribution_chart([Series("a", (0.5, 4.5), 0.5, 4.5, 4.5)], unit="s", title="t")
    xs = [float(x) for x in re.findall(r'<circle class="sample" cx="([\d.]+)"', svg)]
    assert xs[0] < xs[1]


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (7.4, [0, 2, 4, 6, 8]),
        (2.33, [0, 0.5, 1, 1.5, 2, 2.5]),
        (0.0, [0, 1]),
        (100, [0, 20, 40, 60, 80, 100]),
    ],
)
def test_nice_ticks(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == pytest.approx(ticks)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 s"),
        (1.0, "1 s"),
        (1.234, "1.23 s"),
        (12.345, "12.3 s"),
        (0.0421, "0.0421 s"),
        (1234.0, "1.23e+03 s"),
    ],
)
def test_fmt(value: float, text: str) -> None:
    assert fmt(value, "s") == text


# --- Markdown ------------------------------------------------------------------------------


def _markdown(vendor: VendorInfo | None = VENDOR) -> str:
    cells = load_cells(SAMPLES)
    summary = build_summary(cells, generated="2025-11-22T05:00:00Z", vendor=vendor)
    return render_markdown(cells, summary=summary, vendor=vendor)


def test_markdown_matrix_table() -> None:
    md = _markdown()
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| family |"))
    table = lines[header : header + 12]
    assert all(line.count("|") == 7 for line in table[:11])  # 5 cells + label = 6 columns
    assert "`iptables-kindnet`" in table[0]
    assert "`ipvs-kindnet`" in table[0]
    assert table[3].startswith("| **profile** | **extended** | **none** | **none** | **core** | **none** |")
    nodeport = next(line for line in table if line.startswith("| nodeport |"))
    assert "❌ 2/3" in nodeport
    assert "🚫 unsupported" in nodeport
    assert "💥 error" in nodeport


def test_markdown_lists_failures_reasons_and_convergence() -> None:
    md = _markdown()
    assert "### Failures (2)" in md
    assert "tox -e nftables-kindnet -- -k 'test_nodeport_reachable_on_every_node_ip[udp]'" in md
    assert "**ipvs-kindnet** — unsupported: ipvs proxy mode needs the ip_vs kernel module" in md
    assert "| `nftables-flannel` | endpoint_add_s | **all nodes** | 22 |" in md
    assert "[Example <CNI> 1.18.0](https://example.com/cni)" in md


def test_markdown_truncates_long_messages() -> None:
    message = "\n".join(f"line {i}" for i in range(100))
    out = truncate(message)
    assert out.count("\n") == 25
    assert out.endswith("(75 more lines in report.html)")
    out = truncate("x" * 5000)
    assert len(out) < 2100
    assert "truncated; 3000 more characters" in out
    assert truncate("short") == "short"
    assert fence("a ``` b") == "````"


def test_markdown_caps_the_failure_list(tmp_path: Path) -> None:
    base = load_cell(SAMPLES / "iptables-kindnet")
    many = replace(
        base, tests=tuple(replace(t, outcome="failed", message="m " * 3000) for t in base.tests * 3)
    )
    summary = build_summary([many], generated="2025-11-22T05:00:00Z", vendor=None)
    md = render_markdown([many], summary=summary, vendor=None)
    assert md.count("<details>") == MAX_FAILURES
    assert f"… and {72 - MAX_FAILURES} more failures in report.html." in md
    assert len(md.encode()) < 200_000


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_merge_prefixes_cells_and_totals() -> None:
    data, warnings = merge_junit(load_cells(SAMPLES))
    assert warnings == []
    root = ET.fromstring(data)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    names = [s.get("name") for s in suites]
    assert names == [
        "iptables-kindnet: pytest",
        "iptables-cilium: svcconform",
        "nftables-kindnet: pytest",
        "nftables-flannel: pytest",
        "ipvs-kindnet: svcconform",
    ]
    cases = root.findall(".//testcase")
    assert len(cases) == 72 + 2
    assert all(c.get("classname", "").split(".")[0] in {s.split(":")[0] for s in names} for c in cases)  # type: ignore[union-attr]
    assert root.get("tests") == "74"
    assert root.get("failures") == "2"
    assert root.get("errors") == "1"  # the error cell
    assert root.get("skipped") == "2"  # one skipped test + the unsupported cell
    ipvs = suites[-1]
    skipped = ipvs.find("testcase/skipped")
    assert skipped is not None
    assert "ip_vs" in (skipped.get("message") or "")
    props = {p.get("name"): p.get("value") for p in ipvs.iter("property")}
    assert props == {"cell": "ipvs-kindnet", "cell_status": "unsupported"}


def test_junit_merge_survives_a_broken_file(tmp_path: Path) -> None:
    dest = tmp_path / "results"
    shutil.copytree(SAMPLES, dest)
    (dest / "iptables-kindnet" / "junit.xml").write_text("<testsuites><testsuite>")
    data, warnings = merge_junit(load_cells(dest))
    assert len(warnings) == 1
    assert "iptables-kindnet" in warnings[0]
    assert "junit.xml" in warnings[0]
    root = ET.fromstring(data)
    broken = root.find("testsuite")
    assert broken is not None
    assert broken.get("errors") == "1"
    assert len(root.findall("testsuite")) == 5


# --- vendor info ---------------------------------------------------------------------------


def test_vendor_file_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "vendor.yaml"
    path.write_text(
        'implementation: Example CNI\nversion: "1.10"\ncontact: conformance@example.com\n'
        "url: https://example.com\nnotes: |\n  kube-proxy replacement\n"
    )
    vendor = load_vendor(path)
    assert vendor == VendorInfo(
        "Example CNI", "1.10", ("conformance@example.com",), "https://example.com", "kube-proxy replacement"
    )
    assert vendor.as_dict()["contact"] == ["conformance@example.com"]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], "expected a YAML mapping"),
        ({"implementation": "x", "version": "1", "contact": "c"}, "missing required key(s) url"),
        (
            {"implementation": "x", "version": "1", "contact": "c", "url": "https://x", "nots": "y"},
            "unknown key(s) nots",
        ),
        ({"implementation": "x", "version": 1.1, "contact": "c", "url": "https://x"}, "quote it"),
        (
            {"implementation": " ", "version": "1", "contact": "c", "url": "https://x"},
            "implementation: must not be empty",
        ),
        ({"implementation": "x", "version": "1", "contact": [], "url": "https://x"}, "at least one contact"),
        (
            {"implementation": "x", "version": "1", "contact": ["a", 3], "url": "https://x"},
            "contact: expected a string",
        ),
        ({"implementation": "x", "version": "1", "contact": "c", "url": "ftp://x"}, "not an http(s) URL"),
        ({"implementation": "x", "version": "1", "contact": "c", "url": "https://"}, "not an http(s) URL"),
    ],
)
def test_vendor_validation(doc: object, expected: str) -> None:
    with pytest.raises(ReportError) as err:
        parse_vendor(doc, Path("vendor.yaml"))
    assert expected in str(err.value)
    assert str(err.value).startswith("vendor.yaml: ")


def test_vendor_file_errors_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    with pytest.raises(ReportError, match="does not exist"):
        load_vendor(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("implementation: [unclosed\n")
    with pytest.raises(ReportError, match=r"invalid YAML at line \d+ column \d+") as err:
        load_vendor(bad)
    assert "\n" not in str(err.value)


def test_anchors_cannot_collide() -> None:
    from reports.html import anchor

    assert anchor("cell", "a-dns") != anchor("cell", "a", "dns")
    assert anchor("t", "iptables_kindnet ipv6", "3") == "t--iptables-kindnet-ipv6--3"


# --- partial runs and reruns ---------------------------------------------------------------


def _with_runs(tmp_path: Path) -> Path:
    """The sample results with a partial rerun beside iptables-kindnet's full verdict, and a
    cell (nftables-flannel) whose only run selected part of the suite."""
    import json

    results = tmp_path / "results"
    shutil.copytree(SAMPLES, results)
    full = json.loads((results / "iptables-kindnet" / "results.json").read_text())
    rerun = dict(full, finished="2099-01-01T00:00:00+00:00", tests=full["tests"][:2],
                 run={"args": ["suite", "-k", "x"], "selection": "-k 'x'", "partial": True, "collected": 2,
                      "deselected": 92, "suite_commit": None, "suite_dirty": None})
    (results / "iptables-kindnet" / "runs" / "20990101T000000Z").mkdir(parents=True)
    (results / "iptables-kindnet" / "runs" / "20990101T000000Z" / "results.json").write_text(json.dumps(rerun))
    flannel = results / "nftables-flannel" / "results.json"
    doc = json.loads(flannel.read_text())
    doc["run"] = dict(rerun["run"], selection="-m 'dns'")
    flannel.write_text(json.dumps(doc))
    return results


def test_a_partial_cell_has_no_profile_and_reruns_sit_beside_the_full_verdict(tmp_path: Path) -> None:
    results = _with_runs(tmp_path)
    cells = load_cells(results)
    by_key = {c.key: c for c in cells}
    assert by_key["nftables-flannel"].partial
    assert [r.stamp for r in by_key["iptables-kindnet"].reruns] == ["20990101T000000Z"]
    summary = build_summary(cells, generated="2025-11-22T05:00:00Z", vendor=VENDOR)
    entries = {c["name"]: c for c in summary["cells"]}
    assert entries["nftables-flannel"]["profile"] == "none"
    assert entries["nftables-flannel"]["partial"] is True
    assert entries["iptables-kindnet"]["profile"] == "extended"  # the full verdict still counts
    assert entries["iptables-kindnet"]["reruns"][0]["selection"] == "-k 'x'"
    page = render_html(cells, summary=summary, vendor=VENDOR, out_dir=results)
    tags = _parse(page).tags
    profile = {a["data-cell"]: (a["data-profile"], a.get("data-partial")) for t, a in tags
               if t == "td" and a.get("data-profile")}
    assert profile["nftables-flannel"] == ("none", "true")
    assert profile["iptables-kindnet"] == ("extended", "false")
    assert any(t == "li" and a.get("data-rerun") == "20990101T000000Z" for t, a in tags)
    assert "partial run: no profile" in page
    md = render_markdown(cells, summary=summary, vendor=VENDOR)
    assert "### Partial runs" in md
    assert "**nftables-flannel** ran only -m 'dns'" in md


def test_a_cell_with_only_partial_runs_is_its_latest_one(tmp_path: Path) -> None:
    import json

    cell_dir = tmp_path / "results" / "iptables-kindnet"
    doc = json.loads((SAMPLES / "iptables-kindnet" / "results.json").read_text())
    doc["run"] = {"args": [], "selection": "-m 'dns'", "partial": True, "collected": 3, "deselected": 91,
                  "suite_commit": "abc", "suite_dirty": False}
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        (cell_dir / "runs" / stamp).mkdir(parents=True)
        (cell_dir / "runs" / stamp / "results.json").write_text(json.dumps(doc))
    (cell,) = load_cells(tmp_path / "results")
    assert cell.key == "iptables-kindnet"
    assert cell.partial
    assert [r.stamp for r in cell.reruns] == ["20260101T000000Z"]


def test_the_merged_junit_of_a_cell_with_only_partial_runs_uses_its_latest_run(tmp_path: Path) -> None:
    import json

    cell_dir = tmp_path / "results" / "iptables-kindnet"
    doc = json.loads((SAMPLES / "iptables-kindnet" / "results.json").read_text())
    doc["run"] = {"args": [], "selection": "-m 'dns'", "partial": True, "collected": 3, "deselected": 91,
                  "suite_commit": "abc", "suite_dirty": False}
    run = cell_dir / "runs" / "20260102T000000Z"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(doc))
    shutil.copy(SAMPLES / "iptables-kindnet" / "junit.xml", run / "junit.xml")
    (cell,) = load_cells(tmp_path / "results")
    assert cell.junit_path == run / "junit.xml"
    xml, warnings = merge_junit([cell])
    assert warnings == []
    assert b"<testcase" in xml
