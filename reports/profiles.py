"""Core vs Extended: which tests every conformant cluster must pass, and which are optional.

In the spirit of Gateway API conformance profiles, every test is classified as

* **Core** — behaviour Kubernetes promises for every Service on every conformant cluster:
  DNS names and search paths, environment-variable discovery, ClusterIP and NodePort
  reachability, selector-less Services with manual EndpointSlices, basic session affinity,
  and ``externalTrafficPolicy`` ``Cluster``/``Local`` source-IP and reachability basics.
* **Extended** — optional features and service-level expectations a conformant
  implementation may lack: session-affinity *timeouts*, ``healthCheckNodePort``,
  ``internalTrafficPolicy``, traffic distribution / topology, LoadBalancer Services, SCTP,
  external IPs, data-plane convergence ceilings (``convergence``) and the property-based checks
  (``properties``);
  also NodePorts on ``127.0.0.1``, which nftables mode deliberately does not serve.

Classification is decided per test by :data:`RULES`, first match wins:

1. the test id is listed in :data:`EXTENDED_IDS`;
2. the test's module is one an Extended rule covers whole (``suite/test_traffic_distribution.py``),
   or its name (everything after the file, parameters included, lower-cased with ``-``
   and ``.`` read as ``_``) contains a keyword of an Extended rule — ``extended`` itself is
   one, so a suite author can opt a test in by naming it ``test_..._extended`` or giving it
   an ``extended`` parameter id;
3. the test's family: ``convergence`` and ``properties`` are Extended, the six others Core;
4. anything else (a family this table does not know) is Extended, so an unknown test can
   never make a cell fail its Core profile.

A cell's profile (:func:`cell_profile`):

* ``none`` — the cell did not complete (``unsupported``/``error``), or a Core test failed or
  errored, or some Core family has no passed test (a family that was entirely skipped or
  absent proves nothing);
* ``core`` — every Core test that ran passed and every Core family has a passed test;
* ``extended`` — ``core``, and every Extended test that ran passed, and at least one did.

Skipped tests neither fail nor satisfy a profile; the report shows their counts beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reports.model import TestResult

CORE = "core"
EXTENDED = "extended"
NONE = "none"
PROFILES: tuple[str, ...] = (EXTENDED, CORE, NONE)

#: Families whose tests are Core unless a keyword rule says otherwise.
CORE_FAMILIES: tuple[str, ...] = ("dns", "env", "clusterip", "nodeport", "etp", "selectorless")
#: Families whose every test is Extended.
EXTENDED_FAMILIES: tuple[str, ...] = ("convergence", "properties")

#: Tests classified Extended by their exact id (parameters stripped), whatever their name.
EXTENDED_IDS: frozenset[str] = frozenset(
    {
        # The Local-policy health check port answers 200/503 per node: an optional
        # kube-proxy feature that replacements may serve differently or not at all.
        "suite/test_external_traffic_policy.py::test_health_check_node_port_reports_local_endpoints",
        # ClusterIP traffic keeps the client pod's IP: how every kube-proxy mode and most CNIs
        # behave, but upstream e2e checks it outside Conformance (a proxy may SNAT).
        "suite/test_service_features.py::test_backends_see_the_client_pod_ip_through_the_cluster_ip",
        # One connected UDP socket kept across a backend replacement: kube-proxy flushes the
        # stale conntrack entry and the same socket reaches the new backend; a socket-level
        # load balancer (Cilium's socket LB) destroys the socket instead and the application
        # reconnects.  Upstream e2e's conntrack check sends each try from a new socket.
        "suite/test_clusterip.py::test_udp_traffic_on_one_socket_recovers_when_the_only_backend_is_replaced",
        # service.kubernetes.io/service-proxy-name: upstream e2e's check is not Conformance,
        # and a replacement may be configured to serve that proxy name itself.
        "suite/test_service_features.py::test_a_service_labelled_for_another_proxy_is_ignored_until_the_label_is_removed",
    }
)


@dataclass(frozen=True)
class Rule:
    """One row of the classification table."""

    name: str
    profile: str  # CORE or EXTENDED
    why: str
    keywords: tuple[str, ...] = ()  # any of these in the normalized name; () = any name
    families: tuple[str, ...] = ()  # the test's family is one of these; () = any family
    #: suite modules all of whose tests the rule covers (their names need no keyword)
    modules: tuple[str, ...] = ()

    def matches(self, normalized_name: str, family: str, module: str = "") -> bool:
        if module and module in self.modules:
            return True
        if self.families and family not in self.families:
            return False
        if self.modules and not self.keywords and not self.families:
            return False  # a modules-only rule matches nothing else
        return not self.keywords or any(k in normalized_name for k in self.keywords)


#: The classification table, first match wins (after :data:`EXTENDED_IDS`).
RULES: tuple[Rule, ...] = (
    Rule(
        "extended-keyword",
        EXTENDED,
        "the test declares itself Extended in its name or parameter id",
        keywords=("extended",),
    ),
    Rule(
        "session-affinity-timeout",
        EXTENDED,
        "sessionAffinityConfig.clientIP.timeoutSeconds is optional (not in upstream "
        "Conformance); basic ClientIP affinity stays Core",
        keywords=("affinity_timeout", "affinity_config", "timeoutseconds"),
    ),
    Rule(
        "health-check-node-port",
        EXTENDED,
        "healthCheckNodePort is served by kube-proxy; replacements may not",
        keywords=("health_check_node_port", "healthchecknodeport", "hcnp"),
    ),
    Rule(
        "nodeport-localhost",
        EXTENDED,
        "NodePorts on 127.0.0.1 are an iptables-mode extra (route_localnet); nftables mode "
        "deliberately does not serve them",
        keywords=("localhost", "loopback", "127_0_0_1"),
        families=("nodeport",),
    ),
    Rule(
        "internal-traffic-policy",
        EXTENDED,
        "internalTrafficPolicy is an optional routing optimisation",
        keywords=("internal_traffic_policy", "internaltrafficpolicy"),
    ),
    Rule(
        "traffic-distribution",
        EXTENDED,
        "trafficDistribution / topology-aware routing are hints an implementation may ignore",
        keywords=("traffic_distribution", "trafficdistribution", "prefer_close", "topology"),
        # its tests name the behaviour ("traffic stays in the client's zone"), not the field
        modules=("suite/test_traffic_distribution.py",),
    ),
    Rule(
        "load-balancer",
        EXTENDED,
        "type LoadBalancer needs a load-balancer implementation (a cloud provider; on kind, "
        "cloud-provider-kind): upstream e2e's LoadBalancer tests are outside Conformance",
        keywords=("load_balancer", "loadbalancer"),
    ),
    Rule(
        "sctp",
        EXTENDED,
        "SCTP Services need kernel and CNI support that is optional",
        keywords=("sctp",),
    ),
    Rule(
        "external-ips",
        EXTENDED,
        "spec.externalIPs is discouraged and often blocked by admission policy",
        keywords=("external_ip", "externalip"),
    ),
    Rule(
        "convergence-family",
        EXTENDED,
        "convergence ceilings are service-level expectations, not API promises",
        families=("convergence",),
    ),
    Rule(
        "properties-family",
        EXTENDED,
        "property-based checks explore beyond the documented contract",
        families=("properties",),
    ),
    Rule(
        "core-family",
        CORE,
        "behaviour every conformant cluster must provide",
        families=CORE_FAMILIES,
    ),
    Rule(
        "unknown-family",
        EXTENDED,
        "a family this table does not know never gates the Core profile",
    ),
)


@dataclass(frozen=True)
class Classification:
    profile: str  # CORE or EXTENDED
    rule: str  # the Rule.name (or "extended-id") that decided


def normalize_name(test_id: str) -> str:
    """The part of a node id after the file, lower-cased, ``-``/``.``/`` `` read as ``_``."""
    _, sep, rest = test_id.partition("::")
    name = rest if sep else test_id
    return name.lower().replace("-", "_").replace(".", "_").replace(" ", "_")


def base_id(test_id: str) -> str:
    """The node id without its parameters: ``a.py::test_x[p]`` → ``a.py::test_x``."""
    return test_id.split("[", 1)[0]


def classify(test_id: str, family: str) -> Classification:
    """Core or Extended for one test (see the module docstring for the rules)."""
    if test_id in EXTENDED_IDS or base_id(test_id) in EXTENDED_IDS:
        return Classification(EXTENDED, "extended-id")
    normalized = normalize_name(test_id)
    module = test_id.partition("::")[0]
    for rule in RULES:
        if rule.matches(normalized, family, module):
            return Classification(rule.profile, rule.name)
    raise AssertionError("RULES ends with a catch-all rule")  # pragma: no cover


def classify_test(test: TestResult) -> Classification:
    return classify(test.id, test.family)


def cell_profile(status: str, tests: Iterable[TestResult]) -> str:
    """``extended``, ``core`` or ``none`` for a cell (see the module docstring)."""
    if status != "completed":
        return NONE
    core_failed = ext_failed = False
    ext_passed = False
    core_passed_families: set[str] = set()
    for test in tests:
        profile = classify_test(test).profile
        if profile == CORE:
            if test.failed:
                core_failed = True
            elif test.outcome == "passed":
                core_passed_families.add(test.family)
        elif test.failed:
            ext_failed = True
        elif test.outcome == "passed":
            ext_passed = True
    if core_failed or not set(CORE_FAMILIES) <= core_passed_families:
        return NONE
    if ext_failed or not ext_passed:
        return CORE
    return EXTENDED
