"""LoadBalancer Services through a real load balancer (upstream e2e ``loadbalancer.go``).

kind has no LoadBalancer implementation; for this module the suite runs cloud-provider-kind
on this machine (``fixtures/loadbalancer.py``).  It gives each ``type: LoadBalancer`` Service a
proxy container on the kind network whose IP goes into ``status.loadBalancer.ingress`` with
``ipMode: Proxy``, and forwards to the Service's NodePort on the worker nodes, health-checking
them on kube-proxy's ``/healthz`` or, for ``externalTrafficPolicy: Local``, on the Service's
``healthCheckNodePort``.  Air-gapped, the proxy is svcconform's envoy-config-compatible
program (``images/lbproxy``); with registry access, upstream's envoy.

What is the cluster's (kube-proxy's or its replacement's) part, and so what these tests judge:

* the NodePorts the load balancer forwards to, on every worker, TCP and UDP;
* ``healthCheckNodePort`` telling the load balancer which nodes have a local endpoint, and
  ``externalTrafficPolicy: Local`` keeping the source address (here: the load balancer's);
* ``ipMode: Proxy`` (KEP-1860): traffic from pods to the load-balancer IP must go through the
  load balancer, not be short-circuited to the backends by the Service proxy;
* the Service lifecycle: type changes and port changes re-provision, and leaving type
  LoadBalancer releases the load balancer (finalizer ``service.kubernetes.io/load-balancer-cleanup``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fixtures import loadbalancer as lbx
from fixtures import reachability
from fixtures.concurrency import run_all
from fixtures.hostnet import source_address_towards
from fixtures.jig import ServiceJig
from fixtures.observations import HttpReply, UdpReply
from fixtures.poll import wait_until
from fixtures.probes import ExecFn, http_from_host, http_get
from fixtures.probes.traffic import target_of
from fixtures.probes.udp_socket import udp_from_host
from fixtures.timeouts import KUBE_PROXY_SERVICE_SYNC_TIMEOUT, LOAD_BALANCER_TIMEOUT

#: Extended as a family: type LoadBalancer needs a load-balancer implementation (fixtures/families.py).
pytestmark = pytest.mark.loadbalancer

CLUSTER_SERVICE = "lb"
LOCAL_SERVICE = "lb-local"
HTTP_PORT = 80
UDP_PORT = 81
# Requests per look.  Cluster: the load balancer picks one of 2 workers at random and
# kube-proxy one of 2 endpoints, so each backend answers half the requests; missing one in
# 16 has p = 2 * 2**-16 = 3e-5.
TRIES = 16
HTTP_80 = {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}
HTTP_8080 = {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
CLEANUP_FINALIZER = lbx.CLEANUP_FINALIZER


@pytest.fixture(scope="module")
def load_balancer(cluster, cluster_facts, kube) -> Iterator[tuple[lbx.CloudProviderKind, str]]:
    """cloud-provider-kind serving this cluster, and the kind cluster's name."""
    first = cluster_facts.nodes[0].name
    name = lbx.kind_cluster_name(first)
    if name is None:
        pytest.skip(f"LoadBalancer checks run cloud-provider-kind, which needs a kind cluster on this "
                    f"machine's Docker; node {first} is not a kind container here")
    if not cluster_facts.workers:
        pytest.skip("LoadBalancer checks need worker nodes: cloud-provider-kind excludes the control plane")
    ccm = lbx.for_cluster(cluster, name)
    ccm.start()
    try:
        yield ccm, name
    finally:
        try:
            forced = lbx.release_load_balancers(kube, ccm, namespace_prefix="svcc-",
                                                timeout=LOAD_BALANCER_TIMEOUT)
        finally:
            ccm.stop()
        if forced:
            warnings.warn(f"cloud-provider-kind did not release the load balancers of {forced}; "
                          f"their finalizer {lbx.CLEANUP_FINALIZER} was removed by hand", stacklevel=1)


