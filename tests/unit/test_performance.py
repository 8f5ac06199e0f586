"""The performance verdict: budgets from minSyncPeriod, and the baseline comparison."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fixtures import performance as perf
from fixtures.errors import SvcconformError
from fixtures.options import budgeting_from_options
from fixtures.providers.existing import configured_min_sync_period
from fixtures.results import Budgeting, summarize, validate
from fixtures.spec import InvalidSpec


def test_go_durations() -> None:
    assert perf.parse_duration("1s") == 1.0
    assert perf.parse_duration("500ms") == 0.5
    assert perf.parse_duration("1m30s") == 90.0
    assert perf.parse_duration("0s") == 0.0
    assert perf.parse_duration("0") == 0.0
    assert perf.parse_duration("10") is None
    assert perf.parse_duration("1 s") is None
    assert perf.parse_duration("") is None


def test_default_budgets_follow_min_sync_period() -> None:
    one = perf.budgets(1.0)
    ten = perf.budgets(10.0)
    created = one["service_created_to_served"]
    assert created.limit_s == pytest.approx(1.5 + 2 * 1.0)
    assert ten["service_created_to_served"].limit_s == pytest.approx(1.5 + 2 * 10.0)
    assert "minSyncPeriod 1 s" in created.basis
    assert one["kubeproxy_network_programming_duration_seconds"].statistic == "p50 bucket"
    over = perf.budgets(1.0, {"service_created_to_served": 0.2, "custom": 4.0})
    assert over["service_created_to_served"].limit_s == 0.2
    assert over["service_created_to_served"].basis == "--budget service_created_to_served=0.2"
    assert over["custom"].statistic == "p90"


def measured(name: str, samples: list[float], **extra: Any) -> dict[str, Any]:
    return {"id": f"suite/test_x.py::test_{name}", "measurements": {name: {**summarize(samples, "s"), **extra}}}


HEALTHY = [
    measured("service_created_to_served", [0.25, 0.26, 0.28, 0.3, 0.4, 0.43, 0.5, 0.6, 1.07]),
    measured("pod_deleted_to_no_traffic", [0.01, 0.03, 0.04, 0.05, 0.1, 0.17]),
    measured("kubeproxy_network_programming_duration_seconds", [1.3, 1.4], histogram={
        "metric": "kubeproxy_network_programming_duration_seconds", "bounds": [0.25, 0.5, 1, 2, 3],
        "by_node": {"a": {"count": 53, "p50": [1, 2], "p99": [2, 3]},
                    "b": {"count": 50, "p50": [1, 2], "p99": [2, 3]}}}),
    measured("unbudgeted_thing", [9.0]),
]


def test_a_healthy_run_is_within_budget() -> None:
    result = perf.judge(HEALTHY, perf.budgets(1.0), min_sync_period_s=1.0, min_sync_evidence="x",
                        basis="reference")
    assert result["verdict"] == perf.WITHIN
    names = [r["measurement"] for r in result["budgets"]]
    assert names == ["kubeproxy_network_programming_duration_seconds", "pod_deleted_to_no_traffic",
                     "service_created_to_served"]  # only budgeted measurements that ran
    prog = result["budgets"][0]
    assert prog["value_s"] == 2  # the worst node's p50 bucket upper bound
    assert perf.summary_line(result).startswith("within budget: 3 measurements")


def test_a_slow_run_is_over_budget_and_names_each_measurement() -> None:
    slow = [
        measured("service_created_to_served", [8.1, 9.0, 9.5, 9.9, 10.1, 10.2, 10.4, 11.0, 12.0]),
        measured("pod_deleted_to_no_traffic", [0.01, 0.03, 0.04]),
        measured("kubeproxy_network_programming_duration_seconds", [9.5], histogram={
            "metric": "m", "bounds": [1, 2], "by_node": {"a": {"count": 3, "p50": [2, None], "p99": None}}}),
    ]
    result = perf.judge(slow, perf.budgets(1.0), min_sync_period_s=10.0, min_sync_evidence="cm",
                        basis="reference")
    assert result["verdict"] == perf.OVER
    assert validate_performance(result) == []
    over = perf.over_budget(result)
    assert over == [
        "kubeproxy_network_programming_duration_seconds p50 bucket past the last bucket > budget 3 s",
        "service_created_to_served p90 11.20 s > budget 3.5 s",
    ]
    line = perf.summary_line(result)
    assert line.startswith("over budget: kubeproxy")
    assert line.endswith("(kube-proxy minSyncPeriod 10 s)")


def test_few_samples_are_judged_by_their_max() -> None:
    one = [measured("reroute_after_slice_edit", [2.0, 6.0])]
    result = perf.judge(one, perf.budgets(1.0), min_sync_period_s=1.0, min_sync_evidence="", basis="reference")
    assert result["budgets"][0]["value_s"] == 6.0
    assert result["verdict"] == perf.OVER


def test_nothing_budgeted_is_not_measured() -> None:
    result = perf.judge([measured("x", [1.0])], perf.budgets(1.0), min_sync_period_s=None,
                        min_sync_evidence="", basis="reference")
    assert result["verdict"] == perf.NOT_MEASURED
    assert perf.summary_line(result) == "not measured: no budgeted measurement ran"


def validate_performance(performance: dict[str, Any]) -> list[str]:
    from tests.unit.test_results import valid_document

    doc = valid_document()
    doc["schema_version"] = 3
    doc["performance"] = performance
    return validate(doc)


def test_baseline_flags_regressions_beyond_factor_and_noise() -> None:
    before = {"cell": {"name": "iptables-kindnet"}, "finished": "2026-12-06T05:00:00+00:00",
              "run": {"suite_commit": "abc"}, "tests": [
                  measured("service_created_to_served", [0.2, 0.25, 0.3, 0.5, 1.0]),
                  measured("pod_deleted_to_no_traffic", [0.01, 0.02, 0.03]),
                  measured("readiness_failed_to_no_traffic", [1.0, 1.2, 1.4]),
                  measured("gone_one", [1.0])]}
    after = [
        measured("service_created_to_served", [9.0, 9.5, 10.0, 10.5, 11.0]),
        measured("pod_deleted_to_no_traffic", [0.03, 0.06, 0.09]),  # x3, but under the noise floor
        measured("readiness_failed_to_no_traffic", [1.1, 1.3, 1.5]),
        measured("new_one", [1.0]),
    ]
    result = perf.compare(after, before, factor=1.5, source="old/results.json")
    verdicts = {r["measurement"]: r["verdict"] for r in result["changes"]}
    assert verdicts == {"service_created_to_served": perf.REGRESSION, "pod_deleted_to_no_traffic": perf.UNCHANGED,
                        "readiness_failed_to_no_traffic": perf.UNCHANGED, "gone_one": perf.GONE,
                        "new_one": perf.NEW}
    assert result["regressions"] == 1
    assert result["suite_commit"] == "abc"
    assert perf.regression_lines(result) == [
        "service_created_to_served: p50 0.30 → 10.00 s (x33.3), p90 0.80 → 10.80 s (x13.5)"]
    improved = perf.compare(before["tests"], {"tests": after}, factor=1.5, source="new")
    assert {r["measurement"]: r["verdict"] for r in improved["changes"]}["service_created_to_served"] == perf.IMPROVED
    with pytest.raises(SvcconformError, match="more than 1"):
        perf.compare(after, before, factor=1.0, source="x")
    doc_perf = perf.judge(after, perf.budgets(1.0), min_sync_period_s=1.0, min_sync_evidence="", basis="reference")
    doc_perf["baseline"] = result
    assert validate_performance(doc_perf) == []


def test_budget_option_errors_are_one_line() -> None:
    assert perf.parse_budget_option(["service_created_to_served=2.5", "x=1500ms"]) == {
        "service_created_to_served": 2.5, "x": 1.5}
    for bad in ("service_created_to_served", "=2", "x=-1", "x=fast", "x=nan"):
        with pytest.raises(SvcconformError) as err:
            perf.parse_budget_option([bad])
        assert "\n" not in str(err.value)
        assert "NAME=SECONDS" in str(err.value)


def options(**kw: Any) -> SimpleNamespace:
    base = {"svcc_budgets": [], "svcc_budget_basis": "reference", "svcc_baseline": None,
            "svcc_regression_factor": 1.5}
    return SimpleNamespace(**{**base, **kw})


def test_options_make_the_budgeting(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text('{"tests": []}')
    b = budgeting_from_options(options(svcc_baseline="old.json", svcc_budgets=["a=2"]), tmp_path)
    assert b.baseline == {"tests": []}
    assert b.baseline_source == "old.json"
    assert b.overrides == {"a": 2.0}
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "other.json").write_text('{"summary": 1}')
    for kw, option in (({"svcc_baseline": "missing.json"}, "--baseline"),
                       ({"svcc_baseline": "bad.json"}, "--baseline"),
                       ({"svcc_baseline": "other.json"}, "--baseline"),
                       ({"svcc_regression_factor": 0.9}, "--regression-factor"),
                       ({"svcc_budgets": ["nope"]}, "--budget")):
        with pytest.raises(InvalidSpec) as err:
            budgeting_from_options(options(**kw), tmp_path)
        assert str(err.value).startswith(option + ": ")
        assert "\n" not in str(err.value)


def test_budgeting_reads_the_detected_min_sync_period() -> None:
    slow = [measured("service_created_to_served", [8.0, 9.0, 10.0])]
    detection = {"min_sync_period": {"value": "10s", "evidence": "kube-proxy ConfigMap kube-proxy iptables."}}
    reference = Budgeting().judge(slow, detection)
    assert reference["verdict"] == perf.OVER
    assert reference["min_sync_period_s"] == 10.0
    configured = Budgeting(basis="configured").judge(slow, detection)
    assert configured["verdict"] == perf.WITHIN  # 1.5 + 2 x 10 s
    assert "minSyncPeriod 10 s" in configured["budgets"][0]["basis"]
    unknown = Budgeting(basis="configured").judge(slow, {})
    assert unknown["min_sync_period_s"] is None
    assert unknown["min_sync_period_evidence"] == "not detected"


def kube_proxy(*args: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"command": ["kube-proxy", *args]}]}}}}


def configmap(text: str, name: str = "kube-proxy", key: str = "config.conf") -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {key: text}}


def test_min_sync_period_detection() -> None:
    conf = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
    assert configured_min_sync_period("iptables", kube_proxy(), [configmap(conf + "iptables:\n  minSyncPeriod: 10s\n")]) \
        == (10.0, "kube-proxy ConfigMap kube-proxy iptables.minSyncPeriod: 10s")
    assert configured_min_sync_period("nftables", kube_proxy("--nftables-min-sync-period=2s"), [])[0] == 2.0
    assert configured_min_sync_period("nftables", kube_proxy(), [configmap(conf + "minSyncPeriod: 3s\n",
                                                                           "kube-proxy-config", "config")])[0] == 3.0
    assert configured_min_sync_period("iptables", kube_proxy(), [configmap(conf)]) == (
        1.0, "not configured: kube-proxy's default for iptables")
    assert configured_min_sync_period("ipvs", kube_proxy(), [])[0] == 0.0
    # kubeadm writes zero values out; kube-proxy defaults them to 1 s for iptables/nftables
    assert configured_min_sync_period("nftables", kube_proxy(), [configmap(conf + "nftables:\n  minSyncPeriod: 0s\n")]) \
        == (1.0, "kube-proxy ConfigMap kube-proxy nftables.minSyncPeriod: 0s (0 means kube-proxy's default, 1 s)")
    assert configured_min_sync_period("ipvs", kube_proxy(), [configmap(conf + "ipvs:\n  minSyncPeriod: 0s\n")])[0] == 0.0
    assert configured_min_sync_period("none", None, []) == (None, "no kube-proxy: no minSyncPeriod")
    value, evidence = configured_min_sync_period("iptables", kube_proxy(), [configmap(conf + "iptables:\n  minSyncPeriod: soon\n")])
    assert value is None
    assert evidence.endswith("(unreadable)")


def test_schema_3_measurements_validate() -> None:
    from tests.unit.test_results import valid_document

    doc = valid_document()
    doc["schema_version"] = 3
    m = summarize([0.2, 0.3, 0.4], "s")
    m.update(kind="service created", by_node={"n1": [0.2, 0.3], "n2": [0.4]}, resolution=0.1,
             histogram={"metric": "kubeproxy_network_programming_duration_seconds", "bounds": [0.25, 0.5, 1.0],
                        "by_node": {"n1": {"count": 5, "sum": 6.0, "mean": 1.2, "p50": [0.5, 1.0],
                                           "p99": [1.0, None]}}})
    doc["tests"][0]["measurements"] = {"service_created_to_served": m}
    assert validate(doc) == []
    m["histogram"]["by_node"]["n1"]["p50"] = [1.0]
    assert validate(doc)


def test_two_healthy_runs_are_no_regression() -> None:
    """Measured on one cluster, 2026-12-06: the rate limiter moved these by up to 1.26 s."""
    before = {"tests": [measured("udp_same_socket_recovery_after_backend_replaced", [0.095]),
                        measured("service_deleted_to_rejected", [0.07, 0.09, 0.08, 0.26, 0.42, 0.15, 0.17, 0.16, 0.09])]}
    after = [measured("udp_same_socket_recovery_after_backend_replaced", [1.35]),
             measured("service_deleted_to_rejected", [0.1, 0.16, 0.12, 1.4, 0.2, 0.15, 0.3, 0.11, 0.16])]
    result = perf.compare(after, before, factor=1.5, source="healthy")
    assert result["regressions"] == 0
    assert result["floor_s"] == perf.REGRESSION_FLOOR_S == 1.5
