"""reports.load: finding cells and reading results.json v1; bad cells become error cells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reports.errors import ReportError
from reports.legacy_profiles import LEGACY_CORE_FAMILIES
from reports.load import discover, load_cell, load_cells, parse_results
from reports.model import FAMILIES

SAMPLES = Path(__file__).parent / "data" / "results"
SAMPLE_CELLS = ("iptables-kindnet", "iptables-cilium", "nftables-kindnet", "nftables-flannel", "ipvs-kindnet")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A writable copy of the sample results dir."""
    dest = tmp_path / "results"
    shutil.copytree(SAMPLES, dest)
    return dest


def _doc(cell: str = "iptables-kindnet") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / cell / "results.json").read_text())
    return doc


def test_samples_load_in_matrix_order() -> None:
    cells = load_cells(SAMPLES)
    assert [c.key for c in cells] == list(SAMPLE_CELLS)
    assert not any(c.load_error for c in cells)
    statuses = {c.key: c.status for c in cells}
    assert statuses == {
        "iptables-kindnet": "completed",
        "iptables-cilium": "error",
        "nftables-kindnet": "completed",
        "nftables-flannel": "completed",
        "ipvs-kindnet": "unsupported",
    }


def test_sample_cell_facts_and_tests_are_read() -> None:
    cell = load_cell(SAMPLES / "nftables-kindnet")
    assert cell.info.proxy_mode == "nftables"
    assert cell.info.cni == "kindnet"
    assert cell.info.kubernetes_version == "v1.34.4"
    assert cell.info.nodes == 3
    assert cell.info.airgapped is True
    assert dict(cell.timings)["cluster_create_s"] == pytest.approx(70.9)
    # the families of the suite when the (schema 1) samples were written, all in the registry
    assert {t.family for t in cell.tests} == {*LEGACY_CORE_FAMILIES, "convergence", "properties"}
    assert {t.family for t in cell.tests} <= set(FAMILIES)
    assert all(t.profile is None for t in cell.tests)  # recorded only since schema 3
    failed = [t for t in cell.tests if t.failed]
    assert len(failed) == 1
    assert failed[0].diagnostics == "diagnostics/test_nodeport_reachable_on_every_node_ip-udp"
    assert "observed:" in failed[0].message
    conv = [m for t in cell.tests for m in t.measurements]
    assert {m.name for m in conv} == {"endpoint_add_s", "endpoint_remove_s"}
    assert all(m.unit == "s" and len(m.samples) == 20 for m in conv)
    assert cell.sha256 is not None
    assert len(cell.sha256) == 64


def test_unsupported_cell_keeps_its_reason() -> None:
    cell = load_cell(SAMPLES / "ipvs-kindnet")
    assert cell.status == "unsupported"
    assert "ip_vs" in cell.reason
    assert cell.tests == ()


def test_samples_match_the_results_plugin_schema() -> None:
    """The hand-written samples follow the writer's own schema (fixtures/results.schema.json)."""
    jsonschema = pytest.importorskip("jsonschema")
    from fixtures.results import schema as results_schema

    schema = results_schema()  # the file with the registry's family enum filled in
    for cell in SAMPLE_CELLS:
        jsonschema.validate(_doc(cell), schema)


def test_missing_results_dir_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="results dir does not exist") as err:
        discover(tmp_path / "nope")
    assert "\n" not in str(err.value)
    assert str(tmp_path / "nope") in str(err.value)


def test_empty_results_dir_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "artifacts").mkdir()  # not a cell
    (tmp_path / "notes").mkdir()  # empty and not named like a cell
    with pytest.raises(ReportError, match="no cells found"):
        discover(tmp_path)


def test_a_file_is_not_a_results_dir(tmp_path: Path) -> None:
    f = tmp_path / "results"
    f.write_text("x")
    with pytest.raises(ReportError, match="not a directory"):
        discover(f)


