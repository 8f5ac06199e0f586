"""dns: Services are discoverable by name through cluster DNS, from a pod on every node.

One namespace holds the Service ``web`` (3 agnhost backends, named ports http/TCP 80 and
udp/UDP 81), two headless Services over the same pods (one with
``publishNotReadyAddresses``), an ExternalName Service pointing at ``web``'s in-cluster name
and a selector-less Service; one backend is made unready before any lookup.  Client pods on
every node of that namespace and of a second, empty namespace ask the questions.

Only names inside the cluster domain are ever asked: cluster DNS forwards any other name
to the nodes' upstream resolver, i.e. off this machine.  That is why "the short name does
not resolve from another namespace" is checked on the cluster-domain names the resolver
would try for it (its search-path expansions), not with a lookup of the bare name.

The other namespace's clients also set ``spec.hostname`` (their name) and ``spec.subdomain:
peers``, a headless Service there selecting them, for ``<hostname>.peers.<ns>.svc`` records.
Pod DNS settings get client pods of their own in the Services' namespace, one per node:
``dnsPolicy: Default`` (the node's DNS as kubelet reads it, the reference for the others),
hostNetwork with ``ClusterFirst`` and with ``ClusterFirstWithHostNet``, and ``dnsPolicy:
None`` with a ``dnsConfig``; their resolv.conf is compared with what kubelet must write.

Every address lookup asks the record type of the IP family of what it names (a Service's
primary ClusterIP, a pod's IP; the cluster's ``--ip-family`` for names with no IP): ``AAAA``
on an IPv6 cell.  PTR lookups ask only for IPs the API says are ClusterIPs and only when the
Corefile's kubernetes plugin serves their reverse zone: kubeadm's Corefile falls through
(``fallthrough in-addr.arpa ip6.arpa``) to ``forward`` for reverse names it does not know,
so a PTR CoreDNS cannot answer itself would leave the cluster.

Each table: rows are client pods (node, and which namespace), columns are lookups.
``.`` = the name resolved as Kubernetes promises, ``X`` = it did not resolve (or resolved to
something else: the cell's note says what), ``?`` = no DNS answer at all.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fixtures import charts, reachability
from fixtures.clusterinfo import ClusterInfo
from fixtures.concurrency import run_all, run_matrix
from fixtures.expectations.dns import (
    ExpectedLookup,
    LookupOutcome,
    PodDns,
    answer_problems,
    cluster_expansions,
    expected_hostname_lookups,
    expected_lookup,
    expected_pod_lookup,
    expected_ptr,
    expected_srv,
    family_rtype,
    getent_database,
    hosts_problems,
    judge_lookup,
    kubelet_resolv_conf,
    kubernetes_plugin,
    resolv_conf_differences,
    resolv_conf_problems,
    service_fqdn,
    service_rtype,
)
from fixtures.expectations.model import Endpoint, Service, endpoint_for_pod
from fixtures.jig import ServiceJig, default_values
from fixtures.kube import Kube, pod_ready
from fixtures.observations import ResolvConf, Unknown
from fixtures.probes import Vantage, dig, dig_argv, getent, getent_argv, pod_vantage, resolv_conf
from fixtures.providers.base import ClusterFacts
from fixtures.timeouts import DNS_PROPAGATION_TIMEOUT

pytestmark = pytest.mark.dns

WEB = "web"
HEADLESS = "web-headless"
HEADLESS_ALL = "web-headless-all"  # publishNotReadyAddresses: true
ALIAS = "web-alias"  # ExternalName -> web.<ns>.svc.<domain>
MANUAL = "web-manual"  # no selector
BACKENDS = 3
OTHER_RELEASE = "elsewhere"
#: Headless Service in the other namespace selecting that namespace's client pods, which set
#: ``spec.hostname`` (their own name) and ``spec.subdomain: peers``.
PEERS = "peers"
PEER_SELECTOR = {"app.kubernetes.io/name": charts.SERVICE_SELECTORS,
                 "app.kubernetes.io/instance": OTHER_RELEASE, "app.kubernetes.io/component": "client"}


@dataclass(frozen=True)
class Client:
    """A client pod asking questions: its row label, namespace and vantage point."""

    row: str
    namespace: str
    vantage: Vantage


@dataclass
class DnsScene:
    jig: ServiceJig
    info: ClusterInfo
    same: list[Client]  # clients in the Services' namespace, one per node
    other: list[Client]  # clients in another namespace, one per node
    unready: str  # the backend pod made unready
    ip_family: str  # the cluster's (--ip-family / detected): the record type of names with no IP

    @property
    def namespace(self) -> str:
        return self.jig.namespace

    @property
    def domain(self) -> str:
        return self.info.domain

    def fqdn(self, name: str) -> str:
        return service_fqdn(name, self.namespace, self.domain)

    def service(self, name: str) -> Service:
        return self.jig.service(name)

    def lookup(self, name: str, *, endpoints: Sequence[Endpoint] = ()) -> ExpectedLookup:
        """The address lookup of Service ``name``, asking the record type of its IP family."""
        svc = self.service(name)
        return expected_lookup(svc, rtype=service_rtype(svc, endpoints=endpoints, ip_family=self.ip_family),
                               endpoints=endpoints, domain=self.domain)

    @property
    def rtype(self) -> str:
        """The record type for names that carry no IP of their own (missing names)."""
        return family_rtype(self.ip_family)

    def pod_endpoints(self, svc: Service) -> list[Endpoint]:
        """What the Service's endpoints must be, from the backend pods themselves (not from
        the EndpointSlices, which DNS serves from): readiness as the pods report it, ports
        as the backends listen on them."""
        ports = {"http": int(self.jig.values["backend"].get("httpPort", 8080)),
                 "udp": int(self.jig.values["backend"].get("udpPort", 8081))}
        return [
            dataclasses.replace(
                endpoint_for_pod(p.ip, p.node, pod_ready=p.ready, terminating=p.terminating,
                                 publish_not_ready=svc.publish_not_ready_addresses, name=p.name),
                ports=ports,
            )
            for p in self.jig.backend_pods()
        ]


def backend_selector(release: str) -> dict[str, str]:
    """The labels service-selectors puts on a release's backend pods (``svcc.backendSelector``)."""
    return {"app.kubernetes.io/name": charts.SERVICE_SELECTORS, "app.kubernetes.io/instance": release,
            "app.kubernetes.io/component": "backend"}


