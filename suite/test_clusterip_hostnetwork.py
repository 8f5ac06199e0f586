"""clusterip, host network: a ClusterIP works for pods in their node's network namespace, as
clients and as backends (upstream e2e's "Granular Checks: Services" node-Service and
hostNetwork-endpoint cases).

One namespace, two releases:

* ``hnc``: 3 agnhost backends on the pod network and a **hostNetwork** client on every node.
  A hostNetwork client's packets to the ClusterIP come from the node's own address and take
  the proxy's locally-generated path (iptables/nftables ``output`` hooks), not the
  ``prerouting`` one pod traffic takes.
* ``hnb``: agnhost **hostNetwork** backends on the workers (one per worker) and a client on
  the pod network on every node.  Each endpoint address is its node's IP; agnhost answers
  with the node's hostname.  Its ports come from
  :func:`fixtures.expectations.hostnetwork.host_ports` (20000-29999, below the NodePort and
  ephemeral ranges, above every control-plane and node-agent port; spread by the namespace
  so runs sharing a cluster do not collide; a collision would leave a backend Pending, since
  hostNetwork ports are hostPorts to the scheduler).  Their UDP server listens on the node's
  IPs only (``--udp-listen-addresses``, as upstream's hostNetwork endpoints): on the wildcard
  address its replies to a pod on the same node leave from the pod-side gateway address
  (kindnet's 10.244.x.1) instead of the node IP the ClusterIP was translated to, which
  conntrack cannot match, so that pod would never see an answer (measured here before the
  flag: the same-node cells of the UDP table were ``X``, "no-reply").

Tables: rows are clients (node, and whether on the pod network or the host network),
columns the backends that must answer; ``.`` answered, ``X`` never answered, ``?`` unknown.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from fixtures import reachability
from fixtures.backendchecks import backends_by_client
from fixtures.concurrency import run_all
from fixtures.expectations.hostnetwork import host_network_endpoint_problems, host_ports
from fixtures.expectations.model import TrafficPolicy
from fixtures.expectations.traffic import clusterip_backends
from fixtures.jig import ServiceJig, tweaks
from fixtures.kube import Kube
from fixtures.observations import Unknown
from fixtures.probes import Vantage
from fixtures.providers.base import ClusterFacts
from fixtures.timeouts import KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.clusterip

HOST_CLIENTS = "hnc"  # pod-network backends, hostNetwork clients
HOST_BACKENDS = "hnb"  # hostNetwork backends, pod-network clients
HOSTNAME_ARGV = ["cat", "/proc/sys/kernel/hostname"]  # agnhost's os.Hostname(), no extra tool


@dataclass
class HostNetScene:
    clients_jig: ServiceJig  # hostNetwork clients
    backends_jig: ServiceJig  # hostNetwork backends
    ports: tuple[int, int]  # the hostNetwork backends' TCP, UDP ports

    @property
    def namespace(self) -> str:
        return self.clients_jig.namespace


@pytest.fixture(scope="module")
def hostnet(module_namespace, kube: Kube, cluster_facts: ClusterFacts) -> HostNetScene:
    ns = module_namespace()
    http, udp = host_ports(ns)
    workers = [n.name for n in cluster_facts.workers] or [cluster_facts.nodes[0].name]
    installs = {
        HOST_CLIENTS: functools.partial(
            ServiceJig.install, kube, cluster_facts, ns, name=HOST_CLIENTS, backends=3,
            tweak=tweaks(("clients.hostNetwork", True), ("clients.namePrefix", "hclient"))),
        HOST_BACKENDS: functools.partial(
            ServiceJig.install, kube, cluster_facts, ns, name=HOST_BACKENDS, backends=len(workers),
            tweak=tweaks(("backend.hostNetwork", True), ("backend.httpPort", http), ("backend.udpPort", udp),
                         ("backend.nodes", workers))),
    }
    jigs = run_all(installs)
    failed = {name: res.error for name, res in jigs.items() if isinstance(res, Unknown)}
    assert not failed, f"setup in {ns} (hostNetwork backend ports TCP {http}, UDP {udp}): {failed}"
    clients_jig, backends_jig = jigs[HOST_CLIENTS], jigs[HOST_BACKENDS]
    assert isinstance(clients_jig, ServiceJig)
    assert isinstance(backends_jig, ServiceJig)
    return HostNetScene(clients_jig, backends_jig, (http, udp))


def assert_reached(title: str, clients: Mapping[str, Vantage], host: str, port: int, *, proto: str,
                   expected: Mapping[str, frozenset[str]], columns: list[str]) -> None:
    """Every client reaches exactly ``expected[row]`` (backend names as they answer).

    The backends each client saw are accumulated over the checks of the wait: one burst of
    tries (``LOOP_DURATION_S``) can be too short on a loaded machine to draw every backend
    (measured on nftables: 3 tries in 2 s), while an unexpected backend, or one never drawn
    within the wait, still fails the table."""
    seen: dict[str, set[str]] = {}
    tries: dict[str, int] = {}

    def check() -> tuple[bool, str]:
        got = backends_by_client(clients, host, port, proto=proto)
        for row, g in got.items():
            if g.seen is not None:
                seen.setdefault(row, set()).update(g.seen)
            tries[row] = tries.get(row, 0) + len(g.answers)
        observed = {r: (frozenset(seen[r]) if r in seen else None) for r in got}
        notes = {r: f"{g.note}; {tries[r]} tries so far" for r, g in got.items()}
        cmp = reachability.compare(
            reachability.expected_backend_table(title, expected, columns),
            reachability.backend_table(title, observed, columns, notes=notes,
                                       commands={r: g.command for r, g in got.items()}),
        )
        return cmp.ok, cmp.render()

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


# --------------------------------------------------------------------------- hostNetwork clients


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_host_network_clients_on_every_node_reach_every_ready_backend(
        hostnet: HostNetScene, proto: str) -> None:
    j = hostnet.clients_jig
    svc = j.service()
    port = 80 if proto == "tcp" else 81
    endpoints = j.endpoints()
    clients = {f"{n} [hostNetwork]": v for n, v in j.clients().items()}
    expected = {row: clusterip_backends(endpoints, client_node=v.node or "",
                                        internal_traffic_policy=TrafficPolicy.CLUSTER)
                for row, v in clients.items()}
    assert_reached(f"{proto.upper()} {svc.cluster_ip}:{port} from hostNetwork clients "
                   f"(service {j.namespace}/{svc.name}, pod-network backends)",
                   clients, svc.cluster_ip or "", port, proto=proto, expected=expected,
                   columns=sorted(e.label for e in endpoints))


# --------------------------------------------------------------------------- hostNetwork backends


def node_addresses(kube: Kube) -> dict[str, list[str]]:
    return {n["metadata"]["name"]: [a["address"] for a in n.get("status", {}).get("addresses") or []
                                    if a.get("type") == "InternalIP"]
            for n in kube.list_nodes()}


def test_a_host_network_backends_endpoint_address_is_its_nodes_ip(hostnet: HostNetScene, kube: Kube) -> None:
    j = hostnet.backends_jig
    endpoints = j.endpoints()
    pods = j.backend_pods()
    where = f"service {j.namespace}/{j.name} over hostNetwork backends {[p.describe() for p in pods]}"
    assert len(endpoints) == len(pods), f"{where}: endpoints {[(e.ip, e.node) for e in endpoints]}"
    problems = host_network_endpoint_problems(endpoints, node_addresses(kube))
    assert not problems, f"{where}: " + "; ".join(problems)


def answering_names(j: ServiceJig, kube: Kube) -> dict[str, str]:
    """Backend pod name → the name agnhost answers with (a hostNetwork pod's hostname is its
    node's)."""
    names = {}
    for pod in j.backend_pods():
        result = kube.exec(j.namespace, pod.name, HOSTNAME_ARGV)
        assert result.ok, f"cannot read the hostname of {pod.describe()}: {result.stderr.strip()[:200]}"
        names[pod.name] = result.stdout.strip()
    return names


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_host_network_backends_are_reached_through_the_cluster_ip_from_pod_and_host_network_clients(
        hostnet: HostNetScene, kube: Kube, proto: str) -> None:
    j = hostnet.backends_jig
    svc = j.service()
    port = 80 if proto == "tcp" else 81
    names = answering_names(j, kube)
    endpoints = [dataclasses.replace(e, name=names.get(e.label, e.label)) for e in j.endpoints()]
    clients = {**{f"{n} [pod]": v for n, v in j.clients().items()},
               **{f"{n} [hostNetwork]": v for n, v in hostnet.clients_jig.clients().items()}}
    expected = {row: clusterip_backends(endpoints, client_node=v.node or "",
                                        internal_traffic_policy=TrafficPolicy.CLUSTER)
                for row, v in clients.items()}
    http, udp = hostnet.ports
    target = http if proto == "tcp" else udp
    by_node = ", ".join(f"{e.label} at {e.ip}:{target}" for e in endpoints)
    assert_reached(f"{proto.upper()} {svc.cluster_ip}:{port} (service {j.namespace}/{svc.name}, hostNetwork "
                   f"backends answering with their node's hostname: {by_node})",
                   clients, svc.cluster_ip or "", port, proto=proto, expected=expected,
                   columns=sorted(e.label for e in endpoints))
