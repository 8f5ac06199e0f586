"""convergence: how fast the data plane follows Service and endpoint changes, measured.

Black-box: a sampling loop in the client pod on every node (one try every 50 ms, so
≤100 ms resolution) runs while the test makes the same change a few times; each change
gives one sample per node: the time from the API request until the tries show its effect
(:mod:`fixtures.convergence` reads it off the timelines).  Samples are recorded in
results.json and every one must be within ``--convergence-ceiling``.

White-box: kube-proxy's own histograms (network programming latency and rule-sync
duration) scraped on every node before and after the family, recorded beside them: read
from each node's network namespace (``docker exec`` on kind nodes, else the hostNetwork
vantage pods) at the address kube-proxy is configured with.

The Service-lifecycle scenario samples a *NodePort* on the client's own node, not a
ClusterIP: before a Service exists (and after it is gone) nothing on the node handles its
ClusterIP, so tries would follow the node's default route off this machine; a node port
without rules is refused by the node itself.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from fixtures import convergence
from fixtures.churn import create_service, delete_pod, delete_service, wait_backends_match_endpoints
from fixtures.concurrency import Background, run_all
from fixtures.convergence import Event, Measurement, Outcome
from fixtures.jig import ServiceJig
from fixtures.kube import ApiError, Kube
from fixtures.nodemetrics import KubeProxyMetrics
from fixtures.observations import MetricSamples, Timeline, Unknown
from fixtures.poll import WaitTimeout, wait_until
from fixtures.probes import (
    NETWORK_PROGRAMMING,
    SYNC_PROXY_RULES,
    http_get,
    loopctl,
    sample_loop,
)
from fixtures.probes.metrics import histogram_delta, summarize
from fixtures.probes.sampling import peek_loop
from fixtures.providers.base import ClusterFacts
from fixtures.timeouts import (
    CONVERGENCE_SAMPLING_WINDOW,
    ENDPOINTS_TIMEOUT,
    EXEC_TIMEOUT,
    KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
)

pytestmark = pytest.mark.convergence
log = logging.getLogger("svcconform.convergence")

#: Changes per scenario; each gives one sample per client node (3 nodes: 9 samples).
CHANGES_PER_SCENARIO = 3
#: Backends while a scenario runs: pods deleted one at a time leave 2 serving; 3 of 4 pods
#: turning unready leave 1; scale-up goes 2 -> 3 -> 4 -> 5.
BACKENDS = 3
UNREADY_BACKENDS = 4
SCALE_FROM = 2
#: Consecutive checks (POLL_INTERVAL apart) that must agree before the next change.
GATE_STREAK = 2


# --------------------------------------------------------------------------- plumbing


class Sampling:
    """One stoppable sampling loop per client node, each against its own target."""

    def __init__(self, jig: ServiceJig, targets: Mapping[str, tuple[str, int]], tag: str) -> None:
        self.targets = dict(targets)
        self.loops = {n: loopctl.stoppable(jig.client(n), tag=tag) for n in self.targets}
        self.runs: dict[str, Background[Timeline]] = {}
        self.timelines: list[Timeline] = []
        #: each timeline's vantage (``Measurement.where``) → the node it sampled from
        self.nodes: dict[str, str] = {}

    def _loop(self, node: str) -> Callable[[], Timeline]:
        host, port = self.targets[node]
        loop = self.loops[node]
        return lambda: sample_loop(loop.vantage, host, port, duration=CONVERGENCE_SAMPLING_WINDOW,
                                   log_file=loop.log_file)

    def peek(self) -> dict[str, Timeline | Unknown]:
        """Every loop's tries so far, read from its log file while it keeps running."""
        def read(node: str) -> Timeline:
            return peek_loop(self.loops[node].base, self.loops[node].log_file, *self.targets[node])
        return run_all({n: functools.partial(read, n) for n in self.loops})

    def wait_observed(self, events: list[Event], timeout: float = KUBE_PROXY_ENDPOINT_LAG_TIMEOUT) -> None:
        """Keep sampling until each loop's *own* tries show the effect of every event whose
        window is still open.  The test's probes having seen the change is not enough: with
        five backends a loop that stopped right then may not have drawn the newest one yet.
        Bounded: after ``timeout`` the scenario goes on and its verdict names what is missing."""
        pending_events = [e for e in events if e.until is None]

        def check() -> tuple[bool, str]:
            pending = []
            for node, tl in self.peek().items():
                if isinstance(tl, Unknown):
                    pending.append(f"{node}: {tl.error}")
                    continue
                pending += [f"{node}: {m.event.describe()} ({m.detail})"
                            for m in (convergence.measure(tl, e) for e in pending_events) if m.delay is None]
            return not pending, "; ".join(pending) or "every loop shows every change"

        try:
            wait_until(check, timeout=timeout, what="every sampling loop to show the changes' effect")
        except WaitTimeout as exc:
            log.warning("%s", exc)  # the scenario's verdict reports each sample that did not converge

    def __enter__(self) -> Sampling:
        for node in self.targets:
            self.runs[node] = Background(self._loop(node), name=f"svcc-loop-{node}").start()

        def all_running() -> tuple[bool, str]:
            failed = [n for n, r in self.runs.items() if r.done]
            if failed:
                self.runs[failed[0]].result(timeout=0)  # re-raises the loop's error
                return False, f"sampling loop ended early on {failed}"
            state = run_all({n: functools.partial(loopctl.running, self.loops[n]) for n in self.loops})
            waiting = [n for n, ok in state.items() if ok is not True]
            return not waiting, f"not yet sampling on {waiting}" if waiting else "sampling on every node"

        try:
            wait_until(all_running, timeout=EXEC_TIMEOUT, what="the sampling loop in every client pod")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> list[Timeline]:
        run_all({n: functools.partial(loopctl.stop, self.loops[n]) for n in self.loops})
        timelines = []
        for node, run in self.runs.items():
            try:
                timelines.append(run.result(timeout=EXEC_TIMEOUT))
            except Exception as exc:
                raise AssertionError(f"the sampling loop on {node} gave no timeline: {exc}") from exc
        self.timelines = timelines
        self.nodes = {tl.where or tl.target: node for node, tl in zip(self.runs, timelines, strict=True)}
        return timelines

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if not self.timelines:
            try:
                self.stop()
            except AssertionError:
                if et is None:
                    raise


