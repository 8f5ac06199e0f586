"""env: kubelet gives a pod environment variables for the Services of its namespace.

One namespace, in this order, with a client pod on every node at each step:

1. ``early-<node>`` clients start (no Service in the namespace yet);
2. the Service ``web-front`` (dashes, to see the names mangled: ``WEB_FRONT_...``) with
   named ports ``http-main`` 80/TCP and ``udp-echo`` 81/UDP, a headless Service and an
   ExternalName Service are created;
3. ``late-<node>`` clients start, and ``nolinks-<node>`` clients with
   ``enableServiceLinks: false``.

What each pod must hold is computed by :func:`fixtures.expectations.envvars.expected_env`
(kubelet's rules) from the Services *as the API reports them*, so values are the live
ClusterIP and ports.  A pod's environment is read from its PID 1 (``/proc/1/environ``:
exactly what the container was started with).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from fixtures import charts
from fixtures.concurrency import run_all
from fixtures.expectations.dns import service_fqdn
from fixtures.expectations.envvars import (
    MASTER_NAMESPACE,
    ExpectedEnv,
    expected_env,
    service_env,
)
from fixtures.expectations.model import Service, service_from_object
from fixtures.jig import default_values
from fixtures.kube import Kube
from fixtures.observations import EnvSnapshot
from fixtures.probes import ENV_ARGV, PROC_ENVIRON_ARGV, Vantage, environment, pod_vantage
from fixtures.providers.base import ClusterFacts

pytestmark = pytest.mark.env

SERVICE = "web-front"
HEADLESS = "web-front-headless"
ALIAS = "web-front-alias"
PORTS = [
    {"name": "http-main", "port": 80, "targetPort": "http", "protocol": "TCP"},
    {"name": "udp-echo", "port": 81, "targetPort": "udp", "protocol": "UDP"},
]
#: The client pods of each step: release name = pod name prefix, and enableServiceLinks.
EARLY, LATE, NOLINKS = "early", "late", "nolinks"
CLIENT_SETS = {EARLY: True, LATE: True, NOLINKS: False}


@dataclass
class EnvScene:
    namespace: str
    nodes: list[str]
    before: list[Service]  # Services an early pod could see when it started
    after: list[Service]  # Services a late / nolinks pod could see when it started
    created_later: list[Service]  # Services created after the early pods started
    vantages: dict[str, dict[str, Vantage]]  # client set -> node -> vantage

    def service(self, name: str) -> Service:
        return next(s for s in self.after if s.name == name and s.namespace == self.namespace)

    def snapshots(self, client_set: str) -> dict[str, EnvSnapshot | Exception]:
        """Every client's environment in ``client_set``, read concurrently (node -> snapshot)."""
        tasks = {n: (lambda v=v: environment(v, PROC_ENVIRON_ARGV))
                 for n, v in self.vantages[client_set].items()}
        out: dict[str, EnvSnapshot | Exception] = {}
        for node, res in run_all(tasks).items():
            out[node] = res if isinstance(res, EnvSnapshot) else RuntimeError(getattr(res, "error", res))
        return out


def client_values(facts: ClusterFacts, release: str, *, links: bool) -> dict:
    """service-selectors values for client pods only: no backends, no Service."""
    values = default_values(facts, name=release)
    values["backend"]["enabled"] = False
    values["service"]["enabled"] = False
    values["clients"].update(namePrefix=release, enableServiceLinks=links)
    return values


def live_services(kube: Kube, namespace: str) -> list[Service]:
    """The master ``kubernetes`` Service and every Service of ``namespace``, as the API has them."""
    master = kube.get_service(MASTER_NAMESPACE, "kubernetes")
    local = kube.list_objects("services", namespace)
    return [service_from_object(master), *(service_from_object(s) for s in local)]


@pytest.fixture(scope="module")
def scene(module_namespace: Callable[..., str], kube: Kube, cluster_facts: ClusterFacts) -> EnvScene:
    ns = module_namespace()
    nodes = [n.name for n in cluster_facts.nodes]

    charts.install(kube, charts.SERVICE_SELECTORS, EARLY, ns, client_values(cluster_facts, EARLY, links=True))
    before = live_services(kube, ns)

    svc_values = default_values(cluster_facts, name=SERVICE, clients=False)
    svc_values["backend"]["enabled"] = False  # variables need a ClusterIP, not endpoints
    svc_values["service"]["ports"] = PORTS
    svc_values["extraServices"] = [
        {"name": HEADLESS, "spec": {"clusterIP": "None", "ports": PORTS,
                                    "selector": {"app.kubernetes.io/instance": SERVICE}}},
        {"name": ALIAS, "spec": {"type": "ExternalName", "externalName": service_fqdn(SERVICE, ns)}},
    ]
    charts.install(kube, charts.SERVICE_SELECTORS, SERVICE, ns, svc_values)
    after = live_services(kube, ns)
    before_keys = {(s.namespace, s.name) for s in before}
    created_later = [s for s in after if (s.namespace, s.name) not in before_keys]

    for release in (LATE, NOLINKS):
        charts.install(kube, charts.SERVICE_SELECTORS, release, ns,
                       client_values(cluster_facts, release, links=CLIENT_SETS[release]))

    vantages = {
        cs: {n: pod_vantage(kube, ns, charts.client_pod_name(n, cs), node=n) for n in nodes}
        for cs in CLIENT_SETS
    }
    return EnvScene(ns, nodes, before, after, created_later, vantages)


