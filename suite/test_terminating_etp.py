"""etp: NodePorts and the healthCheckNodePort when the only endpoint is terminating (KEP-1669).

The only backend (pinned to the first worker) is deleted while it keeps serving (agnhost
``--delay-shutdown``): its endpoint is ``ready=false serving=true terminating=true``.  Two
Services select it: ``cluster`` (NodePort, ``externalTrafficPolicy: Cluster``) and ``local``
(LoadBalancer with node ports, ``Local``; kind has no LB controller, but node ports and the
healthCheckNodePort are served all the same).  With no ready endpoint left, kube-proxy falls
back to the terminating one (upstream e2e "should fallback to [local] terminating endpoints
when there are no ready endpoints with externalTrafficPolicy=Cluster/Local"):

* Cluster: every node's ``nodeIP:nodePort`` answers, from outside the cluster (another
  node's network namespace; this machine too when it reaches the nodes) and from pods;
* Local: only the endpoint's node answers (from outside, whose address the backend sees as
  the source; from pods on other nodes too); a node without it drops;
* the healthCheckNodePort counts only *ready* local endpoints, so it answers 503 on every
  node, the endpoint's included, while traffic is still served there (upstream "should fail
  health check node port if there are only terminating endpoints").

The terminating pod is force-deleted at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from fixtures import outside, reachability
from fixtures.backendchecks import node_column
from fixtures.concurrency import run_matrix
from fixtures.expectations.model import Endpoint, Service, TrafficPolicy
from fixtures.expectations.traffic import (
    health_check_statuses,
    nodeport_answering_nodes,
    nodeport_from_pod_answers,
)
from fixtures.hostnet import source_address_towards
from fixtures.ingress import health_check_passes
from fixtures.jig import ServiceJig, etp_local_and_cluster
from fixtures.kube import PodInfo
from fixtures.probes import http_get
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
        etp_local_and_cluster(values, worker=worker, local=LOCAL, cluster=CLUSTER, port=HTTP_PORT)
        slow_draining_backends(values)

    jig = ServiceJig.install(kube, cluster_facts, module_namespace(), name=LOCAL, tweak=tweak)
    jig.wait_ready_endpoints(name=CLUSTER, count=1)
    return jig


def health_check_port(jig: ServiceJig) -> int:
    svc = jig.service(LOCAL)
    assert svc.health_check_node_port, (
        f"service {jig.namespace}/{LOCAL} (LoadBalancer, externalTrafficPolicy: Local) was given no "
        f"healthCheckNodePort: {jig.service_object(LOCAL).get('spec')}")
    return int(svc.health_check_node_port)


def health_check_check(jig: ServiceJig, endpoints: Sequence[Endpoint], title: str, passes):
    """A wait_until check: every node's healthCheckNodePort status as ``endpoints`` promise,
    from each node's outside vantages (``passes``, :func:`fixtures.outside.passes`)."""
    port = health_check_port(jig)
    node_ips = jig.node_ips()
    expected = health_check_statuses(node_ips, endpoints)
    local = {n: sum(1 for e in endpoints if e.node == n and e.ready) for n in node_ips}

    def check() -> tuple[bool, str]:
        return health_check_passes(title, passes, node_ips, port, expected, local_endpoints=local,
                                   service=(jig.namespace, LOCAL))

    return check


@pytest.fixture(scope="module")
def outside_passes(etp, node_vantages, host_reach) -> list[dict[str, outside.Outside]]:
    found = outside.passes(etp.node_ips(), node_vantages, host_reach, host_source=source_address_towards)
    assert found, f"no outside vantage for the node ports: {host_reach.not_tried()}"
    return found