def ready_backend_names(jig: ServiceJig) -> set[str]:
    return {e.label for e in jig.endpoints() if e.ready}


def without(name: str, *, count: int | None = None) -> Callable[[set[str]], bool]:
    """Ready endpoints no longer list ``name`` (and, with ``count``, there are ``count``)."""
    return lambda names: name not in names and (count is None or len(names) == count)


def exactly(count: int) -> Callable[[set[str]], bool]:
    """There are ``count`` ready endpoints."""
    return lambda names: len(names) == count


def wait_ready_backends(jig: ServiceJig, what: str, want: Callable[[set[str]], bool],
                        timeout: float = ENDPOINTS_TIMEOUT) -> set[str]:
    seen: set[str] = set()

    def check() -> tuple[bool, str]:
        names = ready_backend_names(jig)
        seen.clear()
        seen.update(names)
        return want(names), "ready endpoints: " + (", ".join(sorted(names)) or "none")

    wait_until(check, timeout=timeout, what=what)
    return seen


def reset(jig: ServiceJig, replicas: int) -> None:
    """All backends ready, ``replicas`` of them, all in the EndpointSlices."""
    for pod in jig.backend_pods():
        if not pod.terminating:
            jig.set_ready(pod, True)
    if jig.ready_backend_count() != replicas:
        jig.scale(replicas, wait=True)
    wait_ready_backends(jig, f"{replicas} ready endpoints of {jig.namespace}/{jig.name}",
                        lambda names: len(names) == replicas)


def record_delays(record: Callable[..., Any], name: str, kind: str, measurements: list[Measurement],
                  sampling: Sampling) -> None:
    """Record the converged delays of one change kind, by node, with their worst resolution."""
    record(name, convergence.delays(measurements), unit="s", kind=kind,
           by_node=convergence.by_node(measurements, sampling.nodes),
           resolution=convergence.worst_resolution(measurements))


def judge(name: str, kind: str, scenario: str, measurements: list[Measurement], *, ceiling: float,
          record: Callable[..., Any], sampling: Sampling) -> None:
    """Record the samples and fail when any is over the ceiling."""
    record_delays(record, name, kind, measurements, sampling)
    message = convergence.verdict(scenario, measurements, ceiling)
    assert message is None, message