def env_failures(scene: EnvScene, client_set: str, expected: ExpectedEnv,
                 extra: Callable[[EnvSnapshot], list[str]] | None = None) -> list[str]:
    """One block per client pod whose environment breaks ``expected``: where, what, reproduce."""
    out = []
    for node, snap in scene.snapshots(client_set).items():
        vantage = scene.vantages[client_set][node]
        if isinstance(snap, Exception):
            problems = [f"could not read the environment: {snap}"]
        else:
            problems = expected.problems(snap) + (extra(snap) if extra else [])
        if problems:
            out.append(f"{vantage.where}:\n" + "\n".join(f"    {p}" for p in problems)
                       + f"\n    reproduce: {vantage.reproduce(ENV_ARGV)}")
    return out


def only(expected: ExpectedEnv, *, present: bool = True, absent: bool = True) -> ExpectedEnv:
    return ExpectedEnv(present=expected.present if present else {},
                       absent=expected.absent if absent else frozenset(), ambiguous=expected.ambiguous)


def names_of(services: Iterable[Service]) -> list[str]:
    return [f"{s.namespace}/{s.name}" for s in services]


# --------------------------------------------------------------------------- tests


def test_pod_started_after_the_service_has_its_service_and_docker_link_variables(scene: EnvScene) -> None:
    svc = scene.service(SERVICE)
    expected = expected_env(scene.after, pod_namespace=scene.namespace)
    mine = service_env(svc)
    # the promise, spelled out: mangled names, every port, both variable styles
    spelled = ("WEB_FRONT_SERVICE_HOST", "WEB_FRONT_SERVICE_PORT", "WEB_FRONT_SERVICE_PORT_HTTP_MAIN",
               "WEB_FRONT_SERVICE_PORT_UDP_ECHO", "WEB_FRONT_PORT", "WEB_FRONT_PORT_80_TCP",
               "WEB_FRONT_PORT_81_UDP_ADDR", "WEB_FRONT_PORT_81_UDP_PORT", "WEB_FRONT_PORT_81_UDP_PROTO")
    lacking = [n for n in spelled if n not in mine or expected.present.get(n) != mine[n]]
    assert not lacking, f"expectation for {svc.namespace}/{svc.name} lacks {lacking}: {sorted(mine)}"
    failures = env_failures(scene, LATE, only(expected, absent=False))
    assert not failures, (
        f"pods started after service {svc.namespace}/{svc.name} (ClusterIP {svc.cluster_ip}, ports "
        f"{[(p.name, p.port, p.protocol) for p in svc.ports]}) lack its variables or have wrong values:\n"
        + "\n".join(failures))


def test_headless_and_external_name_services_give_no_variables(scene: EnvScene) -> None:
    expected = expected_env(scene.after, pod_namespace=scene.namespace)
    skipped = [s for s in scene.after if not s.has_cluster_ip]
    assert {s.name for s in skipped} == {HEADLESS, ALIAS}, f"setup: services without a ClusterIP: {skipped}"
    assert expected.absent, "expectation names no variable that must be absent"
    failures = env_failures(scene, LATE, only(expected, present=False))
    assert not failures, (
        f"services without a ClusterIP ({', '.join(names_of(skipped))}) must not yield variables:\n"
        + "\n".join(failures))


def test_pod_started_before_the_service_has_none_of_its_variables(scene: EnvScene) -> None:
    expected = expected_env(scene.before, pod_namespace=scene.namespace, created_later=scene.created_later)
    assert "WEB_FRONT_SERVICE_HOST" in expected.absent, f"expectation: {expected}"
    failures = env_failures(scene, EARLY, expected)
    assert not failures, (
        f"pods started before {', '.join(names_of(scene.created_later))} existed must not have their "
        "variables (they are fixed at container start) but must have the master service's:\n"
        + "\n".join(failures))


def test_enable_service_links_false_leaves_only_the_kubernetes_service_variables(scene: EnvScene) -> None:
    expected = expected_env(scene.after, pod_namespace=scene.namespace, enable_service_links=False)
    assert "KUBERNETES_SERVICE_HOST" in expected.present, f"expectation: {expected}"
    assert "WEB_FRONT_SERVICE_HOST" in expected.absent, f"expectation: {expected}"
    allowed_hosts = {n for n in expected.present if n.endswith("_SERVICE_HOST")}

    def stray_services(snap: EnvSnapshot) -> list[str]:
        return [f"{n}={snap[n]!r}: a service variable besides the master service's"
                for n in sorted(snap) if n.endswith("_SERVICE_HOST") and n not in allowed_hosts]

    failures = env_failures(scene, NOLINKS, expected, stray_services)
    assert not failures, (
        "pods with enableServiceLinks: false must have only the variables of "
        f"{MASTER_NAMESPACE}/kubernetes:\n" + "\n".join(failures))
