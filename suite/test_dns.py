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

Each table: rows are client pods (node, and which namespace), columns are lookups.
``.`` = the name resolved as Kubernetes promises, ``X`` = it did not resolve (or resolved to
something else: the cell's note says what), ``?`` = no DNS answer at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest

from fixtures import charts, clusterinfo, reachability
from fixtures.clusterinfo import ClusterInfo
from fixtures.concurrency import run_matrix
from fixtures.expectations.dns import (
    ExpectedLookup,
    answer_problems,
    cluster_expansions,
    expected_lookup,
    expected_srv,
    hosts_problems,
    resolv_conf_problems,
    service_fqdn,
)
from fixtures.expectations.model import Endpoint, Service, endpoint_for_pod
from fixtures.jig import ServiceJig, default_values
from fixtures.kube import Kube
from fixtures.observations import Unknown
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


@pytest.fixture(scope="module")
def scene(module_namespace: Callable[..., str], kube: Kube, cluster_facts: ClusterFacts) -> DnsScene:
    info = clusterinfo.read(kube)
    ns, other_ns = module_namespace(), module_namespace()

    def tweak(values: dict) -> None:
        values["extraServices"] = extra_services(ns, info.domain)

    jig = ServiceJig.install(kube, cluster_facts, ns, name=WEB, backends=BACKENDS, tweak=tweak)
    nodes = [n.name for n in cluster_facts.nodes]
    others = default_values(cluster_facts, name=OTHER_RELEASE)
    others["backend"]["enabled"] = False
    others["service"]["enabled"] = False
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
                    unready=unready.name)


# --------------------------------------------------------------------------- lookups


@dataclass(frozen=True)
class Outcome:
    """One lookup from one client, judged: the cell, what was seen, how to re-run it."""

    cell: reachability.Cell
    note: str
    command: str


@dataclass(frozen=True)
class Lookup:
    """A column: one question and the answer Kubernetes promises."""

    column: str
    expected: ExpectedLookup
    run: Callable[[Vantage], Outcome]


def _judge(expected: ExpectedLookup, problems: list[str], answered: bool, seen: str, command: str) -> Outcome:
    if not answered:
        cell = reachability.Cell.UNKNOWN
    elif not problems:
        cell = reachability.expected_cell(expected.resolvable)
    else:
        cell = reachability.expected_cell(not expected.resolvable)
    note = f"{'; '.join(problems)} [{seen}]" if problems else seen
    return Outcome(cell, note, command)


def dig_lookup(expected: ExpectedLookup, *, name: str | None = None, nodata_ok: bool = False) -> Lookup:
    """``dig +nosearch`` of ``expected.name`` (or ``name``) for ``expected.rtype``."""
    qname = name or expected.name

    def run(vantage: Vantage) -> Outcome:
        answer = dig(vantage, qname, expected.rtype)
        problems = answer_problems(expected, answer, nodata_ok=nodata_ok)
        return _judge(expected, problems, answer.answered, answer.summary(),
                      vantage.reproduce(dig_argv(qname, expected.rtype)))

    return Lookup(f"dig {expected.rtype} {qname}", expected, run)


def getent_lookup(name: str, expected: ExpectedLookup) -> Lookup:
    """``getent ahostsv4 NAME``: libc's resolution, through the pod's search path and ndots."""

    def run(vantage: Vantage) -> Outcome:
        found = getent(vantage, name, "ahostsv4")
        problems = hosts_problems(expected, found)
        seen = (f"getent {name}: " + (", ".join(found.addresses) if found.found
                                       else found.error or f"not found (exit {found.returncode})"))
        return _judge(expected, problems, found.error is None, seen,
                      vantage.reproduce(getent_argv(name, "ahostsv4")))

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
            if isinstance(res, Outcome):
                table.set(r, c, res.cell, note=f"{clients[r].vantage.where}: {res.note}", command=res.command)
            else:
                err = res.error if isinstance(res, Unknown) else "no result"
                table.set(r, c, reachability.Cell.UNKNOWN, note=f"{clients[r].vantage.where}: {err}")
        for r in rows:
            for c in columns:
                if c not in by_row[r]:
                    table.set(r, c, reachability.Cell.ANY)
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
    want = expected_lookup(svc, domain=scene.domain)
    namespaced = f"{WEB}.{scene.namespace}"
    lookups = [dig_lookup(want), getent_lookup(scene.fqdn(WEB), want), getent_lookup(namespaced, want)]
    assert_dns(f"{scene.fqdn(WEB)} and {namespaced} -> ClusterIP {svc.cluster_ip}",
               dict.fromkeys([*scene.same, *scene.other], lookups))


