"""LoadBalancer Services through a real load balancer (upstream e2e ``loadbalancer.go``).

Which load balancer (``fixtures/loadbalancer.py``):

* on a kind cluster the suite created, cloud-provider-kind on this machine, started for this
  module.  It gives each ``type: LoadBalancer`` Service a proxy container on the kind network
  whose IP goes into ``status.loadBalancer.ingress`` with ``ipMode: Proxy``, and forwards to the
  Service's NodePort on the worker nodes, health-checking them on kube-proxy's ``/healthz`` or,
  for ``externalTrafficPolicy: Local``, on the Service's ``healthCheckNodePort``;
* on any other cluster (``--kubeconfig``), the cluster's own implementation; the suite starts
  nothing.  ``--load-balancer-class`` picks one where there are several.

The family's first Service is tried once (``--load-balancer-timeout``): when nothing assigns an
ingress, every check is skipped with that one reason.  What the implementation is, is recorded
in results.json ``cell.detection.load_balancer``.

Every check judges from inside the cluster -- the client pod on every node and every node's
hostNetwork pod -- and from this machine only when it reaches the ingress.  What each vantage
must see follows from the ingress's path (``fixtures/expectations/loadbalancer.py``): ``ipMode:
VIP`` (or none) is short-circuited by the Service proxy for pods and nodes, ``Proxy`` and a
hostname ingress go through the load balancer; the suite's cloud-provider-kind is judged as the
proxy it is, whatever its status says.  What these tests judge of the cluster:

* the NodePorts the load balancer forwards to (or the short-circuit to the endpoints), TCP and UDP;
* ``healthCheckNodePort`` telling the load balancer which nodes have a local endpoint, and
  ``externalTrafficPolicy: Local`` keeping the source address;
* ``ipMode`` (KEP-1860): pods' traffic to the ingress goes where its mode says;
* the Service lifecycle: type changes and port changes re-provision, and leaving type
  LoadBalancer releases the load balancer.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fixtures import loadbalancer as lbx
from fixtures import reachability
from fixtures.errors import AdmissionRefused
from fixtures.expectations import loadbalancer as lbe
from fixtures.expectations.model import TrafficPolicy
from fixtures.jig import ServiceJig
from fixtures.options import load_balancer_options
from fixtures.outside import HostReach
from fixtures.poll import wait_until
from fixtures.probes.traffic import target_of
from fixtures.session import record_detection

#: Extended as a family: type LoadBalancer needs a load-balancer implementation (fixtures/families.py).
pytestmark = pytest.mark.loadbalancer

CLUSTER_SERVICE = "lb"
LOCAL_SERVICE = "lb-local"
HTTP_PORT = 80
UDP_PORT = 81
# Requests per vantage and look.  Cluster: the load balancer picks one of 2 workers at random
# and kube-proxy one of 2 endpoints, so each backend answers half the requests; missing one in
# 16 has p = 2 * 2**-16 = 3e-5.
TRIES = 16
HTTP_80 = {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}
HTTP_8080 = {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}


@pytest.fixture(scope="module")
def implementation(cluster, cluster_facts, kube, pytestconfig) -> Iterator[lbx.Implementation]:
    """The implementation the family judges: the suite's cloud-provider-kind on its own kind
    cells, the cluster's own anywhere else (never a cloud-provider-kind started on it)."""
    given = load_balancer_options(pytestconfig)
    timeout = lbx.provisioning_timeout(cluster_facts.provider, given.timeout)
    if cluster_facts.provider != "kind":
        yield lbx.Implementation(None, None, given.load_balancer_class, timeout)
        return
    first = cluster_facts.nodes[0].name
    name = lbx.kind_cluster_name(first)
    if name is None:
        pytest.skip(f"the suite's LoadBalancer for kind cells is cloud-provider-kind, which needs the kind "
                    f"cluster on this machine's Docker; node {first} is not a kind container here")
    if not cluster_facts.workers:
        pytest.skip("cloud-provider-kind needs worker nodes: it excludes the control plane")
    ccm = lbx.for_cluster(cluster, name)
    ccm.start()
    try:
        yield lbx.Implementation(ccm, name, given.load_balancer_class, timeout)
    finally:
        try:
            forced = lbx.release_load_balancers(kube, ccm, namespace_prefix="svcc-",
                                                timeout=lbx.LOAD_BALANCER_TIMEOUT)
        finally:
            ccm.stop()
        if forced:
            warnings.warn(f"cloud-provider-kind did not release the load balancers of {forced}; "
                          f"their finalizer {lbx.CLEANUP_FINALIZER} was removed by hand", stacklevel=1)


