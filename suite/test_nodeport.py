"""nodeport: a NodePort Service answers on every node's IP, from outside the cluster (another
node's network namespace, and this machine when it reaches the nodes) and from pods,
including on nodes that run none of its endpoints.

One module-scoped NodePort Service (``externalTrafficPolicy: Cluster``, the default) whose
only backend is pinned to one worker, with a client pod on every node: every other node
must forward to that worker.
"""

from __future__ import annotations

import pytest

from fixtures import outside, reachability
from fixtures.backendchecks import node_column, node_port_from_clients
from fixtures.expectations.clusterip import node_port_presence_problems
from fixtures.expectations.model import Service, TrafficPolicy
from fixtures.expectations.traffic import nodeport_answering_nodes
from fixtures.hostnet import source_address_towards
from fixtures.jig import ServiceJig, tweaks
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


def _setup(jig: ServiceJig, protocol: str) -> tuple[int, dict[str, str], dict[str, bool], str]:
    svc = jig.service()
    port = node_port(svc, protocol)
    node_ips = jig.node_ips()
    endpoints = jig.endpoints()
    backends = sorted(f"{e.label} on {e.node}" for e in endpoints if e.ready)
    answering = nodeport_answering_nodes(node_ips, endpoints, TrafficPolicy.CLUSTER)
    what = (f"service {jig.namespace}/{svc.name}, externalTrafficPolicy Cluster, "
            f"endpoints: {', '.join(backends)}")
    return port, node_ips, answering, what


def assert_node_port_from_outside(jig: ServiceJig, protocol: str, node_vantages, host_reach) -> None:
    """Rows: the outside vantages (each node's hostNetwork pod, and this machine when it
    reaches the nodes); columns: every node's ``ip:nodePort``; a node's own row and column
    meet in ``*`` (local traffic, not from outside).  Expected: every other cell answers."""
    port, node_ips, answering, what = _setup(jig, protocol)
    vantages = outside.everyone(node_ips, node_vantages, host_reach, host_source=source_address_towards)
    targets = {node_column(n, ip, port): (n, ip) for n, ip in node_ips.items()}
    rows = {v.row: v for v in vantages}
    title = f"{protocol} nodePort {port} from outside the cluster ({what}){outside.title_note(host_reach)}"
    expected = reachability.expected_table(
        title, list(rows), list(targets),
        lambda r, c: None if rows[r].node == targets[c][0] else answering[targets[c][0]],
    )
    proto = protocol.lower()

    def probe(v: outside.Outside, ip: str) -> object:
        return v.udp(ip, port) if proto == "udp" else v.http(ip, port)

    def check() -> tuple[bool, str]:
        results = outside.node_port_matrix(vantages, targets, probe)
        observed = reachability.observed_table(title, results, rows=list(rows), columns=list(targets))  # type: ignore[arg-type]
        cmp = reachability.compare(expected, observed)
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def assert_node_port_from_pods(jig: ServiceJig, protocol: str) -> None:
    """Rows: the client pod on each node; columns: every node's ``ip:nodePort``.  Expected:
    every cell answers (Cluster policy, one ready endpoint)."""
    port, node_ips, answering, what = _setup(jig, protocol)
    columns = {node_column(n, ip, port): n for n, ip in node_ips.items()}
    clients = jig.clients()
    title = f"{protocol} nodePort {port} from client pods ({what})"
    expected = reachability.expected_table(title, list(clients), list(columns),
                                           lambda r, c: answering[columns[c]])
    proto = protocol.lower()

    def check() -> tuple[bool, str]:
        results = node_port_from_clients(clients, node_ips, port, proto=proto)
        cmp = reachability.compare(expected, reachability.observed_table(title, results))
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_node_ports_are_allocated_from_the_node_port_range(nodeport, cluster_info, record_configuration):
    port_range = cluster_info.node_port_range
    record_configuration(cluster_info.describe("node_port_range"))
    svc = nodeport.service()
    problems = node_port_presence_problems(svc, expect_node_ports=True, port_range=port_range)
    assert not problems, f"service {nodeport.namespace}/{svc.name}: " + "; ".join(problems)


def test_every_node_ip_answers_the_tcp_node_port_from_outside_the_cluster(
        nodeport, node_vantages, host_reach):
    assert_node_port_from_outside(nodeport, "TCP", node_vantages, host_reach)


def test_every_node_ip_answers_the_udp_node_port_from_outside_the_cluster(
        nodeport, node_vantages, host_reach):
    assert_node_port_from_outside(nodeport, "UDP", node_vantages, host_reach)


def test_pods_on_every_node_reach_every_node_ip_on_the_tcp_node_port(nodeport):
    assert_node_port_from_pods(nodeport, "TCP")


def test_pods_on_every_node_reach_every_node_ip_on_the_udp_node_port(nodeport):
    assert_node_port_from_pods(nodeport, "UDP")
