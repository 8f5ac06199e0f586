"""Endpoint selection (kube-proxy CategorizeEndpoints), NodePort/ETP/ITP expectations,
source addresses, health checks, ranges, and building the model from API objects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.expectations import (
    DEFAULT_NODE_PORT_RANGE,
    Endpoint,
    ServiceType,
    SourceRule,
    TrafficPolicy,
    backend_matrix,
    cluster_ip_problems,
    clusterip_backends,
    clusterip_source,
    endpoint_for_pod,
    endpoints_from_slices,
    health_check_statuses,
    node_port_problems,
    nodeport_answering_nodes,
    nodeport_backends,
    nodeport_source,
    parse_port_range,
    reachable_endpoints,
    rejection_problem,
    service_from_object,
)
from fixtures.observations import ErrorKind

NODES = ["cp", "w1", "w2"]
LOCAL, CLUSTER = TrafficPolicy.LOCAL, TrafficPolicy.CLUSTER
EPS = (
    Endpoint("10.244.1.2", "w1", name="web-a"),
    Endpoint("10.244.1.3", "w1", name="web-b"),
    Endpoint("10.244.2.2", "w2", ready=False, name="web-c"),
)


def test_cluster_policy_uses_every_ready_endpoint() -> None:
    assert clusterip_backends(EPS, client_node="cp", internal_traffic_policy=CLUSTER) == {"web-a", "web-b"}


def test_internal_traffic_policy_local_only_from_nodes_with_local_endpoints() -> None:
    m = backend_matrix({"client-cp": "cp", "client-w1": "w1", "client-w2": "w2"}, EPS, LOCAL)
    assert m == {"client-cp": frozenset(), "client-w1": {"web-a", "web-b"}, "client-w2": frozenset()}


def test_terminating_fallback() -> None:
    eps = (
        endpoint_for_pod("10.244.1.2", "w1", pod_ready=True, terminating=True, name="old"),
        endpoint_for_pod("10.244.2.2", "w2", pod_ready=False, name="unready"),
    )
    assert not eps[0].ready
    assert eps[0].is_serving
    # no ready endpoint anywhere: serving-and-terminating ones are used
    assert {e.label for e in reachable_endpoints(eps, CLUSTER, None)} == {"old"}
    assert {e.label for e in reachable_endpoints(eps, LOCAL, "w1")} == {"old"}
    assert reachable_endpoints(eps, LOCAL, "w2") == ()
    # a ready endpoint anywhere wins over terminating ones for Cluster
    eps2 = (*eps, Endpoint("10.244.3.3", "cp", name="new"))
    assert {e.label for e in reachable_endpoints(eps2, CLUSTER, None)} == {"new"}
    # ...but Local on w1 still falls back to its own terminating endpoint
    assert {e.label for e in reachable_endpoints(eps2, LOCAL, "w1")} == {"old"}


def test_local_policy_needs_a_node() -> None:
    with pytest.raises(ValueError, match="node"):
        reachable_endpoints(EPS, LOCAL, None)


def test_nodeport_answering_nodes() -> None:
    assert nodeport_answering_nodes(NODES, EPS, CLUSTER) == {"cp": True, "w1": True, "w2": True}
    assert nodeport_answering_nodes(NODES, EPS, LOCAL) == {"cp": False, "w1": True, "w2": False}
    assert nodeport_answering_nodes(NODES, (), CLUSTER) == {"cp": False, "w1": False, "w2": False}
    assert nodeport_backends(EPS, ingress_node="w2", external_traffic_policy=LOCAL) == frozenset()
    assert nodeport_backends(EPS, ingress_node="cp", external_traffic_policy=CLUSTER) == {"web-a", "web-b"}


def test_health_check_statuses() -> None:
    assert health_check_statuses(NODES, EPS) == {"cp": 503, "w1": 200, "w2": 503}
    # a node whose only endpoint is terminating still serves Local traffic, but reports 503
    draining = (endpoint_for_pod("10.244.1.2", "w1", pod_ready=True, terminating=True),)
    assert health_check_statuses(["w1"], draining) == {"w1": 503}
    assert nodeport_answering_nodes(["w1"], draining, LOCAL) == {"w1": True}


def test_source_addresses() -> None:
    local = nodeport_source(
        external_traffic_policy=LOCAL, client_ip="172.18.0.1", ingress_node="w1", endpoint_node="w1"
    )
    assert local.rule is SourceRule.PRESERVED
    assert local.problem("172.18.0.1") is None
    problem = local.problem("172.18.0.3")
    assert problem is not None
    assert "172.18.0.1" in problem
    crossing = nodeport_source(
        external_traffic_policy=CLUSTER,
        client_ip="172.18.0.1",
        ingress_node="cp",
        endpoint_node="w1",
        ingress_node_ips=["172.18.0.2"],
    )
    assert crossing.rule is SourceRule.SNAT
    assert crossing.problem("172.18.0.2") is None
    assert crossing.problem("172.18.0.1") is not None
    assert "172.18.0.2" in crossing.describe()
    same = nodeport_source(
        external_traffic_policy=CLUSTER, client_ip="172.18.0.1", ingress_node="w1", endpoint_node="w1"
    )
    assert same.rule is SourceRule.UNSPECIFIED
    assert same.problem(None) is None
    assert clusterip_source(client_ip="10.244.1.9").problem("10.244.1.9") is None
    assert clusterip_source(client_ip="10.244.1.9", hairpin=True).rule is SourceRule.UNSPECIFIED
    assert clusterip_source(client_ip="10.244.1.9").problem(None) is not None


endpoints = st.lists(
    st.builds(
        Endpoint,
        ip=st.ip_addresses(v=4).map(str),
        node=st.sampled_from(NODES),
        ready=st.booleans(),
        serving=st.one_of(st.none(), st.booleans()),
        terminating=st.booleans(),
    ),
    max_size=8,
    unique_by=lambda e: e.ip,
)


@given(endpoints)
def test_local_answers_are_a_subset_of_cluster_answers_and_health_checks_agree(eps: list[Endpoint]) -> None:
    cluster = nodeport_answering_nodes(NODES, eps, CLUSTER)
    local = nodeport_answering_nodes(NODES, eps, LOCAL)
    health = health_check_statuses(NODES, eps)
    for n in NODES:
        assert not local[n] or cluster[n]  # a node answering under Local answers under Cluster
        assert health[n] != 200 or local[n]  # 200 only where Local traffic is served
        if not any(e.terminating for e in eps):
            assert (health[n] == 200) == local[n]
        assert all(e.node == n for e in reachable_endpoints(eps, LOCAL, n))
    if any(e.ready for e in eps):
        assert all(cluster.values())
        assert {e.ip for e in reachable_endpoints(eps, CLUSTER, None)} == {e.ip for e in eps if e.ready}


# --------------------------------------------------------------------------- ranges


def test_cluster_ip_ranges() -> None:
    assert (
        cluster_ip_problems("10.96.0.10", service_cidrs=["10.96.0.0/16"], pod_cidrs=["10.244.0.0/16"]) == []
    )
    bad = cluster_ip_problems("10.244.3.3", service_cidrs=["10.96.0.0/16"], pod_cidrs=["10.244.0.0/16"])
    assert len(bad) == 2
    assert cluster_ip_problems("nope", service_cidrs=[], pod_cidrs=[]) == [
        "ClusterIP 'nope' is not an IP address"
    ]
    assert (
        cluster_ip_problems("fd00:10:96::a", service_cidrs=["fd00:10:96::/112"], pod_cidrs=["10.244.0.0/16"])
        == []
    )


def test_node_port_range() -> None:
    assert DEFAULT_NODE_PORT_RANGE == (30000, 32767)
    assert node_port_problems(30000) == []
    assert node_port_problems(32767) == []
    assert node_port_problems(29999) != []
    assert node_port_problems(None) == ["nodePort not allocated"]
    assert parse_port_range("30000-32767") == (30000, 32767)
    assert parse_port_range("30000+767") == (30000, 30767)
    with pytest.raises(ValueError, match="port range"):
        parse_port_range("32767-30000")
    with pytest.raises(ValueError, match="port range"):
        parse_port_range("30000")


@given(st.integers(1, 65535))
def test_node_port_range_property(port: int) -> None:
    assert (node_port_problems(port) == []) == (30000 <= port <= 32767)


# --------------------------------------------------------------------------- model from API objects


def test_service_from_object() -> None:
    obj = {
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.3.3",
            "clusterIPs": ["10.96.3.3"],
            "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 31999,
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http", "nodePort": 30080}
            ],
            "selector": {"app": "web"},
        },
    }
    svc = service_from_object(obj)
    assert svc.type is ServiceType.LOAD_BALANCER
    assert svc.external_traffic_policy is LOCAL
    assert svc.internal_traffic_policy is CLUSTER
    assert svc.exposes_node_ports
    assert svc.ports[0].node_port == 30080
    assert svc.ports[0].target_port == "http"
    assert svc.health_check_node_port == 31999
    headless = service_from_object({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}})
    assert headless.headless
    assert not headless.has_cluster_ip
    assert headless.namespace == "default"


def test_endpoints_from_slices_nil_conditions_mean_ready() -> None:
    slices = [
        {
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": ["10.244.1.2"],
                    "nodeName": "w1",
                    "conditions": {},
                    "targetRef": {"kind": "Pod", "name": "web-a"},
                },
                {
                    "addresses": ["10.244.2.2"],
                    "nodeName": "w2",
                    "conditions": {"ready": False, "serving": True, "terminating": True},
                },
            ],
        }
    ]
    a, b = endpoints_from_slices(slices)
    assert a.ready
    assert a.is_serving
    assert a.label == "web-a"
    assert a.ports == {"http": 8080}
    assert not b.ready
    assert b.is_serving
    assert b.terminating
    assert b.label == "10.244.2.2"


def test_prompt_rejection_of_a_service_without_endpoints() -> None:
    assert rejection_problem(ErrorKind.REFUSED, 0.002) is None
    assert rejection_problem(None, 0.002) is not None
    timeout = rejection_problem(ErrorKind.TIMEOUT, 2.0)
    assert timeout is not None
    assert "timeout" in timeout
    slow = rejection_problem(ErrorKind.REFUSED, 1.5)
    assert slow is not None
    assert "within 1s" in slow
