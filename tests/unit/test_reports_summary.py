"""summary.json: schema, checksums, and --verify catching a tampered results file."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reports.cli import main
from reports.load import load_cells
from reports.summary import aggregate_digest, build_summary, digest_lines, verify
from reports.summary import schema as schema_with_families
from reports.vendor import VendorInfo

jsonschema = pytest.importorskip("jsonschema")

SAMPLES = Path(__file__).parent / "data" / "results"
GENERATED = "2025-11-22T05:00:00Z"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    dest = tmp_path / "results"
    shutil.copytree(SAMPLES, dest)
    return dest


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    doc: dict[str, Any] = schema_with_families()  # the file, with the registry's families required
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


def _validate(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)


def _summary(vendor: VendorInfo | None = None) -> dict[str, Any]:
    return build_summary(load_cells(SAMPLES), generated=GENERATED, vendor=vendor)


def test_summary_of_samples_validates(schema: dict[str, Any]) -> None:
    doc = _summary()
    _validate(doc, schema)
    assert doc["schema_version"] == 1
    assert doc["suite_version"] == "0.1.0"
    assert doc["vendor"] is None
    assert [c["name"] for c in doc["cells"]] == [
        "iptables-kindnet",
        "iptables-cilium",
        "nftables-kindnet",
        "nftables-flannel",
        "ipvs-kindnet",
    ]


def test_summary_with_vendor_validates(schema: dict[str, Any]) -> None:
    vendor = VendorInfo("Example CNI", "1.2.3", ("a@example.com",), "https://example.com", None)
    doc = _summary(vendor)
    _validate(doc, schema)
    assert doc["vendor"]["implementation"] == "Example CNI"


def test_cell_entries_carry_counts_profile_and_measurements() -> None:
    cells = {c["name"]: c for c in _summary()["cells"]}
    nft = cells["nftables-kindnet"]
    assert nft["profile"] == "none"
    assert nft["verdict"] == "failed"
    assert nft["families"]["nodeport"] == {
        "passed": 2,
        "failed": 1,
        "skipped": 0,
        "total": 3,
        "verdict": "failed",
        "core_verdict": "failed",
        "extended_verdict": "not-run",
    }
    add = nft["measurements"]["endpoint_add_s"]
    assert add["count"] == 20
    assert add["unit"] == "s"
    assert add["p50"] <= add["p90"] <= add["max"]
    assert cells["ipvs-kindnet"]["status"] == "unsupported"
    assert "ip_vs" in cells["ipvs-kindnet"]["reason"]
    assert cells["ipvs-kindnet"]["families"]["dns"]["verdict"] == "unsupported"
    assert cells["iptables-cilium"]["verdict"] == "error"


def test_schema_rejects_what_it_should(schema: dict[str, Any]) -> None:
    good = _summary()
    for mutate in (
        lambda d: d.update(schema_version=2),
        lambda d: d.update(results_sha256="abc"),
        lambda d: d["cells"][0].update(profile="gold"),
        lambda d: d["cells"][0]["families"]["dns"].update(verdict="green"),
        lambda d: d["cells"][0].pop("results_sha256"),
        lambda d: d["cells"][0]["families"].pop("etp"),
        lambda d: d.update(generated="yesterday"),
        lambda d: d.update(extra=1),
        lambda d: d.update(vendor={"implementation": "x"}),
    ):
        doc = copy.deepcopy(good)
        mutate(doc)
        with pytest.raises(jsonschema.ValidationError):
            _validate(doc, schema)


def test_digests_are_the_files_bytes_and_sha256sum_compatible() -> None:
    doc = _summary()
    for cell in doc["cells"]:
        raw = (SAMPLES / cell["name"] / "results.json").read_bytes()
        assert cell["results_sha256"] == hashlib.sha256(raw).hexdigest()
    digests = {c["name"]: c["results_sha256"] for c in doc["cells"]}
    assert doc["results_sha256"] == aggregate_digest(digests)
    listing = digest_lines(digests)
    assert listing.splitlines()[0].endswith("  iptables-cilium/results.json")
    sha256sum = shutil.which("sha256sum")
    if sha256sum:  # the documented shell recipe gives the same listing
        out = subprocess.run(
            "LC_ALL=C sha256sum */results.json | LC_ALL=C sort -k2",
            shell=True,
            cwd=SAMPLES,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out == listing


def test_aggregate_ignores_cells_without_a_file_but_not_order() -> None:
    a = {"x": "1" * 64, "y": "2" * 64}
    assert aggregate_digest(a) == aggregate_digest(dict(reversed(list(a.items()))))
    assert aggregate_digest({**a, "z": None}) == aggregate_digest(a)
    assert aggregate_digest(a) != aggregate_digest({"x": "2" * 64, "y": "1" * 64})


def _write_summary(results: Path) -> Path:
    assert main([str(results)]) == 0
    return results / "summary.json"


def test_verify_passes_on_untouched_results(results: Path) -> None:
    summary = _write_summary(results)
    outcome = verify(results, summary)
    assert outcome.ok, outcome.problems
    assert outcome.checked == 5


def test_tampering_with_a_results_file_is_detected(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = _write_summary(results)
    path = results / "nftables-kindnet" / "results.json"
    doc = json.loads(path.read_text())
    failed = next(t for t in doc["tests"] if t["outcome"] == "failed")
    failed["outcome"], failed["message"] = "passed", ""
    path.write_text(json.dumps(doc, indent=2) + "\n")
    outcome = verify(results, summary)
    assert not outcome.ok
    assert len(outcome.problems) == 1
    assert outcome.problems[0].startswith("nftables-kindnet: ")
    assert "was modified" in outcome.problems[0]
    capsys.readouterr()
    assert main([str(results), "--verify", str(summary)]) == 1
    err = capsys.readouterr().err
    assert "nftables-kindnet" in err
    assert "was modified" in err


def test_a_single_changed_byte_is_detected(results: Path) -> None:
    summary = _write_summary(results)
    path = results / "iptables-kindnet" / "results.json"
    path.write_bytes(path.read_bytes().replace(b'"duration_s": 1303.2', b'"duration_s": 1303.3', 1))
    problems = verify(results, summary).problems
    assert [p.split(":")[0] for p in problems] == ["iptables-kindnet"]


def test_removed_and_added_cells_are_detected(results: Path) -> None:
    summary = _write_summary(results)
    (results / "ipvs-kindnet" / "results.json").unlink()
    shutil.copytree(results / "iptables-kindnet", results / "iptables-flannel")
    problems = verify(results, summary).problems
    assert any(p.startswith("ipvs-kindnet: ") and "missing" in p for p in problems)
    assert any(p.startswith("iptables-flannel: ") and "not in" in p for p in problems)


def test_an_edited_summary_is_detected(results: Path) -> None:
    summary = _write_summary(results)
    doc = json.loads(summary.read_text())
    doc["cells"][0]["results_sha256"] = "0" * 64
    summary.write_text(json.dumps(doc))
    problems = verify(results, summary).problems
    assert any("edited" in p for p in problems)


def test_verify_of_a_bad_summary_file_is_exit_2(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = results / "bad.json"
    bad.write_text("{")
    assert main([str(results), "--verify", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert str(bad) in err
    assert main([str(results), "--verify", str(results / "absent.json")]) == 2
