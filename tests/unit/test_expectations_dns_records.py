"""DNS expectations added for PTR, pod, hostname/subdomain records, the record type that follows
the IP family, the Corefile's kubernetes plugin and kubelet's resolv.conf per dnsPolicy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.expectations import Endpoint, Service, ServicePort, ServiceType
from fixtures.expectations.dns import (
    ExpectedLookup,
    PodDns,
    address_rtype,
    answer_problems,
    expected_hostname_lookups,
    expected_pod_lookup,
    expected_ptr,
    family_rtype,
    getent_database,
    kubelet_resolv_conf,
    kubernetes_plugin,
    pod_dns_type,
    pod_fqdn,
    resolv_conf_differences,
    reverse_name,
    service_rtype,
)
from fixtures.observations import DnsAnswer, DnsRecord, ResolvConf

V4 = Service("web", "ns1", cluster_ip="10.96.12.34", cluster_ips=("10.96.12.34",), ports=(ServicePort(80),))
V6 = Service("web", "ns1", cluster_ip="fd00:10:96::5", cluster_ips=("fd00:10:96::5",), ports=(ServicePort(80),))
DUAL_V6_FIRST = Service("web", "ns1", cluster_ip="fd00:10:96::5", cluster_ips=("fd00:10:96::5", "10.96.0.5"))
HEADLESS = Service("h", "ns1", cluster_ip="None")

# kubeadm 1.34's Corefile, as kind writes it into kube-system/coredns
KUBEADM_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


# --------------------------------------------------------------------------- record type by family


def test_the_record_type_follows_the_address_family() -> None:
    assert address_rtype("10.0.0.1") == "A"
    assert address_rtype("fd00::1") == "AAAA"
    assert family_rtype("ipv4") == "A"
    assert family_rtype("ipv6") == "AAAA"
    assert family_rtype("dual") == "A"  # kind's dual-stack is IPv4-primary


def test_a_services_record_type_is_its_primary_cluster_ips_family() -> None:
    assert service_rtype(V4) == "A"
    assert service_rtype(V6) == "AAAA"
    assert service_rtype(DUAL_V6_FIRST) == "AAAA"
    # a single-stack IPv6 cell asks AAAA even when told nothing about the cluster
    assert service_rtype(V6, ip_family="ipv4") == "AAAA"


def test_headless_and_external_name_services_follow_endpoints_then_the_cluster_family() -> None:
    assert service_rtype(HEADLESS, endpoints=[Endpoint("fd00:10:244::7")]) == "AAAA"
    assert service_rtype(HEADLESS, endpoints=[Endpoint("10.244.1.7")], ip_family="ipv6") == "A"
    assert service_rtype(HEADLESS, ip_family="ipv6") == "AAAA"
    alias = Service("a", "ns1", type=ServiceType.EXTERNAL_NAME, external_name="web.ns1.svc.cluster.local")
    assert service_rtype(alias, ip_family="ipv6") == "AAAA"
    assert service_rtype(alias) == "A"


def test_getent_database_matches_the_record_type() -> None:
    assert getent_database("A") == "ahostsv4"
    assert getent_database("aaaa") == "ahostsv6"


@given(st.ip_addresses())
def test_pod_lookup_asks_the_family_of_the_pod_ip(ip: object) -> None:
    want = expected_pod_lookup(str(ip), "ns1", pods_mode="insecure")
    assert want.rtype == ("AAAA" if ":" in str(ip) else "A")
    assert want.addresses == {str(ip)}


# --------------------------------------------------------------------------- PTR


def test_reverse_names() -> None:
    assert reverse_name("10.96.0.10") == "10.0.96.10.in-addr.arpa"
    assert reverse_name("fd00::1").endswith(".0.0.d.f.ip6.arpa")
    assert reverse_name("fd00::1").startswith("1.0.0.0.")


def test_every_cluster_ip_has_a_ptr_naming_the_service() -> None:
    (ptr,) = expected_ptr(V4)
    assert ptr == ExpectedLookup("34.12.96.10.in-addr.arpa", "PTR", resolvable=True,
                                 ptr=frozenset({"web.ns1.svc.cluster.local"}))
    dual = expected_ptr(DUAL_V6_FIRST, domain="example.org")
    assert [p.name.endswith("ip6.arpa") for p in dual] == [True, False]
    assert all(p.ptr == {"web.ns1.svc.example.org"} for p in dual)
    assert expected_ptr(HEADLESS) == []


def ptr_answer(*targets: str, status: str = "NOERROR") -> DnsAnswer:
    return DnsAnswer("34.12.96.10.in-addr.arpa", "PTR", status,
                     answers=tuple(DnsRecord("34.12.96.10.in-addr.arpa", 30, "IN", "PTR", t) for t in targets))


def test_ptr_answers_are_judged_by_their_targets() -> None:
    (want,) = expected_ptr(V4)
    assert answer_problems(want, ptr_answer("web.ns1.svc.cluster.local")) == []
    assert answer_problems(want, ptr_answer("other.ns1.svc.cluster.local")) == [
        "PTR {other.ns1.svc.cluster.local}, expected {web.ns1.svc.cluster.local}"]
    assert answer_problems(want, ptr_answer(status="NXDOMAIN")) == ["status NXDOMAIN, expected NOERROR"]


# --------------------------------------------------------------------------- the Corefile


def test_kubeadms_corefile_serves_pods_insecure_and_the_reverse_zones() -> None:
    plugin = kubernetes_plugin(KUBEADM_COREFILE)
    assert plugin is not None
    assert plugin.zones == ("cluster.local", "in-addr.arpa", "ip6.arpa")
    assert plugin.pods == "insecure"
    assert plugin.fallthrough == ("in-addr.arpa", "ip6.arpa")
    assert plugin.serves("34.12.96.10.in-addr.arpa.")
    assert plugin.serves("web.ns1.svc.cluster.local")
    assert not plugin.serves("example.org")


def test_corefile_defaults_and_other_domains() -> None:
    bare = ".:53 {\n  kubernetes cluster.local\n  forward . /etc/resolv.conf\n}\n"
    plugin = kubernetes_plugin(bare)
    assert plugin is not None
    assert (plugin.pods, plugin.fallthrough) == ("disabled", ())  # CoreDNS' default pod mode
    assert not plugin.serves("10.0.96.10.in-addr.arpa")
    assert kubernetes_plugin(bare, domain="example.org") is None
    verified = "cluster.local:53 {\n kubernetes {\n  pods verified # comment\n  fallthrough\n }\n}\n"
    plugin = kubernetes_plugin(verified)
    assert plugin is not None
    assert plugin.pods == "verified"
    assert plugin.fallthrough == ("cluster.local",)  # no zones: every zone of the plugin
    assert kubernetes_plugin("") is None


# --------------------------------------------------------------------------- pod records


def test_pod_records_by_pod_mode() -> None:
    assert pod_fqdn("10.244.1.5", "ns1") == "10-244-1-5.ns1.pod.cluster.local"
    assert pod_fqdn("fd00::5", "ns1", "example.org") == "fd00-0000-0000-0000-0000-0000-0000-0005.ns1.pod.example.org"
    insecure = expected_pod_lookup("10.244.1.5", "ns1", pods_mode="insecure", pod_exists=False)
    assert insecure.resolvable
    assert insecure.addresses == {"10.244.1.5"}
    assert expected_pod_lookup("10.244.1.5", "ns1", pods_mode="verified").resolvable
    assert not expected_pod_lookup("10.244.1.5", "ns1", pods_mode="verified", pod_exists=False).resolvable
    disabled = expected_pod_lookup("10.244.1.5", "ns1", pods_mode="disabled")
    assert not disabled.resolvable
    assert disabled.addresses == frozenset()


SELECTOR = {"app": "peer"}


def peer(name: str, ip: str, **kw: object) -> PodDns:
    base: dict = {"name": name, "namespace": "ns1", "ips": (ip,), "labels": SELECTOR, "ready": True,
                  "hostname": name, "subdomain": "peers"}
    base.update(kw)
    return PodDns(**base)


def test_hostname_and_subdomain_records_of_selected_pods() -> None:
    pods = [
        peer("a", "10.244.1.2"),
        peer("b", "10.244.2.2"),
        peer("c", "10.244.3.2", subdomain="elsewhere"),  # subdomain names another Service
        peer("d", "10.244.3.3", hostname=""),  # no spec.hostname: no record
        peer("e", "10.244.3.4", labels={"app": "other"}),  # not selected
    ]
    got = expected_hostname_lookups(pods, service="peers", selector=SELECTOR)
    assert [(w.name, set(w.addresses)) for w in got] == [
        ("a.peers.ns1.svc.cluster.local", {"10.244.1.2"}),
        ("b.peers.ns1.svc.cluster.local", {"10.244.2.2"}),
    ]
    assert all(w.rtype == "A" and w.resolvable for w in got)


def test_hostname_records_follow_readiness_sharing_and_family() -> None:
    pods = [peer("a", "10.244.1.2", hostname="same"), peer("b", "10.244.2.2", hostname="same"),
            peer("c", "10.244.3.2", ready=False), peer("d", "fd00::2", ips=("10.244.4.2", "fd00::2"))]
    got = {w.name.split(".")[0]: w for w in expected_hostname_lookups(pods, service="peers", selector=SELECTOR)}
    assert got["same"].addresses == {"10.244.1.2", "10.244.2.2"}
    assert not got["c"].resolvable  # the name exists only while the endpoint is ready
    assert got["d"].addresses == {"10.244.4.2"}
    v6 = expected_hostname_lookups(pods, service="peers", selector=SELECTOR, rtype="AAAA")
    assert {w.name.split(".")[0]: set(w.addresses) for w in v6}["d"] == {"fd00::2"}
    assert expected_hostname_lookups(pods, service="peers", selector={}) == []  # selects nothing


# --------------------------------------------------------------------------- kubelet's resolv.conf

HOST = ResolvConf(nameservers=("172.18.0.1",), search=("example.internal",), options={"edns0": None, "trust-ad": None})
DNS = ("10.96.0.10",)


def conf(policy: str, *, host_network: bool = False, dns_config: dict | None = None,
         host: ResolvConf = HOST, cluster_dns: tuple[str, ...] = DNS) -> ResolvConf:
    return kubelet_resolv_conf(dns_policy=policy, host_network=host_network, host=host, cluster_dns=cluster_dns,
                               namespace="ns1", dns_config=dns_config)


@pytest.mark.parametrize(("policy", "host_network", "kind"), [
    ("ClusterFirst", False, "cluster"),
    ("", False, "cluster"),
    ("ClusterFirst", True, "host"),
    ("ClusterFirstWithHostNet", True, "cluster"),
    ("ClusterFirstWithHostNet", False, "cluster"),
    ("Default", False, "host"),
    ("Default", True, "host"),
    ("None", True, "none"),
])
def test_pod_dns_type_is_kubelets(policy: str, host_network: bool, kind: str) -> None:
    assert pod_dns_type(policy, host_network=host_network) == kind


def test_unknown_dns_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="dnsPolicy must be one of"):
        pod_dns_type("Sometimes", host_network=False)


def test_cluster_first_prepends_the_cluster_search_list_and_sets_ndots() -> None:
    got = conf("ClusterFirst")
    assert got.nameservers == DNS
    assert got.search == ("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.internal")
    assert dict(got.options) == {"ndots": "5"}
    assert conf("ClusterFirstWithHostNet", host_network=True) == got


def test_host_network_cluster_first_is_the_nodes_resolv_conf() -> None:
    assert conf("ClusterFirst", host_network=True) == ResolvConf(HOST.nameservers, HOST.search, HOST.options)
    assert conf("Default") == conf("ClusterFirst", host_network=True)
    # no cluster DNS known: ClusterFirst falls back to the host's as well
    assert conf("ClusterFirst", cluster_dns=()) == conf("Default")


def test_dns_policy_none_is_exactly_the_dns_config() -> None:
    cfg = {"nameservers": ["10.96.0.10", "10.96.0.10"], "searches": ["svc.cluster.local", "ns1.svc.cluster.local"],
           "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}, {"name": "timeout", "value": ""}]}
    got = conf("None", dns_config=cfg)
    assert got.nameservers == ("10.96.0.10",)
    assert got.search == ("svc.cluster.local", "ns1.svc.cluster.local")
    assert dict(got.options) == {"ndots": "2", "edns0": None, "timeout": None}
    assert conf("None") == ResolvConf((), (), {})


def test_dns_config_appends_to_and_overrides_the_policys_base() -> None:
    cfg = {"nameservers": ["10.0.0.53"], "searches": ["cluster.local", "extra.example"],
           "options": [{"name": "ndots", "value": "1"}]}
    got = conf("ClusterFirst", dns_config=cfg)
    assert got.nameservers == ("10.96.0.10", "10.0.0.53")
    assert got.search[-1] == "extra.example"
    assert got.search.count("cluster.local") == 1
    assert dict(got.options) == {"ndots": "1"}


def test_kubelets_limits_apply() -> None:
    cfg = {"nameservers": [f"10.0.0.{i}" for i in range(5)], "searches": [f"s{i}.example" for i in range(40)]
           + ["x" * 254]}
    got = conf("None", dns_config=cfg)
    assert got.nameservers == ("10.0.0.0", "10.0.0.1", "10.0.0.2")
    assert len(got.search) == 32
    long = conf("None", dns_config={"searches": [("a" * 80 + f".{i}") for i in range(32)]})
    assert len(" ".join(long.search)) <= 2048
    assert len(long.search) < 32


def test_resolv_conf_differences_compare_options_as_a_set() -> None:
    want = ResolvConf(("10.96.0.10",), ("a", "b"), {"ndots": "2", "edns0": None})
    assert resolv_conf_differences(want, ResolvConf(("10.96.0.10",), ("a", "b"), {"edns0": "", "ndots": "2"})) == []
    got = ResolvConf(("172.18.0.1",), ("b", "a"), {"ndots": "5"})
    assert resolv_conf_differences(want, got) == [
        "nameservers ['172.18.0.1'], expected ['10.96.0.10']",
        "search 'b a', expected 'a b'",
        "options 'ndots:5', expected 'edns0 ndots:2'",
    ]


# --------------------------------------------------------------------------- against real pods

CAPTURED_NS = "svcc-dns-capture-c4p7"  # namespace of the pods in tests/unit/data/resolv/*.conf
CAPTURED_DNS_CONFIG = {
    "nameservers": ["10.96.0.10"],
    "searches": ["svc.cluster.local", f"{CAPTURED_NS}.svc.cluster.local"],
    "options": [{"name": "ndots", "value": "2"}, {"name": "timeout", "value": "3"}, {"name": "edns0"}],
}


def captured(name: str) -> ResolvConf:
    from pathlib import Path

    from fixtures.probes import parse_resolv_conf

    return parse_resolv_conf((Path(__file__).parent / "data" / "resolv" / f"{name}.conf").read_text())


@pytest.mark.parametrize(("name", "policy", "host_network", "dns_config"), [
    ("cluster_first", "ClusterFirst", False, None),
    ("host_network_cluster_first", "ClusterFirst", True, None),
    ("host_network_cluster_first_with_host_net", "ClusterFirstWithHostNet", True, None),
    ("dns_policy_none", "None", False, CAPTURED_DNS_CONFIG),
])
def test_kubelet_resolv_conf_matches_what_real_pods_got(name: str, policy: str, host_network: bool,
                                                        dns_config: dict | None) -> None:
    host = captured("dns_policy_default")  # the node's resolv.conf as kubelet read it
    want = kubelet_resolv_conf(dns_policy=policy, host_network=host_network, host=host, cluster_dns=DNS,
                               namespace=CAPTURED_NS, dns_config=dns_config)
    assert resolv_conf_differences(want, captured(name)) == []


def test_a_host_network_cluster_first_pod_is_told_apart_from_a_cluster_dns_one() -> None:
    host = captured("dns_policy_default")
    fallback = captured("host_network_cluster_first")
    cluster = kubelet_resolv_conf(dns_policy="ClusterFirstWithHostNet", host_network=True, host=host,
                                  cluster_dns=DNS, namespace=CAPTURED_NS)
    assert resolv_conf_differences(cluster, fallback) == [
        "nameservers ['172.18.0.1'], expected ['10.96.0.10']",
        f"search '(none)', expected '{CAPTURED_NS}.svc.cluster.local svc.cluster.local cluster.local'",
        "options 'ndots:0', expected 'ndots:5'",
    ]


def test_headless_endpoint_names_follow_coredns_endpoint_hostname() -> None:
    from fixtures.expectations.dns import endpoint_name

    # CoreDNS v1.14.7 plugin/kubernetes endpointHostname: the slice's spelling, dashes, "0"
    # after a trailing dash (what an IPv6 cell's SRV answers showed: fd00-10-244--c).
    assert endpoint_name("fd00:10:244::c") == "fd00-10-244--c"
    assert endpoint_name("fd00:10:244:2::10") == "fd00-10-244-2--10"
    assert endpoint_name("fd00::") == "fd00--0"
    assert endpoint_name("10.244.1.7") == "10-244-1-7"