@dataclass(frozen=True)
class LoadBalancers:
    cluster: ServiceJig  # ``lb``: 2 backends on the workers, Cluster, a client pod on every node
    local: ServiceJig  # ``lb-local``: 1 backend on the first worker, Local

    def jig(self, service: str) -> ServiceJig:
        return self.local if service == LOCAL_SERVICE else self.cluster


@pytest.fixture(scope="module")
def lbs(load_balancer, module_namespace, kube, cluster_facts) -> LoadBalancers:
    """Two releases in one namespace: ``lb`` (Cluster) with backends on the workers, and
    ``lb-local`` (Local) with one backend pinned to the first worker, so that a worker without
    a local endpoint exists."""
    workers = [n.name for n in cluster_facts.workers]
    ns = module_namespace()

    def cluster_tweak(values: dict) -> None:
        values["backend"].update(replicas=2, nodes=workers)
        values["service"].update(type="LoadBalancer", externalTrafficPolicy="Cluster")

    def local_tweak(values: dict) -> None:
        values["backend"].update(replicas=1, nodes=workers[:1])
        values["service"].update(type="LoadBalancer", externalTrafficPolicy="Local")

    return LoadBalancers(
        ServiceJig.install(kube, cluster_facts, ns, name=CLUSTER_SERVICE, tweak=cluster_tweak),
        ServiceJig.install(kube, cluster_facts, ns, name=LOCAL_SERVICE, clients=False, tweak=local_tweak),
    )


def wait_ingress(jig: ServiceJig, service: str, ccm: lbx.CloudProviderKind) -> lbx.Ingress:
    family = "IPv6" if jig.facts.ip_family == "ipv6" else "IPv4"
    found: list[lbx.Ingress] = []

    def check() -> tuple[bool, str]:
        obj = jig.kube.get_object("services", jig.namespace, service)
        ing = lbx.ingress_for_family(obj, family)
        if ing is not None:
            found.append(ing)
            return True, f"ingress {ing}"
        status = ((obj or {}).get("status") or {}).get("loadBalancer")
        alive = "running" if ccm.alive() else "NOT running"
        return False, (f"service {jig.namespace}/{service} has no {family} load-balancer ingress "
                       f"(status.loadBalancer: {status}); cloud-provider-kind {alive}; its log ends:\n"
                       f"{ccm.log_tail()}")

    wait_until(check, timeout=LOAD_BALANCER_TIMEOUT, what=f"load balancer for {jig.namespace}/{service}")
    return found[-1]


def reply_row(i: int, r: HttpReply | UdpReply) -> str:
    if r.ok:
        return f"  try {i:2d}: {r.target} -> backend {r.backend}, source seen {r.client_ip}"
    return f"  try {i:2d}: {r.target} -> FAILED ({r.error_kind.value if r.error_kind else '?'}: {r.error})"


def ready_backends(jig: ServiceJig, service: str) -> dict[str, str]:
    """Ready endpoints of ``service``: pod name → node."""
    return {e.name: str(e.node) for e in jig.endpoints(service) if e.ready and e.name}


# ----------------------------------------------------------------------------- provisioning


def test_load_balancer_is_provisioned_with_an_ingress_ip_in_proxy_mode(lbs, load_balancer):
    ccm, cluster_name = load_balancer
    for service in (CLUSTER_SERVICE, LOCAL_SERVICE):
        j = lbs.jig(service)
        ing = wait_ingress(j, service, ccm)
        obj = j.service_object(service)
        ports = {(p["port"], p["protocol"]) for p in obj["spec"]["ports"]}
        problems = []
        if ing.ip_mode != "Proxy":
            problems.append(f"ipMode {ing.ip_mode!r} (cloud-provider-kind proxies: want 'Proxy')")
        if set(ing.ports) != ports:
            problems.append(f"ingress ports {sorted(ing.ports)} (spec ports {sorted(ports)})")
        if CLEANUP_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            problems.append(f"no finalizer {CLEANUP_FINALIZER}: {obj['metadata'].get('finalizers')}")
        containers = lbx.proxy_containers(cluster_name, j.namespace, service)
        if len(containers) != 1:
            problems.append(f"{len(containers)} proxy containers labelled for it: {containers}")
        assert not problems, f"service {j.namespace}/{service}, ingress {ing.ip}: " + "; ".join(problems)


