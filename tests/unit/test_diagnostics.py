"""The failure bundle: contents, rule dumps per proxy mode, and never raising."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from framework_fakes import FakeKube, pod

from fixtures.diagnostics import (
    DiagnosticsSource,
    NamespaceRegistry,
    capture,
    rule_dump_commands,
    sanitize_test_id,
)
from fixtures.observations import ExecResult
from fixtures.providers.base import Node

NODES = (Node("cp", "172.18.0.2", "control-plane"), Node("w1", "172.18.0.3", "worker"))


def cluster_kube() -> FakeKube:
    kube = FakeKube()
    kube.objects[("services", "ns1")] = [{"kind": "Service", "metadata": {"name": "web", "managedFields": [{}]},
                                          "spec": {"clusterIP": "10.96.0.20"}}]
    kube.objects[("endpointslices", "ns1")] = [{"kind": "EndpointSlice", "metadata": {"name": "web-x"},
                                                "endpoints": [{"addresses": ["10.244.1.5"]}]}]
    kube.objects[("endpoints", "ns1")] = []
    kube.objects[("pods", "ns1")] = [pod("web-1", "ns1", "w1", "10.244.1.5"),
                                     pod("web-2", "ns1", "cp", "", ready=False, waiting="ErrImagePull")]
    kube.objects[("events", "ns1")] = [
        {"kind": "Event", "metadata": {"name": "e2"}, "lastTimestamp": "2026-01-01T00:00:02Z", "message": "late"},
        {"kind": "Event", "metadata": {"name": "e1"}, "lastTimestamp": "2026-01-01T00:00:01Z", "message": "early"},
    ]
    kube.objects[("pods", "kube-system")] = [
        pod("kube-proxy-a", "kube-system", "cp", "172.18.0.2", labels={"k8s-app": "kube-proxy"}),
        pod("kube-proxy-b", "kube-system", "w1", "172.18.0.3", labels={"k8s-app": "kube-proxy"},
            waiting="CrashLoopBackOff"),
        pod("coredns-1", "kube-system", "w1", "10.244.1.2", labels={"k8s-app": "kube-dns"}),
    ]
    kube.logs = {"kube-proxy-a": "I1122 proxier synced\n", "kube-proxy-b": "E1122 crashed\n"}
    return kube


def node_exec(node: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
    assert timeout > 0
    if argv[0] == "ipvsadm":
        return ExecResult(tuple(argv), 127, "", 'exec: "ipvsadm": executable file not found in $PATH')
    return ExecResult(tuple(argv), 0, f"*nat\n-A KUBE-SERVICES -m comment --comment {node}\n", "")


def test_bundle_has_objects_logs_and_rules(tmp_path: Path) -> None:
    source = DiagnosticsSource(cluster_kube(), lambda: NODES, node_exec, proxy_mode="ipvs")
    bundle = capture(source, tmp_path / "b", ["ns1"], test_id="suite/test_x.py::test_y",
                     failure="AssertionError: expected 3 backends, saw 2")
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    assert {
        "README.txt", "failure.txt",
        "namespaces/ns1/services.yaml", "namespaces/ns1/endpointslices.yaml", "namespaces/ns1/endpoints.yaml",
        "namespaces/ns1/pods.yaml", "namespaces/ns1/pods.txt", "namespaces/ns1/events.yaml",
        "kube-proxy/cp_kube-proxy-a.log", "kube-proxy/w1_kube-proxy-b.log",
        "kube-proxy/w1_kube-proxy-b.previous.log",
        "nodes/cp/ipvsadm.txt", "nodes/cp/iptables-save.txt", "nodes/w1/ipvsadm.txt", "nodes/w1/iptables-save.txt",
    } <= files
    assert "errors.txt" not in files
    services = list(yaml.safe_load_all((bundle / "namespaces/ns1/services.yaml").read_text()))
    assert services[0]["spec"]["clusterIP"] == "10.96.0.20"
    assert "managedFields" not in services[0]["metadata"]
    events = list(yaml.safe_load_all((bundle / "namespaces/ns1/events.yaml").read_text()))
    assert [e["message"] for e in events] == ["early", "late"]
    table = (bundle / "namespaces/ns1/pods.txt").read_text()
    assert "web-1  w1    10.244.1.5  True   Running" in table
    assert "Pending: ErrImagePull" in table
    assert (bundle / "endpoints.yaml").exists() is False
    assert (bundle / "namespaces/ns1/endpoints.yaml").read_text() == "# none\n"
    assert "not installed on node w1" in (bundle / "nodes/w1/ipvsadm.txt").read_text()
    assert "KUBE-SERVICES" in (bundle / "nodes/w1/iptables-save.txt").read_text()
    assert "expected 3 backends" in (bundle / "failure.txt").read_text()
    assert "ns1" in (bundle / "README.txt").read_text()


def test_a_broken_part_leaves_a_note_and_the_rest(tmp_path: Path) -> None:
    kube = cluster_kube()
    kube.fail_kinds = {"endpointslices"}

    def broken_exec(node: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        raise OSError("docker went away")

    def broken_nodes() -> Sequence[Node]:
        raise RuntimeError("API down")

    bundle = capture(DiagnosticsSource(kube, broken_nodes, broken_exec, "iptables"), tmp_path / "b", ["ns1"],
                     test_id="t")
    errors = (bundle / "errors.txt").read_text()
    assert "endpointslices in ns1: RuntimeError: listing endpointslices broke" in errors
    assert "listing nodes: RuntimeError: API down" in errors
    assert (bundle / "namespaces/ns1/services.yaml").exists()
    assert "could not be captured" in (bundle / "README.txt").read_text()


def test_capture_never_raises_even_when_nothing_works(tmp_path: Path) -> None:
    target = tmp_path / "file-not-dir"
    target.write_text("occupied")
    source = DiagnosticsSource(FakeKube(), lambda: NODES, node_exec, "iptables")
    assert capture(source, target, ["ns1"], test_id="t") == target


def test_existing_clusters_say_node_rules_are_unavailable(tmp_path: Path) -> None:
    source = DiagnosticsSource(cluster_kube(), lambda: NODES, None, "iptables",
                               node_exec_unavailable="the existing provider has no access to nodes")
    bundle = capture(source, tmp_path / "b", [], test_id="t")
    assert "no access to nodes" in (bundle / "nodes/UNAVAILABLE.txt").read_text()
    assert not (bundle / "namespaces").exists()


@pytest.mark.parametrize(
    ("mode", "family", "files"),
    [
        ("iptables", "ipv4", ["iptables-save.txt"]),
        ("iptables", "dual", ["iptables-save.txt", "ip6tables-save.txt"]),
        ("nftables", "ipv4", ["nft-ruleset.txt", "iptables-save.txt"]),
        ("ipvs", "ipv4", ["ipvsadm.txt", "iptables-save.txt"]),
        ("none", "ipv6", ["nft-ruleset.txt", "iptables-save.txt", "ip6tables-save.txt"]),
    ],
)
def test_rule_dumps_follow_the_proxy_mode(mode: str, family: str, files: list[str]) -> None:
    assert [name for name, _ in rule_dump_commands(mode, family)] == files


def test_sanitized_test_ids_are_safe_bounded_and_distinct() -> None:
    assert sanitize_test_id("suite/test_dns.py::test_a[svc-x/y z]") == "suite_test_dns.py__test_a_svc-x_y_z"
    long_a = sanitize_test_id("suite/t.py::test[" + "a" * 300 + "1]")
    long_b = sanitize_test_id("suite/t.py::test[" + "a" * 300 + "2]")
    assert len(long_a) <= 150
    assert long_a != long_b
    assert sanitize_test_id("::") == "test"


def test_registry_collects_a_tests_and_its_modules_namespaces() -> None:
    registry = NamespaceRegistry()
    registry.add("suite/test_a.py", "svcc-dns-r-mod1")
    registry.add("suite/test_a.py::test_x", "svcc-dns-r-t001")
    registry.add("suite/test_a.py::test_y", "svcc-dns-r-t002")
    chain = ["", "suite", "suite/test_a.py", "suite/test_a.py::test_x"]
    assert registry.for_chain(chain) == ["svcc-dns-r-mod1", "svcc-dns-r-t001"]


class CiliumKube(FakeKube):
    """A cluster without kube-proxy whose Cilium agents answer ``cilium-dbg``."""

    def exec(self, namespace: str, pod_name: str, argv: Sequence[str], *, container: str | None = None,
             timeout: float = 0) -> ExecResult:
        assert namespace == "kube-system"
        if argv[:2] == ["cilium-dbg", "service"]:
            return ExecResult(tuple(argv), 0, f"ID   Frontend   Service Type   Backend\n1 10.96.0.1:443 {pod_name}\n", "")
        return ExecResult(tuple(argv), 1, "", "map not found")


def test_cilium_agents_logs_and_service_tables_are_captured(tmp_path: Path) -> None:
    kube = CiliumKube()
    kube.objects[("pods", "kube-system")] = [
        pod("cilium-abc", "kube-system", "cp", "172.18.0.2", labels={"k8s-app": "cilium"}),
        pod("cilium-def", "kube-system", "w1", "172.18.0.3", labels={"k8s-app": "cilium"}),
    ]
    kube.logs = {"cilium-abc": "level=info msg=ready\n", "cilium-def": "level=info msg=ready\n"}
    source = DiagnosticsSource(kube, lambda: NODES, node_exec, proxy_mode="none")
    bundle = capture(source, tmp_path / "b", [], test_id="suite/test_x.py::test_y")
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    assert {"cilium/cp_cilium-abc.log", "cilium/w1_cilium-def.log", "cilium/cp_service-list.txt",
            "cilium/w1_service-list.txt", "cilium/w1_bpf-lb-list.txt", "nodes/w1/nft-ruleset.txt"} <= files
    assert "kube-proxy/NONE.txt" not in files  # Cilium is the data plane here
    assert "10.96.0.1:443 cilium-def" in (bundle / "cilium/w1_service-list.txt").read_text()
    assert "map not found" in (bundle / "cilium/w1_bpf-lb-list.txt").read_text()
    assert "errors.txt" not in files


def test_no_data_plane_pods_at_all_is_said(tmp_path: Path) -> None:
    kube = FakeKube()
    kube.objects[("pods", "kube-system")] = []
    bundle = capture(DiagnosticsSource(kube, lambda: NODES, None, proxy_mode="none"), tmp_path / "b", [],
                     test_id="t")
    assert "k8s-app=kube-proxy or k8s-app=cilium" in (bundle / "kube-proxy/NONE.txt").read_text()
