"""hostNetwork expectations: backend port pairs and endpoint addresses at the node IP."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fixtures.expectations import Endpoint
from fixtures.expectations.hostnetwork import HOST_PORT_RANGE, host_network_endpoint_problems, host_ports


@given(st.text(min_size=1, max_size=63))
def test_host_ports_are_a_fixed_consecutive_pair_inside_the_range(key: str) -> None:
    tcp, udp = host_ports(key)
    assert HOST_PORT_RANGE[0] <= tcp < udp <= HOST_PORT_RANGE[1]
    assert udp == tcp + 1
    assert tcp % 2 == 0
    assert host_ports(key) == (tcp, udp)


def test_host_ports_stay_clear_of_node_agents_node_ports_and_ephemeral_ports() -> None:
    low, high = HOST_PORT_RANGE
    assert low > 10259  # kube-scheduler, the highest control-plane port
    assert high < 30000  # the default NodePort range
    assert high < 32768  # Linux's default ephemeral range
    pairs = {host_ports(f"svcc-clusterip-run{i}-abcd") for i in range(200)}
    assert len(pairs) > 190  # namespaces rarely share a pair


def test_endpoints_must_be_at_their_nodes_ip() -> None:
    nodes = {"w1": ["172.18.0.3"], "w2": ["172.18.0.4", "fc00:f853::4"]}
    good = [Endpoint("172.18.0.3", node="w1", name="b-1"), Endpoint("fc00:f853::4", node="w2", name="b-2")]
    assert host_network_endpoint_problems(good, nodes) == []
    bad = [Endpoint("10.244.1.5", node="w1", name="b-1"), Endpoint("172.18.0.3", node=None, name="b-3"),
           Endpoint("172.18.0.9", node="w9", name="b-9")]
    assert host_network_endpoint_problems(bad, nodes) == [
        "endpoint 10.244.1.5 (b-1) on w1: expected one of the node's IPs ['172.18.0.3']",
        "endpoint 172.18.0.3 (b-3) names no node",
        "endpoint 172.18.0.9 (b-9) on w9: expected one of the node's IPs []",
    ]