def test_short_name_resolves_only_inside_the_services_namespace(scene: DnsScene) -> None:
    svc = scene.service(WEB)
    want = expected_lookup(svc, domain=scene.domain)
    plan: dict[Client, list[Lookup]] = {c: [getent_lookup(WEB, want)] for c in scene.same}
    for c in scene.other:
        search = resolv_conf(c.vantage).search
        names = cluster_expansions(WEB, search, domain=scene.domain)
        assert names, f"{c.vantage.where}: no search domain inside {scene.domain} in {search}"
        plan[c] = [dig_lookup(ExpectedLookup(name, "A", resolvable=False)) for name in names]
    assert_dns(f"short name {WEB!r} (service {scene.namespace}/{WEB}, ClusterIP {svc.cluster_ip}): "
               "same namespace via getent, other namespace via its search expansions", plan)


def test_resolv_conf_has_cluster_dns_the_namespace_search_list_and_ndots_5(scene: DnsScene) -> None:
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
    want = expected_lookup(svc, endpoints=eps, domain=scene.domain)
    assert len(want.addresses) == BACKENDS - 1, (
        f"setup: expected {BACKENDS - 1} ready backends besides {scene.unready}, pods say {eps}")
    assert_dns(f"headless {HEADLESS} -> ready pods {sorted(want.addresses)} (not {scene.unready}, unready)",
               {c: [dig_lookup(want)] for c in scene.same})


def test_headless_service_publishing_not_ready_addresses_returns_every_pod_ip(scene: DnsScene) -> None:
    svc = scene.service(HEADLESS_ALL)
    want = expected_lookup(svc, endpoints=scene.pod_endpoints(svc), domain=scene.domain)
    assert len(want.addresses) == BACKENDS, f"setup: expected {BACKENDS} backend pods, got {want}"
    assert_dns(f"headless {HEADLESS_ALL} (publishNotReadyAddresses) -> all pods {sorted(want.addresses)}",
               {c: [dig_lookup(want)] for c in scene.same})


def test_external_name_service_returns_a_cname_to_its_target(scene: DnsScene) -> None:
    alias = scene.service(ALIAS)
    cname = expected_lookup(alias, rtype="CNAME", domain=scene.domain)
    target = expected_lookup(scene.service(WEB), domain=scene.domain)
    chained = dataclasses.replace(expected_lookup(alias, domain=scene.domain), addresses=target.addresses)
    assert_dns(f"ExternalName {ALIAS} -> CNAME {alias.external_name} -> {sorted(target.addresses)}",
               {c: [dig_lookup(cname), dig_lookup(chained)] for c in scene.same})


def test_selectorless_service_resolves_to_its_cluster_ip(scene: DnsScene) -> None:
    svc = scene.service(MANUAL)
    assert svc.selector is None, f"setup: {MANUAL} must have no selector, has {svc.selector}"
    want = expected_lookup(svc, domain=scene.domain)
    assert_dns(f"selector-less {MANUAL} -> ClusterIP {svc.cluster_ip}",
               {c: [dig_lookup(want), getent_lookup(MANUAL, want)] for c in scene.same})


def test_a_name_that_does_not_exist_in_the_cluster_domain_is_nxdomain(scene: DnsScene) -> None:
    missing = [
        f"no-such-service.{scene.namespace}.svc.{scene.domain}",  # missing Service, existing namespace
        f"{WEB}.no-such-namespace.svc.{scene.domain}",  # existing Service name, missing namespace
    ]
    lookups = [dig_lookup(ExpectedLookup(n, "A", resolvable=False)) for n in missing]
    assert_dns("names in the cluster domain that do not exist -> NXDOMAIN",
               dict.fromkeys([*scene.same, *scene.other], lookups))