@dataclass(frozen=True)
class LoadBalancers:
    cluster: ServiceJig  # ``lb``: 2 backends on the workers, Cluster, a client pod on every node
    local: ServiceJig  # ``lb-local``: 1 backend on the first worker, Local
    created: float  # time.monotonic() when the releases were installed

    def jig(self, service: str) -> ServiceJig:
        return self.local if service == LOCAL_SERVICE else self.cluster


def backend_nodes(facts) -> list[str]:
    """Where backends go: the workers (load balancers commonly leave the control plane out:
    kubeadm labels it ``node.kubernetes.io/exclude-from-external-load-balancers``), else every node."""
    return [n.name for n in facts.workers] or [n.name for n in facts.nodes]


@pytest.fixture(scope="module")
def lbs(implementation, module_namespace, kube, cluster_facts) -> LoadBalancers:
    """Two releases in one namespace: ``lb`` (Cluster) with backends on the workers, and
    ``lb-local`` (Local) with one backend pinned to the first worker, so that a worker without
    a local endpoint exists."""
    nodes = backend_nodes(cluster_facts)
    ns = module_namespace()
    created = time.monotonic()

    def cluster_tweak(values: dict) -> None:
        values["backend"].update(replicas=2, nodes=nodes)
        values["service"].update(type="LoadBalancer", externalTrafficPolicy="Cluster")
        implementation.service_tweak(values)

    def local_tweak(values: dict) -> None:
        values["backend"].update(replicas=1, nodes=nodes[:1])
        values["service"].update(type="LoadBalancer", externalTrafficPolicy="Local")
        implementation.service_tweak(values)

    return LoadBalancers(
        ServiceJig.install(kube, cluster_facts, ns, name=CLUSTER_SERVICE, tweak=cluster_tweak),
        ServiceJig.install(kube, cluster_facts, ns, name=LOCAL_SERVICE, clients=False, tweak=local_tweak),
        created,
    )


def ip_family(jig: ServiceJig) -> str:
    return "IPv6" if jig.facts.ip_family == "ipv6" else "IPv4"


@pytest.fixture(scope="module")
def provisioned(lbs, implementation, kube, pytestconfig) -> lbx.Provisioning:
    """The family's first Service, tried once: its ingress, or every check of the family skipped
    (the cluster's own implementation) or in error (the suite's cloud-provider-kind) at once."""
    j = lbs.cluster
    result = lbx.provision(kube, j.namespace, CLUSTER_SERVICE, implementation, family=ip_family(j),
                           created=lbs.created)
    record_detection(pytestconfig, "load_balancer", result.detection())
    if result.ingress is None:
        if implementation.suite_ccm:
            pytest.fail(f"{result.skip_reason()}; {implementation.state()}", pytrace=False)
        pytest.skip(result.skip_reason())
    return result


@dataclass(frozen=True)
class Vantages:
    pods: list[lbx.LbVantage]  # the client pod on every node
    nodes: list[lbx.LbVantage]  # every node's hostNetwork pod
    host: HostReach  # does this machine reach the ingress?
    host_source: str
    notes: tuple[str, ...]  # vantages not tried, and why

    def outside(self) -> list[lbx.LbVantage]:
        return [lbx.this_machine(self.host_source)] if self.host.reachable else []


