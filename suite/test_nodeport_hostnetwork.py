"""nodeport, host network: a hostNetwork pod on every node reaches a NodePort Service on every
node's IP, its own node's included (upstream e2e's "Granular Checks: Services ... node-Service"
cases, from a hostNetwork test pod).

One NodePort Service (``externalTrafficPolicy: Cluster``) whose only backend is pinned to the
first worker, and a hostNetwork client on every node: the client's packets leave from the
node's own address, so ``<own node IP>:<nodePort>`` takes the proxy's locally-generated path
and every other node's takes the remote one, which must forward to the worker.
"""

from __future__ import annotations

import pytest

from fixtures import reachability
from fixtures.backendchecks import node_column, node_port_from_clients
from fixtures.expectations.model import TrafficPolicy
from fixtures.expectations.traffic import nodeport_answering_nodes
from fixtures.jig import ServiceJig, tweaks
from fixtures.timeouts import KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.nodeport


@pytest.fixture(scope="module")
def host_clients_nodeport(module_namespace, kube, cluster_facts) -> ServiceJig:
    worker = (cluster_facts.workers or cluster_facts.nodes)[0].name
    return ServiceJig.install(
        kube,
        cluster_facts,
        module_namespace(),
        name="hnp",
        backends=1,
        tweak=tweaks(("service.type", "NodePort"), ("backend.nodes", [worker]),
                     ("clients.hostNetwork", True), ("clients.namePrefix", "hclient")),
    )


@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_host_network_pods_on_every_node_reach_every_node_ip_on_the_node_port(
        host_clients_nodeport: ServiceJig, protocol: str) -> None:
    j = host_clients_nodeport
    svc = j.service()
    port = next((p.node_port for p in svc.ports if p.protocol == protocol and p.node_port), None)
    assert port is not None, f"service {j.namespace}/{svc.name} has no {protocol} nodePort: {svc.ports}"
    node_ips = j.node_ips()
    endpoints = j.endpoints()
    backends = sorted(f"{e.label} on {e.node}" for e in endpoints if e.ready)
    answering = nodeport_answering_nodes(node_ips, endpoints, TrafficPolicy.CLUSTER)
    columns = {node_column(n, ip, port): n for n, ip in node_ips.items()}
    clients = j.clients()
    title = (f"{protocol} nodePort {port} from hostNetwork client pods (service {j.namespace}/{svc.name}, "
             f"externalTrafficPolicy Cluster, endpoints: {', '.join(backends)})")
    expected = reachability.expected_table(title, list(clients), list(columns),
                                           lambda r, c: answering[columns[c]])

    def check() -> tuple[bool, str]:
        results = node_port_from_clients(clients, node_ips, port, proto=protocol.lower())
        cmp = reachability.compare(expected, reachability.observed_table(title, results))
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)
