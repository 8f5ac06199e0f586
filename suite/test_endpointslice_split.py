"""selectorless: one Service whose endpoints are split across several EndpointSlices.

A slice has one port list, so endpoints serving on different ports need different slices, and
any producer may spread one Service over as many slices as it likes: kube-proxy must merge
every slice labelled ``kubernetes.io/service-name`` into one set of endpoints.  Checked for
each producer of slices:

* the EndpointSlice controller: two Deployments behind one selector whose container port
  ``http`` has different numbers get one slice per port set (``targetPort: http`` resolves
  per pod), and every client reaches the backends of both;
* hand-written slices for a selector-less Service: split by port (8080 / 9090) and split by
  address (same port, different pods); traffic reaches the union;
* the mirroring controller: a legacy Endpoints object with two subsets (different ports) is
  mirrored into one slice per subset, and traffic follows both.

The family is selectorless, not clusterip: what is under test is how the slices (controller-made,
hand-written, mirrored) compose into one Service; the clusterip family checks the virtual IP
on the one-slice case.  A selector Service split by *addresses* is not tried: the controller
only starts a second slice past ``--max-endpoints-per-slice`` (100 by default) endpoints with
the same ports, i.e. 101+ pods on this 2-core host, for a code path (kube-proxy merging slices
with the same ports) the hand-written address split exercises already.

One namespace: the ``byport`` release holds the three backend pods (HTTP on 8080, 9090, 8080)
and a client on every node; ``byaddr`` and ``mirror`` are Services without pods of their own
pointing at those pods; ``sela``/``selb`` are the two Deployments of the selector Service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fixtures import charts, reachability
from fixtures.backendchecks import backends_check
from fixtures.expectations.slices import (
    ENDPOINTSLICE_CONTROLLER,
    MIRRORING_CONTROLLER,
    PortSet,
    describe_slices,
    port_set,
    port_split_problems,
    slice_views,
)
from fixtures.jig import BACKEND_LABEL, ServiceJig, tweaks
from fixtures.kube import Kube
from fixtures.poll import wait_until
from fixtures.probes import Vantage, pod_vantage
from fixtures.providers.base import ClusterFacts
from fixtures.timeouts import ENDPOINTS_TIMEOUT, KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.selectorless

SERVICE_PORT = 80
PORT_A, PORT_B = 8080, 9090
#: byport's backend pods serve HTTP on these ports (pod i on HTTP_PORTS[i]).
HTTP_PORTS = [PORT_A, PORT_B, PORT_A]
SPLIT_LABEL = "svcconform/split"


def http_ports(port: int) -> list[dict[str, Any]]:
    return [{"name": "http", "port": port, "protocol": "TCP"}]


@dataclass(frozen=True)
class Pod:
    name: str
    ip: str
    node: str
    port: int

    def endpoint(self) -> dict[str, Any]:
        """A manual slice's endpoint entry (chart values) for this pod."""
        return {"addresses": [self.ip], "ready": True, "nodeName": self.node}