@pytest.fixture(scope="module")
def vantages(provisioned, lbs, cluster_facts, request) -> Vantages:
    """Client pods (the ``lb`` release's, one per node), every node's hostNetwork pod (the
    session's ``node_vantages``; where admission refused them, not tried), and this machine
    when one TCP connect shows it reaches the ingress."""
    assert provisioned.ingress is not None
    j = lbs.cluster
    notes = []
    try:
        node_vantages = request.getfixturevalue("node_vantages")
    except AdmissionRefused as exc:
        node_vantages = {}
        notes.append(f"hostNetwork pods: not tried ({exc})")
    node_ips = {n.name: n.internal_ip for n in cluster_facts.nodes}
    clients = j.clients()
    everyone = lbx.in_cluster_vantages(clients, {n: j.client_ip(n) for n in clients}, node_vantages, node_ips)
    address = provisioned.ingress.address
    host = lbx.host_reaches(address, HTTP_PORT)
    if not host.reachable:
        notes.append(host.not_tried())
    return Vantages(pods=[v for v in everyone if v.kind is lbe.VantageKind.POD],
                    nodes=[v for v in everyone if v.kind is lbe.VantageKind.NODE], host=host,
                    host_source=lbx.host_source_towards(address) if host.reachable else "",
                    notes=tuple(notes))


def wait_ingress(jig: ServiceJig, service: str, impl: lbx.Implementation) -> lbe.Ingress:
    family = ip_family(jig)
    found: list[lbe.Ingress] = []

    def check() -> tuple[bool, str]:
        obj = jig.kube.get_object("services", jig.namespace, service)
        ing = lbe.ingress_for_family(obj, family)
        if ing is not None:
            found.append(ing)
            return True, f"ingress {ing.describe()}"
        status = ((obj or {}).get("status") or {}).get("loadBalancer")
        return False, (f"service {jig.namespace}/{service} has no {family} load-balancer ingress "
                       f"(status.loadBalancer: {status}); {impl.state()}")

    wait_until(check, timeout=impl.timeout, what=f"load balancer for {jig.namespace}/{service}")
    return found[-1]


def ready_backends(jig: ServiceJig, service: str):
    """Ready endpoints of ``service`` (pod name → node), read at each look."""
    return lambda: {e.name: str(e.node) for e in jig.endpoints(service) if e.ready and e.name}


def path_to(ing: lbe.Ingress, impl: lbx.Implementation) -> lbe.Path:
    return lbe.path_of(ing, implementation_ip_mode=impl.known_ip_mode, implementation=impl.name)


def judged_against(ing: lbe.Ingress, impl: lbx.Implementation, vantages: Vantages) -> str:
    """results.json ``tests[].configuration``: the implementation and path a check judged, and
    whether this machine was one of its vantages."""
    return f"{impl.judged_against(ing)}; path {path_to(ing, impl).describe()}; {vantages.host.reason}"


def look(title: str, rows: list[lbx.LbVantage], probe: lbx.Probe, want: lbx.Want, *, ready, impl,
         notes=(), judge: lbx.Judge = lbe.problems) -> None:
    check = lbx.look_check(title, rows, probe, want, ready=ready, not_tried=notes, judge=judge)
    reachability.wait_for_tables(check, timeout=impl.traffic_timeout, what=title.splitlines()[0])


def policy_promise(ing: lbe.Ingress, impl: lbx.Implementation, policy: TrafficPolicy) -> lbx.Want:
    path = path_to(ing, impl)

    def want(v: lbx.LbVantage, ready: frozenset[str]) -> lbe.Promise:
        return lbe.promise(v.kind, path, policy, ready=ready, own_address=v.own_address,
                           lb_source=impl.lb_source(ing))

    return want


def tcp(host: str, port: int, tries: int = TRIES) -> lbx.Probe:
    """``tries`` new TCP connections from a vantage to ``host:port``."""
    return lambda v: v.tcp(host, port, tries)


# ----------------------------------------------------------------------------- provisioning


