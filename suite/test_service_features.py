"""clusterip: Service features beyond one virtual IP per port -- one port number over both TCP
and UDP, ``spec.externalIPs``, the ``service.kubernetes.io/service-proxy-name`` label, and the
client pod's own IP as the backends see it.

One module-scoped release (3 backends spread over the nodes, a client pod on every node)
whose extra Services (:func:`extra_services`) all select its backends; the ``externalIPs``
are addresses nobody uses on the nodes' network (fixtures.hostnet), one per node.  And a
second release of host-network client pods (fixtures.nodeclients): the vantage points
*on* the nodes.  Family ``clusterip`` throughout: every check here is about how the proxy
serves a Service's virtual IPs, and ``externalIPs`` are, like the ClusterIP, virtual IPs of a
ClusterIP Service the proxy translates on every node (no nodePort is involved).

The Extended checks say why in their markers; one port over TCP and UDP is Core (upstream
Conformance since 1.29).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from fixtures import hostnet, nodeclients, reachability
from fixtures.backendchecks import backends_by_client
from fixtures.concurrency import run_all, run_matrix
from fixtures.expectations.clusterip import saw_client_ip
from fixtures.jig import ServiceJig, tweaks
from fixtures.probes import Vantage, http_from_host, http_get
from fixtures.probes.clientip import ClientIpLoop, clientip_loop
from fixtures.timeouts import KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, KUBE_PROXY_SERVICE_SYNC_TIMEOUT

pytestmark = pytest.mark.clusterip

RELEASE = "feat"
BACKENDS = 3
SELECTOR = {
    "app.kubernetes.io/name": "service-selectors",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "backend",
}
HTTP = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
DUAL_PORT = 53
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
#: A proxy name nothing serves: kube-proxy (and replacements honouring the label) must ignore it.
NO_PROXY = "svcconform-no-such-proxy"
#: Connections per client in the client-IP check: each backend is missed by all of them with
#: p = (2/3)^24 = 6e-5, so every backend (same node and other nodes) gets a cell; a wait
#: re-observes before failing.
CLIENT_IP_TRIES = 24


def extra_services(external_ips: list[str], *, toggled_labelled: bool = True) -> list[dict[str, Any]]:
    def svc(name: str, labels: Mapping[str, str] | None = None, **spec: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "spec": {"selector": SELECTOR, "ports": [HTTP], **spec}}
        if labels:
            out["labels"] = dict(labels)
        return out

    return [
        svc(
            "dual-proto",
            ports=[
                {"name": "dns-tcp", "port": DUAL_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "dns-udp", "port": DUAL_PORT, "targetPort": "udp", "protocol": "UDP"},
            ],
        ),
        svc("proxied"),
        svc("unproxied", {PROXY_NAME_LABEL: NO_PROXY}),
        svc("toggled", {PROXY_NAME_LABEL: NO_PROXY} if toggled_labelled else None),
        svc("external", externalIPs=list(external_ips)),
    ]


@dataclass
class Features:
    jig: ServiceJig
    nodes: ServiceJig  # host-network clients: vantage points on the nodes
    external_ips: list[str]

    def vantages(self) -> dict[str, Vantage]:
        """Client pods (rows named by node) and the nodes themselves (``node <name>``)."""
        return {**self.jig.clients(), **{nodeclients.row(n): v for n, v in self.nodes.clients().items()}}


@pytest.fixture(scope="module")
def features(module_namespace, kube, cluster_facts) -> Features:
    ns = module_namespace()
    node_ips = [n.internal_ip for n in cluster_facts.nodes]
    external_ips = hostnet.unused_kind_addresses(
        node_ips,
        count=min(len(node_ips), hostnet.BLOCK),
        slot=hostnet.cell_slot(cluster_facts.proxy_mode, cluster_facts.cni),
    )
    jig = ServiceJig.install(
        kube,
        cluster_facts,
        ns,
        name=RELEASE,
        backends=BACKENDS,
        tweak=tweaks(("extraServices", extra_services(external_ips))),
    )
    return Features(jig, nodeclients.install(kube, cluster_facts, ns), external_ips)


def ready_names(jig: ServiceJig, service: str) -> list[str]:
    jig.wait_ready_endpoints(name=service, count=BACKENDS)
    return sorted(e.label for e in jig.endpoints(service) if e.ready)


@dataclass(frozen=True)
class ServedBy:
    """A table cell reached only when a ready endpoint of the Service answered (an answer
    from anything else -- a host the packet leaked to -- is not the Service)."""

    obs: Any
    ready: frozenset[str]

    @property
    def reached(self) -> bool | None:
        backend = getattr(self.obs, "backend", None)
        if backend and backend in self.ready:
            return True
        if self.obs.reached:
            return False
        return self.obs.reached

    @property
    def command(self) -> str:
        return str(getattr(self.obs, "command", "") or "")

    def summary(self) -> str:
        backend = getattr(self.obs, "backend", None)
        stranger = (
            f"; answered by {backend}, not a ready endpoint" if backend and backend not in self.ready else ""
        )
        return f"{self.obs.summary()}{stranger}"


# --------------------------------------------------------------------------- TCP + UDP


def test_one_port_number_over_tcp_and_udp_reaches_the_backends_on_both_protocols(features):
    j = features.jig
    ready = ready_names(j, "dual-proto")
    svc = j.service("dual-proto")
    protocols = sorted((p.protocol, p.port) for p in svc.ports)
    assert protocols == [("TCP", DUAL_PORT), ("UDP", DUAL_PORT)], (
        f"service {j.namespace}/dual-proto should have port {DUAL_PORT} over TCP and UDP, has {protocols}"
    )
    clients = j.clients()
    columns = [f"{proto} {DUAL_PORT} {b}" for proto in ("TCP", "UDP") for b in ready]
    title = (
        f"{svc.cluster_ip}:{DUAL_PORT} over TCP (-> agnhost HTTP) and UDP (-> agnhost UDP) "
        f"(service {j.namespace}/dual-proto): backends each client reached"
    )
    expected = reachability.expected_table(title, clients, columns, lambda r, c: True)

    def check() -> tuple[bool, str]:
        got = run_all(
            {
                proto: functools.partial(
                    backends_by_client, clients, svc.cluster_ip, DUAL_PORT, proto=proto.lower()
                )
                for proto in ("TCP", "UDP")
            }
        )
        observed = reachability.Table(title, list(clients), list(columns))
        for proto, res in got.items():
            per_client = res if isinstance(res, dict) else {}
            for node in clients:
                g = per_client.get(node)
                seen = None if g is None else g.seen
                for b in sorted(set(ready) | set(seen or ())):
                    mark = (
                        reachability.Mark.UNKNOWN
                        if seen is None
                        else reachability.Mark.REACHED
                        if b in seen
                        else reachability.Mark.BLOCKED
                    )
                    observed.set(
                        node,
                        f"{proto} {DUAL_PORT} {b}",
                        mark,
                        note=g.note if g else str(res),
                        command=g.command if g else "",
                    )
        cmp = reachability.compare(expected, observed)
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


# --------------------------------------------------------------------------- service-proxy-name


def proxy_name_check(f: Features, expect: Mapping[str, bool], title: str):
    """Every vantage (client pods, nodes) against each Service's ClusterIP:80."""
    j = f.jig
    ips = {name: j.service(name).cluster_ip for name in expect}
    ready = {name: frozenset(ready_names(j, name)) for name in expect}
    columns = {f"{name} {ip}:80": name for name, ip in ips.items()}
    vantages = f.vantages()
    expected = reachability.expected_table(title, vantages, columns, lambda r, c: expect[columns[c]])

    def probe(row: str, column: str) -> ServedBy:
        name = columns[column]
        return ServedBy(http_get(vantages[row], str(ips[name]), 80), ready[name])

    def check() -> tuple[bool, str]:
        cmp = reachability.compare(
            expected, reachability.observed_table(title, run_matrix(list(vantages), list(columns), probe))
        )
        labels = "; ".join(f"{name}: {proxy_name_of(j, name) or 'unlabelled'}" for name in expect)
        return cmp.ok, f"{PROXY_NAME_LABEL} as the API has it now: {labels}\n{cmp.render()}"

    return check