# ----------------------------------------------------------------------------- traffic


def look(jig: ServiceJig, service: str, probe, *, title: str, want, reproduce: str):
    """``TRIES`` probes; ``want(replies, backends)`` → problems; the table on failure."""

    def check() -> tuple[bool, str]:
        backends = ready_backends(jig, service)
        replies = [probe() for _ in range(TRIES)]
        problems = want(replies, backends)
        rows = [reply_row(i, r) for i, r in enumerate(replies, 1)]
        text = "\n".join([title, f"  ready endpoints (pod → node): {backends}", *rows,
                          *(f"  problem: {p}" for p in problems), f"  reproduce: {reproduce}"])
        return not problems, text

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT, what=title)


def every_backend_answers(replies, backends) -> list[str]:
    problems = []
    failed = [r for r in replies if not r.ok]
    if failed:
        problems.append(f"{len(failed)} of {len(replies)} attempts failed")
    seen = {r.backend for r in replies if r.ok}
    if seen - set(backends):
        problems.append(f"answered by {sorted(seen - set(backends))}, not a ready endpoint")
    if not failed and set(backends) - seen:
        problems.append(f"ready endpoints never answered: {sorted(set(backends) - seen)}")
    return problems


def test_tcp_through_the_load_balancer_reaches_every_backend(lbs, load_balancer):
    j = lbs.cluster
    ing = wait_ingress(j, CLUSTER_SERVICE, load_balancer[0])
    look(j, CLUSTER_SERVICE, lambda: http_from_host(ing.ip, HTTP_PORT),
         title=f"TCP {ing.ip}:{HTTP_PORT} (load balancer of {j.namespace}/{CLUSTER_SERVICE}, "
               f"externalTrafficPolicy: Cluster) from this machine",
         want=every_backend_answers, reproduce=f"curl http://{ing.ip}:{HTTP_PORT}/hostname")


def test_udp_through_the_load_balancer_reaches_every_backend(lbs, load_balancer):
    j = lbs.cluster
    ing = wait_ingress(j, CLUSTER_SERVICE, load_balancer[0])
    # Each probe is a new socket (a new source port): a new load-balancer session each time.
    look(j, CLUSTER_SERVICE, lambda: udp_from_host(ing.ip, UDP_PORT),
         title=f"UDP {ing.ip}:{UDP_PORT} (load balancer of {j.namespace}/{CLUSTER_SERVICE}) "
               "from this machine",
         want=every_backend_answers, reproduce=f"printf hostname | nc -u -w 2 {ing.ip} {UDP_PORT}")


def local_policy(ing_ip: str):
    def want(replies, backends) -> list[str]:
        problems = every_backend_answers(replies, backends)
        wrong = sorted({str(r.client_ip) for r in replies if r.ok and r.client_ip != ing_ip})
        if wrong:
            problems.append(f"externalTrafficPolicy: Local must keep the source address, which is the "
                            f"load balancer's ({ing_ip}); the backend saw {wrong}")
        return problems

    return want


def test_local_policy_load_balancer_uses_only_nodes_with_endpoints_and_keeps_the_source(lbs, load_balancer):
    """Every request succeeds only if the health-check node port told the load balancer the
    truth: a worker without a local endpoint drops ``Local`` traffic."""
    j = lbs.local
    ing = wait_ingress(j, LOCAL_SERVICE, load_balancer[0])
    hc = j.service(LOCAL_SERVICE).health_check_node_port
    look(j, LOCAL_SERVICE, lambda: http_from_host(ing.ip, HTTP_PORT),
         title=(f"TCP {ing.ip}:{HTTP_PORT} (load balancer of {j.namespace}/{LOCAL_SERVICE}, "
                f"externalTrafficPolicy: Local, healthCheckNodePort {hc}) from this machine"),
         want=local_policy(ing.ip), reproduce=f"curl http://{ing.ip}:{HTTP_PORT}/clientip")