def extra_services(namespace: str, domain: str) -> list[dict]:
    ports = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
             {"name": "udp", "port": 81, "targetPort": "udp", "protocol": "UDP"}]
    selector = backend_selector(WEB)
    return [
        {"name": HEADLESS, "spec": {"clusterIP": "None", "selector": selector, "ports": ports}},
        {"name": HEADLESS_ALL, "spec": {"clusterIP": "None", "selector": selector, "ports": ports,
                                        "publishNotReadyAddresses": True}},
        {"name": ALIAS, "spec": {"type": "ExternalName",
                                 "externalName": service_fqdn(WEB, namespace, domain)}},
        {"name": MANUAL, "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
    ]


@pytest.fixture(autouse=True)
def _judged_domain(cluster_info: ClusterInfo,
                   record_configuration: Callable[[str], None]) -> None:
    """Every DNS check is judged against the cluster's domain: each records which, and why."""
    record_configuration(cluster_info.describe("cluster_domain"))


@pytest.fixture(scope="module")
def scene(module_namespace: Callable[..., str], kube: Kube, cluster_facts: ClusterFacts,
          cluster_info: ClusterInfo) -> DnsScene:
    info = cluster_info
    info.need("cluster_domain", "every DNS name of a Service or pod ends in it")
    ns, other_ns = module_namespace(), module_namespace()

    def tweak(values: dict) -> None:
        values["extraServices"] = extra_services(ns, info.domain)

    jig = ServiceJig.install(kube, cluster_facts, ns, name=WEB, backends=BACKENDS, tweak=tweak)
    nodes = [n.name for n in cluster_facts.nodes]
    others = default_values(cluster_facts, name=OTHER_RELEASE)
    others["backend"]["enabled"] = False
    others["service"]["enabled"] = False
    others["clients"].update(setHostname=True, subdomain=PEERS)
    others["extraServices"] = [{"name": PEERS, "spec": {"clusterIP": "None", "selector": PEER_SELECTOR}}]
    charts.install(kube, charts.SERVICE_SELECTORS, OTHER_RELEASE, other_ns, others)

    # one backend unready: the headless Service must leave it out, the other must not
    pods = sorted(jig.backend_pods(), key=lambda p: p.name)
    unready = pods[0]
    jig.set_ready(unready, False)
    jig.wait_ready_endpoints(name=HEADLESS, addresses=[p.ip for p in pods[1:]])
    jig.wait_ready_endpoints(name=HEADLESS_ALL, addresses=[p.ip for p in pods])

    def clients(namespace: str, label: str) -> list[Client]:
        return [Client(f"{n} [{label}]", namespace,
                       pod_vantage(kube, namespace, charts.client_pod_name(n), node=n)) for n in nodes]

    return DnsScene(jig=jig, info=info, same=clients(ns, "same ns"), other=clients(other_ns, "other ns"),
                    unready=unready.name, ip_family=cluster_facts.ip_family)


# --------------------------------------------------------------------------- lookups


@dataclass(frozen=True)
class Lookup:
    """A column: one question and the answer Kubernetes promises."""

    column: str
    expected: ExpectedLookup
    run: Callable[[Vantage], LookupOutcome]


def dig_lookup(expected: ExpectedLookup, *, name: str | None = None, nodata_ok: bool = False,
               tcp: bool | None = None) -> Lookup:
    """``dig +nosearch`` of ``expected.name`` (or ``name``) for ``expected.rtype``; ``tcp``
    True/False asks over TCP/UDP only, and the answer must say it came that way."""
    qname = name or expected.name
    want_transport = None if tcp is None else ("TCP" if tcp else "UDP")

    def run(vantage: Vantage) -> LookupOutcome:
        answer = dig(vantage, qname, expected.rtype, tcp=tcp)
        problems = answer_problems(expected, answer, nodata_ok=nodata_ok)
        if want_transport and answer.answered and answer.transport != want_transport:
            problems.append(f"answered over {answer.transport or 'an unnamed transport'}, "
                            f"expected {want_transport}")
        return judge_lookup(expected, problems, answer.answered, answer.summary(),
                      vantage.reproduce(dig_argv(qname, expected.rtype, tcp=tcp)))

    over = f" over {want_transport}" if want_transport else ""
    return Lookup(f"dig {expected.rtype} {qname}{over}", expected, run)


def getent_lookup(name: str, expected: ExpectedLookup) -> Lookup:
    """``getent ahostsv4 NAME`` (``ahostsv6`` for AAAA): libc's resolution, through the pod's
    search path and ndots."""
    database = getent_database(expected.rtype)

    def run(vantage: Vantage) -> LookupOutcome:
        found = getent(vantage, name, database)
        problems = hosts_problems(expected, found)
        seen = (f"getent {name}: " + (", ".join(found.addresses) if found.found
                                       else found.error or f"not found (exit {found.returncode})"))
        return judge_lookup(expected, problems, found.error is None, seen,
                      vantage.reproduce(getent_argv(name, database)))

    return Lookup(f"getent {name}", expected, run)


def assert_dns(title: str, plan: Mapping[Client, Sequence[Lookup]]) -> None:
    """Every client asks its lookups (all at once); the observed table must equal the
    expected one.  Retried until DNS_PROPAGATION_TIMEOUT, then fails with both tables."""
    rows = [c.row for c in plan]
    columns: list[str] = []
    for lookups in plan.values():
        columns += [lk.column for lk in lookups if lk.column not in columns]
    by_row = {c.row: {lk.column: lk for lk in lookups} for c, lookups in plan.items()}
    clients = {c.row: c for c in plan}
    full_title = f"DNS resolution: {title}"

    def want(row: str, column: str) -> bool | None:
        lk = by_row[row].get(column)
        return None if lk is None else lk.expected.resolvable

    expected = reachability.expected_table(full_title, rows, columns, want)
    pairs = [(r, c) for r in rows for c in by_row[r]]

    def observe() -> reachability.Table:
        results = run_matrix(rows, columns,
                             lambda r, c: by_row[r][c].run(clients[r].vantage) if c in by_row[r] else None)
        table = reachability.Table(title=full_title, rows=list(rows), columns=list(columns))
        for r, c in pairs:
            res = results[(r, c)]
            if isinstance(res, LookupOutcome):
                table.set(r, c, res.mark, note=f"{clients[r].vantage.where}: {res.note}", command=res.command)
            else:
                err = res.error if isinstance(res, Unknown) else "no result"
                table.set(r, c, reachability.Mark.UNKNOWN, note=f"{clients[r].vantage.where}: {err}")
        for r in rows:
            for c in columns:
                if c not in by_row[r]:
                    table.set(r, c, reachability.Mark.ANY)
        return table

    reachability.wait_for_tables(
        reachability.ReachabilityCheck(expected, observe),
        timeout=DNS_PROPAGATION_TIMEOUT,
        what=full_title,
        problem="cluster DNS did not answer as Kubernetes promises",
    )


# --------------------------------------------------------------------------- tests


def test_service_names_resolve_to_the_cluster_ip_from_every_node_and_namespace(scene: DnsScene) -> None:
    svc = scene.service(WEB)
    want = scene.lookup(WEB)
    namespaced = f"{WEB}.{scene.namespace}"
    lookups = [dig_lookup(want), getent_lookup(scene.fqdn(WEB), want), getent_lookup(namespaced, want)]
    assert_dns(f"{scene.fqdn(WEB)} and {namespaced} -> ClusterIP {svc.cluster_ip}",
               dict.fromkeys([*scene.same, *scene.other], lookups))


def test_short_name_resolves_only_inside_the_services_namespace(scene: DnsScene) -> None:
    svc = scene.service(WEB)
    want = scene.lookup(WEB)
    plan: dict[Client, list[Lookup]] = {c: [getent_lookup(WEB, want)] for c in scene.same}
    for c in scene.other:
        search = resolv_conf(c.vantage).search
        names = cluster_expansions(WEB, search, domain=scene.domain)
        assert names, f"{c.vantage.where}: no search domain inside {scene.domain} in {search}"
        plan[c] = [dig_lookup(ExpectedLookup(name, want.rtype, resolvable=False)) for name in names]
    assert_dns(f"short name {WEB!r} (service {scene.namespace}/{WEB}, ClusterIP {svc.cluster_ip}): "
               "same namespace via getent, other namespace via its search expansions", plan)


def test_resolv_conf_has_cluster_dns_the_namespace_search_list_and_ndots_5(
        scene: DnsScene, record_configuration: Callable[[str], None]) -> None:
    record_configuration(scene.info.describe("dns_ips"))
    failures = []
    for c in [*scene.same, *scene.other]:
        rc = resolv_conf(c.vantage)
        problems = resolv_conf_problems(rc, namespace=c.namespace, dns_ips=scene.info.dns_ips,
                                        domain=scene.domain)
        if problems:
            failures.append(f"{c.vantage.where}: " + "; ".join(problems) + "\n    reproduce: "
                            + c.vantage.reproduce(["cat", "/etc/resolv.conf"]))
    assert not failures, ("/etc/resolv.conf departs from what kubelet writes for dnsPolicy ClusterFirst "
                          f"(cluster DNS {list(scene.info.dns_ips)}):\n" + "\n".join(failures))


def test_named_ports_have_srv_records_with_the_service_port_and_name(scene: DnsScene) -> None:
    web = scene.service(WEB)
    headless = scene.service(HEADLESS)
    records = [*expected_srv(web, domain=scene.domain),
               *expected_srv(headless, endpoints=scene.pod_endpoints(headless), domain=scene.domain)]
    assert len(records) == 4, f"expected SRV names for 2 named ports x 2 services, got {records}"
    lookups = [dig_lookup(r) for r in records]
    assert_dns(f"SRV of the named ports of {WEB} (ClusterIP) and {HEADLESS} (per ready pod)",
               dict.fromkeys(scene.same, lookups))


def test_headless_service_returns_the_ready_pod_ips_and_not_unready_ones(scene: DnsScene) -> None:
    svc = scene.service(HEADLESS)
    eps = scene.pod_endpoints(svc)
    want = scene.lookup(HEADLESS, endpoints=eps)
    assert len(want.addresses) == BACKENDS - 1, (
        f"setup: expected {BACKENDS - 1} ready backends besides {scene.unready}, pods say {eps}")
    assert_dns(f"headless {HEADLESS} -> ready pods {sorted(want.addresses)} (not {scene.unready}, unready)",
               {c: [dig_lookup(want)] for c in scene.same})


def test_headless_service_publishing_not_ready_addresses_returns_every_pod_ip(scene: DnsScene) -> None:
    svc = scene.service(HEADLESS_ALL)
    want = scene.lookup(HEADLESS_ALL, endpoints=scene.pod_endpoints(svc))
    assert len(want.addresses) == BACKENDS, f"setup: expected {BACKENDS} backend pods, got {want}"
    assert_dns(f"headless {HEADLESS_ALL} (publishNotReadyAddresses) -> all pods {sorted(want.addresses)}",
               {c: [dig_lookup(want)] for c in scene.same})


def test_external_name_service_returns_a_cname_to_its_target(scene: DnsScene) -> None:
    alias = scene.service(ALIAS)
    cname = expected_lookup(alias, rtype="CNAME", domain=scene.domain)
    target = scene.lookup(WEB)
    chained = dataclasses.replace(expected_lookup(alias, rtype=target.rtype, domain=scene.domain),
                                  addresses=target.addresses)
    assert_dns(f"ExternalName {ALIAS} -> CNAME {alias.external_name} -> {sorted(target.addresses)}",
               {c: [dig_lookup(cname), dig_lookup(chained)] for c in scene.same})


def test_selectorless_service_resolves_to_its_cluster_ip(scene: DnsScene) -> None:
    svc = scene.service(MANUAL)
    assert svc.selector is None, f"setup: {MANUAL} must have no selector, has {svc.selector}"
    want = scene.lookup(MANUAL)
    assert_dns(f"selector-less {MANUAL} -> ClusterIP {svc.cluster_ip}",
               {c: [dig_lookup(want), getent_lookup(MANUAL, want)] for c in scene.same})


def test_a_name_that_does_not_exist_in_the_cluster_domain_is_nxdomain(scene: DnsScene) -> None:
    missing = [
        f"no-such-service.{scene.namespace}.svc.{scene.domain}",  # missing Service, existing namespace
        f"{WEB}.no-such-namespace.svc.{scene.domain}",  # existing Service name, missing namespace
    ]
    lookups = [dig_lookup(ExpectedLookup(n, scene.rtype, resolvable=False)) for n in missing]
    assert_dns("names in the cluster domain that do not exist -> NXDOMAIN",
               dict.fromkeys([*scene.same, *scene.other], lookups))


# --------------------------------------------------------------------------- PTR, pod and hostname records


def corefile(kube: Kube) -> str:
    """The cluster DNS configuration (kubeadm's ConfigMap ``kube-system/coredns``)."""
    cm = kube.get_object("configmaps", "kube-system", "coredns")
    text = str(((cm or {}).get("data") or {}).get("Corefile") or "")
    assert text, "setup: no Corefile in ConfigMap kube-system/coredns (is the cluster DNS CoreDNS?)"
    return text


def test_cluster_ips_have_ptr_records_naming_the_service(
        scene: DnsScene, kube: Kube, record_configuration: Callable[[str], None]) -> None:
    """Reverse lookups ask only for IPs the API says are ClusterIPs, and only when the Corefile's
    kubernetes plugin serves their reverse zone (otherwise CoreDNS would forward the query out
    of the cluster)."""
    plugin = kubernetes_plugin(corefile(kube), domain=scene.domain)
    assert plugin is not None, f"the Corefile has no kubernetes plugin for {scene.domain}"
    records = [r for name in (WEB, MANUAL) for r in expected_ptr(scene.service(name), domain=scene.domain)]
    assert records, f"setup: {WEB} and {MANUAL} have no ClusterIP"
    unserved = [r.name for r in records if not plugin.serves(r.name)]
    if unserved:
        pytest.skip(f"the Corefile's kubernetes plugin serves {plugin.zones}, no reverse zone of "
                    f"{unserved}: cluster DNS publishes no PTR records for ClusterIPs")
    record_configuration(f"Corefile kubernetes plugin serves {', '.join(plugin.zones)}: PTR records expected "
                         f"for {len(records)} ClusterIPs, from {len(scene.same) + len(scene.other)} clients")
    targets = ", ".join(f"{r.name} -> {sorted(r.ptr)[0]}" for r in records)
    lookups = [dig_lookup(r) for r in records]
    assert_dns(f"PTR of ClusterIPs ({targets})", dict.fromkeys([*scene.same, *scene.other], lookups))


def test_pods_have_a_records_under_their_dashed_ip_in_the_pod_subdomain(
        scene: DnsScene, kube: Kube, record_configuration: Callable[[str], None]) -> None:
    """Pod records are a choice of the cluster's DNS (CoreDNS' ``pods`` option; its default
    and kube-dns' opposite are both conformant): with ``pods disabled`` there is nothing to
    check, and the check says so instead of passing on NXDOMAIN."""
    plugin = kubernetes_plugin(corefile(kube), domain=scene.domain)
    assert plugin is not None, f"the Corefile has no kubernetes plugin for {scene.domain}"
    if plugin.pods == "disabled":
        pytest.skip(f"the Corefile's kubernetes plugin for {scene.domain} has 'pods disabled' (ConfigMap "
                    "kube-system/coredns): cluster DNS serves no pod A records, so there are none to check")
    other_ns = scene.other[0].namespace
    pods = [*scene.jig.backend_pods(), *kube.pods(other_ns, "app.kubernetes.io/component=client")]
    assert len(pods) == BACKENDS + len(scene.other), f"setup: pods {[p.describe() for p in pods]}"
    record_configuration(f"Corefile kubernetes plugin 'pods {plugin.pods}': A records expected for "
                         f"{len(pods)} pods, from {len(scene.same)} nodes")
    lookups = [dig_lookup(expected_pod_lookup(p.ip, p.namespace, pods_mode=plugin.pods, domain=scene.domain))
               for p in pods]
    assert_dns(f"pod records <dashed ip>.<ns>.pod.{scene.domain} (Corefile: pods {plugin.pods}) of the "
               f"backends in {scene.namespace} and the clients in {other_ns}",
               dict.fromkeys(scene.same, lookups))


def peer_pods(scene: DnsScene, kube: Kube) -> list[PodDns]:
    """The other namespace's client pods, with the DNS facts of their own spec."""
    ns = scene.other[0].namespace
    out = []
    for obj in kube.list_objects("pods", ns, label_selector="app.kubernetes.io/component=client"):
        spec, meta, status = obj.get("spec", {}), obj.get("metadata", {}), obj.get("status", {})
        ips = tuple(p["ip"] for p in status.get("podIPs") or [] if p.get("ip")) or (status.get("podIP", ""),)
        out.append(PodDns(name=meta["name"], namespace=ns, ips=ips, labels=meta.get("labels") or {},
                          ready=pod_ready(obj), hostname=spec.get("hostname") or "",
                          subdomain=spec.get("subdomain") or ""))
    return out


def test_a_pod_with_hostname_and_subdomain_resolves_under_its_headless_service(
        scene: DnsScene, kube: Kube) -> None:
    """The suite created the headless Service ``peers`` selecting the other namespace's clients,
    each with ``spec.hostname`` = its name and ``spec.subdomain: peers``: the expected records
    follow those pods and that intended selector, so a Service changed behind the suite's back
    shows up as the records it lost."""
    pods = peer_pods(scene, kube)
    rtype = service_rtype(scene.service(WEB), ip_family=scene.ip_family)
    other_ns = scene.other[0].namespace
    want = expected_hostname_lookups(pods, service=PEERS, selector=PEER_SELECTOR, rtype=rtype,
                                     domain=scene.domain)
    setup = [(p.name, p.hostname, p.subdomain, p.ready) for p in pods]
    assert len(want) == len(scene.other), f"setup: expected one pod with subdomain {PEERS} per node: {setup}"
    assert all(w.resolvable for w in want), f"setup: pods with subdomain {PEERS} not ready: {setup}"
    svc = kube.get_object("services", other_ns, PEERS)
    spec = (svc or {}).get("spec", {})
    now = (f"; the Service now: selector {spec.get('selector')}, clusterIP {spec.get('clusterIP')}"
           if svc else "; the Service is gone")
    lookups = [dig_lookup(w) for w in want]
    assert_dns(f"<hostname>.{PEERS}.{other_ns}.svc.{scene.domain} of pods with subdomain {PEERS} "
               f"(headless service created with selector {PEER_SELECTOR}{now})",
               dict.fromkeys([*scene.same, *scene.other], lookups))


def test_lookups_over_tcp_answer_as_over_udp(scene: DnsScene) -> None:
    headless = scene.lookup(HEADLESS, endpoints=scene.pod_endpoints(scene.service(HEADLESS)))
    lookups = [dig_lookup(want, tcp=tcp) for want in (scene.lookup(WEB), headless) for tcp in (False, True)]
    assert_dns(f"{scene.fqdn(WEB)} and {scene.fqdn(HEADLESS)} over UDP (+notcp) and TCP (+tcp)",
               dict.fromkeys([*scene.same, *scene.other], lookups))


# --------------------------------------------------------------------------- pod DNS policies

# Release names, and the prefix of their client pods (``<release>-<node>``).
DEFAULT_POLICY = "dnspolicy-default"  # dnsPolicy: Default (the node's resolv.conf as kubelet reads it)
HOSTNET_CLUSTER_FIRST = "hostnet-clusterfirst"  # hostNetwork, dnsPolicy ClusterFirst (falls back to Default)
HOSTNET_WITH_HOST_NET = "hostnet-withhostnet"  # hostNetwork, dnsPolicy ClusterFirstWithHostNet
CUSTOM = "custom"  # dnsPolicy None + dnsConfig


def custom_dns_config(scene: DnsScene) -> dict:
    """Only cluster-domain search paths (a lookup must never leave the cluster), in the
    reverse of kubelet's order, and options kubelet would not write itself."""
    return {
        "nameservers": list(scene.info.dns_ips),
        "searches": [f"svc.{scene.domain}", f"{scene.namespace}.svc.{scene.domain}"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "timeout", "value": "3"}, {"name": "edns0"}],
    }


