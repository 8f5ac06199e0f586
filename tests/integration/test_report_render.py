"""report.html as a person sees it: rendered by headless Chromium from the sample cells.

Renders the report of ``tests/unit/data/results`` (5 cells: passed, failed, Extended-only
failure, unsupported ipvs, error), dumps the DOM Chromium built and checks the matrix, the
cells, the families and the SVG charts are there; keeps a screenshot under
``results/artifacts/report.png`` (``$SVCCONFORM_ARTIFACTS`` overrides the directory).

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped, saying so, without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fixtures.families import FAMILIES
from reports.cli import main

REPO = Path(__file__).parents[2]
SAMPLES = REPO / "tests" / "unit" / "data" / "results"
CELLS = ("iptables-kindnet", "iptables-cilium", "nftables-kindnet", "nftables-flannel", "ipvs-kindnet")
WINDOW = "1400,2000"
#: A cold Chromium start on a busy 2-core machine takes a few seconds; a page this size renders
#: in well under one.  Generous, so a loaded CI machine does not flake.
CHROMIUM_TIMEOUT_S = 120


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _artifacts_dir() -> Path:
    env = os.environ.get("SVCCONFORM_ARTIFACTS")
    return Path(env) if env else REPO / "results" / "artifacts"


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _chromium()
    if binary is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    return binary


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("render") / "results"
    shutil.copytree(SAMPLES, results)
    vendor = results.parent / "vendor.yaml"
    vendor.write_text(
        "implementation: Example CNI\nversion: '1.18.0'\ncontact: [conformance@example.com]\n"
        "url: https://example.com/cni\nnotes: sample cells from tests/unit/data/results\n"
    )
    assert main([str(results), "--vendor-info", str(vendor)]) == 0
    return results / "report.html"


@pytest.fixture(scope="module")
def dom(chromium: str, report: Path, tmp_path_factory: pytest.TempPathFactory) -> _Dom:
    profile = tmp_path_factory.mktemp("chromium-dom")
    proc = _run_chromium(chromium, profile, "--dump-dom", report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<table" in proc.stdout, f"no DOM dumped; stderr:\n{proc.stderr[-2000:]}"
    parsed = _Dom()
    parsed.feed(proc.stdout)
    return parsed


def test_dom_has_the_matrix_with_every_cell(dom: _Dom) -> None:
    assert dom.find("table", id="matrix")
    headers = [a["data-cell"] for a in dom.find("th") if a.get("data-cell")]
    assert headers == list(CELLS)
    for cell in ("iptables-kindnet", "nftables-kindnet", "nftables-flannel"):
        got = [a["data-family"] for a in dom.find("td", data_cell=cell) if a.get("data-family")]
        assert got == list(FAMILIES), cell


def test_dom_shows_unsupported_and_error_cells_not_green(dom: _Dom) -> None:
    for cell, status in (("ipvs-kindnet", "unsupported"), ("iptables-cilium", "error")):
        tds = dom.find("td", data_cell=cell)
        assert any(a.get("data-verdict") == status for a in tds)
        assert not any("v-passed" in a.get("class", "") for a in tds)
        (section,) = dom.find("section", data_cell=cell)
        assert section["data-status"] == status


def test_dom_has_the_charts(dom: _Dom) -> None:
    svgs = dom.find("svg")
    assert len(svgs) == 4  # 1 across cells (a group per change kind) + 1 per completed cell
    assert all(a.get("role") == "img" for a in svgs)
    assert len(dom.find("circle")) > 100  # every sample is a dot
    marks = [a for a in dom.find("line") if "mark-p90" in a.get("class", "")]
    assert len(marks) == 2 * 3 + 2 * 3  # p90 per series: comparison rows + per-cell rows


def test_dom_has_the_drill_down(dom: _Dom) -> None:
    failed = [a for a in dom.find("details") if a.get("data-outcome") == "failed"]
    assert len(failed) == 2
    assert all("open" in a for a in failed)
    assert len(dom.find("a", **{"class": "diag"})) == 2
    assert dom.find("section", id="vendor")


def test_screenshot_renders_the_page(
    chromium: str, report: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out_dir = _artifacts_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "report.png"
    shot.unlink(missing_ok=True)
    profile = tmp_path_factory.mktemp("chromium-shot")
    proc = _run_chromium(
        chromium,
        profile,
        f"--screenshot={shot}",
        f"--window-size={WINDOW}",
        "--hide-scrollbars",
        report.as_uri(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == tuple(int(v) for v in WINDOW.split(","))
    # a blank page compresses to a few kB; the matrix, colours and charts do not
    assert len(data) > 50_000
    shutil.copy2(report, out_dir / "report.html")
    print(f"\nscreenshot: {shot}\nreport:     {out_dir / 'report.html'}")


def test_report_needs_nothing_from_outside(report: Path) -> None:
    page = report.read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    outside = set(re.findall(r'(?:src|href)="(https?:[^"]*)"', page))
    assert outside == {"https://example.com/cni"}  # the vendor's own link only
