"""properties: hypothesis-generated Services and endpoint churn, checked on the live cluster.

Each example costs seconds of real cluster work, so the examples are few and derandomised
(the seed is recorded in results.json; ``--hypothesis-seed`` replaces it), the example
database is off, and there is no shrink phase: a failure reports the example as generated
(hypothesis replays it once to print it) together with the expected and observed tables,
instead of spending minutes shrinking against a cluster.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fixtures import reachability
from fixtures.churn import create_service, delete_pod, delete_service, wait_backends_match_endpoints
from fixtures.concurrency import run_matrix
from fixtures.jig import ServiceJig
from fixtures.kube import PodInfo
from fixtures.observations import Unknown
from fixtures.poll import wait_until
from fixtures.probes import http_get, udp_exchange
from fixtures.timeouts import ENDPOINTS_TIMEOUT, KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.properties

log = logging.getLogger("svcconform.properties")

#: The seed of every property here unless ``--hypothesis-seed`` gives another.
PROPERTY_SEED = 20250604
PORT_SET_EXAMPLES = 3  # plus one explicit example
CHURN_EXAMPLES = 3
CHURN_STEPS = 4

#: The backends' container ports (the chart's defaults): netexec HTTP and UDP.
BACKEND_PORTS = {"TCP": ("http", 8080), "UDP": ("udp", 8081)}
#: Pod label the churn machine's selectors use (set on every backend at install).
TIER_LABEL = "svcconform/tier"
SELECTORS = ("release", "tier-blue", "tier-green")  # default selector; same pods; no pods
MAX_REPLICAS = 4


def property_seed(config: pytest.Config) -> int | str:
    given_seed = config.getoption("hypothesis_seed", default=None)
    if given_seed is None:
        return PROPERTY_SEED
    return int(given_seed) if str(given_seed).isdigit() else str(given_seed)


def live_settings(max_examples: int, **extra: Any) -> settings:
    """Few derandomised examples, no database, no shrinking, no time limits."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        **extra,
    )


# --------------------------------------------------------------------------- port sets

PORT_NAMES = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
PORT_NUMBERS = st.one_of(st.sampled_from([1, 53, 80, 443, 8080, 65535]), st.integers(1, 65535))


@st.composite
def port_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-3 Service ports: unique (number, protocol) and names (a lone port may be unnamed),
    each targeting its protocol's container port by name or by number."""
    pairs = draw(st.lists(st.tuples(PORT_NUMBERS, st.sampled_from(["TCP", "UDP"])),
                          min_size=1, max_size=3, unique=True))
    names = draw(st.lists(PORT_NAMES, min_size=len(pairs), max_size=len(pairs), unique=True))
    unnamed = len(pairs) == 1 and draw(st.booleans())
    ports = []
    for (number, proto), name in zip(pairs, names, strict=True):
        port_name, container_port = BACKEND_PORTS[proto]
        target: str | int = port_name if draw(st.booleans()) else container_port
        port: dict[str, Any] = {"port": number, "protocol": proto, "targetPort": target}
        if not unnamed:
            port["name"] = name
        ports.append(port)
    return ports


#: One port number on both protocols, each targeting its container port by name.
NAMED_SAME_NUMBER = [
    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "http"},
    {"name": "dns-udp", "port": 53, "protocol": "UDP", "targetPort": "udp"},
]


def port_label(p: dict[str, Any]) -> str:
    return f"{p['protocol']} {p['port']} ({p.get('name', 'unnamed')} -> {p['targetPort']})"


def check_port_set(jig: ServiceJig, name: str, ports: list[dict[str, Any]], nodes: list[str]) -> None:
    ip = jig.cluster_ip(name)
    columns = [port_label(p) for p in ports]
    title = f"service {jig.namespace}/{name} {ip} ports " + ", ".join(columns)
    expected = reachability.expected_table(title, nodes, columns, lambda r, c: True)
    by_label = {port_label(p): p for p in ports}
    last: list[reachability.Comparison] = []

    def probe(node: str, column: str) -> Any:
        p = by_label[column]
        client = jig.client(node)
        if p["protocol"] == "UDP":
            return udp_exchange(client, ip, p["port"])
        return http_get(client, ip, p["port"])

    def check() -> tuple[bool, str]:
        ready = {e.label for e in jig.endpoints(name) if e.ready}
        observed = reachability.Table(title=title, rows=list(nodes), columns=list(columns))
        for (node, column), obs in run_matrix(nodes, columns, probe).items():
            if isinstance(obs, Unknown):
                observed.set(node, column, reachability.Mark.UNKNOWN, note=obs.error)
                continue
            answered = bool(obs.ok and obs.backend in ready)
            mark = reachability.Mark.REACHED if answered else reachability.mark_of(obs)
            if obs.ok and not answered:  # an answer, but not from a ready backend of this Service
                mark = reachability.Mark.BLOCKED
            observed.set(node, column, mark, note=obs.summary() + f"; ready backends {sorted(ready)}",
                         command=obs.command)
        last[:] = [reachability.compare(expected, observed)]
        return last[0].ok, last[0].render()

    reachability.wait_for_tables(
        check,
        timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
        what=f"{title}; ports {ports}",
        problem="not every generated port is reachable as mapped",
    )


