"""Core or Extended for tests of results files that do not record it (legacy classifier).

Since results.json schema 3, each test records the profile the suite declared for it
(``tests[].profile``: its family's default in ``fixtures/families.py``, or the test's own
``@pytest.mark.extended(reason=...)``), and :mod:`reports.profiles` takes that as is.  The
suite no longer classifies anything by name.  Files written before (schema 1 and 2, and
schema 3 before the key existed) say nothing, and are read with the rules the report used
then, kept here *only* for them; never extend these rules — declare a new check's profile
with a marker instead.

Decided per test, first match wins:

1. the test id (parameters stripped) is listed in :data:`EXTENDED_IDS`;
2. the test's module is one an Extended rule covers whole (``suite/test_traffic_distribution.py``),
   or its name (everything after the file, parameters included, lower-cased with ``-``
   and ``.`` read as ``_``) contains a keyword of an Extended rule — ``extended`` itself is
   one;
3. the family's default profile in the registry (:data:`reports.model.DEFAULT_PROFILES`);
4. anything else (a family the registry does not know) is Extended, so an unknown test can
   never make a cell fail its Core profile.

A legacy cell earns the Core profile with a passed Core test in each of
:data:`LEGACY_CORE_FAMILIES`, the Core families those files could have.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.model import DEFAULT_PROFILES, EXTENDED

#: The Core families of the suite before profiles were recorded (frozen: old files have no others).
LEGACY_CORE_FAMILIES: tuple[str, ...] = ("dns", "env", "clusterip", "nodeport", "etp", "selectorless")

#: Tests classified Extended by their exact id (parameters stripped), whatever their name
#: (why each is Extended: the ``extended`` marker's reason on the check in ``suite/``).
EXTENDED_IDS: frozenset[str] = frozenset(
    {
        "suite/test_external_traffic_policy.py::test_health_check_node_port_reports_local_endpoints",
        "suite/test_service_features.py::test_backends_see_the_client_pod_ip_through_the_cluster_ip",
        "suite/test_clusterip.py::test_udp_traffic_on_one_socket_recovers_when_the_only_backend_is_replaced",
        "suite/test_service_features.py::test_a_service_labelled_for_another_proxy_is_ignored_until_the_label_is_removed",
    }
)


@dataclass(frozen=True)
class Rule:
    """One row of the legacy classification table."""

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


#: The name rules, first match wins (after :data:`EXTENDED_IDS`, before the family default).
RULES: tuple[Rule, ...] = (
    Rule("extended-keyword", EXTENDED, "the test declared itself Extended in its name or parameter id",
         keywords=("extended",)),
    Rule("session-affinity-timeout", EXTENDED,
         "sessionAffinityConfig.clientIP.timeoutSeconds is optional (not in upstream Conformance); "
         "basic ClientIP affinity stays Core",
         keywords=("affinity_timeout", "affinity_config", "timeoutseconds")),
    Rule("health-check-node-port", EXTENDED,
         "healthCheckNodePort is served by kube-proxy; replacements may not",
         keywords=("health_check_node_port", "healthchecknodeport", "hcnp")),
    Rule("nodeport-localhost", EXTENDED,
         "NodePorts on 127.0.0.1 are an iptables-mode extra (route_localnet); nftables mode "
         "deliberately does not serve them",
         keywords=("localhost", "loopback", "127_0_0_1"), families=("nodeport",)),
    Rule("internal-traffic-policy", EXTENDED, "internalTrafficPolicy is an optional routing optimisation",
         keywords=("internal_traffic_policy", "internaltrafficpolicy")),
    Rule("traffic-distribution", EXTENDED,
         "trafficDistribution / topology-aware routing are hints an implementation may ignore",
         keywords=("traffic_distribution", "trafficdistribution", "prefer_close", "topology"),
         modules=("suite/test_traffic_distribution.py",)),
    Rule("load-balancer", EXTENDED,
         "type LoadBalancer needs a load-balancer implementation: upstream e2e's LoadBalancer tests "
         "are outside Conformance",
         keywords=("load_balancer", "loadbalancer")),
    Rule("sctp", EXTENDED, "SCTP Services need kernel and CNI support that is optional", keywords=("sctp",)),
    Rule("external-ips", EXTENDED, "spec.externalIPs is discouraged and often blocked by admission policy",
         keywords=("external_ip", "externalip")),
)

#: The rule names after :data:`RULES`: the family's registry default, then unknown families.
FAMILY_DEFAULT = "family-default"
UNKNOWN_FAMILY = "unknown-family"


def normalize_name(test_id: str) -> str:
    """The part of a node id after the file, lower-cased, ``-``/``.``/`` `` read as ``_``."""
    _, sep, rest = test_id.partition("::")
    name = rest if sep else test_id
    return name.lower().replace("-", "_").replace(".", "_").replace(" ", "_")


def base_id(test_id: str) -> str:
    """The node id without its parameters: ``a.py::test_x[p]`` → ``a.py::test_x``."""
    return test_id.split("[", 1)[0]


def classify(test_id: str, family: str) -> tuple[str, str]:
    """``(profile, rule)`` of a test from a file without recorded profiles."""
    if test_id in EXTENDED_IDS or base_id(test_id) in EXTENDED_IDS:
        return EXTENDED, "extended-id"
    normalized = normalize_name(test_id)
    module = test_id.partition("::")[0]
    for rule in RULES:
        if rule.matches(normalized, family, module):
            return rule.profile, rule.name
    if family in DEFAULT_PROFILES:
        return DEFAULT_PROFILES[family], FAMILY_DEFAULT
    return EXTENDED, UNKNOWN_FAMILY