def events_in_windows(events: list[Event]) -> list[Event]:
    """Close each event's window at the next change that undoes it (the next event)."""
    out = []
    for i, ev in enumerate(events):
        nxt = events[i + 1].t if i + 1 < len(events) else None
        out.append(Event(ev.scenario, ev.t, ev.outcome, ev.backend, nxt, ev.label))
    return out


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def metrics_before(kube_proxy_metrics: KubeProxyMetrics) -> dict[str, MetricSamples | Unknown]:
    """kube-proxy's metrics on every node before the family changes anything (none where
    they cannot be read: the metrics test then skips with the reason)."""
    return kube_proxy_metrics.scrape_all()


@pytest.fixture(scope="module")
def conv_jig(metrics_before, module_namespace, kube: Kube, cluster_facts: ClusterFacts) -> ServiceJig:
    """One Service (HTTP 80) with backends and a client on every node for the module."""
    return ServiceJig.install(kube, cluster_facts, module_namespace(), name="conv", backends=BACKENDS)


# --------------------------------------------------------------------------- black-box


def test_a_service_is_served_on_every_node_once_created_and_rejected_once_deleted(
    conv_jig: ServiceJig, kube: Kube, convergence_ceiling: float, record_measurement
):
    jig = conv_jig
    selector = jig.service_object()["spec"]["selector"]
    name = "lifecycle"
    spec: dict[str, Any] = {
        "type": "NodePort",
        "selector": selector,
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }
    _, created = create_service(kube, jig.namespace, spec, name=name)
    node_port = int(created["spec"]["ports"][0]["nodePort"])
    spec["ports"][0]["nodePort"] = node_port
    node_ips = jig.node_ips()
    targets = {n: (node_ips[n], node_port) for n in jig.clients()}

    def answered(want: bool) -> Callable[[], tuple[bool, str]]:
        """Every node answers (or refuses) on two checks in a row: the change's window then
        holds tries of the sampling loop made after the data plane changed, even when a
        loaded node samples only a few times a second."""
        streak = [0]

        def check() -> tuple[bool, str]:
            replies = run_all({n: functools.partial(http_get, jig.client(n), *targets[n]) for n in targets})
            got = {n: getattr(r, "reached", None) if not isinstance(r, Unknown) else None
                   for n, r in replies.items()}
            wrong = {n: r.summary() for n, r in replies.items() if got[n] is not want}
            streak[0] = 0 if wrong else streak[0] + 1
            detail = "; ".join(f"{n}: {s}" for n, s in wrong.items()) or "every node as expected"
            return streak[0] >= GATE_STREAK, detail
        return check

    def recreate() -> float:
        stamp: list[float] = []

        def attempt() -> tuple[bool, str]:
            try:
                t, _ = create_service(kube, jig.namespace, spec, name=name)
            except ApiError as exc:  # the node port is freed asynchronously after a delete
                return False, str(exc)
            stamp.append(t)
            return True, "created"

        wait_until(attempt, timeout=ENDPOINTS_TIMEOUT, what=f"service {jig.namespace}/{name} re-created "
                   f"with nodePort {node_port}")
        return stamp[0]

    wait_until(answered(True), timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
               what=f"NodePort {node_port} of {jig.namespace}/{name} answering on every node")
    events: list[Event] = []
    with Sampling(jig, targets, tag="lifecycle") as sampling:
        for _ in range(CHANGES_PER_SCENARIO):
            t = delete_service(kube, jig.namespace, name)
            events.append(Event("service deleted", t, Outcome.REJECTED, label=f"{name} nodePort {node_port}"))
            wait_until(answered(False), timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
                       what=f"NodePort {node_port} refused on every node after deleting {name}")
            t = recreate()
            events.append(Event("service created", t, Outcome.SERVED, label=f"{name} nodePort {node_port}"))
            wait_until(answered(True), timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
                       what=f"NodePort {node_port} answering on every node after creating {name}")
        sampling.wait_observed(events_in_windows(events))
        timelines = sampling.stop()
    windows = events_in_windows(events)
    created_m = convergence.measure_all(timelines, [e for e in windows if e.outcome is Outcome.SERVED])
    deleted_m = convergence.measure_all(timelines, [e for e in windows if e.outcome is Outcome.REJECTED])
    record_delays(record_measurement, "service_created_to_served", "service created", created_m, sampling)
    record_delays(record_measurement, "service_deleted_to_rejected", "service deleted", deleted_m, sampling)
    problems = [m for m in (convergence.verdict("service created -> first success on every node",
                                                created_m, convergence_ceiling),
                            convergence.verdict("service deleted -> rejected on every node",
                                                deleted_m, convergence_ceiling)) if m]
    assert not problems, "\n".join(problems)


