"""Judging real DNS answers (dig/getent output captured from the tools) against what a
Service promises: ``answer_problems``, ``hosts_problems``, ``cluster_expansions``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.expectations import Service, ServicePort, ServiceType, expected_lookup, expected_srv
from fixtures.expectations.dns import (
    ExpectedLookup,
    answer_problems,
    cluster_expansions,
    hosts_problems,
)
from fixtures.observations import DnsAnswer, ExecResult
from fixtures.probes import parse_dig, parse_getent

DATA = Path(__file__).parent / "data"
WEB = Service("web", "ns1", cluster_ip="10.96.12.34", ports=(ServicePort(80, "TCP", "http", "http"),))


def dig_out(name: str, query: str, rtype: str = "A") -> DnsAnswer:
    return parse_dig((DATA / "dig" / f"{name}.out").read_text(), name=query, rtype=rtype)


def getent_out(name: str, key: str, code: int = 0):
    text = (DATA / "getent" / f"{name}.out").read_text()
    result = ExecResult(argv=("getent", "ahosts", key), returncode=code if text.strip() else 2,
                        stdout=text, stderr="")
    return parse_getent(result, name=key, database="ahosts")


def test_a_record_of_the_cluster_ip_conforms() -> None:
    assert answer_problems(expected_lookup(WEB), dig_out("a_clusterip", "web.ns1.svc.cluster.local")) == []


def test_a_wrong_address_is_named_with_both_sides() -> None:
    other = Service("web", "ns1", cluster_ip="10.96.0.99", ports=WEB.ports)
    problems = answer_problems(expected_lookup(other), dig_out("a_clusterip", "web.ns1.svc.cluster.local"))
    assert problems == ["A {10.96.12.34}, expected {10.96.0.99}"]


def test_nxdomain_for_a_name_that_must_resolve_is_a_problem() -> None:
    problems = answer_problems(expected_lookup(WEB), dig_out("nxdomain", "web.ns1.svc.cluster.local"))
    assert problems == ["status NXDOMAIN, expected NOERROR"]


def test_nxdomain_is_what_a_missing_name_must_return() -> None:
    missing = ExpectedLookup("nope.ns1.svc.cluster.local", "A", resolvable=False)
    assert answer_problems(missing, dig_out("nxdomain", missing.name)) == []
    # a resolving name, or an empty NOERROR, is not NXDOMAIN
    assert answer_problems(missing, dig_out("a_clusterip", missing.name)) == [
        "status NOERROR (A 10.96.12.34), expected NXDOMAIN"
    ]
    assert answer_problems(missing, dig_out("nodata", missing.name, "AAAA")) != []


def test_nodata_is_accepted_only_when_asked_for() -> None:
    aaaa = expected_lookup(WEB, rtype="AAAA")
    answer = dig_out("nodata", "web.ns1.svc.cluster.local", "AAAA")
    assert answer_problems(aaaa, answer, nodata_ok=True) == []
    assert answer_problems(aaaa, answer) == ["status NOERROR (no records), expected NXDOMAIN"]


def test_no_answer_at_all_says_so() -> None:
    answer = DnsAnswer("web.ns1.svc.cluster.local", "A", status=None, error="connection refused")
    assert answer_problems(expected_lookup(WEB), answer) == ["no DNS answer (connection refused)"]
    refused = dig_out("refused", "web.ns1.svc.cluster.local")
    assert answer_problems(expected_lookup(WEB), refused) == ["status REFUSED, expected NOERROR"]


def test_external_name_cname_and_the_address_it_leads_to() -> None:
    ext = Service("ext", "ns1", type=ServiceType.EXTERNAL_NAME, external_name="target.example.test")
    answer = dig_out("cname", "ext.ns1.svc.cluster.local")
    assert answer_problems(expected_lookup(ext), answer) == []
    chained = ExpectedLookup(answer.query_name, "A", True, addresses=frozenset({"192.0.2.10"}),
                             cname="target.example.test")
    assert answer_problems(chained, answer) == []
    wrong = ExpectedLookup(answer.query_name, "A", True, cname="web.ns1.svc.cluster.local")
    assert answer_problems(wrong, answer) == [
        "CNAME {target.example.test}, expected web.ns1.svc.cluster.local"
    ]
    missing = dig_out("a_clusterip", "ext.ns1.svc.cluster.local")
    assert answer_problems(expected_lookup(ext), missing) == ["CNAME missing, expected target.example.test"]


def test_srv_of_a_named_port() -> None:
    (srv,) = expected_srv(WEB)
    answer = dig_out("search_srv", srv.name, "SRV")
    assert answer_problems(srv, answer) == []
    moved = Service("web", "ns1", cluster_ip="10.96.12.34", ports=(ServicePort(8080, "TCP", "http"),))
    (srv_moved,) = expected_srv(moved)
    assert answer_problems(srv_moved, answer) == [
        "SRV (port, target) {(80, 'web.ns1.svc.cluster.local')}, "
        "expected {(8080, 'web.ns1.svc.cluster.local')}"
    ]


def test_getent_found_the_expected_addresses() -> None:
    assert hosts_problems(expected_lookup(WEB), getent_out("ahosts_short", "web")) == []
    headless = ExpectedLookup("headless", "A", True, addresses=frozenset({"10.244.1.5"}))
    assert hosts_problems(headless, getent_out("ahosts_headless", "headless")) == [
        "addresses {10.244.1.5, 10.244.2.7}, expected {10.244.1.5}"
    ]


def test_getent_not_found() -> None:
    missing = getent_out("ahosts_missing", "web")
    assert hosts_problems(expected_lookup(WEB), missing) == [
        "not found (getent exit 2), expected {10.96.12.34}"
    ]
    assert hosts_problems(ExpectedLookup("web", "A", resolvable=False), missing) == []
    found = getent_out("ahosts_short", "web")
    assert hosts_problems(ExpectedLookup("web", "A", resolvable=False), found) == [
        "found {10.96.12.34}, expected not found"
    ]


SEARCH = ("ns2.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.test")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web", ["web.ns2.svc.cluster.local", "web.svc.cluster.local", "web.cluster.local"]),
        ("web.ns1", ["web.ns1.ns2.svc.cluster.local", "web.ns1.svc.cluster.local", "web.ns1.cluster.local"]),
        ("web.ns1.svc.cluster.local.", ["web.ns1.svc.cluster.local"]),
        ("a.b.c.d.e.f", []),  # ndots reached: asked as is, outside the cluster domain
        ("a.b.c.d.cluster.local", ["a.b.c.d.cluster.local"]),
    ],
)
def test_cluster_expansions_follow_the_search_list_inside_the_cluster_domain(name, expected) -> None:
    assert cluster_expansions(name, SEARCH) == expected
