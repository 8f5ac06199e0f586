"""reports.collect: merging the nightly jobs' artifacts into one results dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reports.cli import main as report_main
from reports.collect import collect, main
from reports.load import load_cells

SAMPLES = Path(__file__).parent / "data" / "results"


def _artifact(artifacts: Path, variant: str, cell: str | None, job: dict[str, str] | None = None) -> Path:
    """What download-artifact leaves for one job: results-<variant>/<cell>/..., job.json."""
    root = artifacts / f"results-{variant}"
    root.mkdir(parents=True)
    if cell is not None:
        shutil.copytree(SAMPLES / cell, root / cell)
        (root / "report.html").write_text("the cell's own report")  # not copied
    if job is not None:
        (root / "job.json").write_text(json.dumps(job))
    return root


def test_variants_of_one_tox_env_land_side_by_side(tmp_path: Path) -> None:
    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    _artifact(artifacts, "iptables-kindnet", "iptables-kindnet")
    _artifact(artifacts, "iptables-kindnet-ipv6", "iptables-kindnet")
    _artifact(artifacts, "ipvs-kindnet", "ipvs-kindnet")
    lines = collect(artifacts, results)
    assert len(lines) == 3
    assert sorted(p.name for p in results.iterdir()) == [
        "iptables-kindnet",
        "iptables-kindnet-ipv6",
        "ipvs-kindnet",
    ]
    same = (results / "iptables-kindnet-ipv6" / "results.json").read_bytes()
    assert same == (SAMPLES / "iptables-kindnet" / "results.json").read_bytes()  # digests survive
    cells = {c.key: c for c in load_cells(results)}
    assert cells["iptables-kindnet-ipv6"].info.name == "iptables-kindnet"


def test_a_job_without_results_becomes_an_error_cell(tmp_path: Path) -> None:
    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    _artifact(artifacts, "iptables-kindnet", "iptables-kindnet")
    job = {
        "cell": "cilium-kpr",
        "tox_env": "cilium-kpr",
        "proxy_mode": "none",
        "cni": "cilium",
        "outcome": "failure",
        "run_url": "https://ci.example/runs/1",
    }
    _artifact(artifacts, "cilium-kpr", None, job)
    collect(artifacts, results)
    cells = {c.key: c for c in load_cells(results)}
    kpr = cells["cilium-kpr"]
    assert kpr.status == "error"
    assert not kpr.load_error  # a well-formed results.json saying what happened
    assert (kpr.info.proxy_mode, kpr.info.cni) == ("none", "cilium")
    assert "tox -e cilium-kpr" in kpr.reason
    assert "outcome: failure" in kpr.reason
    assert "https://ci.example/runs/1" in kpr.reason
    assert report_main([str(results)]) == 0


def test_the_synthetic_cell_matches_the_results_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = Path(__file__).parents[2] / "fixtures" / "results.schema.json"
    if not schema_path.exists():
        pytest.skip(f"{schema_path} not present")
    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    _artifact(artifacts, "nftables-calico", None, {"tox_env": "nftables-calico"})
    collect(artifacts, results)
    doc = json.loads((results / "nftables-calico" / "results.json").read_text())
    from fixtures.results import schema as results_schema

    schema = results_schema()
    # The writer's schema insists on values only a real run knows; everything else must fit.
    doc["cell"]["nodes"] = 1
    doc["cell"]["suite_version"] = "0"
    jsonschema.validate(doc, schema)


def test_bad_artifact_layouts_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    assert main([str(artifacts), str(results)]) == 2
    assert "does not exist" in capsys.readouterr().err
    artifacts.mkdir()
    assert main([str(artifacts), str(results)]) == 2
    assert "no results-<cell> artifact" in capsys.readouterr().err
    root = _artifact(artifacts, "iptables-kindnet", "iptables-kindnet")
    shutil.copytree(SAMPLES / "ipvs-kindnet", root / "ipvs-kindnet")
    assert main([str(artifacts), str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "2 cells in one job's artifact" in err


def test_two_artifacts_for_one_cell_are_refused(tmp_path: Path) -> None:
    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    _artifact(artifacts, "iptables-kindnet", "iptables-kindnet")
    results.mkdir()
    (results / "iptables-kindnet").mkdir()
    assert main([str(artifacts), str(results)]) == 2
