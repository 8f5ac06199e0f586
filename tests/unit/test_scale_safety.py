"""The scale benchmark's refusals and its settings, offline: quotas, a throttled burst, the
Service CIDR, Cilium's LB map, --scale-max, and the pods it runs."""

from __future__ import annotations

import pytest

from fixtures.scale import safety
from fixtures.scale.cli import build_parser, config_from_args, main
from fixtures.scale.runner import ScaleConfig, ScaleRun, backend_deployment, client_pod
from fixtures.scale.safety import Write, burst_verdict


def quota(name: str, hard: dict[str, str], used: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "svcc-scaleload-r1-abcd"},
            "spec": {"hard": hard}, "status": {"hard": hard, "used": used or {}}}


def test_quantities_as_kubernetes_writes_them() -> None:
    assert safety.quantity("10") == 10
    assert safety.quantity("10k") == 10_000
    assert safety.quantity("1Ki") == 1024
    assert safety.quantity(5) == 5
    with pytest.raises(ValueError, match="quantity"):
        safety.quantity("lots")


def test_a_quota_on_services_below_the_ladder_refuses_naming_it() -> None:
    need = {"services": 10_030, "endpointslices": 10_030, "pods": 12}
    problems = safety.quota_problems([quota("cap", {"services": "5k"}, {"services": "3"})], need)
    assert problems == ["ResourceQuota svcc-scaleload-r1-abcd/cap allows services=5k (used 3), "
                        "the ladder needs 10,030"]
    assert safety.quota_problems([quota("slices", {"count/endpointslices.discovery.k8s.io": "100"})], need) \
        == ["ResourceQuota svcc-scaleload-r1-abcd/slices allows count/endpointslices.discovery.k8s.io=100 "
            "(used 0), the ladder needs 10,030"]


def test_a_quota_with_room_or_on_other_resources_is_fine() -> None:
    need = {"services": 1000, "endpointslices": 1000, "pods": 12}
    assert safety.quota_problems([quota("big", {"services": "20k", "count/services": "20000"})], need) == []
    assert safety.quota_problems([quota("cpu", {"requests.cpu": "4", "limits.memory": "8Gi"})], need) == []
    assert safety.quota_problems([], need) == []


def test_a_burst_throttled_by_api_priority_and_fairness_refuses_and_says_which() -> None:
    writes = [Write(201, 0.01, "uid-fs", "uid-pl")] * 40 + [Write(429, 0.002, "uid-fs", "uid-pl", "1")] * 20
    burst = burst_verdict(writes, 1.5, names={"uid-fs": "service-accounts", "uid-pl": "workload-low"})
    why = burst.problem()
    assert why is not None
    assert why.startswith("the API server throttled 20 of 60 writes of a short burst (HTTP 429 by flow schema "
                          "service-accounts, priority level workload-low")
    assert burst.to_json()["rate"] == 40.0


def test_a_burst_without_429_passes_and_records_its_rate() -> None:
    burst = burst_verdict([Write(201, 0.02)] * 60, 0.5)
    assert burst.problem() is None
    assert burst.rate == 120.0
    assert burst.to_json() == {"writes": 60, "seconds": 0.5, "rate": 120.0, "throttled": 0, "throttled_by": "",
                               "failed": 0, "first_failure": ""}


def test_a_burst_whose_every_write_failed_refuses_with_the_first_error() -> None:
    burst = burst_verdict([Write(403, 0.01)] * 3, 0.1, first_failure="403 Forbidden: services is forbidden")
    assert burst.problem() == "every write of a short burst failed: 403 Forbidden: services is forbidden"


def test_the_service_cidr_must_have_room_for_the_ladder() -> None:
    assert safety.service_cidr_room(["10.96.0.0/16"]) == 65533
    assert safety.service_cidr_room(["fd00:10:96::/112"], "IPv4") is None
    assert safety.cidr_problem(["10.96.0.0/16"], in_use=12, need=10_030) is None
    assert safety.cidr_problem(["10.96.0.0/20"], in_use=100, need=10_030) == (
        "the Service CIDRs 10.96.0.0/20 have 3,993 free ClusterIPs (100 in use) and the ladder needs 10,030")
    assert safety.cidr_problem([], in_use=0, need=10) is None