def endpoint_scenario(
    jig: ServiceJig, replicas: int, tag: str, change: Callable[[int], Event], after: str, *,
    name: str, kind: str, scenario: str, ceiling: float, record: Callable[..., Any],
) -> None:
    """Reset to ``replicas`` ready backends, sample the ClusterIP from every node while
    ``change(step)`` (step 1..CHANGES_PER_SCENARIO) makes one change, waits for the
    endpoints to show it and returns its event; then judge the samples (:func:`judge`)."""
    reset(jig, replicas)
    ip = jig.cluster_ip()
    events: list[Event] = []
    with Sampling(jig, dict.fromkeys(jig.clients(), (ip, 80)), tag=tag) as sampling:
        for step in range(1, CHANGES_PER_SCENARIO + 1):
            events.append(change(step))
        wait_backends_match_endpoints(jig, ip, 80, title=f"TCP {ip}:80 after {after}")
        sampling.wait_observed(events)
        timelines = sampling.stop()
    # each event's window stays open: a deleted pod never comes back, an unready one stays
    # unready (the next test resets), new backends stay until the end
    measurements = convergence.measure_all(timelines, events)
    judge(name, kind, scenario, measurements, ceiling=ceiling, record=record, sampling=sampling)


def test_traffic_stops_reaching_a_deleted_pod_on_every_node_within_the_ceiling(
    conv_jig: ServiceJig, kube: Kube, convergence_ceiling: float, record_measurement
):
    jig = conv_jig

    def delete_one(step: int) -> Event:
        victim = sorted(ready_backend_names(jig))[0]
        t = delete_pod(kube, jig.namespace, victim)
        wait_ready_backends(jig, f"{victim} replaced in the endpoints of {jig.namespace}/{jig.name}",
                            without(victim, count=BACKENDS))
        return Event("pod deleted", t, Outcome.GONE, backend=victim)

    endpoint_scenario(jig, BACKENDS, "poddel", delete_one, "deleting pods",
                      name="pod_deleted_to_no_traffic", kind="endpoint removed (pod deleted)",
                      scenario="pod deleted -> no more traffic to it",
                      ceiling=convergence_ceiling, record=record_measurement)


def test_traffic_stops_reaching_a_pod_that_fails_readiness_on_every_node_within_the_ceiling(
    conv_jig: ServiceJig, convergence_ceiling: float, record_measurement
):
    jig = conv_jig

    # 3 of 4 turn unready: one stays ready.  No reset afterwards: a failure's diagnostics
    # show the unready pods; the next test resets.
    def fail_readiness(step: int) -> Event:
        ready = sorted(ready_backend_names(jig))
        victim = next(p for p in jig.backend_pods() if p.name == ready[0])
        t = time.time()
        jig.set_ready(victim, False)
        wait_ready_backends(jig, f"{victim.name} unready in the endpoints of {jig.namespace}/{jig.name}",
                            without(victim.name))
        return Event("readiness failed", t, Outcome.GONE, backend=victim.name)

    endpoint_scenario(jig, UNREADY_BACKENDS, "unready", fail_readiness, "readiness failures",
                      name="readiness_failed_to_no_traffic", kind="readiness lost",
                      scenario="readiness failed -> no more traffic to the pod",
                      ceiling=convergence_ceiling, record=record_measurement)


