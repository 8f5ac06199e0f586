"""results.json: percentiles, the JSON schema, and measurement recording."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.errors import SvcconformError
from fixtures.results import (
    SCHEMA_PATH,
    ResultsPlugin,
    percentile,
    suite_version,
    summarize,
    validate,
)


def valid_document() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "cell": {"name": "iptables-kindnet", "proxy_mode": "iptables", "cni": "kindnet", "provider": "kind",
                 "kubernetes_version": "v1.34.4", "nodes": 3, "kernel": "6.18.0", "suite_version": "0.1.0",
                 "images": {"node": "svcconform/kind-node:v1.34.4", "airgapped": True}},
        "status": "completed",
        "reason": "",
        "started": "2026-11-22T05:00:00+00:00",
        "finished": "2026-11-22T05:10:00+00:00",
        "duration_s": 600.0,
        "timings": {"cluster_create_s": 95.2, "suite_s": 480.1},
        "hypothesis_seed": None,
        "tests": [{"id": "suite/test_dns.py::test_a", "family": "dns", "outcome": "passed", "duration_s": 1.5,
                   "message": "", "diagnostics": None,
                   "measurements": {"endpoint_add": {"unit": "s", "samples": [1.0, 2.0], "p50": 1.5,
                                                     "p90": 1.9, "max": 2.0}}}],
    }


def test_percentiles_interpolate_like_numpy() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0], 0.9) == 4.0
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10, 1, 5], 0.5) == 5
    assert percentile(range(1, 11), 0.9) == pytest.approx(9.1)
    with pytest.raises(ValueError, match="within"):
        percentile([1], 1.5)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50))
def test_summary_percentiles_are_ordered_and_bounded(samples: list[float]) -> None:
    summary = summarize(samples, "s")
    assert min(samples) <= summary["p50"] <= summary["p90"] <= summary["max"] == max(samples)
    assert summary["samples"] == samples


def test_non_finite_samples_are_refused() -> None:
    with pytest.raises(SvcconformError, match="finite"):
        summarize([1.0, float("nan")], "s")


def test_the_documented_example_validates_and_the_schema_is_strict() -> None:
    assert validate(valid_document()) == []
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["properties"]["schema_version"]["enum"] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("status",), "green", "status"),
        (("schema_version",), 6, "schema_version"),
        (("cell", "detection"), {"zones": {"value": "", "evidence": "", "source": "guessed"}},
         "cell/detection/zones/source"),
        (("performance",), {"verdict": "fast"}, "performance"),
        (("tests", 0, "measurements", "endpoint_add", "by_node"), {"n1": ["x"]},
         "tests/0/measurements/endpoint_add/by_node/n1/0"),
        (("cell", "detection"), {"proxy_mode": {"value": "iptables"}}, "cell/detection/proxy_mode"),
        (("cell", "vantages"), {"this_machine": {"reachable": "yes", "reason": ""}}, "cell/vantages/this_machine/reachable"),
        (("cell", "proxy_mode"), "userspace", "cell/proxy_mode"),
        (("cell", "flavour"), "x", "cell"),
        (("tests", 0, "outcome"), "xpassed", "tests/0/outcome"),
        (("tests", 0, "family"), "latency", "tests/0/family"),
        (("tests", 0, "measurements", "endpoint_add", "unit"), "", "tests/0/measurements/endpoint_add/unit"),
        (("started",), "yesterday", "started"),
        (("timings", "cluster_create_s"), -1, "timings/cluster_create_s"),
    ],
)
def test_schema_rejects_bad_documents(path: tuple[Any, ...], value: Any, complaint: str) -> None:
    doc = copy.deepcopy(valid_document())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = validate(doc)
    assert errors
    assert any(e.startswith(complaint) for e in errors), errors


def test_plugin_writes_a_valid_document_atomically(tmp_path: Path) -> None:
    plugin = ResultsPlugin(
        cell_dir=tmp_path / "ipvs-kindnet",
        cell={"name": "ipvs-kindnet", "proxy_mode": "ipvs", "cni": "kindnet", "provider": "kind",
              "kubernetes_version": None, "nodes": 3, "kernel": "6.18.0"},
        suite_root=tmp_path / "suite",
    )
    plugin.mark_unsupported("unsupported environment: kernel lacks ip_vs (CONFIG_IP_VS not set)")
    plugin.mark_error("later errors do not hide unsupported")
    path = plugin.write()
    doc = json.loads(path.read_text())
    assert doc["status"] == "unsupported"
    assert doc["reason"].startswith("unsupported environment: kernel lacks ip_vs")
    assert doc["cell"]["suite_version"] == suite_version() != "unknown"
    assert validate(doc) == []
    assert plugin.schema_errors == []
    assert not list((tmp_path / "ipvs-kindnet").glob("*.tmp"))
    with pytest.raises(KeyError):
        plugin.set_timing("coffee_s", 1.0)
    with pytest.raises(KeyError):
        plugin.update_cell(colour="blue")


def test_version_2_keys_validate() -> None:
    doc = copy.deepcopy(valid_document())
    doc["schema_version"] = 2
    doc["cell"]["detection"] = {
        "proxy_mode": {"value": "nftables", "evidence": "kube-proxy /proxyMode: nftables on 3/3 nodes"},
        "cni": {"value": "kindnet", "evidence": "DaemonSet kube-system/kindnet"},
    }
    doc["cell"]["vantages"] = {"this_machine": {"reachable": False, "reason": "no route"}}
    doc["cell"]["images"]["suite"] = {"client": {"image": "r/svcconform/client:1", "image_ids": ["r/x@sha256:00"]}}
    assert validate(doc) == []
