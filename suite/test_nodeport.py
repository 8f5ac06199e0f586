"""nodeport: a NodePort Service answers on every node's IP, from outside the cluster (this
machine) and from pods, including on nodes that run none of its endpoints.

One module-scoped NodePort Service (``externalTrafficPolicy: Cluster``, the default) whose
only backend is pinned to one worker, with a client pod on every node: every other node
must forward to that worker.
"""

from __future__ import annotations

import pytest

from fixtures import clusterinfo, reachability
from fixtures.expectations.clusterip import node_port_presence_problems
from fixtures.expectations.model import Service, TrafficPolicy
from fixtures.expectations.traffic import nodeport_answering_nodes
from fixtures.jig import ServiceJig, tweaks
from fixtures.servicetraffic import node_column, node_port_from_clients, node_port_from_host
from fixtures.timeouts import KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.nodeport


@pytest.fixture(scope="module")
def nodeport(module_namespace, kube, cluster_facts) -> ServiceJig:
    worker = cluster_facts.workers[0].name
    return ServiceJig.install(
        kube,
        cluster_facts,
        module_namespace(),
        name="np",
        backends=1,
        tweak=tweaks(("service.type", "NodePort"), ("backend.nodes", [worker])),
    )


def node_port(svc: Service, protocol: str) -> int:
    port = next((p.node_port for p in svc.ports if p.protocol == protocol and p.node_port), None)
    assert port is not None, f"service {svc.namespace}/{svc.name} has no {protocol} nodePort: {svc.ports}"
    return port


def assert_node_port_table(jig: ServiceJig, protocol: str, *, from_host: bool) -> None:
    """Rows: the vantage (the host, or the client pod on each node); columns: every node's
    ``ip:nodePort``.  Expected: every cell answers (Cluster policy, one ready endpoint)."""
    svc = jig.service()
    port = node_port(svc, protocol)
    node_ips = jig.node_ips()
    endpoints = jig.endpoints()
    backends = sorted(f"{e.label} on {e.node}" for e in endpoints if e.ready)
    answering = nodeport_answering_nodes(node_ips, endpoints, TrafficPolicy.CLUSTER)
    columns = {node_column(n, ip, port): n for n, ip in node_ips.items()}
    clients = jig.clients()
    rows = ["host"] if from_host else list(clients)
    vantage = "this machine" if from_host else "client pods"
    title = (
        f"{protocol} nodePort {port} from {vantage} (service {jig.namespace}/{svc.name}, "
        f"externalTrafficPolicy Cluster, endpoints: {', '.join(backends)})"
    )
    expected = reachability.expected_table(title, rows, list(columns), lambda r, c: answering[columns[c]])
    proto = protocol.lower()

    def check() -> tuple[bool, str]:
        if from_host:
            results = node_port_from_host(node_ips, port, proto=proto)
        else:
            results = node_port_from_clients(clients, node_ips, port, proto=proto)
        cmp = reachability.compare(expected, reachability.observed_table(title, results))
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_node_ports_are_allocated_from_the_node_port_range(nodeport, kube):
    port_range = clusterinfo.read(kube).node_port_range
    svc = nodeport.service()
    problems = node_port_presence_problems(svc, expect_node_ports=True, port_range=port_range)
    assert not problems, f"service {nodeport.namespace}/{svc.name}: " + "; ".join(problems)


def test_every_node_ip_answers_the_tcp_node_port_from_outside_the_cluster(nodeport):
    assert_node_port_table(nodeport, "TCP", from_host=True)


def test_every_node_ip_answers_the_udp_node_port_from_outside_the_cluster(nodeport):
    assert_node_port_table(nodeport, "UDP", from_host=True)


def test_pods_on_every_node_reach_every_node_ip_on_the_tcp_node_port(nodeport):
    assert_node_port_table(nodeport, "TCP", from_host=False)


def test_pods_on_every_node_reach_every_node_ip_on_the_udp_node_port(nodeport):
    assert_node_port_table(nodeport, "UDP", from_host=False)
