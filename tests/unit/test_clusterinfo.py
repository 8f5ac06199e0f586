"""Cluster-wide facts from what the cluster shows (fixtures/clusterinfo.py): one test per
detection path, with the inputs as a real cluster gives them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fixtures import clusterinfo
from fixtures.clusterinfo import ClusterInfo, Fact
from fixtures.options import fact_overrides_from_options
from fixtures.spec import InvalidSpec

KUBEADM_COREFILE = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes corp.example in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
}
"""
NS = "svcc-preflight-abc123-x1y2"
SEARCH = (f"{NS}.svc.corp.example", "svc.corp.example", "corp.example")


def test_the_domain_is_what_follows_namespace_svc_in_the_kubelets_search_list() -> None:
    assert clusterinfo.domain_from_search(SEARCH, NS) == "corp.example"
    assert clusterinfo.domain_from_search([f"{NS}.svc.cluster.local.", "svc.cluster.local"], NS) == "cluster.local"
    # a search list of another namespace, or a hand-made dnsConfig, says nothing
    assert clusterinfo.domain_from_search(["other.svc.corp.example", "example.com"], NS) is None
    assert clusterinfo.domain_from_search([], NS) is None


def test_corefile_zones_are_the_kubernetes_plugins_forward_zones() -> None:
    assert clusterinfo.corefile_zones(KUBEADM_COREFILE) == ("corp.example",)
    two = "corp.example:53 {\n  kubernetes {\n    pods disabled\n  }\n}\nextra.zone:53 {\n  kubernetes extra.zone\n}\n"
    assert clusterinfo.corefile_zones(two) == ("corp.example", "extra.zone")
    assert clusterinfo.corefile_zones(".:53 {\n  forward . 8.8.8.8\n}\n") == ()


def test_the_domain_fact_agrees_with_the_corefile_on_every_node() -> None:
    searches = {"n1": (NS, SEARCH), "n2": (NS, SEARCH)}
    fact = clusterinfo.domain_fact(searches, KUBEADM_COREFILE, "ConfigMap kube-system/coredns")
    assert (fact.value, fact.source, fact.finding) == ("corp.example", "cluster", "")
    assert "on 2/2 nodes" in fact.evidence
    assert "the Corefile's kubernetes plugin serves it" in fact.evidence


def test_a_domain_the_corefile_does_not_serve_is_a_finding() -> None:
    searches = {"n1": (NS, SEARCH)}
    corefile = KUBEADM_COREFILE.replace("corp.example", "cluster.local")
    fact = clusterinfo.domain_fact(searches, corefile, "ConfigMap kube-system/coredns")
    assert fact.value == "corp.example"
    assert "pods search corp.example but the Corefile's kubernetes plugin serves cluster.local" in fact.finding


def test_nodes_whose_kubelets_disagree_are_a_finding() -> None:
    other = (f"{NS}.svc.cluster.local", "svc.cluster.local", "cluster.local")
    fact = clusterinfo.domain_fact({"n1": (NS, SEARCH), "n2": (NS, other)}, None, "not readable")
    assert "the nodes' kubelets disagree on the cluster domain: n1=corp.example, n2=cluster.local" in fact.finding
    assert "the Corefile was not read (not readable)" in fact.evidence


def test_an_unreadable_domain_is_unknown_and_the_checks_that_need_it_skip() -> None:
    fact = clusterinfo.domain_fact({"n1": (NS, ("example.com",))}, None, "no ConfigMap kube-system/coredns")
    assert not fact.known
    assert fact.source == "unknown"
    assert fact.value == ""
    info = ClusterInfo({"cluster_domain": fact})
    with pytest.raises(pytest.skip.Exception, match=r"cluster domain is not known .*give it with --cluster-domain"):
        _ = info.domain


def test_the_corefile_alone_gives_an_inferred_domain() -> None:
    fact = clusterinfo.domain_fact({"n1": (NS, ("example.com",))}, KUBEADM_COREFILE, "ConfigMap")
    assert (fact.value, fact.source) == ("corp.example", "inferred")


def test_an_override_wins_and_says_what_the_cluster_showed() -> None:
    fact = clusterinfo.domain_fact({"n1": (NS, SEARCH)}, KUBEADM_COREFILE, "ConfigMap", override="other.example")
    assert (fact.value, fact.source) == ("other.example", "override")
    assert "given 'other.example' but the cluster shows 'corp.example'" in fact.finding
    same = clusterinfo.domain_fact({"n1": (NS, SEARCH)}, KUBEADM_COREFILE, "ConfigMap", override="corp.example")
    assert same.source == "override"
    assert not same.finding


def test_the_node_port_range_comes_from_the_api_servers_refusal() -> None:
    # measured on a kind cluster: create a NodePort Service with nodePort 1
    refusal = ('create service ns/svcc-node-port-range-probe: 422 Unprocessable Entity: Service '
               '"svcc-node-port-range-probe" is invalid: spec.ports[0].nodePort: Invalid value: 1: provided port '
               'is not in the valid range. The range of valid ports is 30000-32767')
    assert clusterinfo.range_from_refusal(refusal) == (30000, 32767)
    fact = clusterinfo.node_port_range_fact(None, refusal)
    assert (fact.value, fact.source) == ("30000-32767", "cluster")
    assert "asking for nodePort 1: provided port is not in the valid range" in fact.evidence
    assert ClusterInfo({"node_port_range": fact}).node_port_range == (30000, 32767)