def test_pods_reach_a_proxy_mode_load_balancer_ip_through_the_load_balancer(lbs, load_balancer):
    """``ipMode: Proxy``: the Service proxy must leave the load-balancer IP alone, so a pod's
    request really goes through the load balancer, and the ``Local`` backend sees the load
    balancer's address.  Short-circuiting it (as for ``ipMode: VIP``) would show the pod's
    or its node's address instead."""
    ing = wait_ingress(lbs.local, LOCAL_SERVICE, load_balancer[0])
    clients = lbs.cluster.clients()
    want = local_policy(ing.ip)

    def check() -> tuple[bool, str]:
        backends = ready_backends(lbs.local, LOCAL_SERVICE)
        def three_tries(vantage: ExecFn) -> list[HttpReply]:
            return [http_get(vantage, ing.ip, HTTP_PORT) for _ in range(3)]

        replies = run_all({n: functools.partial(three_tries, v) for n, v in clients.items()})
        rows, problems = [], []
        for node, got in sorted(replies.items()):
            if not isinstance(got, list):
                problems.append(f"{node}: probe error {got}")
                continue
            rows += [f"  from client pod on {node}:"] + [reply_row(i, r) for i, r in enumerate(got, 1)]
            problems += [f"{node}: {p}" for p in want(got, backends)]
        text = "\n".join([f"pods → {ing.ip}:{HTTP_PORT} (ipMode Proxy, load balancer of "
                          f"{lbs.local.namespace}/{LOCAL_SERVICE}, externalTrafficPolicy: Local)",
                          f"  ready endpoints (pod → node): {backends}", *rows,
                          *(f"  problem: {p}" for p in problems)])
        return not problems, text

    reachability.wait_for_tables(check, timeout=KUBE_PROXY_SERVICE_SYNC_TIMEOUT,
                                 what=f"pods → load balancer {ing.ip}")


# ----------------------------------------------------------------------------- lifecycle


def test_type_and_port_changes_reprovision_and_release_the_load_balancer(load_balancer, jig):
    """Upstream e2e "should be able to change the type and ports of a TCP service": ClusterIP →
    LoadBalancer (provisioned, answers), port 80 → 8080 (the new port answers, the old does
    not), LoadBalancer → ClusterIP (ingress cleared, finalizer and proxy container gone)."""
    ccm, cluster_name = load_balancer
    j = jig(name="lbtype", backends=1, clients=False)
    j.update(lambda v: v["service"].update(type="LoadBalancer"))
    ing = wait_ingress(j, "lbtype", ccm)
    look(j, "lbtype", lambda: http_from_host(ing.ip, HTTP_PORT),
         title=f"TCP {ing.ip}:{HTTP_PORT} after → LoadBalancer",
         want=every_backend_answers, reproduce=f"curl http://{ing.ip}:{HTTP_PORT}/hostname")

    j.update(lambda v: v["service"].update(ports=[HTTP_8080]))

    def moved(replies, backends) -> list[str]:
        return every_backend_answers(replies, backends)

    look(j, "lbtype", lambda: http_from_host(ing.ip, 8080), title=f"TCP {ing.ip}:8080 after the port change",
         want=moved, reproduce=f"curl http://{ing.ip}:8080/hostname")
    old = http_from_host(ing.ip, HTTP_PORT, connect_timeout=2.0)
    assert not old.ok, f"after the port change {ing.ip}:{HTTP_PORT} still answers: {reply_row(1, old)}"

    j.update(lambda v: v["service"].update(type="ClusterIP", ports=[HTTP_8080]))

    def released() -> tuple[bool, str]:
        obj = j.service_object("lbtype")
        left = []
        if lbx.ingresses(obj):
            left.append(f"status ingress {lbx.ingresses(obj)}")
        if CLEANUP_FINALIZER in (obj["metadata"].get("finalizers") or []):
            left.append(f"finalizer {CLEANUP_FINALIZER}")
        containers = lbx.proxy_containers(cluster_name, j.namespace, "lbtype")
        if containers:
            left.append(f"proxy containers {containers}")
        return not left, "after → ClusterIP still present: " + ", ".join(left)

    wait_until(released, timeout=LOAD_BALANCER_TIMEOUT,
               what=f"load balancer of {j.namespace}/lbtype released")


