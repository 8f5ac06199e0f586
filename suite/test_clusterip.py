"""clusterip: a Service's virtual IP carries traffic to its ready endpoints, from every node.

Most checks share one module-scoped Service (``three_backends``: 3 backends, a client on
every node) with four ports (named and numeric targetPorts, TCP and UDP) and two extra
Services on the same backends: ``sticky`` (``sessionAffinity: ClientIP``) and ``empty``
(selects no pod).  Checks that change or pin their Service share another
(``pinned_backend``: one backend pinned to the first worker).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fixtures import outside, reachability
from fixtures.backendchecks import backends_by_client, backends_check
from fixtures.concurrency import Background, run_matrix
from fixtures.expectations.clusterip import (
    node_port_presence_problems,
    session_affinity_problems,
    udp_recovery_problem,
)
from fixtures.expectations.model import Service, TrafficPolicy
from fixtures.expectations.ranges import cluster_ip_problems
from fixtures.expectations.traffic import (
    FromBackend,
    clusterip_backends,
    nodeport_answering_nodes,
    rejection_problem,
)
from fixtures.hostnet import source_address_towards
from fixtures.jig import ServiceJig, tweaks
from fixtures.kube import PodInfo
from fixtures.observations import ErrorKind
from fixtures.poll import wait_until
from fixtures.probes import EXEC_OVERHEAD_S, dial_from, http_get
from fixtures.probes.udp_socket import UDP_REPLY_WAIT_S, udp_loop
from fixtures.timeouts import (
    ENDPOINTS_TIMEOUT,
    KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
    KUBE_PROXY_SERVICE_SYNC_TIMEOUT,
)

pytestmark = pytest.mark.clusterip

# Container ports deliberately not the Service ports, so a mapping can only work if the
# proxy translates port -> targetPort (by number, or by resolving the container port name).
HTTP_PORT, UDP_PORT = 9376, 9377
PORTS: list[dict[str, Any]] = [
    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
    {"name": "http-num", "port": 8000, "targetPort": HTTP_PORT, "protocol": "TCP"},
    {"name": "udp", "port": 81, "targetPort": "udp", "protocol": "UDP"},
    {"name": "udp-num", "port": 8001, "targetPort": UDP_PORT, "protocol": "UDP"},
]
RELEASE = "svc"
BACKEND_SELECTOR = {
    "app.kubernetes.io/name": "service-selectors",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "backend",
}
EXTRA_SERVICES = [
    {
        "name": "sticky",
        "spec": {
            "selector": BACKEND_SELECTOR,
            "sessionAffinity": "ClientIP",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "udp", "port": 81, "targetPort": "udp", "protocol": "UDP"},
            ],
        },
    },
    {
        "name": "empty",
        "spec": {
            "selector": {"svcconform/selects": "nothing"},
            "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"}],
        },
    },
]
#: The UDP client keeps sending on one socket for at most this long: the replacement pod's
#: endpoint appears within ENDPOINTS_TIMEOUT, then the data plane gets its endpoint lag.
UDP_RECOVERY_WINDOW = ENDPOINTS_TIMEOUT + KUBE_PROXY_ENDPOINT_LAG_TIMEOUT


@pytest.fixture(scope="module")
def three_backends(module_namespace, kube, cluster_facts) -> ServiceJig:
    return ServiceJig.install(
        kube,
        cluster_facts,
        module_namespace(),
        name=RELEASE,
        backends=3,
        tweak=tweaks(
            ("backend.httpPort", HTTP_PORT),
            ("backend.udpPort", UDP_PORT),
            ("service.ports", PORTS),
            ("extraServices", EXTRA_SERVICES),
        ),
    )


def ready_names(jig: ServiceJig, service: str | None = None) -> list[str]:
    return sorted(e.label for e in jig.endpoints(service) if e.ready)


def assert_backends(
    jig: ServiceJig,
    host: str,
    port: int,
    *,
    proto: str = "tcp",
    title: str,
    policy: TrafficPolicy = TrafficPolicy.CLUSTER,
    service: str | None = None,
) -> None:
    """Every client reaches exactly the backends ``policy`` promises it (a table per try)."""
    endpoints = jig.endpoints(service)
    names = sorted(e.label for e in endpoints)
    expected = {
        node: clusterip_backends(endpoints, client_node=node, internal_traffic_policy=policy)
        for node in jig.clients()
    }

    check = backends_check(title, jig.clients(), host, port, expected=expected, columns=names, proto=proto)
    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_cluster_ip_is_allocated_from_the_service_cidr_and_outside_the_pod_cidr(
        three_backends, cluster_info, record_configuration):
    cluster_info.need("service_cidrs", "the ClusterIP is judged against it")
    record_configuration(cluster_info.describe("service_cidrs"))
    record_configuration(cluster_info.describe("pod_cidrs"))
    svc = three_backends.service()
    problems = cluster_ip_problems(svc.cluster_ip, service_cidrs=cluster_info.service_cidrs,
                                   pod_cidrs=cluster_info.pod_cidrs)
    assert not problems, f"service {three_backends.namespace}/{three_backends.name}: " + "; ".join(problems)


def test_every_node_reaches_every_ready_backend_over_tcp(three_backends):
    svc = three_backends.service()
    assert_backends(
        three_backends,
        svc.cluster_ip,
        80,
        title=f"TCP {svc.cluster_ip}:80 (service {three_backends.namespace}/{svc.name})",
    )


def test_every_node_reaches_every_ready_backend_over_udp(three_backends):
    svc = three_backends.service()
    assert_backends(
        three_backends,
        svc.cluster_ip,
        81,
        proto="udp",
        title=f"UDP {svc.cluster_ip}:81 (service {three_backends.namespace}/{svc.name})",
    )


def test_every_port_of_a_multi_port_service_reaches_its_numeric_or_named_target_port(three_backends):
    svc = three_backends.service()
    ready = set(ready_names(three_backends))
    columns = {f"{p['protocol']} {p['port']}->{p['targetPort']}": p for p in PORTS}
    title = (
        f"ports of {svc.cluster_ip} (service {three_backends.namespace}/{svc.name}; containers serve "
        f"TCP {HTTP_PORT} 'http', UDP {UDP_PORT} 'udp')"
    )
    clients = three_backends.clients()

    def probe(node: str, column: str):
        p = columns[column]
        if p["protocol"] == "UDP":
            return udp_loop(
                clients[node],
                svc.cluster_ip,
                p["port"],
                duration=3 * UDP_REPLY_WAIT_S,
                max_tries=3,
                stop_unless="-",
            )
        return http_get(clients[node], svc.cluster_ip, p["port"])

    expected = reachability.expected_table(title, list(clients), list(columns), lambda r, c: True)

    def check() -> tuple[bool, str]:
        results = run_matrix(list(clients), list(columns), probe)
        observed = {key: FromBackend(obs, frozenset(ready)) for key, obs in results.items()}
        cmp = reachability.compare(expected, reachability.observed_table(title, observed))
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


@pytest.mark.affinity  # its Service (sticky) selects this module's shared three backends
def test_session_affinity_client_ip_sends_each_client_to_one_backend(three_backends):
    svc = three_backends.service("sticky")
    three_backends.wait_ready_endpoints(name="sticky", count=3)
    ready = ready_names(three_backends, "sticky")
    for port, proto in ((80, "tcp"), (81, "udp")):
        title = (
            f"{proto.upper()} {svc.cluster_ip}:{port} "
            f"(service {three_backends.namespace}/sticky, sessionAffinity: ClientIP)"
        )
        observed: dict = {}

        def answered(port: int = port, proto: str = proto, observed: dict = observed) -> tuple[bool, str]:
            observed.clear()
            observed.update(backends_by_client(three_backends.clients(), svc.cluster_ip, port, proto=proto))
            silent = sorted(n for n, g in observed.items() if not g.seen)
            return not silent, f"clients with no answer yet: {silent}" if silent else "every client answered"

        wait_until(
            answered, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=f"{title}: answers on every client"
        )
        problems = session_affinity_problems(
            {n: g.answers for n, g in observed.items()}, ready_backends=ready
        )
        assert not problems, f"{title}: a client was not kept on one backend:\n" + "\n".join(
            f"  client on {n}: {why}\n    reproduce: {observed[n].command}" for n, why in problems.items()
        )


def test_a_service_without_endpoints_rejects_connections_promptly(three_backends):
    svc = three_backends.service("empty")
    assert not three_backends.endpoints("empty"), (
        f"service {three_backends.namespace}/empty should select no pod"
    )
    clients = three_backends.clients()

    def check() -> tuple[bool, str]:
        replies = {n: http_get(v, svc.cluster_ip, 80) for n, v in clients.items()}
        problems = {n: rejection_problem(r.error_kind, r.elapsed) for n, r in replies.items()}
        bad = {n: p for n, p in problems.items() if p}
        lines = [
            f"  client on {n}: {replies[n].summary()}"
            + (f"\n    -> {p}\n    reproduce: {replies[n].command}" if p else " (prompt rejection)")
            for n, p in problems.items()
        ]
        return not bad, f"TCP {svc.cluster_ip}:80 of a Service with no endpoints:\n" + "\n".join(lines)

    reachability.wait_for_tables(
        check,
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=f"service {three_backends.namespace}/empty to reject connections promptly",
        problem="not every client was rejected promptly",
    )


PINNED_RELEASE = "one"


def pinned_extra_services(flip_type: str = "ClusterIP") -> list[dict]:
    selector = {**BACKEND_SELECTOR, "app.kubernetes.io/instance": PINNED_RELEASE}
    http = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    return [
        {"name": "local", "spec": {"selector": selector, "internalTrafficPolicy": "Local", "ports": [http]}},
        {"name": "flip", "spec": {"selector": selector, "type": flip_type, "ports": [http]}},
    ]


@pytest.fixture(scope="module")
def pinned_backend(module_namespace, kube, cluster_facts) -> ServiceJig:
    """One backend pinned to the first worker, a client on every node; Services ``one``
    (the release's), ``local`` (internalTrafficPolicy: Local) and ``flip`` (its type is
    changed by a test) select it."""
    worker = cluster_facts.workers[0].name
    return ServiceJig.install(
        kube,
        cluster_facts,
        module_namespace(),
        name=PINNED_RELEASE,
        backends=1,
        tweak=tweaks(("backend.nodes", [worker]), ("extraServices", pinned_extra_services())),
    )


def only_backend(jig: ServiceJig, service: str | None = None) -> PodInfo:
    jig.wait_ready_endpoints(name=service, count=1)
    pods = [p for p in jig.backend_pods() if p.ready and not p.terminating]
    assert len(pods) == 1, (
        f"expected one ready backend in {jig.namespace}, found {[p.describe() for p in pods]}"
    )
    return pods[0]


def test_a_pod_reaches_itself_through_its_own_service_hairpin(pinned_backend, cluster_facts):
    svc = pinned_backend.service()
    pod = only_backend(pinned_backend)
    client = pinned_backend.client(cluster_facts.nodes[0].name)
    http_port = int(pinned_backend.values["backend"].get("httpPort", 8080))

    def check() -> tuple[bool, str]:
        lines, ok = [], True
        for port, protocol in ((80, "http"), (81, "udp")):
            reply = dial_from(client, pod.ip, http_port, svc.cluster_ip, port, protocol=protocol, tries=2)
            good = reply.ok and set(reply.responses) == {pod.name}
            ok = ok and good
            lines.append(
                f"  {pod.name} -> {protocol} {svc.cluster_ip}:{port}: expected answers from itself "
                f"({pod.name}), observed {reply.summary()}"
                + ("" if good else f"\n    reproduce: {reply.command}")
            )
        return ok, "hairpin (the only backend dials its own Service):\n" + "\n".join(lines)

    reachability.wait_for_tables(
        check,
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=f"hairpin of {pod.name} through {svc.cluster_ip}",
        problem="the backend did not reach itself through its Service",
    )


@pytest.mark.extended(reason="internalTrafficPolicy is an optional routing optimisation")
def test_internal_traffic_policy_local_answers_only_from_nodes_with_a_local_endpoint(pinned_backend):
    pod = only_backend(pinned_backend, "local")
    svc = pinned_backend.service("local")
    assert svc.internal_traffic_policy is TrafficPolicy.LOCAL, (
        f"service {pinned_backend.namespace}/local: {svc}"
    )
    assert_backends(
        pinned_backend,
        svc.cluster_ip,
        80,
        policy=TrafficPolicy.LOCAL,
        service="local",
        title=f"TCP {svc.cluster_ip}:80 (service {pinned_backend.namespace}/local, "
        f"internalTrafficPolicy: Local, its only endpoint on {pod.node})",
    )


def assert_node_port_answers(jig: ServiceJig, svc: Service, port: int, *, answering: bool,
                             node_vantages, host_reach) -> None:
    """From outside the cluster (every node's hostNetwork pod to the other nodes, and this
    machine when it reaches them), every node's ``ip:port`` answers (or none does)."""
    node_ips = jig.node_ips()
    nodes = (
        nodeport_answering_nodes(node_ips, jig.endpoints(svc.name), TrafficPolicy.CLUSTER)
        if answering
        else dict.fromkeys(node_ips, False)
    )
    state = "answers" if answering else "no longer answers"
    vantages = outside.everyone(node_ips, node_vantages, host_reach, host_source=source_address_towards)
    rows = {v.row: v for v in vantages}
    targets = {f"{n} {ip}:{port}": (n, ip) for n, ip in node_ips.items()}
    title = (f"TCP nodePort {port} from outside the cluster (service {jig.namespace}/{svc.name}, type "
             f"{svc.type.value}){outside.title_note(host_reach)}")
    expected = reachability.expected_table(
        title, list(rows), list(targets),
        lambda r, c: None if rows[r].node == targets[c][0] else nodes[targets[c][0]],
    )

    def check() -> tuple[bool, str]:
        results = outside.node_port_matrix(vantages, targets, lambda v, ip: v.http(ip, port))
        observed = reachability.observed_table(title, results, rows=list(rows), columns=list(targets))  # type: ignore[arg-type]
        cmp = reachability.compare(expected, observed)
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT,
                                 what=f"nodePort {port} {state} on every node")