def test_the_apiserver_flag_beats_the_probe_and_an_accepted_probe_is_unknown() -> None:
    assert clusterinfo.node_port_range_fact("20000-22767", None).value == "20000-22767"
    assert clusterinfo.node_port_range_fact("30000+100", None).value == "30000-30100"
    fact = clusterinfo.node_port_range_fact(None, "nodePort 1 was accepted")
    assert not fact.known
    assert "names no range" in fact.evidence
    with pytest.raises(pytest.skip.Exception, match="node-port range is not known"):
        _ = ClusterInfo({"node_port_range": fact}).node_port_range


def test_pod_cidrs_come_from_the_nodes_or_are_inferred_from_pod_ips() -> None:
    nodes = [{"spec": {"podCIDRs": ["10.32.1.0/24"]}}, {"spec": {"podCIDRs": ["10.32.0.0/24"]}}]
    fact = clusterinfo.pod_cidrs_fact(nodes, [])
    assert (fact.value, fact.source) == ("10.32.0.0/24,10.32.1.0/24", "cluster")
    no_ipam = [{"spec": {}}, {"spec": {}}]
    inferred = clusterinfo.pod_cidrs_fact(no_ipam, ["10.32.1.5", "10.32.1.9", "10.32.2.7", "fd00:10:32::5"])
    assert inferred.source == "inferred"
    assert inferred.value == "10.32.1.0/24,10.32.2.0/24,fd00:10:32::/64"
    assert "inferred from 4 pod IPs" in inferred.evidence
    assert clusterinfo.infer_pod_cidrs(["10.32.0.1", "10.32.1.1"]) == ("10.32.0.0/23",)
    assert not clusterinfo.pod_cidrs_fact(no_ipam, []).known


def test_service_cidrs_from_servicecidr_objects_then_the_flag() -> None:
    objects = [{"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.112.0.0/20"]}}]
    fact = clusterinfo.service_cidrs_fact(objects, "10.96.0.0/16")
    assert fact.value == "10.112.0.0/20"
    assert "ServiceCIDR objects: kubernetes=10.112.0.0/20" in fact.evidence
    assert clusterinfo.service_cidrs_fact([], "10.96.0.0/16").value == "10.96.0.0/16"
    assert not clusterinfo.service_cidrs_fact(None, None).known
    given = clusterinfo.service_cidrs_fact(objects, None, ("10.200.0.0/16",))
    assert given.source == "override"
    assert "given '10.200.0.0/16'" in given.finding


def test_dns_ips_are_the_dns_service_checked_against_kubelets_nameserver() -> None:
    service = {"metadata": {"name": "kube-dns"}, "spec": {"clusterIP": "10.112.0.10", "clusterIPs": ["10.112.0.10"]}}
    fact = clusterinfo.dns_ips_fact([service], {"n1": ("10.112.0.10",), "n2": ("10.112.0.10",)})
    assert (fact.value, fact.finding) == ("10.112.0.10", "")
    wrong = clusterinfo.dns_ips_fact([service], {"n1": ("169.254.20.10",)})
    assert "kubelet's clusterDNS differs from the DNS Service on n1" in wrong.finding
    inferred = clusterinfo.dns_ips_fact([], {"n1": ("10.112.0.10",)})
    assert (inferred.value, inferred.source) == ("10.112.0.10", "inferred")


def test_zones_are_the_nodes_labels_or_none() -> None:
    def node(name: str, zone: str | None) -> dict:
        return {"metadata": {"name": name, "labels": {clusterinfo.ZONE_LABEL: zone} if zone else {}}}

    fact = clusterinfo.zones_fact([node("a", "zone-a"), node("b", "zone-b"), node("c", None)])
    assert fact.value == "a=zone-a,b=zone-b"
    assert "none on c" in fact.evidence
    assert ClusterInfo({"zones": fact}).zones == {"a": "zone-a", "b": "zone-b"}
    none = clusterinfo.zones_fact([node("a", None)])
    assert none.value == ""
    assert "no node carries" in none.evidence


def test_detection_entries_carry_source_and_finding() -> None:
    info = ClusterInfo({"cluster_domain": Fact("corp.example", "resolv.conf", "cluster", "a finding")})
    detection = info.detection()
    assert detection["cluster_domain"] == {"value": "corp.example", "evidence": "resolv.conf",
                                           "source": "cluster", "finding": "a finding"}
    assert detection["zones"]["source"] == "unknown"
    assert set(detection) == set(clusterinfo.FACT_NAMES)
    assert info.describe("cluster_domain") == "cluster domain corp.example (cluster: resolv.conf)"


def _options(**given: str) -> SimpleNamespace:
    base = {"svcc_cluster_domain": None, "svcc_node_port_range": None, "svcc_service_cidrs": None,
            "svcc_pod_cidrs": None, "svcc_dns_ips": None}
    return SimpleNamespace(**{**base, **given})


def test_fact_options_are_validated_with_the_option_named() -> None:
    got = fact_overrides_from_options(_options(svcc_cluster_domain="Corp.Example.", svcc_node_port_range="20000-22000",
                                               svcc_service_cidrs="10.112.0.0/20, fd00::/108"))
    assert got == clusterinfo.Overrides("corp.example", "20000-22000", ("10.112.0.0/20", "fd00::/108"), ())
    assert fact_overrides_from_options(_options(svcc_dns_ips="10.112.0.10")).dns_ips == ("10.112.0.10",)
    for dest, value, option in (("svcc_cluster_domain", "bad_domain", "--cluster-domain"),
                                ("svcc_node_port_range", "30000", "--node-port-range"),
                                ("svcc_pod_cidrs", "10.32.0.0/33", "--pod-cidr"),
                                ("svcc_dns_ips", "10.112.0", "--dns-ip")):
        with pytest.raises(InvalidSpec, match=f"^{option}: "):
            fact_overrides_from_options(_options(**{dest: value}))
