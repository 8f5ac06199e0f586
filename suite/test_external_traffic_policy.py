"""etp: externalTrafficPolicy, seen from outside the cluster through NodePorts.

One backend pinned to one worker, so there are nodes with and without a local endpoint.
Two Services select it: ``cluster`` (NodePort, ``Cluster``) and ``local`` (LoadBalancer,
``Local``, node ports allocated; the node ports and kube-proxy's healthCheckNodePort are
served whether or not a load balancer exists).  Every node's ``nodeIP:nodePort`` is tried
from outside it: from the next node's network namespace (a hostNetwork pod, so it works on
any cluster) and from this machine when it reaches the nodes; the backend (agnhost
``/clientip``) says which source it saw.
"""

from __future__ import annotations

import functools

import pytest

from fixtures import outside, reachability
from fixtures.concurrency import run_all
from fixtures.expectations.model import Service, TrafficPolicy
from fixtures.expectations.traffic import health_check_statuses, nodeport_answering_nodes, nodeport_source
from fixtures.hostnet import source_address_towards
from fixtures.ingress import IngressExpectation, NodeTry, health_check_passes, ingress_report
from fixtures.jig import ServiceJig, by_node, etp_local_and_cluster
from fixtures.timeouts import KUBE_PROXY_SERVICE_SYNC_TIMEOUT

pytestmark = pytest.mark.etp

LOCAL_SERVICE = "local"
CLUSTER_SERVICE = "cluster"
HTTP_PORT = 80
# Tries per node per look: every one must conform, so a node that answers only sometimes
# (or sees the client only sometimes) is caught.  Non-answering nodes cost one connect
# timeout per try.
TRIES_PER_NODE = 2
# A node that must not answer drops (Local, no local endpoint) or rejects the SYN; on a kind
# bridge a SYN-ACK takes well under a millisecond, so 1 s tells "no answer" from a loaded host.
NO_ANSWER_CONNECT_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def etp(module_namespace, kube, cluster_facts) -> ServiceJig:
    """The backend on one worker, the ``local`` and ``cluster`` Services selecting it."""
    if not cluster_facts.workers:
        pytest.skip("externalTrafficPolicy needs a worker node to pin the backend to (cluster has none)")
    worker = cluster_facts.workers[0].name

    def tweak(values: dict) -> None:
        etp_local_and_cluster(values, worker=worker, local=LOCAL_SERVICE, cluster=CLUSTER_SERVICE,
                              port=HTTP_PORT)

    jig = ServiceJig.install(kube, cluster_facts, module_namespace(), name=LOCAL_SERVICE, clients=False,
                             tweak=tweak)
    jig.wait_ready_endpoints(name=CLUSTER_SERVICE, count=1)
    return jig


def node_port(svc: Service) -> int:
    port = next((p.node_port for p in svc.ports if p.port == HTTP_PORT and p.node_port), None)
    assert port, f"service {svc.namespace}/{svc.name} has no nodePort for port {HTTP_PORT}: {svc.ports}"
    return port


def probe_nodes(node_ips: dict[str, str], port: int, answers: dict[str, bool],
                vantage_of: dict[str, outside.Outside]) -> dict[str, list[NodeTry]]:
    """``TRIES_PER_NODE`` requests to every ``nodeIP:port`` from that node's outside vantage,
    nodes concurrently."""

    def probe(node: str) -> list[NodeTry]:
        connect = 2.0 if answers.get(node) else NO_ANSWER_CONNECT_TIMEOUT_S
        v = vantage_of[node]
        return [v.http(node_ips[node], port, connect_timeout=connect) for _ in range(TRIES_PER_NODE)]

    results = run_all({n: functools.partial(probe, n) for n in vantage_of})
    return {n: (r if isinstance(r, list) else [r]) for n, r in results.items()}