def test_changing_the_type_to_node_port_and_back_adds_then_removes_the_node_port(
        pinned_backend, node_vantages, host_reach, cluster_info, record_configuration):
    only_backend(pinned_backend, "flip")
    port_range = cluster_info.node_port_range
    record_configuration(cluster_info.describe("node_port_range"))
    where = f"service {pinned_backend.namespace}/flip"
    assert pinned_backend.service("flip").type.value == "ClusterIP", f"{where} should start as ClusterIP"
    pinned_backend.update(tweaks(("extraServices", pinned_extra_services("NodePort"))))
    as_node_port = pinned_backend.service("flip")
    problems = node_port_presence_problems(as_node_port, expect_node_ports=True, port_range=port_range)
    assert not problems, f"{where} after ClusterIP -> NodePort: " + "; ".join(problems)
    port = next(p.node_port for p in as_node_port.ports if p.protocol == "TCP" and p.node_port)
    assert_node_port_answers(pinned_backend, as_node_port, port, answering=True, node_vantages=node_vantages,
                             host_reach=host_reach)

    pinned_backend.update(tweaks(("extraServices", pinned_extra_services("ClusterIP"))))
    back = pinned_backend.service("flip")
    problems = node_port_presence_problems(back, expect_node_ports=False, port_range=port_range)
    assert not problems, f"{where} after NodePort -> ClusterIP: " + "; ".join(problems)
    assert_node_port_answers(pinned_backend, back, port, answering=False, node_vantages=node_vantages,
                             host_reach=host_reach)