def proxy_name_of(jig: ServiceJig, service: str) -> str | None:
    return (jig.service_object(service)["metadata"].get("labels") or {}).get(PROXY_NAME_LABEL)


@pytest.mark.extended(reason="service.kubernetes.io/service-proxy-name: upstream e2e's check is not "
                      "Conformance, and a replacement may be configured to serve that proxy name itself")
def test_a_service_labelled_for_another_proxy_is_ignored_until_the_label_is_removed(features):
    stays, why = hostnet.untranslated_traffic_stays_here()
    if not stays:
        pytest.skip(f"an ignored ClusterIP is routed like any address: {why}")
    j = features.jig
    # The labelled ones as installed; ``proxied``'s label is reported with every table instead
    # (relabelling it afterwards, as an operator might, must show up as traffic).
    for name in ("unproxied", "toggled"):
        got = proxy_name_of(j, name)
        assert got == NO_PROXY, (
            f"service {j.namespace}/{name}: label {PROXY_NAME_LABEL}={got!r}, expected {NO_PROXY!r}"
        )
    label = f"{PROXY_NAME_LABEL}={NO_PROXY}"
    reachability.wait_for_tables(
        proxy_name_check(
            features,
            {"proxied": True, "unproxied": False, "toggled": False},
            f"TCP ClusterIP:80 from pods and nodes (services in {j.namespace}: proxied served; "
            f"unproxied and toggled, labelled {label}, ignored)",
        ),
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=f"only the unlabelled Service served ({label})",
    )
    j.update(tweaks(("extraServices", extra_services(features.external_ips, toggled_labelled=False))))
    got = proxy_name_of(j, "toggled")
    assert got is None, f"service {j.namespace}/toggled still labelled {PROXY_NAME_LABEL}={got!r}"
    reachability.wait_for_tables(
        proxy_name_check(
            features,
            {"proxied": True, "unproxied": False, "toggled": True},
            f"TCP ClusterIP:80 from pods and nodes after removing {PROXY_NAME_LABEL} from "
            f"{j.namespace}/toggled (unproxied keeps it)",
        ),
        timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT,
        what=f"service {j.namespace}/toggled served once unlabelled",
    )