@dataclass
class PolicyPods:
    """Client pods (one per node) of each DNS setting, in the scene's namespace."""

    scene: DnsScene
    settings: dict[str, dict]  # release -> its clients values
    by_release: dict[str, dict[str, Vantage]]  # release -> node -> vantage

    def host_dns(self, node: str) -> ResolvConf:
        """kubelet's host DNS on ``node``: what its dnsPolicy Default pod got."""
        return resolv_conf(self.by_release[DEFAULT_POLICY][node])

    def expected(self, release: str, node: str) -> ResolvConf:
        values = self.settings[release]
        return kubelet_resolv_conf(
            dns_policy=values.get("dnsPolicy") or "ClusterFirst",
            host_network=bool(values.get("hostNetwork")),
            host=self.host_dns(node), cluster_dns=self.scene.info.dns_ips, namespace=self.scene.namespace,
            domain=self.scene.domain, dns_config=values.get("dnsConfig") or None)

    def describe(self, release: str) -> str:
        v = self.settings[release]
        return (f"hostNetwork {bool(v.get('hostNetwork'))}, dnsPolicy {v.get('dnsPolicy') or 'ClusterFirst'}"
                + (f", dnsConfig {v['dnsConfig']}" if v.get("dnsConfig") else ""))


@pytest.fixture(scope="module")
def policy_pods(scene: DnsScene, kube: Kube, cluster_facts: ClusterFacts) -> PolicyPods:
    settings: dict[str, dict[str, Any]] = {
        DEFAULT_POLICY: {"dnsPolicy": "Default"},
        HOSTNET_CLUSTER_FIRST: {"hostNetwork": True},
        HOSTNET_WITH_HOST_NET: {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"},
        CUSTOM: {"dnsPolicy": "None", "dnsConfig": custom_dns_config(scene)},
    }
    nodes = [n.name for n in cluster_facts.nodes]

    def install(release: str) -> charts.Release:
        values = default_values(cluster_facts, name=release)
        values["backend"]["enabled"] = False
        values["service"]["enabled"] = False
        values["clients"].update(namePrefix=release, **settings[release])
        return charts.install(kube, charts.SERVICE_SELECTORS, release, scene.namespace, values)

    installed = run_all({r: functools.partial(install, r) for r in settings})
    failed = {r: res for r, res in installed.items() if isinstance(res, Unknown)}
    assert not failed, "setup: " + "; ".join(f"release {r}: {res.error}" for r, res in failed.items())
    by_release = {
        r: {n: pod_vantage(kube, scene.namespace, charts.client_pod_name(n, r), node=n) for n in nodes}
        for r in settings
    }
    return PolicyPods(scene, settings, by_release)


def assert_resolv_confs(pods: PolicyPods, release: str, why: str) -> None:
    failures = []
    for node, vantage in pods.by_release[release].items():
        want = pods.expected(release, node)
        got = resolv_conf(vantage)
        problems = resolv_conf_differences(want, got)
        if problems:
            failures.append(f"{vantage.where}: " + "; ".join(problems) + "\n    reproduce: "
                            + vantage.reproduce(["cat", "/etc/resolv.conf"]))
    assert not failures, (f"/etc/resolv.conf of pods with {pods.describe(release)} is not what kubelet must "
                          f"write ({why}):\n" + "\n".join(failures))


def test_dns_policy_none_writes_the_pods_dns_config_into_resolv_conf_exactly(policy_pods: PolicyPods) -> None:
    assert_resolv_confs(policy_pods, CUSTOM, "dnsPolicy None: exactly the dnsConfig nameservers, searches in "
                        "their order, and options")
    scene = policy_pods.scene
    want = scene.lookup(WEB)
    # web.<ns> (1 dot < ndots:2) and web go through the custom search list, in its order
    lookups = [getent_lookup(f"{WEB}.{scene.namespace}", want), getent_lookup(WEB, want)]
    assert_dns(f"{WEB}.{scene.namespace} and {WEB} through the custom search list "
               f"{custom_dns_config(scene)['searches']} -> ClusterIP {scene.service(WEB).cluster_ip}",
               {Client(f"{n} [{CUSTOM}]", scene.namespace, v): lookups
                for n, v in policy_pods.by_release[CUSTOM].items()})


def test_host_network_pod_with_cluster_first_gets_the_nodes_dns_like_dns_policy_default(
        policy_pods: PolicyPods) -> None:
    """kubelet's getPodDNSType: ClusterFirst on a hostNetwork pod falls back to Default, i.e.
    the node's resolv.conf (as the node's dnsPolicy Default pod shows it), not cluster DNS.
    Nothing is looked up through it: the node's resolver is outside the cluster."""
    assert_resolv_confs(policy_pods, HOSTNET_CLUSTER_FIRST,
                        "hostNetwork + ClusterFirst falls back to dnsPolicy Default: the node's resolv.conf")


def test_host_network_pod_with_cluster_first_with_host_net_uses_cluster_dns_and_resolves_services(
        policy_pods: PolicyPods) -> None:
    assert_resolv_confs(policy_pods, HOSTNET_WITH_HOST_NET,
                        "ClusterFirstWithHostNet: cluster DNS, the namespace search list, ndots:5")
    scene = policy_pods.scene
    want = scene.lookup(WEB)
    lookups = [dig_lookup(want), getent_lookup(WEB, want)]
    assert_dns(f"{scene.fqdn(WEB)} and {WEB} from hostNetwork pods with ClusterFirstWithHostNet "
               f"-> ClusterIP {scene.service(WEB).cluster_ip}",
               {Client(f"{n} [{HOSTNET_WITH_HOST_NET}]", scene.namespace, v): lookups
                for n, v in policy_pods.by_release[HOSTNET_WITH_HOST_NET].items()})