def test_load_balancer_is_provisioned_with_an_ingress_for_every_port(provisioned, lbs, implementation, kube,
                                                                     record_configuration):
    """An ingress for both Services, listing the Service's ports when it lists ports; the
    cleanup finalizer where the cloud-provider service controller provisions; and for the
    suite's cloud-provider-kind also ``ipMode: Proxy`` and one proxy container each."""
    problems = []
    for service in (CLUSTER_SERVICE, LOCAL_SERVICE):
        j = lbs.jig(service)
        ing = wait_ingress(j, service, implementation)
        obj = j.service_object(service)
        events = lbx.service_events(kube, j.namespace, service)
        containers = (lbx.proxy_containers(implementation.kind_cluster, j.namespace, service)
                      if implementation.kind_cluster else None)
        found, judged = lbe.provisioning_problems(
            ing, {(p["port"], p["protocol"]) for p in obj["spec"]["ports"]},
            obj["metadata"].get("finalizers") or [], suite_ccm=implementation.suite_ccm,
            cloud_provider_controller=events.cloud_provider_controller, proxy_containers=containers)
        record_configuration(f"{service}: {implementation.judged_against(ing)}; {events.describe()}; "
                             f"judged: {', '.join(judged)}")
        problems += [f"service {j.namespace}/{service}, ingress {ing.address}: {p}" for p in found]
    assert not problems, (f"LoadBalancer implementation {implementation.name}:\n  " + "\n  ".join(problems)
                          + f"\n  reproduce: kubectl -n {lbs.cluster.namespace} get service -o yaml")


# ----------------------------------------------------------------------------- traffic


def test_tcp_through_the_load_balancer_reaches_every_backend(provisioned, lbs, implementation, vantages,
                                                             record_configuration):
    j = lbs.cluster
    ing = wait_ingress(j, CLUSTER_SERVICE, implementation)
    record_configuration(judged_against(ing, implementation, vantages))
    look(f"TCP {target_of(ing.address, HTTP_PORT)} (load balancer of {j.namespace}/{CLUSTER_SERVICE}, "
         f"externalTrafficPolicy: Cluster; {path_to(ing, implementation).describe()})",
         vantages.pods + vantages.nodes + vantages.outside(), tcp(ing.address, HTTP_PORT),
         policy_promise(ing, implementation, TrafficPolicy.CLUSTER), ready=ready_backends(j, CLUSTER_SERVICE),
         impl=implementation, notes=vantages.notes)


def test_udp_through_the_load_balancer_reaches_every_backend(provisioned, lbs, implementation, vantages,
                                                             record_configuration):
    j = lbs.cluster
    ing = wait_ingress(j, CLUSTER_SERVICE, implementation)
    record_configuration(judged_against(ing, implementation, vantages))
    # Each try is a new socket (a new source port): a new load-balancer session each time.
    look(f"UDP {target_of(ing.address, UDP_PORT)} (load balancer of {j.namespace}/{CLUSTER_SERVICE}; "
         f"{path_to(ing, implementation).describe()})",
         vantages.pods + vantages.nodes + vantages.outside(), lambda v: v.udp(ing.address, UDP_PORT, TRIES),
         policy_promise(ing, implementation, TrafficPolicy.CLUSTER), ready=ready_backends(j, CLUSTER_SERVICE),
         impl=implementation, notes=vantages.notes)


def test_local_policy_load_balancer_uses_only_nodes_with_endpoints_and_keeps_the_source(
        provisioned, lbs, implementation, vantages, record_configuration):
    """From every node's hostNetwork pod and this machine: every request succeeds only if the
    health-check node port told the load balancer the truth (a worker without a local endpoint
    drops ``Local`` traffic), and the backend sees the source its path promises."""
    j = lbs.local
    ing = wait_ingress(j, LOCAL_SERVICE, implementation)
    hc = j.service(LOCAL_SERVICE).health_check_node_port
    path = path_to(ing, implementation)
    record_configuration(judged_against(ing, implementation, vantages))
    look(f"TCP {target_of(ing.address, HTTP_PORT)} (load balancer of {j.namespace}/{LOCAL_SERVICE}, "
         f"externalTrafficPolicy: Local, healthCheckNodePort {hc}; {path.describe()})",
         vantages.nodes + vantages.outside(), tcp(ing.address, HTTP_PORT),
         policy_promise(ing, implementation, TrafficPolicy.LOCAL), ready=ready_backends(j, LOCAL_SERVICE),
         impl=implementation, notes=vantages.notes)


