"""Session affinity beyond "ClientIP sticks" (suite/test_clusterip.py): its timeout, switching
it on a live Service, and ClientIP affinity of a NodePort reached from outside the cluster.

One module-scoped release (3 backends spread over the nodes, a client pod on every node)
with three Services on the same backends (:func:`extra_services`), one per check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from fixtures import outside, reachability
from fixtures.backendchecks import LOOP_TRY_TIMEOUT_S, ClientBackends, backends_by_client, backends_check
from fixtures.concurrency import run_all
from fixtures.expectations.clusterip import affinity_expiry_problem, session_affinity_problems
from fixtures.expectations.model import TrafficPolicy
from fixtures.expectations.traffic import clusterip_backends
from fixtures.hostnet import source_address_towards
from fixtures.jig import ServiceJig, tweaks
from fixtures.observations import HttpReply
from fixtures.probes import sample_loop
from fixtures.timeouts import (
    KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
    KUBE_PROXY_SERVICE_SYNC_TIMEOUT,
    SESSION_AFFINITY_IDLE,
    SESSION_AFFINITY_TIMEOUT,
)

pytestmark = pytest.mark.affinity

RELEASE = "aff"
BACKENDS = 3
HTTP = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
SELECTOR = {
    "app.kubernetes.io/name": "service-selectors",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "backend",
}
#: Connections each client makes after idling past the timeout, at most (it stops at the
#: first one answered by another backend than the one it stuck to).  With the timeout
#: working, each such connection is load-balanced afresh over BACKENDS=3 endpoints, so it
#: lands on the old backend again with p = 1/3; all 10 doing so has p = (1/3)^10 = 1.7e-5
#: per client, 5.1e-5 for the 3 clients: a false failure is very unlikely.  A proxy that
#: ignores the timeout keeps all 10 on one backend every time: always caught.  Expected
#: cost with a working timeout: 1.5 idle periods (8 s each) per client, clients in parallel.
IDLE_TRIES = 10
#: Requests from this machine to each node's nodePort: a proxy without affinity sends all
#: 20 to one backend with p = (1/3)^19 = 8.6e-10, so stickiness is not luck.
NODE_PORT_TRIES = 20


def extra_services(switch_affinity: str = "None") -> list[dict]:
    return [
        {
            "name": "timeout",
            "spec": {
                "selector": SELECTOR,
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": int(SESSION_AFFINITY_TIMEOUT)}},
                "ports": [HTTP],
            },
        },
        {
            "name": "switch",
            "spec": {"selector": SELECTOR, "sessionAffinity": switch_affinity, "ports": [HTTP]},
        },
        {
            "name": "sticky-np",
            "spec": {
                "selector": SELECTOR,
                "type": "NodePort",
                "sessionAffinity": "ClientIP",
                "ports": [HTTP],
            },
        },
    ]


@pytest.fixture(scope="module")
def affinity(module_namespace, kube, cluster_facts) -> ServiceJig:
    return ServiceJig.install(
        kube,
        cluster_facts,
        module_namespace(),
        name=RELEASE,
        backends=BACKENDS,
        tweak=tweaks(("extraServices", extra_services())),
    )


def ready_names(jig: ServiceJig, service: str) -> list[str]:
    jig.wait_ready_endpoints(name=service, count=BACKENDS)
    return sorted(e.label for e in jig.endpoints(service) if e.ready)


def affinity_of(jig: ServiceJig, service: str) -> str:
    return str(jig.service_object(service)["spec"].get("sessionAffinity") or "None")


def answers_from_every_client(jig: ServiceJig, host: str, port: int, title: str) -> dict[str, ClientBackends]:
    """A burst of tries (backendchecks.LOOP_DURATION_S) from every client, once every client
    got at least one answer (the data plane may still be programming the Service)."""
    observed: dict[str, ClientBackends] = {}

    def answered() -> tuple[bool, str]:
        observed.clear()
        observed.update(backends_by_client(jig.clients(), host, port))
        silent = sorted(n for n, g in observed.items() if not g.seen)
        return not silent, f"clients with no answer yet: {silent}" if silent else "every client answered"

    reachability.wait_for_tables(
        answered,
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=f"{title}: answers on every client",
        problem="some client got no answer",
    )
    return observed


def stickiness(observed: dict[str, ClientBackends], ready: list[str]) -> tuple[bool, str]:
    problems = session_affinity_problems({n: g.answers for n, g in observed.items()}, ready_backends=ready)
    lines = [
        f"  client on {n}: "
        + (
            f"{problems[n]}\n    reproduce: {g.command}"
            if n in problems
            else f"kept on {sorted(g.seen or ())} ({g.note})"
        )
        for n, g in observed.items()
    ]
    return not problems, "\n".join(lines)


def spread_check(jig: ServiceJig, service: str, title: str) -> Callable[[], tuple[bool, str]]:
    """Every client reaches every ready endpoint (no affinity: each connection is balanced)."""
    endpoints = jig.endpoints(service)
    names = sorted(e.label for e in endpoints)
    expected = {
        n: clusterip_backends(endpoints, client_node=n, internal_traffic_policy=TrafficPolicy.CLUSTER)
        for n in jig.clients()
    }
    return backends_check(title, jig.clients(), jig.cluster_ip(service), 80, expected=expected, columns=names)


@pytest.mark.extended(reason="sessionAffinityConfig.clientIP.timeoutSeconds is optional: not in upstream "
                      "Conformance (basic ClientIP affinity is)")
def test_session_affinity_timeout_keeps_a_client_within_it_and_releases_it_after_idling(affinity):
    j = affinity
    ready = ready_names(j, "timeout")
    svc = j.service("timeout")
    timeout_s = float(SESSION_AFFINITY_TIMEOUT)
    title = (
        f"TCP {svc.cluster_ip}:80 (service {j.namespace}/timeout, sessionAffinity: ClientIP, "
        f"timeoutSeconds: {timeout_s:g})"
    )
    observed = answers_from_every_client(j, svc.cluster_ip, 80, title)
    ok, detail = stickiness(observed, ready)
    assert ok, f"{title}: within the timeout a client was not kept on one backend:\n{detail}"
    sticky = {n: next(a for a in g.answers if a) for n, g in observed.items()}
    clients = j.clients()

    def after_idle(node: str) -> list[str | None]:
        """One try, then silence for SESSION_AFFINITY_IDLE (the loop sleeps out its interval
        before it sees its end), again and again: every try but the first follows an idle
        period longer than the timeout.  The first may come within the timeout of the burst
        above (or not, on a slow exec), so it counts for neither side."""
        answers: list[str | None] = []
        for k in range(IDLE_TRIES + 1):
            timeline = sample_loop(
                clients[node],
                svc.cluster_ip,
                80,
                duration=SESSION_AFFINITY_IDLE,
                interval=SESSION_AFFINITY_IDLE,
                timeout=LOOP_TRY_TIMEOUT_S,
            )
            sample = timeline.samples[0] if timeline.samples else None
            answer = sample.backend if sample is not None and sample.ok else None
            if k == 0:
                continue
            answers.append(answer)
            if answer is not None and answer != sticky[node]:
                break
        return answers

    results = run_all({n: functools.partial(after_idle, n) for n in clients})
    problems: dict[str, str] = {}
    lines = []
    for node, res in results.items():
        if not isinstance(res, list):
            problems[node] = f"could not probe: {res.summary()}"
            lines.append(f"  client on {node}: {problems[node]}")
            continue
        answers = res
        why = affinity_expiry_problem(
            sticky[node],
            answers,
            backends=len(ready),
            timeout_s=timeout_s,
            idle_s=float(SESSION_AFFINITY_IDLE),
        )
        seq = ", ".join(a or "-" for a in answers)
        if why:
            problems[node] = why
        reproduce = clients[node].reproduce(["curl", "-s", f"http://{svc.cluster_ip}:80/hostname"])
        lines.append(
            f"  client on {node}: stuck to {sticky[node]}; after each {SESSION_AFFINITY_IDLE:g}s idle: {seq}"
            + (
                f"\n    -> {why}\n    reproduce: {reproduce} (then stay silent "
                f"{SESSION_AFFINITY_IDLE:g}s, and again)"
                if why
                else ""
            )
        )
    if problems:
        spec = j.service_object("timeout")["spec"]
        now = (spec.get("sessionAffinityConfig") or {}).get("clientIP", {}).get("timeoutSeconds")
        lines.append(f"  the API has now sessionAffinity {spec.get('sessionAffinity')}, timeoutSeconds {now}")
    assert not problems, f"{title}: affinity did not expire after idling past the timeout:\n" + "\n".join(
        lines
    )


def test_switching_session_affinity_on_a_live_service_makes_it_sticky_then_spreads_it_again(affinity):
    j = affinity
    ready = ready_names(j, "switch")
    where = f"service {j.namespace}/switch"
    svc = j.service("switch")
    assert affinity_of(j, "switch") == "None", f"{where} should start with sessionAffinity None"
    reachability.wait_for_tables(
        spread_check(j, "switch", f"TCP {svc.cluster_ip}:80 ({where}, sessionAffinity: None)"),
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=f"{where} with sessionAffinity None to spread",
    )

    j.update(tweaks(("extraServices", extra_services("ClientIP"))))
    assert affinity_of(j, "switch") == "ClientIP", f"{where}: the update to ClientIP did not stick"
    title = f"TCP {svc.cluster_ip}:80 ({where}, sessionAffinity None -> ClientIP)"

    def sticky() -> tuple[bool, str]:
        return stickiness(backends_by_client(j.clients(), svc.cluster_ip, 80), ready)

    reachability.wait_for_tables(
        sticky,
        timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT,
        what=title,
        problem="not every client was kept on one backend after the switch to ClientIP",
    )

    j.update(tweaks(("extraServices", extra_services("None"))))
    assert affinity_of(j, "switch") == "None", f"{where}: the update back to None did not stick"
    reachability.wait_for_tables(
        spread_check(j, "switch", f"TCP {svc.cluster_ip}:80 ({where}, sessionAffinity ClientIP -> None)"),
        timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT,
        what=f"{where} switched back to None to spread again",
    )


def test_client_ip_affinity_on_a_node_port_keeps_an_outside_client_on_one_backend_per_node(
        affinity, node_vantages, host_reach):
    j = affinity
    ready = ready_names(j, "sticky-np")
    svc = j.service("sticky-np")
    port = next((p.node_port for p in svc.ports if p.protocol == "TCP" and p.node_port), None)
    assert port is not None, f"service {j.namespace}/sticky-np has no TCP nodePort: {svc.ports}"
    node_ips = j.node_ips()
    passes = outside.passes(node_ips, node_vantages, host_reach, host_source=source_address_towards)
    pairs = {f"{n} <- {v.row}": (n, v) for vantage_of in passes for n, v in vantage_of.items()}
    assert pairs, f"no outside vantage for nodePort {port}: {host_reach.not_tried()}"
    title = (
        f"TCP nodePort {port} from outside the cluster (service {j.namespace}/sticky-np, sessionAffinity: "
        f"ClientIP){outside.title_note(host_reach)}"
    )

    def once(pair: str) -> HttpReply:
        node, v = pairs[pair]
        return v.http(node_ips[node], port, ("/hostname",))

    def tries(pair: str) -> list[HttpReply]:
        return [once(pair) for _ in range(NODE_PORT_TRIES)]

    def every_node_answers() -> tuple[bool, str]:
        got = run_all({p: functools.partial(once, p) for p in pairs})
        silent = {n: r.summary() for n, r in got.items() if not (isinstance(r, HttpReply) and r.ok)}
        return not silent, f"nodes not answering yet: {silent}" if silent else "every node answered"

    reachability.wait_for_tables(
        every_node_answers,
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=f"{title}: every node answers",
        problem="some node did not answer",
    )
    replies: dict[str, list[HttpReply]] = {}
    for pair, res in run_all({p: functools.partial(tries, p) for p in pairs}).items():
        replies[pair] = res if isinstance(res, list) else []
    problems = session_affinity_problems(
        {p: [r.backend if r.ok else None for r in rs] for p, rs in replies.items()}, ready_backends=ready
    )
    lines = []
    for pair, rs in replies.items():
        node = pairs[pair][0]
        backends = sorted({r.backend for r in rs if r.ok and r.backend})
        command = rs[0].command if rs else f"curl http://{node_ips[node]}:{port}/hostname"
        lines.append(
            f"  {pair} ({node_ips[node]}:{port}): {len(rs)} requests answered by {backends}"
            + (f"\n    -> {problems[pair]}\n    reproduce: {command}" if pair in problems else "")
        )
    assert not problems, (
        f"{title}: an outside client was not kept on one backend by every node:\n" + "\n".join(lines)
    )
