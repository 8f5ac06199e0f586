"""topology: ``spec.trafficDistribution`` keeps traffic on the client's node or zone, and
falls back to every endpoint when the preferred ones are absent.

The kind nodes are labelled ``topology.kubernetes.io/zone`` (fixtures.kindconfig: the first
half of the nodes in zone-a, the rest in zone-b; with 3 nodes the control plane and the
first worker are zone-a).  Two module-scoped jigs, each with one Service per distribution
over the same backends (one backend per chosen node) and a client on every node:

* ``near``: backends on the first node of zone-a and the first node of zone-b.  Every zone
  has an endpoint: PreferSameZone/PreferClose keep each client in its zone; PreferSameNode
  keeps a client with a local backend on its node, and sends the zone-a node *without* one
  to its zone's backend (node -> zone fallback).
* ``far``: backends only on the zone-a nodes.  Zone-b clients have no endpoint in their zone:
  their traffic must fall back to every endpoint, never be dropped.

A cluster whose nodes carry fewer than two zones cannot show any of this: the module skips.
"""

from __future__ import annotations

import pytest

from fixtures import reachability
from fixtures.backendchecks import backends_by_client
from fixtures.expectations.topology import (
    TRAFFIC_DISTRIBUTIONS,
    ZONE_LABEL,
    distribution_backends,
    hint_problems,
    node_zones,
)
from fixtures.jig import ServiceJig, tweaks
from fixtures.kube import Kube
from fixtures.poll import wait_until
from fixtures.timeouts import ENDPOINTS_TIMEOUT, KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

#: Extended as a family: trafficDistribution is a hint an implementation may ignore.
pytestmark = pytest.mark.topology

HTTP = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
#: Service name per distribution (the jig's own Service has none: the control column).
SERVICES = {d: d.lower() for d in TRAFFIC_DISTRIBUTIONS}


@pytest.fixture(scope="module")
def zones(kube: Kube, kube_proxy_zones) -> dict[str, str]:
    # kube_proxy_zones: kube-proxy's own view of each node's zone, read (and on the suite's
    # clusters repaired) before any hint is judged
    found = node_zones(kube.list_nodes())
    if len(set(found.values())) < 2:
        pytest.skip(f"trafficDistribution needs nodes in at least 2 zones (label {ZONE_LABEL}); "
                    f"this cluster has {sorted(set(found.values())) or 'none'}")
    return found


def by_zone(zones: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for node, zone in zones.items():
        out.setdefault(zone, []).append(node)
    return {z: sorted(nodes) for z, nodes in sorted(out.items())}


def distribution_jig(kube, facts, namespace: str, name: str, nodes: list[str]) -> ServiceJig:
    selector = {
        "app.kubernetes.io/name": "service-selectors",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "backend",
    }
    extra = [{"name": svc, "spec": {"selector": selector, "trafficDistribution": dist, "ports": [HTTP]}}
             for dist, svc in SERVICES.items()]
    jig = ServiceJig.install(
        kube, facts, namespace, name=name, backends=len(nodes),
        tweak=tweaks(("backend.nodes", nodes), ("extraServices", extra)),
    )
    placed = sorted(p.node for p in jig.backend_pods())
    want = sorted(nodes)
    assert placed == want, f"{name}: backends landed on {placed}, expected one on each of {want}"
    for svc in SERVICES.values():
        jig.wait_ready_endpoints(count=len(nodes), name=svc)
    return jig


@pytest.fixture(scope="module")
def near(zones, module_namespace, kube, cluster_facts) -> ServiceJig:
    groups = list(by_zone(zones).values())
    return distribution_jig(kube, cluster_facts, module_namespace(), "near", [groups[0][0], groups[1][0]])


@pytest.fixture(scope="module")
def far(zones, module_namespace, kube, cluster_facts) -> ServiceJig:
    first_zone = next(iter(by_zone(zones).values()))
    return distribution_jig(kube, cluster_facts, module_namespace(), "far", first_zone)


def assert_distribution(jig: ServiceJig, distribution: str, zones: dict[str, str]) -> None:
    service = SERVICES[distribution]
    svc = jig.service(service)
    where = ", ".join(f"{n} ({z})" for n, z in sorted(zones.items()))
    title = (f"TCP {svc.cluster_ip}:80 (service {jig.namespace}/{service}, trafficDistribution: "
             f"{distribution}; nodes {where})")

    def check() -> tuple[bool, str]:
        endpoints = jig.endpoints(service)
        names = sorted(e.label for e in endpoints)
        expected = {
            node: distribution_backends(
                endpoints, traffic_distribution=distribution, client_node=node, zones=zones
            )
            for node in jig.clients()
        }
        backend_nodes = ", ".join(
            f"{e.label} on {e.node}" + ("" if e.ready else " (not ready)") for e in endpoints
        )
        got = backends_by_client(jig.clients(), jig.cluster_ip(service), 80)
        cmp = reachability.compare(
            reachability.expected_backend_table(f"{title}: expected", expected, names),
            reachability.backend_table(
                f"{title}: observed", {n: g.seen for n, g in got.items()}, names,
                commands={n: g.command for n, g in got.items()},
                notes={n: f"{g.note}; endpoints: {backend_nodes}" for n, g in got.items()},
            ),
        )
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title,
                                 problem=f"traffic did not follow trafficDistribution: {distribution}")


def assert_hints(jig: ServiceJig, service: str, distribution: str | None, zones: dict[str, str]) -> None:
    def check() -> tuple[bool, str]:
        problems = hint_problems(jig.slices(service), traffic_distribution=distribution, zones=zones)
        return not problems, "; ".join(problems) or "hints as expected"

    wait_until(check, timeout=ENDPOINTS_TIMEOUT,
               what=f"EndpointSlice hints of service {jig.namespace}/{service} (trafficDistribution: "
                    f"{distribution or 'unset'})")


@pytest.mark.parametrize("distribution", TRAFFIC_DISTRIBUTIONS)
def test_the_endpointslice_controller_hints_each_endpoint_for_its_zone_and_for_prefer_same_node_its_node(
    near, zones, distribution
):
    assert_hints(near, SERVICES[distribution], distribution, zones)


def test_a_service_without_traffic_distribution_carries_no_hints_and_spreads_over_every_zone(near, zones):
    assert_hints(near, near.name, None, zones)
    svc = near.service()
    endpoints = near.endpoints()
    names = sorted(e.label for e in endpoints)
    expected = {n: frozenset(names) for n in near.clients()}
    title = f"TCP {svc.cluster_ip}:80 (service {near.namespace}/{near.name}, no trafficDistribution)"

    def check() -> tuple[bool, str]:
        got = backends_by_client(near.clients(), svc.cluster_ip, 80)
        cmp = reachability.compare(
            reachability.expected_backend_table(title, expected, names),
            reachability.backend_table(title, {n: g.seen for n, g in got.items()}, names,
                                       commands={n: g.command for n, g in got.items()}),
        )
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


@pytest.mark.parametrize("distribution", TRAFFIC_DISTRIBUTIONS)
def test_traffic_stays_in_the_clients_zone_or_on_its_node_when_an_endpoint_is_there(
    near, zones, distribution
):
    assert_distribution(near, distribution, zones)


@pytest.mark.parametrize("distribution", TRAFFIC_DISTRIBUTIONS)
def test_traffic_falls_back_to_every_endpoint_when_the_clients_zone_has_none(far, zones, distribution):
    assert_distribution(far, distribution, zones)
