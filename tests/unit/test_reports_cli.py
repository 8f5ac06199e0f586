"""python -m reports: outputs, exit codes, --strict, --out, --vendor-info and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reports.cli import OUTPUTS, generated_at, main
from reports.errors import ReportError

SAMPLES = Path(__file__).parent / "data" / "results"
REPO = Path(__file__).parents[2]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    dest = tmp_path / "results"
    shutil.copytree(SAMPLES, dest)
    return dest


@pytest.fixture
def all_passing(tmp_path: Path) -> Path:
    dest = tmp_path / "passing"
    dest.mkdir()
    shutil.copytree(SAMPLES / "iptables-kindnet", dest / "iptables-kindnet")
    shutil.copytree(SAMPLES / "ipvs-kindnet", dest / "ipvs-kindnet")
    return dest


def test_writes_every_output_into_the_results_dir(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(results)]) == 0  # cells failed, but the report was written
    for name in OUTPUTS:
        assert (results / name).stat().st_size > 0
    ET.parse(results / "junit.xml")
    assert json.loads((results / "summary.json").read_text())["schema_version"] == 1
    out = capsys.readouterr().out
    assert "nftables-kindnet=failed" in out
    assert "ipvs-kindnet=unsupported" in out


def test_out_dir_leaves_the_results_alone(results: Path, tmp_path: Path) -> None:
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    out = tmp_path / "a" / "b"
    assert main([str(results), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before


def test_rerun_ignores_its_own_outputs(results: Path) -> None:
    assert main([str(results)]) == 0
    first = json.loads((results / "summary.json").read_text())
    assert main([str(results)]) == 0
    second = json.loads((results / "summary.json").read_text())
    assert [c["name"] for c in first["cells"]] == [c["name"] for c in second["cells"]]
    assert first["results_sha256"] == second["results_sha256"]


def test_strict_fails_on_failed_or_error_cells(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(results), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "nftables-kindnet=failed" in out.splitlines()[-1]
    assert "iptables-cilium=error" in out.splitlines()[-1]
    assert (results / "report.html").exists()  # written all the same


def test_strict_does_not_fail_on_unsupported(all_passing: Path) -> None:
    assert main([str(all_passing), "--strict"]) == 0


def test_strict_fails_on_an_all_skipped_cell(all_passing: Path) -> None:
    path = all_passing / "iptables-kindnet" / "results.json"
    doc = json.loads(path.read_text())
    for t in doc["tests"]:
        t["outcome"] = "skipped"
    path.write_text(json.dumps(doc))
    assert main([str(all_passing), "--strict"]) == 1
    assert main([str(all_passing)]) == 0


def test_a_bad_cell_is_reported_not_fatal(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = results / "nftables-flannel" / "results.json"
    bad.write_text('{"schema_version": 1, "cell": {}}')
    assert main([str(results)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warning = [line for line in err if "nftables-flannel" in line]
    assert len(warning) == 1
    assert str(bad) in warning[0]
    assert "missing required key" in warning[0]
    summary = json.loads((results / "summary.json").read_text())
    cells = {c["name"]: c for c in summary["cells"]}
    assert len(cells) == 5
    assert cells["nftables-flannel"]["status"] == "error"
    assert cells["nftables-flannel"]["results_sha256"] is not None
    assert cells["iptables-kindnet"]["verdict"] == "passed"
    assert "missing required key" in (results / "report.html").read_text()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_no_cells_is_exit_2_with_one_line(
    tmp_path: Path, make: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "results"
    if make == "empty":
        target.mkdir()
    assert main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m reports: error: ")
    assert str(target) in err


def test_bad_vendor_file_is_exit_2(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vendor = results.parent / "vendor.yaml"
    vendor.write_text("implementation: x\nversion: '1'\ncontact: c\nurl: not-a-url\n")
    assert main([str(results), "--vendor-info", str(vendor)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(vendor) in err
    assert "url" in err
    assert not (results / "report.html").exists()


def test_vendor_info_reaches_every_output(results: Path) -> None:
    pytest.importorskip("yaml")
    vendor = results.parent / "vendor.yaml"
    vendor.write_text(
        "implementation: Example CNI\nversion: '1.18.0'\ncontact: [a@example.com]\n"
        "url: https://example.com/cni\nnotes: kube-proxy replacement\n"
    )
    assert main([str(results), "--vendor-info", str(vendor)]) == 0
    summary = json.loads((results / "summary.json").read_text())
    assert summary["vendor"] == {
        "implementation": "Example CNI",
        "version": "1.18.0",
        "contact": ["a@example.com"],
        "url": "https://example.com/cni",
        "notes": "kube-proxy replacement",
    }
    assert "Example CNI" in (results / "report.html").read_text()
    assert "Example CNI 1.18.0" in (results / "summary.md").read_text()


def test_source_date_epoch_makes_reports_reproducible(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1763787600")
    assert generated_at() == "2025-11-22T05:00:00Z"
    assert main([str(results), "--out", str(tmp_path / "one")]) == 0
    assert main([str(results), "--out", str(tmp_path / "two")]) == 0
    for name in OUTPUTS:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(ReportError, match="SOURCE_DATE_EPOCH"):
        generated_at()


def test_python_dash_m_reports(results: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "reports", str(results), "--strict"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "wrote" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "reports", str(results), "--verify", str(results / "summary.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verified 5 cell(s)" in proc.stdout