def test_pods_reach_the_load_balancer_ip_the_way_its_ip_mode_says(provisioned, lbs, implementation, vantages,
                                                                  record_configuration):
    """KEP-1860 from the client pod on every node, to the ``Local`` Service: with ``ipMode: VIP``
    (or none) the Service proxy short-circuits the ingress IP, so the backend sees the pod's own
    address; with ``Proxy`` (or a hostname) the request goes through the load balancer -- for
    the suite's cloud-provider-kind the backend then sees the load balancer's address, and a
    Service proxy that short-circuited it would show the pod's."""
    ing = wait_ingress(lbs.local, LOCAL_SERVICE, implementation)
    path = path_to(ing, implementation)
    record_configuration(judged_against(ing, implementation, vantages))
    look(f"pods -> {target_of(ing.address, HTTP_PORT)} (load balancer of {lbs.local.namespace}/"
         f"{LOCAL_SERVICE}, externalTrafficPolicy: Local; {path.describe()})",
         vantages.pods, tcp(ing.address, HTTP_PORT, 4),
         policy_promise(ing, implementation, TrafficPolicy.LOCAL),
         ready=ready_backends(lbs.local, LOCAL_SERVICE), impl=implementation)


# ----------------------------------------------------------------------------- lifecycle


def probe_rows(vantages: Vantages) -> list[lbx.LbVantage]:
    """Vantages of the lifecycle checks: every node's hostNetwork pod, and this machine."""
    return vantages.nodes + vantages.outside() or vantages.pods


def lb_tweak(implementation: lbx.Implementation, **service):
    def tweak(values: dict) -> None:
        values["service"].update(type="LoadBalancer", **service)
        implementation.service_tweak(values)

    return tweak


def nobody_served(_promise: lbe.Promise, tries) -> list[str]:
    return lbe.nobody_served(tries)


def test_type_and_port_changes_reprovision_and_release_the_load_balancer(provisioned, implementation,
                                                                         vantages, kube, jig):
    """Upstream e2e "should be able to change the type and ports of a TCP service": ClusterIP →
    LoadBalancer (provisioned, answers), port 80 → 8080 (the new port answers, the old does
    not), LoadBalancer → ClusterIP (ingress cleared; the finalizer gone where the cloud-provider
    service controller provisions; cloud-provider-kind's proxy container gone)."""
    j = jig(name="lbtype", backends=1, clients=False)
    j.update(lb_tweak(implementation))
    ing = wait_ingress(j, "lbtype", implementation)
    rows, cluster = probe_rows(vantages), policy_promise(ing, implementation, TrafficPolicy.CLUSTER)
    ready = ready_backends(j, "lbtype")
    look(f"TCP {target_of(ing.address, HTTP_PORT)} after → LoadBalancer", rows,
         tcp(ing.address, HTTP_PORT, 4), cluster, ready=ready, impl=implementation, notes=vantages.notes)

    j.update(lb_tweak(implementation, ports=[HTTP_8080]))
    look(f"TCP {target_of(ing.address, 8080)} after the port change", rows, tcp(ing.address, 8080, 4),
         cluster, ready=ready, impl=implementation, notes=vantages.notes)
    look(f"TCP {target_of(ing.address, HTTP_PORT)} after the port change (the old port must be closed)", rows,
         tcp(ing.address, HTTP_PORT, 1), cluster, ready=ready, impl=implementation, notes=vantages.notes,
         judge=nobody_served)
    events = lbx.service_events(kube, j.namespace, "lbtype")

    j.update(lambda v: v["service"].update(type="ClusterIP", ports=[HTTP_8080], loadBalancerClass=""))

    def released() -> tuple[bool, str]:
        obj = j.service_object("lbtype")
        left = []
        if lbe.ingresses(obj):
            left.append(f"status ingress {lbe.ingresses(obj)}")
        # The finalizer is the cloud-provider service controller's: only there must it go.
        if ((events.cloud_provider_controller or implementation.suite_ccm)
                and lbx.CLEANUP_FINALIZER in (obj["metadata"].get("finalizers") or [])):
            left.append(f"finalizer {lbx.CLEANUP_FINALIZER}")
        if implementation.kind_cluster:
            containers = lbx.proxy_containers(implementation.kind_cluster, j.namespace, "lbtype")
            if containers:
                left.append(f"proxy containers {containers}")
        return not left, (f"after → ClusterIP still present: {', '.join(left)} ({implementation.name}; "
                          f"reproduce: kubectl -n {j.namespace} get service lbtype -o yaml)")

    wait_until(released, timeout=implementation.timeout,
               what=f"load balancer of {j.namespace}/lbtype released")