def assert_ingress(jig: ServiceJig, service: str, policy: TrafficPolicy, node_vantages, host_reach) -> None:
    """Every node answers (or not) and shows the backend the source ``policy`` promises, to
    traffic from outside: another node's network namespace (and this machine, when it
    reaches the nodes).

    ``policy`` is the one the test *created* the Service with: the promise is about that
    Service, so a policy changed behind the test's back is a failure, not a new expectation.
    """
    svc = jig.service(service)
    port = node_port(svc)
    node_ips = jig.node_ips()
    endpoints = jig.endpoints(service)
    ready = [e for e in endpoints if e.ready]
    local = {n: len(by_node(ready).get(n, [])) for n in node_ips}
    setup = f"test setup: EndpointSlices of {jig.namespace}/{service} give local endpoints {local}"
    assert ready, f"{setup}; want a ready endpoint"
    assert any(c == 0 for c in local.values()), f"{setup}; want a node without local endpoints"
    answers = nodeport_answering_nodes(node_ips, endpoints, policy)
    endpoint_node = ready[0].node if len({e.node for e in ready}) == 1 else None
    passes = outside.passes(node_ips, node_vantages, host_reach, host_source=source_address_towards)
    assert passes, f"no outside vantage for nodePort {port}: {host_reach.not_tried()}"

    def expected(vantage_of: dict[str, outside.Outside]) -> list[IngressExpectation]:
        return [
            IngressExpectation(
                node=n,
                node_ip=node_ips[n],
                answers=answers[n],
                source=nodeport_source(
                    external_traffic_policy=policy,
                    client_ip=v.source_ip,
                    ingress_node=n,
                    endpoint_node=endpoint_node,
                    ingress_node_ips=[node_ips[n]],
                ),
                local_endpoints=local[n],
                vantage=v.row,
            )
            for n, v in vantage_of.items()
        ]

    title = (
        f"NodePort {port} of service {jig.namespace}/{service} (created with externalTrafficPolicy: "
        f"{policy.value}) from outside the cluster{outside.title_note(host_reach)}"
    )

    def check() -> tuple[bool, str]:
        reports = [ingress_report(title if i == 0 else "", expected(v),
                                  probe_nodes(node_ips, port, answers, v))
                   for i, v in enumerate(passes)]
        ok = all(r.ok for r in reports)
        text = "\n".join(r.render().lstrip("\n") for r in reports)
        if not ok:
            live = jig.service(service).external_traffic_policy
            if live is not policy:  # first: the tables below can be long
                text = f"note: the Service's spec now says externalTrafficPolicy: {live.value}\n{text}"
        return ok, text

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT, what=title)


def test_cluster_policy_node_port_answers_on_every_node_and_snats_traffic_from_other_nodes(
        etp, node_vantages, host_reach):
    assert_ingress(etp, CLUSTER_SERVICE, TrafficPolicy.CLUSTER, node_vantages, host_reach)


def test_local_policy_node_port_answers_only_on_nodes_with_a_local_endpoint_and_preserves_the_client_ip(
        etp, node_vantages, host_reach):
    assert_ingress(etp, LOCAL_SERVICE, TrafficPolicy.LOCAL, node_vantages, host_reach)


@pytest.mark.extended(reason="healthCheckNodePort is served by kube-proxy; a replacement may serve it "
                      "differently or not at all")
def test_health_check_node_port_reports_local_endpoints(etp, node_vantages, host_reach):
    svc = etp.service(LOCAL_SERVICE)
    hc_port = svc.health_check_node_port
    assert hc_port, (
        f"service {etp.namespace}/{LOCAL_SERVICE} (LoadBalancer, externalTrafficPolicy: Local) was given "
        f"no healthCheckNodePort: {etp.service_object(LOCAL_SERVICE).get('spec')}"
    )
    node_ips = etp.node_ips()
    passes = outside.passes(node_ips, node_vantages, host_reach, host_source=source_address_towards)
    assert passes, f"no outside vantage for healthCheckNodePort {hc_port}: {host_reach.not_tried()}"
    base = (f"healthCheckNodePort {hc_port} of service {etp.namespace}/{LOCAL_SERVICE} from outside the "
            f"cluster{outside.title_note(host_reach)}")

    def check() -> tuple[bool, str]:
        endpoints = etp.endpoints(LOCAL_SERVICE)
        local = {n: sum(1 for e in endpoints if e.ready and e.node == n) for n in node_ips}
        expected = health_check_statuses(node_ips, endpoints)
        return health_check_passes(base, passes, node_ips, hc_port, expected,
                                   local_endpoints=local, service=(etp.namespace, LOCAL_SERVICE))

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT, what=base)