def test_a_new_backend_receives_traffic_from_every_node_after_scale_up_within_the_ceiling(
    conv_jig: ServiceJig, convergence_ceiling: float, record_measurement
):
    jig = conv_jig

    def scale_up(step: int) -> Event:
        before = {p.name for p in jig.backend_pods()}
        replicas = SCALE_FROM + step
        t = time.time()
        jig.scale(replicas, wait=False)
        names = wait_ready_backends(jig, f"{replicas} ready endpoints of {jig.namespace}/{jig.name}",
                                    exactly(replicas))
        new = sorted(names - before)
        assert len(new) == 1, f"scaling to {replicas} should add one backend; endpoints gained {new}"
        return Event("scale-up", t, Outcome.SERVED, backend=new[0],
                     label=f"{new[0]} (replicas {replicas - 1} -> {replicas}, incl. pod start)")

    endpoint_scenario(jig, SCALE_FROM, "scaleup", scale_up, "scaling up",
                      name="scale_up_to_new_backend_served", kind="endpoint added (scale-up)",
                      scenario="scale-up -> the new backend receives traffic",
                      ceiling=convergence_ceiling, record=record_measurement)


# --------------------------------------------------------------------------- white-box


@pytest.mark.usefixtures("conv_jig")
def test_kube_proxy_on_every_node_reports_network_programming_within_the_ceiling(
    cluster_facts: ClusterFacts, kube_proxy_metrics: KubeProxyMetrics, metrics_before,
    convergence_ceiling: float, record_measurement
):
    """kube-proxy's histograms over the family (cluster-wide: other tests' changes count too)."""
    if (why := kube_proxy_metrics.unavailable) is not None:
        pytest.skip(why)
    after = kube_proxy_metrics.scrape_all()
    family = "IPv6" if cluster_facts.ip_family == "ipv6" else "IPv4"
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    bounds: dict[str, list[float]] = {}
    unscraped = {}
    for node, result in after.items():
        before = metrics_before.get(node)
        if isinstance(result, Unknown) or isinstance(before, Unknown) or before is None:
            failed = result if isinstance(result, Unknown) else before
            unscraped[node] = getattr(failed, "error", "no scrape before the family")
            continue
        rows[node] = {}
        for metric in (NETWORK_PROGRAMMING, SYNC_PROXY_RULES):
            delta = histogram_delta(before, result, metric, ip_family=family)
            rows[node][metric] = summarize(delta)
            if delta is not None:
                bounds[metric] = list(delta.bounds)
    for metric, kind in ((NETWORK_PROGRAMMING, "kube-proxy: change to rules programmed"),
                         (SYNC_PROXY_RULES, "kube-proxy: one rules sync")):
        nodes = {node: r[metric] for node, r in rows.items()}
        means = {node: [s["mean"]] for node, s in nodes.items() if s["mean"] is not None}
        record_measurement(
            metric, [m for ms in means.values() for m in ms], unit="s", kind=kind, by_node=means,
            histogram={"metric": metric, "bounds": bounds.get(metric, []), "by_node": {
                node: {k: s[k] for k in ("count", "sum", "mean", "p50", "p99")}
                for node, s in nodes.items()}})
    table = "\n".join(
        f"  {node}: " + "; ".join(
            f"{metric.removeprefix('kubeproxy_')}: count {s['count']:g}, mean "
            + (f"{s['mean']:.3f}s" if s["mean"] is not None else "-")
            + (f", p50 in ({s['p50'][0]:g}, {s['p50'][1]:g}]s"
               if s["p50"] and s["p50"][1] is not None else "")
            for metric, s in r.items())
        for node, r in rows.items()
    )
    endpoint = kube_proxy_metrics.endpoint
    assert not unscraped, (
        f"kube-proxy metrics ({cluster_facts.proxy_mode}, {endpoint.address}: {endpoint.evidence}) could not "
        f"be scraped on {sorted(unscraped)} through {kube_proxy_metrics.via}: {unscraped}; reproduce: "
        + kube_proxy_metrics.reproduce(sorted(unscraped)[0])
    )
    idle = [n for n, r in rows.items() if not r[NETWORK_PROGRAMMING]["count"]]
    assert not idle, (
        f"kube-proxy on {idle} recorded no {NETWORK_PROGRAMMING} while this family changed "
        f"Services and endpoints (it did not program them):\n{table}"
    )
    slow = [n for n, r in rows.items() if (r[NETWORK_PROGRAMMING]["mean"] or 0.0) > convergence_ceiling]
    assert not slow, (
        f"mean kube-proxy network programming latency on {slow} is over the convergence ceiling "
        f"{convergence_ceiling:g}s (--convergence-ceiling):\n{table}"
    )

