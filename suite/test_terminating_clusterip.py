"""clusterip: traffic to a ClusterIP when no endpoint is ready (KEP-1669, publishNotReadyAddresses).

* Terminating endpoints: the only backend (pinned to the first worker) is deleted while it
  keeps serving (agnhost ``--delay-shutdown``).  Its endpoint is then ``ready=false
  serving=true terminating=true`` and, with no ready endpoint left, kube-proxy falls back to
  it: with ``internalTrafficPolicy: Cluster`` from every node, with ``Local`` only from its
  own node (upstream e2e "should fallback to [local] terminating endpoints when there are no
  ready endpoints with internalTrafficPolicy=Cluster/Local").
* ``publishNotReadyAddresses``: backends whose readiness fails are still listed ready and
  receive ClusterIP traffic; the same pods behind a Service without it receive none.

One namespace; the ``term`` release (its backend, Services ``term`` and ``term-local``, a
client on every node) and the ``pnr`` release (two backends, Services ``pnr`` and
``pnr-strict``) share it and the clients.  The terminating pod is force-deleted at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from fixtures import reachability
from fixtures.backendchecks import backends_check
from fixtures.expectations.model import TrafficPolicy
from fixtures.expectations.slices import describe_endpoints, endpoint_problems, expected_pod_endpoints
from fixtures.expectations.traffic import clusterip_backends
from fixtures.jig import ServiceJig, tweaks
from fixtures.kube import PodInfo
from fixtures.poll import wait_until
from fixtures.terminating import (
    drain_all,
    force_delete_backends,
    slow_draining_backends,
    wait_only_terminating,
    window_state,
)
from fixtures.timeouts import ENDPOINTS_TIMEOUT, KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.clusterip

TERM = "term"
TERM_LOCAL = "term-local"
PNR = "pnr"
PNR_STRICT = "pnr-strict"
HTTP = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}


def selector(release: str) -> dict[str, str]:
    """The chart's backend selector (svcc.backendSelector) for ``release``."""
    return {
        "app.kubernetes.io/name": "service-selectors",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": "backend",
    }


@pytest.fixture(scope="module")
def namespace(module_namespace) -> str:
    return module_namespace()


@pytest.fixture(scope="module")
def term(namespace, kube, cluster_facts) -> ServiceJig:
    """One slowly draining backend on the first worker; ``term`` (Cluster) and ``term-local``
    (internalTrafficPolicy: Local) select it; a client on every node."""
    if not cluster_facts.workers:
        pytest.skip("terminating-endpoint checks pin the backend to a worker node (cluster has none)")
    worker = cluster_facts.workers[0].name
    jig = ServiceJig.install(
        kube, cluster_facts, namespace, name=TERM, backends=1,
        tweak=tweaks(
            ("backend.nodes", [worker]),
            ("service.ports", [HTTP]),
            ("extraServices", [{"name": TERM_LOCAL, "spec": {
                "selector": selector(TERM), "internalTrafficPolicy": "Local", "ports": [HTTP]}}]),
            slow_draining_backends,
        ),
    )
    jig.wait_ready_endpoints(name=TERM_LOCAL, count=1)
    return jig


@pytest.fixture(scope="module")
def drained(term, kube) -> Iterator[list[PodInfo]]:
    """The ``term`` backend, now terminating (serving for TERMINATING_SERVE_WINDOW); it is
    force-deleted after the module's last check."""
    try:
        yield drain_all(term)
    finally:
        force_delete_backends(kube, term)