def test_load_balancer_source_ranges_admit_only_the_listed_clients(load_balancer, jig):
    """Upstream e2e "should only allow access from service loadbalancer source ranges", from
    this machine: listed, it is served; the ranges changed to exclude it, it is not; listed
    again, served again.  (With ``ipMode: Proxy`` the load balancer enforces the ranges; the
    check is that the Service's ranges reach it and follow changes.)"""
    ccm, _ = load_balancer
    j = jig(name="lbranges", backends=1, clients=False)
    j.update(lambda v: v["service"].update(type="LoadBalancer", ports=[HTTP_80]))
    ing = wait_ingress(j, "lbranges", ccm)
    me = source_address_towards(ing.ip)
    mine = f"{me}/{128 if ':' in me else 32}"
    # Documentation prefixes (RFC 5737 / 3849): nothing here uses them, so they exclude this machine.
    elsewhere = "2001:db8::/32" if ":" in me else "192.0.2.0/24"
    reproduce = f"curl http://{target_of(ing.ip, HTTP_PORT)}/clientip"

    for ranges, admitted in (([mine], True), ([elsewhere], False), ([mine], True)):
        j.update(lambda v, r=ranges: v["service"].update(loadBalancerSourceRanges=r))
        title = (f"TCP {target_of(ing.ip, HTTP_PORT)} (load balancer of {j.namespace}/lbranges, "
                 f"loadBalancerSourceRanges {ranges}) from this machine ({me})")
        look(j, "lbranges", lambda: http_from_host(ing.ip, HTTP_PORT, connect_timeout=2.0), title=title,
             want=every_backend_answers if admitted else nobody_answers, reproduce=reproduce)


def nobody_answers(replies, backends) -> list[str]:
    served = [r for r in replies if r.ok]
    if not served:
        return []
    return [f"{len(served)} of {len(replies)} attempts were served from outside the source ranges"]


def test_load_balancer_without_node_ports_allocates_them_when_switched_on(load_balancer, jig):
    """Upstream e2e "should be able to create LoadBalancer Service without NodePort and change
    it": with ``allocateLoadBalancerNodePorts: false`` no port has a nodePort (and this
    machine's load balancer, which forwards to NodePorts, has nothing to forward to); switched
    to ``true``, every port gets one and the load balancer carries traffic to the backend."""
    ccm, _ = load_balancer
    j = jig(name="lbnonp", backends=1, clients=False)
    j.update(lambda v: v["service"].update(type="LoadBalancer", ports=[HTTP_80],
                                           allocateLoadBalancerNodePorts=False))
    spec = j.service_object("lbnonp")["spec"]
    assert spec.get("allocateLoadBalancerNodePorts") is False, f"spec as stored: {spec}"
    allocated = {p["name"]: p.get("nodePort") for p in spec["ports"] if p.get("nodePort")}
    assert not allocated, f"allocateLoadBalancerNodePorts: false, yet node ports were allocated: {allocated}"

    j.update(lambda v: v["service"].update(allocateLoadBalancerNodePorts=True))
    spec = j.service_object("lbnonp")["spec"]
    missing = [p["name"] for p in spec["ports"] if not p.get("nodePort")]
    assert not missing, (
        f"allocateLoadBalancerNodePorts: true, yet ports {missing} have no nodePort: {spec['ports']}")
    ing = wait_ingress(j, "lbnonp", ccm)
    look(j, "lbnonp", lambda: http_from_host(ing.ip, HTTP_PORT),
         title=f"TCP {target_of(ing.ip, HTTP_PORT)} after allocateLoadBalancerNodePorts: false → true",
         want=every_backend_answers, reproduce=f"curl http://{target_of(ing.ip, HTTP_PORT)}/hostname")
