"""etp: NodePorts and the healthCheckNodePort when the only endpoint is terminating (KEP-1669).

The only backend (pinned to the first worker) is deleted while it keeps serving (agnhost
``--delay-shutdown``): its endpoint is ``ready=false serving=true terminating=true``.  Two
Services select it: ``cluster`` (NodePort, ``externalTrafficPolicy: Cluster``) and ``local``
(LoadBalancer with node ports, ``Local``; kind has no LB controller, but node ports and the
healthCheckNodePort are served all the same).  With no ready endpoint left, kube-proxy falls
back to the terminating one (upstream e2e "should fallback to [local] terminating endpoints
when there are no ready endpoints with externalTrafficPolicy=Cluster/Local"):

* Cluster: every node's ``nodeIP:nodePort`` answers, from this machine and from pods;
* Local: only the endpoint's node answers (from this machine, which the backend sees as the
  source; from pods on other nodes too); a node without it drops;
* the healthCheckNodePort counts only *ready* local endpoints, so it answers 503 on every
  node, the endpoint's included, while traffic is still served there (upstream "should fail
  health check node port if there are only terminating endpoints").

The terminating pod is force-deleted at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from fixtures import reachability
from fixtures.concurrency import run_all, run_matrix
from fixtures.expectations.model import Endpoint, Service, TrafficPolicy
from fixtures.expectations.traffic import (
    health_check_statuses,
    nodeport_answering_nodes,
    nodeport_from_pod_answers,
)
from fixtures.hostnet import source_address_towards
from fixtures.ingress import health_check_report
from fixtures.jig import ServiceJig
from fixtures.kube import PodInfo
from fixtures.observations import HealthCheckReply, Unknown
from fixtures.probes import health_check, http_from_host, http_get
from fixtures.servicetraffic import node_column
from fixtures.terminating import (
    AnsweredBy,
    drain_all,
    force_delete_backends,
    slow_draining_backends,
    wait_only_terminating,
    window_state,
)
from fixtures.timeouts import KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, KUBE_PROXY_SERVICE_SYNC_TIMEOUT

pytestmark = pytest.mark.etp

LOCAL = "local"
CLUSTER = "cluster"
HTTP_PORT = 80
HTTP = {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}
HOST_ROW = "host"
#: A node that must not answer drops the SYN (Local, no local endpoint); on a kind bridge a
#: SYN-ACK takes well under a millisecond, so 1 s tells "no answer" from a loaded host.
NO_ANSWER_CONNECT_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def etp(module_namespace, kube, cluster_facts) -> ServiceJig:
    """One slowly draining backend on the first worker, Services ``local`` and ``cluster``."""
    if not cluster_facts.workers:
        pytest.skip("terminating-endpoint checks pin the backend to a worker node (cluster has none)")
    worker = cluster_facts.workers[0].name

    def tweak(values: dict) -> None:
        values["backend"].update(replicas=1, nodes=[worker])
        slow_draining_backends(values)
        values["service"].update(type="LoadBalancer", externalTrafficPolicy="Local",
                                 allocateLoadBalancerNodePorts=True, ports=[HTTP])
        values["extraServices"] = [{"name": CLUSTER, "spec": {
            "type": "NodePort", "externalTrafficPolicy": "Cluster", "ports": [HTTP],
            # the chart's backend selector (svcc.backendSelector) for release LOCAL
            "selector": {"app.kubernetes.io/name": "service-selectors", "app.kubernetes.io/instance": LOCAL,
                         "app.kubernetes.io/component": "backend"}}}]

    jig = ServiceJig.install(kube, cluster_facts, module_namespace(), name=LOCAL, tweak=tweak)
    jig.wait_ready_endpoints(name=CLUSTER, count=1)
    return jig


def health_check_port(jig: ServiceJig) -> int:
    svc = jig.service(LOCAL)
    assert svc.health_check_node_port, (
        f"service {jig.namespace}/{LOCAL} (LoadBalancer, externalTrafficPolicy: Local) was given no "
        f"healthCheckNodePort: {jig.service_object(LOCAL).get('spec')}")
    return int(svc.health_check_node_port)


def health_check_check(jig: ServiceJig, endpoints: Sequence[Endpoint], title: str):  # type: ignore[no-untyped-def]
    """A wait_until check: every node's healthCheckNodePort status as ``endpoints`` promise."""
    port = health_check_port(jig)
    node_ips = jig.node_ips()
    expected = health_check_statuses(node_ips, endpoints)
    local = {n: sum(1 for e in endpoints if e.node == n and e.ready) for n in node_ips}

    def check() -> tuple[bool, str]:
        observed: dict[str, HealthCheckReply | Unknown] = dict(
            run_all({n: (lambda ip=ip: health_check(ip, port)) for n, ip in node_ips.items()}))
        problems, text = health_check_report(title, expected, observed, node_ips=node_ips,
                                             local_endpoints=local, service=(jig.namespace, LOCAL))
        text += f"\n  reproduce: curl -sS -w ' %{{http_code}}' http://<node IP>:{port}/healthz"
        return not problems, text

    return check