def assert_fallback(jig: ServiceJig, service: str, drained: Sequence[PodInfo], policy: TrafficPolicy) -> None:
    """The slices list only the drained, serving endpoints; then every client reaches exactly
    what ``policy`` promises for them (the fallback), a table per look."""
    snapshot = wait_only_terminating(jig, service, drained)
    svc = jig.service(service)
    assert svc.internal_traffic_policy is policy, f"service {jig.namespace}/{service}: {svc}"
    clients = jig.clients()
    expected = {n: clusterip_backends(snapshot, client_node=n, internal_traffic_policy=policy)
                for n in clients}
    where = ", ".join(f"{e.label} on {e.node}" for e in snapshot)
    title = (f"TCP {svc.cluster_ip}:80 (service {jig.namespace}/{service}, internalTrafficPolicy: "
             f"{policy.value}; its only endpoint {where} is terminating, serving, not ready)")
    check = backends_check(title, clients, jig.cluster_ip(service), 80, expected=expected,
                           columns=sorted(e.label for e in snapshot))

    def with_state() -> tuple[bool, str]:
        ok, text = check()
        return ok, text if ok else f"{window_state(jig, service, drained)}\n{text}"

    reachability.wait_for_tables(with_state, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_cluster_policy_falls_back_to_terminating_endpoints_when_none_is_ready(term, drained):
    assert_fallback(term, TERM, drained, TrafficPolicy.CLUSTER)


def test_local_policy_falls_back_to_the_local_terminating_endpoint_only_on_its_node(term, drained):
    assert_fallback(term, TERM_LOCAL, drained, TrafficPolicy.LOCAL)


# --------------------------------------------------------------------------- publishNotReadyAddresses


@pytest.fixture(scope="module")
def pnr(namespace, kube, cluster_facts) -> ServiceJig:
    """Two backends; ``pnr`` (publishNotReadyAddresses) and ``pnr-strict`` (without) select them."""
    return ServiceJig.install(
        kube, cluster_facts, namespace, name=PNR, backends=2, clients=False,
        tweak=tweaks(
            ("service.ports", [HTTP]),
            ("service.publishNotReadyAddresses", True),
            ("extraServices", [{"name": PNR_STRICT, "spec": {"selector": selector(PNR), "ports": [HTTP]}}]),
        ),
    )


def wait_slices(jig: ServiceJig, service: str, pods: Sequence[PodInfo], *, publish_not_ready: bool) -> None:
    def check() -> tuple[bool, str]:
        now = [p for p in jig.backend_pods() if p.name in {q.name for q in pods}]
        expected = expected_pod_endpoints(now, publish_not_ready=publish_not_ready)
        listed = jig.endpoints(service)
        problems = [f"pod {p.name} is still Ready" for p in now if p.ready]
        problems += endpoint_problems(expected, listed)
        detail = f"EndpointSlices of {service} list: {describe_endpoints(listed)}"
        return not problems, ("; ".join(problems) + " — " if problems else "") + detail

    wait_until(check, timeout=ENDPOINTS_TIMEOUT,
               what=f"service {jig.namespace}/{service} to list its unready backends "
                    f"(publishNotReadyAddresses: {str(publish_not_ready).lower()})")


def test_publish_not_ready_addresses_sends_cluster_ip_traffic_to_unready_backends(pnr, term):
    pods = [p for p in pnr.backend_pods() if not p.terminating]
    for pod in pods:
        pnr.set_ready(pod, False)
    wait_slices(pnr, PNR, pods, publish_not_ready=True)
    wait_slices(pnr, PNR_STRICT, pods, publish_not_ready=False)
    clients = term.clients()
    names = sorted(p.name for p in pods)
    # The promise is about the Service as the test created it (every unready backend listed
    # ready), so a Service changed behind the test's back fails instead of changing the rows.
    for service, reach in ((PNR, names), (PNR_STRICT, [])):
        svc = pnr.service(service)
        flag = "publishNotReadyAddresses: true" if reach else "no publishNotReadyAddresses"
        title = (f"TCP {svc.cluster_ip}:80 (service {pnr.namespace}/{service}, {flag}; every backend "
                 f"fails its readiness probe)")
        check = backends_check(title, clients, svc.cluster_ip, 80,
                               expected=dict.fromkeys(clients, frozenset(reach)), columns=names)

        def with_state(check=check, service=service) -> tuple[bool, str]:
            ok, text = check()
            if ok:
                return ok, text
            live = pnr.service(service).publish_not_ready_addresses
            listed = describe_endpoints(pnr.endpoints(service))
            return ok, (f"service {service} now has publishNotReadyAddresses: {str(live).lower()}; its "
                        f"EndpointSlices list: {listed}\n{text}")

        reachability.wait_for_tables(with_state, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)