def test_cilium_lb_map_smaller_than_the_ladder_needs_refuses() -> None:
    size, why = safety.lb_map_problem(None, 262144, 65536)
    assert size == 65536
    assert why is not None
    assert "holds 65,536 entries (its default" in why
    assert safety.lb_map_problem("262144", 262144, 65536) == (262144, None)
    assert safety.lb_map_problem("", 65536, 65536) == (65536, None)


def test_the_settings_refuse_a_ladder_over_scale_max_and_too_few_backends() -> None:
    assert ScaleConfig().problems() == []
    assert ScaleConfig(ladder=(1000, 20000)).problems()[0].startswith("the ladder goes to 20,000 Services")
    assert ScaleConfig(ladder=(1000, 20000), scale_max=20000).problems() == []
    assert "must be more than --endpoints-per-service 3" in ScaleConfig(endpoints=3, backends=3).problems()[0]
    assert ScaleConfig(endpoints=3, backends=3, endpoint_change_samples=0).problems() == []
    assert ScaleConfig(endpoints=4, backends=3, endpoint_change_samples=0).problems() == [
        "--endpoints-per-service 4 needs as many --backends"]


def test_the_command_line_defaults_are_the_issues_ladder() -> None:
    config = config_from_args(build_parser().parse_args([]))
    assert config.ladder == (1000, 5000, 10000)
    assert config.scale_max == 10000
    assert config.endpoints == 2
    assert config.one_more_samples >= 20
    assert config.connect_samples >= 200
    small = config_from_args(build_parser().parse_args(
        ["--ladder", "100,300", "--one-more-samples", "20", "--connect-samples", "200"]))
    assert small.ladder == (100, 300)


def test_a_ladder_over_scale_max_stops_before_anything_is_contacted(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: object) -> None:
    assert main(["--ladder", "1000,50000", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m fixtures.scale: error: the ladder goes to 50,000 Services, over --scale-max")
    assert err.count("\n") == 1


def test_kind_only_options_are_refused_with_a_kubeconfig(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: object) -> None:
    assert main(["--kubeconfig", "/nonexistent", "--nodes", "4"]) == 2
    assert "--nodes and --keep-cluster shape a kind cluster" in capsys.readouterr().err


def test_backends_spread_over_nodes_and_no_pod_gets_service_links() -> None:
    dep = backend_deployment("registry.k8s.io/e2e-test-images/agnhost:2.56", 3, run_id="r1")
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 3
    assert spec["containers"][0]["args"] == ["netexec", "--http-port=8080"]
    assert spec["enableServiceLinks"] is False  # 10k Services would be 70k environment variables
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    pod = client_pod("kind-control-plane", "svcconform/client:1", run_id="r1")
    assert pod["metadata"]["name"] == "scale-client-kind-control-plane"
    assert pod["spec"]["nodeName"] == "kind-control-plane"
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert pod["spec"]["enableServiceLinks"] is False


def test_the_step_line_says_the_headline_figures() -> None:
    step = {"services": 10000, "creation": {"rate": 48.7},
            "bulk_convergence": {"every_node": {"max": 3.25}},
            "one_more": {"every_node": {"p50": 0.41, "p99": 1.2}},
            "endpoint_change": {"every_node": {"p50": 0.38}},
            "network_programming": {"steady": {"pooled": {"p99": 0.96}}}}
    assert ScaleRun.step_line(step) == (
        "10,000 Services: created at 48.7 objects/s; bulk 3.25s; one more p50 0.41s p99 1.20s; "
        "endpoint change p50 0.38s; network programming p99 (steady, pooled) 0.96s")