# --------------------------------------------------------------------------- externalIPs


@pytest.fixture
def host_routes(features, cluster_facts) -> Iterator[hostnet.HostRoutes]:
    """This machine routes each external IP to a different node for the test's duration:
    nobody owns those addresses, so without a route the host would ARP for them in vain.  The
    routes (``ip route add <ip>/32 via <node IP>``, on the kind bridge only) are removed after."""
    via = dict(zip(features.external_ips, (n.internal_ip for n in cluster_facts.nodes), strict=False))
    with hostnet.HostRoutes(via) as routes:
        yield routes


@pytest.mark.extended(reason="spec.externalIPs is discouraged and often blocked by admission policy")
def test_external_ips_reach_the_backends_from_pods_nodes_and_this_machine(
    features, host_routes, cluster_facts
):
    j = features.jig
    ready = frozenset(ready_names(j, "external"))
    spec = j.service_object("external")["spec"]
    assert sorted(spec.get("externalIPs") or []) == sorted(features.external_ips), (
        f"service {j.namespace}/external: externalIPs {spec.get('externalIPs')}, "
        f"expected {features.external_ips}"
    )
    names = {n.internal_ip: n.name for n in cluster_facts.nodes}
    vantages: dict[str, Vantage | None] = dict(features.vantages())
    if host_routes.added:
        vantages["host"] = None
        routes = ", ".join(f"{ip} via {names.get(v, v)}" for ip, v in host_routes.added.items())
        host_note = f"this machine routes {routes}"
    else:
        host_note = f"no row for this machine: {host_routes.reason}"
    columns = {f"{ip}:80": ip for ip in features.external_ips}
    title = (
        f"TCP externalIPs:80 (service {j.namespace}/external, ClusterIP; addresses nobody uses "
        f"on the nodes' network) from pods, nodes and this machine; {host_note}"
    )
    expected = reachability.expected_table(title, vantages, columns, lambda r, c: True)

    def probe(row: str, column: str) -> ServedBy:
        vantage = vantages[row]
        ip = columns[column]
        reply = http_from_host(ip, 80) if vantage is None else http_get(vantage, ip, 80)
        return ServedBy(reply, ready)

    def check() -> tuple[bool, str]:
        observed = reachability.observed_table(title, run_matrix(list(vantages), list(columns), probe))
        cmp = reachability.compare(expected, observed)
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


# --------------------------------------------------------------------------- client IP


@pytest.mark.extended(reason="every kube-proxy mode and most CNIs keep the client pod's IP, but upstream "
                      "e2e checks it outside Conformance: a proxy may SNAT ClusterIP traffic")
def test_backends_see_the_client_pod_ip_through_the_cluster_ip(features):
    j = features.jig
    ready_names(j, RELEASE)
    svc = j.service()
    pods = {p.name: p for p in j.backend_pods() if p.ready}
    columns = {f"{name} on {pod.node}": name for name, pod in sorted(pods.items())}
    clients = j.clients()
    client_ips = {n: j.client_ip(n) for n in clients}
    title = (
        f"TCP {svc.cluster_ip}:80 (service {j.namespace}/{svc.name}): the client IP each backend saw "
        f"is the client pod's own ({', '.join(f'{n} {ip}' for n, ip in client_ips.items())})"
    )
    expected = reachability.expected_table(title, clients, columns, lambda r, c: True)

    def check() -> tuple[bool, str]:
        loops = run_all(
            {
                n: functools.partial(clientip_loop, v, svc.cluster_ip, 80, tries=CLIENT_IP_TRIES)
                for n, v in clients.items()
            }
        )
        observed = reachability.Table(title, list(clients), list(columns))
        for node, loop in loops.items():
            seen_by = loop.seen_by() if isinstance(loop, ClientIpLoop) else None
            for column, backend in columns.items():
                seen = None if seen_by is None else seen_by.get(backend)
                verdict = saw_client_ip(client_ips[node], seen)
                mark = (reachability.Mark.UNKNOWN if verdict is None
                        else reachability.Mark.REACHED if verdict else reachability.Mark.BLOCKED)
                if isinstance(loop, ClientIpLoop):
                    note = f"saw {sorted(seen)}" if seen else f"not reached in {len(loop.tries)} tries"
                    command = loop.command
                else:
                    note, command = loop.summary(), ""
                observed.set(node, column, mark, note=note, command=command)
        cmp = reachability.compare(expected, observed)
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(
        check,
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=title,
        problem="a backend saw another address than the client pod's "
        "(. = its own IP, X = another, ? = not reached)",
    )
