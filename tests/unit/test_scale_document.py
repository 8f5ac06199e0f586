"""scale.json against fixtures/scale.schema.json, as the runner writes it (atomically, after
every step, schema violations kept and printed rather than fatal)."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.scale import document as scale_document
from fixtures.scale.document import ScaleDocument, validate
from tests.unit import scalekit


def test_what_the_runner_writes_is_valid(tmp_path: Path) -> None:
    doc = scalekit.document(tmp_path)
    assert validate(doc) == []
    assert doc["schema_version"] == scale_document.SCHEMA_VERSION == 1
    assert doc["steps"][0]["network_programming"]["steady"]["bucket_bounds"][:2] == [0.25, 0.5]


def test_the_schema_rejects_what_a_reader_could_not_use(tmp_path: Path) -> None:
    doc = scalekit.document(tmp_path)
    bad = json.loads(json.dumps(doc))
    bad["status"] = "green"
    del bad["steps"][1]["one_more"]
    bad["steps"][0]["connect"]["first"]["pooled"]["p50"] = "fast"
    errors = validate(bad)
    assert any(e.startswith("status:") for e in errors)
    assert any(e.startswith("steps/1:") and "one_more" in e for e in errors)
    assert any(e.startswith("steps/0/connect/first") for e in errors)


def test_scale_json_is_written_atomically_with_its_schema_errors_kept(tmp_path: Path) -> None:
    doc = ScaleDocument(tmp_path / "nftables-kindnet" / "scale.json",
                        {"name": "nftables-kindnet", "proxy_mode": "nftables", "cni": "kindnet", "provider": "kind"},
                        scalekit.ScaleConfig().to_json())
    path = doc.write()
    assert path.is_file()
    assert not path.with_suffix(".json.tmp").exists()
    assert doc.schema_errors == []
    written = json.loads(path.read_text())
    assert written["status"] == "partial"  # until the run says otherwise
    assert written["steps"] == []
    doc.cell["name"] = "Not A Cell"
    doc.write()
    assert doc.schema_errors
    assert doc.schema_errors[0].startswith("cell/name")