@pytest.mark.extended(reason="one UDP socket kept across a backend replacement: kube-proxy flushes the "
                      "stale conntrack entry, a socket-level load balancer (Cilium's) destroys the socket "
                      "instead; upstream e2e's conntrack check uses a new socket per try")
def test_udp_traffic_on_one_socket_recovers_when_the_only_backend_is_replaced(
    pinned_backend, kube, cluster_facts, record_measurement
):
    node = cluster_facts.nodes[0].name
    svc = pinned_backend.service()
    old = only_backend(pinned_backend)
    client = pinned_backend.client(node)
    client_ip = pinned_backend.client_ip(node)
    mark = "Sending udp hostName response"  # agnhost netexec's log line per UDP hostname answer
    where = f"UDP {svc.cluster_ip}:81 from the client on {node} ({client_ip}), one socket"

    def answered_by_old() -> tuple[bool, str]:
        loop = udp_loop(
            client, svc.cluster_ip, 81, duration=3 * UDP_REPLY_WAIT_S, max_tries=3, stop_unless="-"
        )
        return old.name in loop.backends, loop.summary()

    wait_until(
        answered_by_old, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=f"{where}: answers from {old.name}"
    )
    seen_before = kube.pod_logs(pinned_backend.namespace, old.name).count(mark)
    with Background(
        lambda: udp_loop(
            client, svc.cluster_ip, 81, duration=UDP_RECOVERY_WINDOW, same_socket=True, stop_unless=old.name
        ),
        name="svcc-udp-socket",
    ) as bg:

        def socket_in_use() -> tuple[bool, str]:
            count = kube.pod_logs(pinned_backend.namespace, old.name).count(mark)
            return (
                count > seen_before,
                f"{old.name} logged {count - seen_before} new exchange(s) with {client_ip}",
            )

        wait_until(
            socket_in_use,
            timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
            what=f"the loop's socket to be answered by {old.name}",
        )
        kube.delete_pod(pinned_backend.namespace, old.name)
        new: list[str] = []

        def replaced() -> tuple[bool, str]:
            names = [e.label for e in pinned_backend.endpoints() if e.ready and e.label != old.name]
            new[:] = names
            return bool(names), f"ready endpoints other than {old.name}: {names}"

        wait_until(replaced, timeout=ENDPOINTS_TIMEOUT, what=f"a ready endpoint replacing {old.name}")
        ready_at = time.time()
        loop = bg.result(timeout=UDP_RECOVERY_WINDOW + UDP_REPLY_WAIT_S + EXEC_OVERHEAD_S)
    samples = [(s.t, s.backend if s.ok else None) for s in loop.timeline.samples]
    delay, problem = udp_recovery_problem(
        samples, new_backend=new[0], ready_at=ready_at, within=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT
    )
    if delay is not None:
        record_measurement("udp_same_socket_recovery_after_backend_replaced", [delay])
    tail = ", ".join(
        f"{s.t - ready_at:+.1f}s {s.backend or s.error_kind}" for s in loop.timeline.samples[-5:]
    )
    aborted = [s.t - ready_at for s in loop.timeline.samples if s.error_kind is ErrorKind.ABORTED]
    if problem and aborted:
        problem = problem.removesuffix(": stale conntrack entry?") + (
            f"; the client's socket was closed under it (ECONNABORTED at {aborted[0]:+.1f}s): a "
            "socket-level load balancer pinned it to the old backend and destroyed it when that "
            "backend went away, so the application must reconnect (kube-proxy keeps the socket and "
            "moves it to the new backend)"
        )
    assert problem is None, (
        f"{where}: {problem}\n  loop: {loop.summary()}; last tries (relative to the new "
        f"endpoint being ready): {tail}\n  reproduce: {loop.command}"
    )