def test_discovery_skips_artifacts_and_keeps_empty_cell_dirs(results: Path) -> None:
    (results / "artifacts").mkdir()
    (results / "artifacts" / "shot.png").write_bytes(b"png")
    (results / ".cache").mkdir()
    (results / "iptables-calico").mkdir()  # a job that died before writing anything
    names = [p.name for p in discover(results)]
    assert "artifacts" not in names
    assert ".cache" not in names
    assert "iptables-calico" in names
    cell = load_cell(results / "iptables-calico")
    assert cell.status == "error"
    assert cell.load_error
    assert "results.json: missing" in cell.reason
    assert (cell.info.proxy_mode, cell.info.cni) == ("iptables", "calico")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"{not json", "invalid JSON at line 1 column 2"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[]", "expected an object, got array"),
        (b'{"schema_version": 6}', "6 is not supported"),
    ],
)
def test_unreadable_content_becomes_an_error_cell(results: Path, content: bytes, expected: str) -> None:
    path = results / "nftables-kindnet" / "results.json"
    path.write_bytes(content)
    cells = {c.key: c for c in load_cells(results)}
    bad = cells["nftables-kindnet"]
    assert bad.status == "error"
    assert bad.load_error
    assert expected in bad.reason
    assert str(path) in bad.reason
    assert "\n" not in bad.reason
    # the other cells are untouched
    assert cells["iptables-kindnet"].status == "completed"
    assert len(cells) == len(SAMPLE_CELLS)