@pytest.fixture(scope="module")
def drained(etp, kube) -> Iterator[list[PodInfo]]:
    """The backend, now terminating (serving for TERMINATING_SERVE_WINDOW); before that, the
    healthCheckNodePort answered 200 on its node, so a later 503 is the termination's doing.
    Force-deleted after the module's last check."""
    before = etp.endpoints(LOCAL)
    title = (f"healthCheckNodePort {health_check_port(etp)} of service {etp.namespace}/{LOCAL} from this "
             f"machine, before the backend terminates")
    reachability.wait_for_tables(health_check_check(etp, before, title),
                                 timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT, what=title)
    try:
        yield drain_all(etp)
    finally:
        force_delete_backends(kube, etp)


def node_port(svc: Service) -> int:
    port = next((p.node_port for p in svc.ports if p.port == HTTP_PORT and p.node_port), None)
    assert port, f"service {svc.namespace}/{svc.name} has no nodePort for port {HTTP_PORT}: {svc.ports}"
    return port


def assert_node_port_fallback(jig: ServiceJig, service: str, drained: Sequence[PodInfo],
                              policy: TrafficPolicy) -> None:
    """From this machine and from a pod on every node, each node's nodePort answers from the
    terminating endpoint exactly where ``policy`` promises (a table per look)."""
    snapshot = wait_only_terminating(jig, service, drained)
    svc = jig.service(service)
    port = node_port(svc)
    node_ips = jig.node_ips()
    host_ip = source_address_towards(next(iter(node_ips.values())))
    clients = jig.clients()
    columns = {node_column(n, ip, port): n for n, ip in node_ips.items()}
    rows = [HOST_ROW, *clients]
    host_answers = nodeport_answering_nodes(node_ips, snapshot, policy)

    def expect(row: str, column: str) -> bool | None:
        ingress = columns[column]
        if row == HOST_ROW:
            return host_answers[ingress]
        return nodeport_from_pod_answers(snapshot, client_node=row, ingress_node=ingress,
                                         external_traffic_policy=policy)

    backends = frozenset(e.label for e in snapshot)
    where = ", ".join(f"{e.label} on {e.node}" for e in snapshot)
    title = (f"NodePort {port} of service {jig.namespace}/{service} (externalTrafficPolicy: {policy.value}; "
             f"its only endpoint {where} is terminating, serving, not ready); rows: this machine "
             f"({host_ip}) and the client pod on each node")
    expected = reachability.expected_table(title, rows, list(columns), expect)
    # Local keeps the client's address: from this machine the backend must see host_ip.
    source = host_ip if policy is TrafficPolicy.LOCAL else None

    def probe(row: str, column: str) -> AnsweredBy:
        ip = node_ips[columns[column]]
        answers = expect(row, column)
        connect = 2.0 if answers is not False else NO_ANSWER_CONNECT_TIMEOUT_S
        if row == HOST_ROW:
            return AnsweredBy(http_from_host(ip, port, connect_timeout=connect), backends, source)
        return AnsweredBy(http_get(clients[row], ip, port, connect_timeout=connect), backends)

    def check() -> tuple[bool, str]:
        observed = run_matrix(rows, list(columns), probe)
        cmp = reachability.compare(expected, reachability.observed_table(title, observed))
        if cmp.ok:
            return True, cmp.render()
        return False, f"{window_state(jig, service, drained)}\n{cmp.render()}"

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_cluster_policy_node_port_falls_back_to_the_terminating_endpoint_on_every_node(etp, drained):
    assert_node_port_fallback(etp, CLUSTER, drained, TrafficPolicy.CLUSTER)


def test_local_policy_node_port_falls_back_to_the_terminating_endpoint_only_on_its_node(etp, drained):
    assert_node_port_fallback(etp, LOCAL, drained, TrafficPolicy.LOCAL)


def test_health_check_node_port_answers_503_while_the_only_local_endpoint_is_terminating(etp, drained):
    snapshot = wait_only_terminating(etp, LOCAL, drained)
    where = ", ".join(f"{e.label} on {e.node}" for e in snapshot)
    title = (f"healthCheckNodePort {health_check_port(etp)} of service {etp.namespace}/{LOCAL} from this "
             f"machine, its only endpoint terminating ({where})")
    check = health_check_check(etp, snapshot, title)

    def with_state() -> tuple[bool, str]:
        ok, text = check()
        return ok, text if ok else f"{window_state(etp, LOCAL, drained)}\n{text}"

    reachability.wait_for_tables(with_state, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)
