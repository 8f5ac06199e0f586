"""etp: externalTrafficPolicy, seen from this machine (outside the cluster) through NodePorts.

One backend pinned to one worker, so there are nodes with and without a local endpoint.
Two Services select it: ``cluster`` (NodePort, ``Cluster``) and ``local`` (LoadBalancer,
``Local``, node ports allocated; kind has no LB controller, but the node ports and
kube-proxy's healthCheckNodePort are served all the same).  From this machine every node's
``nodeIP:nodePort`` is tried; the backend (agnhost ``/clientip``) says which source it saw.
"""

from __future__ import annotations

import pytest

from fixtures import reachability
from fixtures.concurrency import run_all
from fixtures.expectations.model import Service, TrafficPolicy
from fixtures.expectations.traffic import health_check_statuses, nodeport_answering_nodes, nodeport_source
from fixtures.hostnet import source_address_towards
from fixtures.ingress import IngressExpectation, NodeTry, health_check_report, ingress_report
from fixtures.jig import ServiceJig, by_node
from fixtures.observations import HealthCheckReply, Unknown
from fixtures.probes import health_check, http_from_host
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
        values["backend"].update(replicas=1, nodes=[worker])
        values["service"].update(
            type="LoadBalancer",
            externalTrafficPolicy="Local",
            allocateLoadBalancerNodePorts=True,
            ports=[{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        )
        values["extraServices"] = [
            {
                "name": CLUSTER_SERVICE,
                "spec": {
                    "type": "NodePort",
                    "externalTrafficPolicy": "Cluster",
                    # the chart's backend selector (svcc.backendSelector) for release LOCAL_SERVICE
                    "selector": {
                        "app.kubernetes.io/name": "service-selectors",
                        "app.kubernetes.io/instance": LOCAL_SERVICE,
                        "app.kubernetes.io/component": "backend",
                    },
                    "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
                },
            }
        ]

    jig = ServiceJig.install(kube, cluster_facts, module_namespace(), name=LOCAL_SERVICE, clients=False,
                             tweak=tweak)
    jig.wait_ready_endpoints(name=CLUSTER_SERVICE, count=1)
    return jig


def node_port(svc: Service) -> int:
    port = next((p.node_port for p in svc.ports if p.port == HTTP_PORT and p.node_port), None)
    assert port, f"service {svc.namespace}/{svc.name} has no nodePort for port {HTTP_PORT}: {svc.ports}"
    return port


def probe_nodes(node_ips: dict[str, str], port: int, answers: dict[str, bool]) -> dict[str, list[NodeTry]]:
    """``TRIES_PER_NODE`` requests from this machine to every ``nodeIP:port``, nodes concurrently."""

    def probe(node: str) -> list[NodeTry]:
        connect = 2.0 if answers.get(node) else NO_ANSWER_CONNECT_TIMEOUT_S
        return [http_from_host(node_ips[node], port, connect_timeout=connect) for _ in range(TRIES_PER_NODE)]

    results = run_all({n: (lambda n=n: probe(n)) for n in node_ips})
    return {n: (r if isinstance(r, list) else [r]) for n, r in results.items()}


def assert_ingress(jig: ServiceJig, service: str, policy: TrafficPolicy) -> None:
    """Every node answers (or not) and shows the backend the source ``policy`` promises.

    ``policy`` is the one the test *created* the Service with: the promise is about that
    Service, so a policy changed behind the test's back is a failure, not a new expectation.
    """
    svc = jig.service(service)
    port = node_port(svc)
    node_ips = jig.node_ips()
    client_ip = source_address_towards(next(iter(node_ips.values())))
    endpoints = jig.endpoints(service)
    ready = [e for e in endpoints if e.ready]
    local = {n: len(by_node(ready).get(n, [])) for n in node_ips}
    setup = f"test setup: EndpointSlices of {jig.namespace}/{service} give local endpoints {local}"
    assert ready, f"{setup}; want a ready endpoint"
    assert any(c == 0 for c in local.values()), f"{setup}; want a node without local endpoints"
    answers = nodeport_answering_nodes(node_ips, endpoints, policy)
    endpoint_node = ready[0].node if len({e.node for e in ready}) == 1 else None
    expected = [
        IngressExpectation(
            node=n,
            node_ip=ip,
            answers=answers[n],
            source=nodeport_source(
                external_traffic_policy=policy,
                client_ip=client_ip,
                ingress_node=n,
                endpoint_node=endpoint_node,
                ingress_node_ips=[ip],
            ),
            local_endpoints=local[n],
        )
        for n, ip in node_ips.items()
    ]
    title = (
        f"NodePort {port} of service {jig.namespace}/{service} (created with externalTrafficPolicy: "
        f"{policy.value}) from this machine, client IP {client_ip}"
    )

    def check() -> tuple[bool, str]:
        report = ingress_report(title, expected, probe_nodes(node_ips, port, answers))
        text = report.render()
        if not report.ok:
            live = jig.service(service).external_traffic_policy
            if live is not policy:
                text += f"\n  note: the Service's spec now says externalTrafficPolicy: {live.value}"
        return report.ok, text

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT, what=title)


def test_cluster_policy_node_port_answers_on_every_node_and_snats_traffic_from_other_nodes(etp):
    assert_ingress(etp, CLUSTER_SERVICE, TrafficPolicy.CLUSTER)


def test_local_policy_node_port_answers_only_on_nodes_with_a_local_endpoint_and_preserves_the_client_ip(etp):
    assert_ingress(etp, LOCAL_SERVICE, TrafficPolicy.LOCAL)


def test_health_check_node_port_reports_local_endpoints(etp):
    svc = etp.service(LOCAL_SERVICE)
    hc_port = svc.health_check_node_port
    assert hc_port, (
        f"service {etp.namespace}/{LOCAL_SERVICE} (LoadBalancer, externalTrafficPolicy: Local) was given "
        f"no healthCheckNodePort: {etp.service_object(LOCAL_SERVICE).get('spec')}"
    )
    node_ips = etp.node_ips()
    title = f"healthCheckNodePort {hc_port} of service {etp.namespace}/{LOCAL_SERVICE} from this machine"

    def check() -> tuple[bool, str]:
        endpoints = etp.endpoints(LOCAL_SERVICE)
        expected = health_check_statuses(node_ips, endpoints)
        local = {n: sum(1 for e in endpoints if e.node == n and e.ready) for n in node_ips}
        observed: dict[str, HealthCheckReply | Unknown] = dict(
            run_all({n: (lambda ip=ip: health_check(ip, hc_port)) for n, ip in node_ips.items()})
        )
        problems, text = health_check_report(
            title, expected, observed, node_ips=node_ips, local_endpoints=local,
            service=(etp.namespace, LOCAL_SERVICE),
        )
        text += f"\n  reproduce: curl -sS -w ' %{{http_code}}' http://<node IP>:{hc_port}/healthz"
        return not problems, text

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT, what=title)