def test_load_balancer_source_ranges_admit_only_the_listed_clients(provisioned, implementation, vantages,
                                                                   jig):
    """Upstream e2e "should only allow access from service loadbalancer source ranges", from a
    node's hostNetwork pod (its node's address) and this machine when it reaches the ingress:
    listed, they are served; the ranges changed to exclude them, they are not; listed again,
    served again.  (With ``ipMode: Proxy`` the load balancer enforces the ranges, with VIP the
    Service proxy does; the check is that the Service's ranges take effect and follow changes.
    A cloud whose nodes reach the load balancer through NAT shows another source: not here.)"""
    rows = [v for v in vantages.nodes[:1] + vantages.outside() if v.own_address]
    if not rows:
        pytest.skip("no vantage with a known source address: no hostNetwork pod, and this machine "
                    f"{vantages.host.reason}")
    j = jig(name="lbranges", backends=1, clients=False)
    j.update(lb_tweak(implementation, ports=[HTTP_80]))
    ing = wait_ingress(j, "lbranges", implementation)
    mine = sorted({f"{v.own_address}/{128 if ':' in v.own_address else 32}" for v in rows})
    # Documentation prefixes (RFC 5737 / 3849): nothing here uses them, so they exclude every vantage.
    elsewhere = "2001:db8::/32" if ":" in rows[0].own_address else "192.0.2.0/24"
    cluster = policy_promise(ing, implementation, TrafficPolicy.CLUSTER)
    for ranges, admitted in ((mine, True), ([elsewhere], False), (mine, True)):
        j.update(lb_tweak(implementation, ports=[HTTP_80], loadBalancerSourceRanges=ranges))
        title = (f"TCP {target_of(ing.address, HTTP_PORT)} (load balancer of {j.namespace}/lbranges, "
                 f"loadBalancerSourceRanges {ranges})")
        look(title, rows, tcp(ing.address, HTTP_PORT, 4), cluster, ready=ready_backends(j, "lbranges"),
             impl=implementation, notes=vantages.notes, judge=lbe.problems if admitted else nobody_served)


def test_load_balancer_without_node_ports_allocates_them_when_switched_on(provisioned, implementation,
                                                                          vantages, jig):
    """Upstream e2e "should be able to create LoadBalancer Service without NodePort and change
    it": with ``allocateLoadBalancerNodePorts: false`` no port has a nodePort; switched to
    ``true``, every port gets one and the load balancer carries traffic to the backend."""
    j = jig(name="lbnonp", backends=1, clients=False)
    j.update(lb_tweak(implementation, ports=[HTTP_80], allocateLoadBalancerNodePorts=False))
    spec = j.service_object("lbnonp")["spec"]
    assert spec.get("allocateLoadBalancerNodePorts") is False, f"spec as stored: {spec}"
    allocated = {p["name"]: p.get("nodePort") for p in spec["ports"] if p.get("nodePort")}
    assert not allocated, f"allocateLoadBalancerNodePorts: false, yet node ports were allocated: {allocated}"

    j.update(lb_tweak(implementation, ports=[HTTP_80], allocateLoadBalancerNodePorts=True))
    spec = j.service_object("lbnonp")["spec"]
    missing = [p["name"] for p in spec["ports"] if not p.get("nodePort")]
    assert not missing, (
        f"allocateLoadBalancerNodePorts: true, yet ports {missing} have no nodePort: {spec['ports']}")
    ing = wait_ingress(j, "lbnonp", implementation)
    look(f"TCP {target_of(ing.address, HTTP_PORT)} after allocateLoadBalancerNodePorts: false → true",
         probe_rows(vantages), tcp(ing.address, HTTP_PORT, 4),
         policy_promise(ing, implementation, TrafficPolicy.CLUSTER), ready=ready_backends(j, "lbnonp"),
         impl=implementation, notes=vantages.notes)