class Split:
    """The module's backend pods, its clients, and the releases pointing Services at them."""

    def __init__(self, kube: Kube, facts: ClusterFacts, namespace: str) -> None:
        self.kube = kube
        self.facts = facts
        self.namespace = namespace
        nodes = [n.name for n in facts.nodes]
        self.client_prefix = "split-client"
        #: manual slices carry the cluster's family (IPv6 cells: pod IPs are IPv6)
        self.address_type = "IPv6" if facts.ip_family == "ipv6" else "IPv4"
        values = {
            "backends": {"count": len(HTTP_PORTS), "nodes": nodes, "httpPorts": HTTP_PORTS},
            "clients": {"nodes": nodes, "namePrefix": self.client_prefix},
            "endpointSlice": {"endpoints": [], "addressType": self.address_type},
        }
        self.byport = charts.install(kube, charts.SERVICE_NO_SELECTORS, "byport", namespace, values)
        self.pods = [
            Pod(p["metadata"]["name"], p["status"]["podIP"], p["spec"]["nodeName"], HTTP_PORTS[i])
            for i, p in enumerate(charts.backend_pods(kube, self.byport))
        ]
        self.clients: dict[str, Vantage] = {
            n: pod_vantage(kube, namespace, charts.client_pod_name(n, self.client_prefix), node=n)
            for n in nodes
        }
        self.names = {p.ip: p.name for p in self.pods}

    def pointing(self, release: str, values: Mapping[str, Any]) -> charts.Release:
        """Install a service-no-selectors release without pods or clients of its own."""
        base = {"backends": {"count": 0}, "clients": {"nodes": []}}
        return charts.install(self.kube, charts.SERVICE_NO_SELECTORS, release, self.namespace,
                              charts.deep_merge(base, values))

    def cluster_ip(self, service: str) -> str:
        return str(self.kube.get_service(self.namespace, service)["spec"]["clusterIP"])

    def slices(self, service: str) -> list[dict[str, Any]]:
        return self.kube.endpoint_slices(self.namespace, service)

    def assert_reaches(self, service: str, pods: Sequence[Pod], *, what: str) -> float:
        """Every client reaches exactly ``pods`` through the Service's ClusterIP port 80; a
        failed look lists the Service's slices as they are now."""
        ip = self.cluster_ip(service)
        want = sorted(p.name for p in pods)
        title = (f"{what}: TCP {ip}:{SERVICE_PORT} (service {self.namespace}/{service}) must reach "
                 + ", ".join(f"{p.name} ({p.ip}:{p.port})" for p in pods))
        check = backends_check(title, self.clients, ip, SERVICE_PORT,
                               expected=dict.fromkeys(self.clients, want),
                               columns=[p.name for p in self.pods])

        def with_slices() -> tuple[bool, str]:
            ok, text = check()
            if not ok:
                # first: the tables' reproduce commands are long, and a failure message is capped
                listed = describe_slices(slice_views(self.slices(service)), self.names)
                text = f"EndpointSlices of {service} now list: {listed}\n{text}"
            return ok, text

        return reachability.wait_for_tables(with_slices, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


@pytest.fixture(scope="module")
def split(module_namespace, kube, cluster_facts) -> Split:
    return Split(kube, cluster_facts, module_namespace())


def by_ports(pods: Sequence[Pod]) -> dict[PortSet, set[str]]:
    out: dict[PortSet, set[str]] = {}
    for p in pods:
        out.setdefault(port_set(http_ports(p.port)), set()).add(p.ip)
    return out


def wait_slices(split: Split, service: str, expected: Mapping[PortSet, set[str]], *, managed_by: str,
                names: Mapping[str, str], what: str) -> None:
    """The Service's slices are exactly ``managed_by``'s and carry ``expected`` per port set."""

    def check() -> tuple[bool, str]:
        views = slice_views(split.slices(service))
        mine = [v for v in views if v.managed_by == managed_by]
        problems = port_split_problems(expected, mine, names)
        others = [v.name for v in views if v.managed_by != managed_by]
        if others:
            problems.append(f"EndpointSlices not managed by {managed_by}: {others}")
        listed = describe_slices(views, names)
        return not problems, ("; ".join(problems) + " — " if problems else "") + \
            f"EndpointSlices of {service} list: {listed}"

    wait_until(check, timeout=ENDPOINTS_TIMEOUT, what=what)


# --------------------------------------------------------------------------- by the controller


def test_a_selector_service_whose_pods_number_port_http_differently_gets_a_slice_per_port_and_reaches_all(
    split, kube, cluster_facts
):
    labels = {SPLIT_LABEL: "ports"}
    http = {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
    a = ServiceJig.install(kube, cluster_facts, split.namespace, name="sela", backends=1, clients=False,
                           tweak=tweaks(("backend.httpPort", PORT_A), ("backend.podLabels", labels),
                                        ("service.selector", labels), ("service.ports", [http])))
    b = ServiceJig.install(kube, cluster_facts, split.namespace, name="selb", backends=1, clients=False,
                           tweak=tweaks(("backend.httpPort", PORT_B), ("backend.podLabels", labels),
                                        ("service.enabled", False)))
    # The Deployments the test created, each with its container port number for 'http'.
    pods = [Pod(p.name, p.ip, p.node, port)
            for jig, port in ((a, PORT_A), (b, PORT_B))
            for p in kube.wait_pods_ready(split.namespace, f"{jig.release.selector},{BACKEND_LABEL}",
                                          count=1)]
    names = {p.ip: p.name for p in pods}
    wait_slices(split, "sela", by_ports(pods), managed_by=ENDPOINTSLICE_CONTROLLER, names=names,
                what=f"service {split.namespace}/sela (targetPort http = {PORT_A} on sela's pods, "
                     f"{PORT_B} on selb's) to get one EndpointSlice per port")
    ip = split.cluster_ip("sela")
    want = sorted(p.name for p in pods)
    title = (f"TCP {ip}:{SERVICE_PORT} (service {split.namespace}/sela, targetPort http) must reach "
             + ", ".join(f"{p.name} ({p.ip}:{p.port})" for p in pods))
    check = backends_check(title, split.clients, ip, SERVICE_PORT,
                           expected=dict.fromkeys(split.clients, want), columns=want)

    def with_slices() -> tuple[bool, str]:
        ok, text = check()
        if not ok:
            listed = describe_slices(slice_views(split.slices("sela")), names)
            text = f"EndpointSlices of sela now list: {listed}\n{text}"
        return ok, text

    reachability.wait_for_tables(with_slices, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


# --------------------------------------------------------------------------- by hand


def test_a_selectorless_service_split_by_port_across_two_manual_slices_reaches_both(split):
    p0, p1 = split.pods[0], split.pods[1]
    split.byport = charts.upgrade(split.kube, split.byport, {
        "endpointSlice": {"ports": http_ports(p0.port), "endpoints": [p0.endpoint()],
                          "addressType": split.address_type},
        "extraEndpointSlices": [{"name": "byport-manual-b", "ports": http_ports(p1.port),
                                 "endpoints": [p1.endpoint()]}],
    })
    split.assert_reaches(
        "byport", [p0, p1],
        what=f"manual slices byport-manual (port {p0.port}) and byport-manual-b (port {p1.port})")


def test_a_selectorless_service_split_by_address_across_two_manual_slices_reaches_the_union(split):
    p0, p2 = split.pods[0], split.pods[2]
    assert p0.port == p2.port, f"test setup: {p0} and {p2} should serve on the same port"
    split.pointing("byaddr", {
        "endpointSlice": {"ports": http_ports(p0.port), "endpoints": [p0.endpoint()],
                          "addressType": split.address_type},
        "extraEndpointSlices": [{"name": "byaddr-manual-b", "endpoints": [p2.endpoint()]}],
    })
    split.assert_reaches("byaddr", [p0, p2],
                         what=f"manual slices byaddr-manual ({p0.name}) and byaddr-manual-b ({p2.name}), "
                              f"both port {p0.port}")


# --------------------------------------------------------------------------- mirrored


def test_legacy_endpoints_with_two_subsets_are_mirrored_into_a_slice_per_subset_and_carry_traffic_to_both(
    split,
):
    p0, p1 = split.pods[0], split.pods[1]
    split.pointing("mirror", {
        "endpointSlice": {"enabled": False},
        "endpoints": {
            "enabled": True,
            "addresses": [{"ip": p0.ip, "nodeName": p0.node}],
            "ports": http_ports(p0.port),
            "extraSubsets": [
                {"addresses": [{"ip": p1.ip, "nodeName": p1.node}], "ports": http_ports(p1.port)},
            ],
        },
    })
    wait_slices(split, "mirror", by_ports([p0, p1]), managed_by=MIRRORING_CONTROLLER, names=split.names,
                what=f"Endpoints {split.namespace}/mirror (subsets {p0.name}:{p0.port} and "
                     f"{p1.name}:{p1.port}) mirrored into one EndpointSlice per subset")
    split.assert_reaches("mirror", [p0, p1], what="legacy Endpoints mirror, two subsets (mirrored)")
