"""DNS expectations: the records a Service must have and the resolv.conf a pod gets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fixtures.expectations import (
    Endpoint,
    Service,
    ServicePort,
    ServiceType,
    endpoint_for_pod,
    expected_lookup,
    expected_srv,
    query_names,
    resolv_conf_problems,
    search_list,
    service_fqdn,
    srv_name,
)
from fixtures.expectations.dns import dashed_ip
from fixtures.observations import ResolvConf
from fixtures.probes import parse_resolv_conf

WEB = Service(
    "web",
    "ns1",
    cluster_ip="10.96.12.34",
    ports=(
        ServicePort(80, "TCP", "http", "http"),
        ServicePort(53, "UDP", "dns-udp", 8053),
        ServicePort(8080, "TCP", ""),
    ),
)


def test_names() -> None:
    assert service_fqdn("web", "ns1") == "web.ns1.svc.cluster.local"
    assert service_fqdn("web", "ns1", "example.org") == "web.ns1.svc.example.org"
    assert srv_name("http", "TCP", "web", "ns1") == "_http._tcp.web.ns1.svc.cluster.local"
    assert search_list("ns1") == ("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local")


def test_cluster_ip_service_a_and_aaaa() -> None:
    a = expected_lookup(WEB)
    assert a.resolvable
    assert a.addresses == {"10.96.12.34"}
    aaaa = expected_lookup(WEB, rtype="AAAA")
    assert not aaaa.resolvable  # single-stack IPv4: no AAAA


def test_dual_stack_service_uses_cluster_ips() -> None:
    svc = Service(
        "web",
        "ns1",
        cluster_ip="10.96.0.5",
        cluster_ips=("10.96.0.5", "fd00:10:96::5"),
        ports=(ServicePort(80),),
    )
    assert expected_lookup(svc, rtype="AAAA").addresses == {"fd00:10:96::5"}


def test_srv_for_named_ports_only() -> None:
    srvs = {s.name: s for s in expected_srv(WEB)}
    assert set(srvs) == {"_http._tcp.web.ns1.svc.cluster.local", "_dns-udp._udp.web.ns1.svc.cluster.local"}
    assert srvs["_http._tcp.web.ns1.svc.cluster.local"].srv == {(80, "web.ns1.svc.cluster.local")}
    assert srvs["_dns-udp._udp.web.ns1.svc.cluster.local"].srv == {(53, "web.ns1.svc.cluster.local")}


HEADLESS = Service("db", "ns1", cluster_ip="None", ports=(ServicePort(5432, "TCP", "pg", 5432),))
EPS = (
    Endpoint("10.244.1.5", "w1", ready=True, name="db-0", hostname="db-0", ports={"pg": 5432}),
    Endpoint("10.244.2.7", "w2", ready=True, name="db-1", ports={"pg": 5432}),
    Endpoint("10.244.2.9", "w2", ready=False, name="db-2", ports={"pg": 5432}),
)


def test_headless_returns_ready_endpoint_addresses() -> None:
    a = expected_lookup(HEADLESS, endpoints=EPS)
    assert a.addresses == {"10.244.1.5", "10.244.2.7"}
    assert not expected_lookup(HEADLESS, endpoints=()).resolvable


def test_publish_not_ready_addresses_makes_every_pod_ready_in_the_slice() -> None:
    eps = [endpoint_for_pod(e.ip, e.node, pod_ready=e.ready, publish_not_ready=True) for e in EPS]
    assert expected_lookup(HEADLESS, endpoints=eps).addresses == {e.ip for e in EPS}


def test_headless_srv_targets_each_ready_endpoint() -> None:
    (srv,) = expected_srv(HEADLESS, endpoints=EPS)
    assert srv.srv == {
        (5432, "db-0.db.ns1.svc.cluster.local"),
        (5432, "10-244-2-7.db.ns1.svc.cluster.local"),
    }


def test_external_name_is_a_cname() -> None:
    ext = Service("ext", "ns1", type=ServiceType.EXTERNAL_NAME, external_name="target.example.test.")
    ans = expected_lookup(ext)
    assert ans.cname == "target.example.test"
    assert expected_srv(ext) == []


def test_short_name_only_from_the_same_namespace() -> None:
    same = query_names(WEB, client_namespace="ns1")
    other = query_names(WEB, client_namespace="ns2")
    assert same["web"] is True
    assert other["web"] is False
    assert other["web.ns1"] is True
    assert other["web.ns1.svc.cluster.local"] is True


def test_dashed_ip() -> None:
    assert dashed_ip("10.244.2.7") == "10-244-2-7"
    assert dashed_ip("fd00::1") == "fd00-0000-0000-0000-0000-0000-0000-0001"


def test_resolv_conf_of_a_cluster_first_pod_conforms() -> None:
    rc = parse_resolv_conf(
        "search ns1.svc.cluster.local svc.cluster.local cluster.local lan\n"
        "nameserver 10.96.0.10\noptions ndots:5\n"
    )
    assert resolv_conf_problems(rc, namespace="ns1", dns_ips=["10.96.0.10"]) == []


def test_resolv_conf_problems_name_each_departure() -> None:
    rc = ResolvConf(nameservers=("8.8.8.8",), search=("svc.cluster.local",), options={"ndots": "1"})
    problems = resolv_conf_problems(rc, namespace="ns1", dns_ips=["10.96.0.10"])
    assert len(problems) == 3
    assert "10.96.0.10" in problems[0]
    assert "ns1.svc.cluster.local" in problems[1]
    assert "ndots:5" in problems[2]


dns1035 = st.from_regex(r"\A[a-z]([-a-z0-9]{0,20}[a-z0-9])?\Z", fullmatch=True)


@given(dns1035, dns1035, dns1035)
def test_search_path_expansion_of_a_short_name_reaches_the_fqdn(svc: str, ns: str, client_ns: str) -> None:
    """Emulate the resolver: a name with fewer than ndots(5) dots is tried with each search
    suffix in order; the first candidate is what a same-namespace client gets."""
    candidates = [f"{svc}.{suffix}" for suffix in search_list(client_ns)]
    fqdn = service_fqdn(svc, ns)
    assert (candidates[0] == fqdn) == (ns == client_ns)
    with_ns = [f"{svc}.{ns}.{suffix}" for suffix in search_list(client_ns)]
    assert fqdn in with_ns  # "<svc>.<ns>" resolves from any namespace via svc.<domain>
    expected = query_names(Service(svc, ns, cluster_ip="10.96.0.1"), client_namespace=client_ns)
    assert expected[svc] == (ns == client_ns)