def _mutate(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set doc[a][b][0]... from a dotted path; ``value is KeyError`` deletes the key."""
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    target: Any = doc
    for k in keys[:-1]:
        target = target[k]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("cell", KeyError, "$: missing required key 'cell'"),
        ("cell.proxy_mode", KeyError, "cell: missing required key 'proxy_mode'"),
        ("cell.nodes", "three", "cell.nodes: expected an integer, got string"),
        ("cell.images.airgapped", "yes", "cell.images.airgapped: expected a boolean"),
        ("status", "green", "status: 'green' is not one of completed, unsupported, error"),
        ("tests", {}, "tests: expected an array, got object"),
        ("tests.3.outcome", "flaky", "tests[3].outcome: 'flaky' is not one of"),
        ("tests.0.duration_s", True, "tests[0].duration_s: expected a number, got boolean"),
        ("tests.0.id", "", "tests[0].id: must not be empty"),
        ("tests.20.measurements.endpoint_add_s.samples.2", "x", "samples[2]: expected a number"),
        ("tests.20.measurements.endpoint_add_s.unit", KeyError, "missing required key 'unit'"),
        ("timings.suite_s", "long", "timings.suite_s: expected a number"),
        ("hypothesis_seed", [1], "hypothesis_seed: expected an integer, a string or null"),
        ("tests.0.profile", "optional", "tests[0].profile: 'optional' is not one of core, extended"),
        ("tests.0.profile", 1, "tests[0].profile: expected a string, got integer"),
        ("tests.0.profile_reason", ["x"], "tests[0].profile_reason: expected a string, got array"),
        ("families", ["dns"], "families: expected an object, got array"),
        ("families", {"dns": "optional"}, "families.dns: 'optional' is not one of core, extended"),
    ],
)
def test_schema_violations_name_the_json_path(results: Path, path: str, value: Any, expected: str) -> None:
    doc = _doc()
    _mutate(doc, path, value)
    (results / "iptables-kindnet" / "results.json").write_text(json.dumps(doc))
    cell = load_cell(results / "iptables-kindnet")
    assert cell.status == "error"
    assert "not a valid results.json" in cell.reason
    assert expected in cell.reason


def test_optional_nulls_and_extra_cell_facts_are_accepted(tmp_path: Path) -> None:
    doc = _doc()
    doc["cell"]["kubernetes_version"] = None
    doc["cell"]["ip_family"] = "ipv6"
    doc["cell"]["cni_version"] = "v0.28.10"
    doc["timings"]["cluster_create_s"] = None
    doc["hypothesis_seed"] = "abc123"
    doc["tests"][0]["family"] = None
    doc["tests"][1]["diagnostics"] = None
    doc["tests"][20]["measurements"]["endpoint_add_s"]["p50"] = None
    cell = parse_results(doc, directory=tmp_path / "iptables-kindnet-ipv6")
    assert cell.key == "iptables-kindnet-ipv6"
    assert cell.info.name == "iptables-kindnet"
    assert cell.info.ip_family == "ipv6"
    assert dict(cell.info.extra)["cni_version"] == "v0.28.10"
    assert dict(cell.timings) == {"suite_s": pytest.approx(1203.6)}
    assert cell.hypothesis_seed == "abc123"
    assert cell.tests[0].family == "unclassified"
    assert cell.tests[20].measurements[0].p50 is None


def test_recorded_profiles_are_read_and_taken_as_is(tmp_path: Path) -> None:
    """Schema 3 records each test's declared profile: the report uses it, not the name rules,
    and a family this report's registry does not know still gets its own row."""
    from reports.analysis import families_of, family_stats, profile_of_test

    doc = _doc()
    doc["schema_version"] = 3
    for test in doc["tests"]:
        test["profile"], test["profile_reason"] = "core", f"{test['family']}: promised"
    doc["tests"][0].update(profile="extended", profile_reason="declared Extended")
    doc["tests"][1].update(family="not-a-family")
    doc["families"] = {"dns": "core", "not-a-family": "extended"}
    cell = parse_results(doc, directory=tmp_path / "iptables-kindnet")
    assert cell.families == {"dns": "core", "not-a-family": "extended"}
    assert parse_results(_doc(), directory=tmp_path / "iptables-kindnet").families is None
    assert (cell.tests[0].profile, cell.tests[0].profile_reason) == ("extended", "declared Extended")
    assert profile_of_test(cell.tests[0]) == "extended"
    # the convergence tests recorded Core: the legacy family rule no longer decides
    assert {profile_of_test(t) for t in cell.tests if t.family == "convergence"} == {"core"}
    families = families_of([cell])
    assert families == (*FAMILIES, "not-a-family")
    assert family_stats(cell, families)["not-a-family"].core.passed == 1


def test_non_completed_cell_without_reason_gets_one(tmp_path: Path) -> None:
    doc = _doc("ipvs-kindnet")
    doc["reason"] = " "
    cell = parse_results(doc, directory=tmp_path / "ipvs-kindnet")
    assert cell.reason == "status unsupported without a reason"


def test_version_2_detection_vantages_and_suite_images_read_as_facts(tmp_path: Path) -> None:
    doc = _doc()
    doc["schema_version"] = 2
    doc["cell"]["detection"] = {
        "proxy_mode": {"value": "ipvs", "evidence": "kube-proxy /proxyMode: ipvs on 3/3 nodes"},
        "cni": {"value": "cilium", "evidence": "DaemonSet kube-system/cilium"},
    }
    doc["cell"]["vantages"] = {"this_machine": {"reachable": False, "reason": "no route to 10.0.0.1"}}
    doc["cell"]["images"]["suite"] = {"client": {"image": "r.io/svcconform/client:1",
                                                 "image_ids": ["r.io/svcconform/client@sha256:ab"]}}
    facts = dict(parse_results(doc, directory=tmp_path / "ipvs-cilium").info.extra)
    assert facts["detected proxy mode"] == "ipvs (kube-proxy /proxyMode: ipvs on 3/3 nodes)"
    assert facts["detected CNI"] == "cilium (DaemonSet kube-system/cilium)"
    assert facts["this machine as a vantage"] == "not tried: no route to 10.0.0.1"
    assert facts["image client"] == "r.io/svcconform/client:1 (r.io/svcconform/client@sha256:ab)"
    assert "detection" not in facts