def test_generated_service_port_sets_are_reachable_as_mapped_from_every_client(
    jig, pytestconfig, record_hypothesis_seed
):
    the_seed = property_seed(pytestconfig)
    record_hypothesis_seed(the_seed)
    j: ServiceJig = jig(backends=2)
    nodes = list(j.clients())[:2]  # two vantage points are enough for a mapping property
    selector = j.service_object()["spec"]["selector"]
    examples = itertools.count(1)

    @seed(the_seed)
    @live_settings(PORT_SET_EXAMPLES)
    @given(ports=port_sets())
    @example(ports=NAMED_SAME_NUMBER)  # generation starts simple (numeric targets): cover names too
    def reachable_as_mapped(ports: list[dict[str, Any]]) -> None:
        # A fresh Service per example (same backends and clients): no example inherits another's
        # ports, and no update merges them (a strategic-merge patch, as helm upgrade sends,
        # keys Service ports by number alone and folds 53/TCP + 53/UDP into one).
        name = f"ports-{next(examples)}"
        create_service(j.kube, j.namespace, {"selector": selector, "ports": ports}, name=name)
        try:
            check_port_set(j, name, ports, nodes)
        finally:
            delete_service(j.kube, j.namespace, name)

    reachable_as_mapped()


# --------------------------------------------------------------------------- churn


class EndpointChurn(RuleBasedStateMachine):
    """Scale, delete pods, flip readiness, change the selector; after convergence the
    backends reached from each node equal the ready endpoints."""

    jig: ClassVar[ServiceJig]
    ip: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.replicas = 2
        self.unready: set[str] = set()
        self.selector = "release"

    # ------------------------------------------------------------------ helpers
    def live_pods(self) -> list[PodInfo]:
        return [p for p in self.jig.backend_pods() if not p.terminating]

    def apply(self) -> None:
        selector = {} if self.selector == "release" else {TIER_LABEL: self.selector.removeprefix("tier-")}

        def tweak(v: dict[str, Any]) -> None:
            v["backend"]["replicas"] = self.replicas
            v["service"]["selector"] = selector

        log.info("churn: replicas=%d selector=%s", self.replicas, self.selector)
        self.jig.update(tweak, wait=False)

    def settle(self) -> None:
        """Pods as the steps left them, and the EndpointSlices saying so (control plane)."""

        def check() -> tuple[bool, str]:
            pods = self.live_pods()
            self.unready &= {p.name for p in pods}
            wrong = [p.describe() + f" ready={p.ready}" for p in pods
                     if p.ready == (p.name in self.unready)]
            want = set() if self.selector == "tier-green" else {
                p.name for p in pods if p.name not in self.unready}
            have = {e.label for e in self.jig.endpoints() if e.ready}
            ok = len(pods) == self.replicas and not wrong and have == want
            return ok, (f"{len(pods)}/{self.replicas} pods; readiness not yet as set: {wrong}; "
                        f"ready endpoints {sorted(have)}, want {sorted(want)}")

        wait_until(check, timeout=ENDPOINTS_TIMEOUT,
                   what=f"backends of {self.jig.namespace}/{self.jig.name} and their EndpointSlices")

    # ------------------------------------------------------------------ rules
    @initialize()
    def start_from_two_ready_backends(self) -> None:
        for pod in self.live_pods():
            self.jig.set_ready(pod, True)
        self.apply()

    # Every rule's argument is relative to the current state, so every step is a real change
    # (hypothesis starts from the simplest choices: absolute values would repeat no-ops).
    @rule(shift=st.integers(1, 3))
    def scale(self, shift: int) -> None:
        self.replicas = (self.replicas - 1 + shift) % MAX_REPLICAS + 1
        self.apply()

    @precondition(lambda self: self.replicas > 0)
    @rule(which=st.integers(0, 3))
    def delete_a_pod(self, which: int) -> None:
        pods = self.live_pods()
        if pods:
            victim = pods[which % len(pods)]
            log.info("churn: delete pod %s", victim.name)
            delete_pod(self.jig.kube, self.jig.namespace, victim.name)
            self.unready.discard(victim.name)

    @rule(which=st.integers(0, 3))
    def flip_readiness(self, which: int) -> None:
        pods = self.live_pods()
        if pods:
            pod = pods[which % len(pods)]
            make_ready = pod.name in self.unready
            log.info("churn: mark %s %s", pod.name, "ready" if make_ready else "unready")
            self.jig.set_ready(pod, make_ready)
            (self.unready.discard if make_ready else self.unready.add)(pod.name)

    @rule(shift=st.integers(1, len(SELECTORS) - 1))
    def change_selector(self, shift: int) -> None:
        self.selector = SELECTORS[(SELECTORS.index(self.selector) + shift) % len(SELECTORS)]
        self.apply()

    # ------------------------------------------------------------------ invariant
    @invariant()
    def backends_reached_from_each_node_equal_the_ready_endpoints(self) -> None:
        self.settle()
        wait_backends_match_endpoints(
            self.jig, self.ip, 80,
            title=f"TCP {self.ip}:80 of {self.jig.namespace}/{self.jig.name} "
                  f"(replicas {self.replicas}, selector {self.selector}, unready {sorted(self.unready)})",
        )


def test_after_endpoint_churn_every_node_reaches_exactly_the_ready_endpoints(
    jig, pytestconfig, record_hypothesis_seed
):
    the_seed = property_seed(pytestconfig)
    record_hypothesis_seed(the_seed)
    j: ServiceJig = jig(backends=2, tweak=lambda v: v["backend"].update(podLabels={TIER_LABEL: "blue"}))
    ip = j.cluster_ip()

    machine: type[EndpointChurn] = type(
        "EndpointChurnOnCluster", (EndpointChurn,), {"jig": j, "ip": ip})
    run_state_machine_as_test(
        seed(the_seed)(machine),
        settings=live_settings(CHURN_EXAMPLES, stateful_step_count=CHURN_STEPS),
    )