@pytest.fixture(scope="module")
def drained(etp, kube, outside_passes) -> Iterator[list[PodInfo]]:
    """The backend, now terminating (serving for TERMINATING_SERVE_WINDOW); before that, the
    healthCheckNodePort answered 200 on its node, so a later 503 is the termination's doing.
    Force-deleted after the module's last check."""
    before = etp.endpoints(LOCAL)
    title = (f"healthCheckNodePort {health_check_port(etp)} of service {etp.namespace}/{LOCAL} from outside "
             f"the cluster, before the backend terminates")
    reachability.wait_for_tables(health_check_check(etp, before, title, outside_passes),
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
                              policy: TrafficPolicy, *, node_vantages, host_reach) -> None:
    """From outside the cluster (the nodes' hostNetwork pods, and this machine when it reaches
    the nodes) and from a pod on every node, each node's nodePort answers from the terminating
    endpoint exactly where ``policy`` promises (a table per look)."""
    snapshot = wait_only_terminating(jig, service, drained)
    svc = jig.service(service)
    port = node_port(svc)
    node_ips = jig.node_ips()
    clients = jig.clients()
    vantages = {v.row: v for v in outside.everyone(node_ips, node_vantages, host_reach,
                                                   host_source=source_address_towards)}
    columns = {node_column(n, ip, port): n for n, ip in node_ips.items()}
    rows = [*vantages, *clients]
    outside_answers = nodeport_answering_nodes(node_ips, snapshot, policy)

    def expect(row: str, column: str) -> bool | None:
        ingress = columns[column]
        if row in vantages:
            # a node's own namespace to its own nodePort is local traffic, not from outside
            return None if vantages[row].node == ingress else outside_answers[ingress]
        return nodeport_from_pod_answers(snapshot, client_node=row, ingress_node=ingress,
                                         external_traffic_policy=policy)

    backends = frozenset(e.label for e in snapshot)
    where = ", ".join(f"{e.label} on {e.node}" for e in snapshot)
    title = (f"NodePort {port} of service {jig.namespace}/{service} (externalTrafficPolicy: {policy.value}; "
             f"its only endpoint {where} is terminating, serving, not ready); rows: the vantages outside "
             f"the cluster and the client pod on each node{outside.title_note(host_reach)}")
    expected = reachability.expected_table(title, rows, list(columns), expect)

    def probe(row: str, column: str) -> AnsweredBy | None:
        ip = node_ips[columns[column]]
        answers = expect(row, column)
        connect = 2.0 if answers is not False else NO_ANSWER_CONNECT_TIMEOUT_S
        if row in vantages:
            if answers is None:
                return None  # not probed
            v = vantages[row]
            # Local keeps the client's address: the backend must see the vantage's own.
            source = v.source_ip if policy is TrafficPolicy.LOCAL and v.source_ip else None
            return AnsweredBy(v.http(ip, port, connect_timeout=connect), backends, source)
        return AnsweredBy(http_get(clients[row], ip, port, connect_timeout=connect), backends)

    def check() -> tuple[bool, str]:
        observed = {k: v for k, v in run_matrix(rows, list(columns), probe).items() if v is not None}
        cmp = reachability.compare(expected, reachability.observed_table(title, observed, rows=rows,
                                                                         columns=list(columns)))
        if cmp.ok:
            return True, cmp.render()
        return False, f"{window_state(jig, service, drained)}\n{cmp.render()}"

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_cluster_policy_node_port_falls_back_to_the_terminating_endpoint_on_every_node(
        etp, drained, node_vantages, host_reach):
    assert_node_port_fallback(etp, CLUSTER, drained, TrafficPolicy.CLUSTER, node_vantages=node_vantages,
                              host_reach=host_reach)


def test_local_policy_node_port_falls_back_to_the_terminating_endpoint_only_on_its_node(
        etp, drained, node_vantages, host_reach):
    assert_node_port_fallback(etp, LOCAL, drained, TrafficPolicy.LOCAL, node_vantages=node_vantages,
                              host_reach=host_reach)


@pytest.mark.extended(reason="healthCheckNodePort is served by kube-proxy; a replacement may serve it "
                      "differently or not at all")
def test_health_check_node_port_answers_503_while_the_only_local_endpoint_is_terminating(
        etp, drained, outside_passes):
    snapshot = wait_only_terminating(etp, LOCAL, drained)
    where = ", ".join(f"{e.label} on {e.node}" for e in snapshot)
    title = (f"healthCheckNodePort {health_check_port(etp)} of service {etp.namespace}/{LOCAL} from outside "
             f"the cluster, its only endpoint terminating ({where})")
    check = health_check_check(etp, snapshot, title, outside_passes)

    def with_state() -> tuple[bool, str]:
        ok, text = check()
        return ok, text if ok else f"{window_state(etp, LOCAL, drained)}\n{text}"

    reachability.wait_for_tables(with_state, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)
