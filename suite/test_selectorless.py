"""selectorless: Services whose endpoints are written by hand, and EndpointSlices that follow pods.

A Service without a selector gets no endpoints from any controller: traffic goes exactly
where a manual EndpointSlice (or a legacy Endpoints object, mirrored into a slice) says,
and the controllers leave those objects alone.  For a Service *with* a selector the
EndpointSlice controller keeps the slices equal to the selected pods: created, deleted,
unready (``ready: false``), or listed as ready regardless with ``publishNotReadyAddresses``.
"""

from __future__ import annotations

from typing import Any

import pytest

from fixtures import charts, reachability
from fixtures.backendchecks import backends_check
from fixtures.expectations.model import Endpoint, endpoints_from_slices
from fixtures.expectations.slices import (
    MANAGED_BY_LABEL,
    MIRRORING_CONTROLLER,
    describe_endpoints,
    endpoint_problems,
    expected_pod_endpoints,
)
from fixtures.jig import BACKEND_LABEL, ServiceJig, tweaks
from fixtures.kube import Kube, PodInfo
from fixtures.poll import hold_for, wait_until
from fixtures.probes import Vantage, pod_vantage
from fixtures.providers.base import ClusterFacts
from fixtures.timeouts import CONTROLLER_HANDS_OFF_WINDOW, ENDPOINTS_TIMEOUT, KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.selectorless

HTTP_PORT = 80


@pytest.fixture(scope="module")
def namespace(module_namespace) -> str:
    """One namespace for the module; every test installs its own release (and so its own
    Service, backends and clients) in it.  Saves a namespace deletion per test."""
    return module_namespace()


# --------------------------------------------------------------------------- selector-less


class Selectorless:
    """One service-no-selectors release: the Service, its backend pods, a client per node."""

    def __init__(self, kube: Kube, facts: ClusterFacts, namespace: str, release: str, *, targets: list[int],
                 legacy_endpoints: bool = False, clients: bool = True) -> None:
        self.kube = kube
        self.legacy = legacy_endpoints
        nodes = [n.name for n in facts.nodes]
        prefix = f"{release}-client"
        values: dict[str, Any] = {
            "backends": {"count": 2, "nodes": [n.name for n in facts.workers] or nodes},
            "clients": {"nodes": nodes if clients else [], "namePrefix": prefix},
            # immutable once created: the pods' family (the primary one on dual-stack clusters)
            "endpointSlice": {"addressType": "IPv6" if facts.ip_family == "ipv6" else "IPv4"},
        }
        self.release = charts.install_selectorless(kube, release, namespace, values, targets=targets,
                                                   legacy_endpoints=legacy_endpoints)
        self.namespace = namespace
        self.clients: dict[str, Vantage] = {
            n: pod_vantage(kube, namespace, charts.client_pod_name(n, prefix), node=n)
            for n in values["clients"]["nodes"]
        }

    @property
    def service(self) -> str:
        return self.release.name  # the chart's Service is named after the release

    @property
    def slice_name(self) -> str:
        return f"{self.service}-manual"

    def backend_pods(self) -> list[dict[str, Any]]:
        return charts.backend_pods(self.kube, self.release)

    def names(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.backend_pods()]

    def point(self, targets: list[int]) -> None:
        pods = self.backend_pods()
        self.release = charts.point_selectorless(self.kube, self.release, [pods[i] for i in targets],
                                                 legacy_endpoints=self.legacy)

    def cluster_ip(self) -> str:
        return str(self.kube.get_service(self.namespace, self.service)["spec"]["clusterIP"])

    def slices(self) -> list[dict[str, Any]]:
        return self.kube.endpoint_slices(self.namespace, self.service)

    def written(self, targets: list[int]) -> dict[str, Endpoint]:
        """The endpoints the test wrote: the target pods' IPs on their nodes, ready."""
        pods = self.backend_pods()
        return {
            pods[i]["status"]["podIP"]: Endpoint(pods[i]["status"]["podIP"], pods[i]["spec"]["nodeName"],
                                                 name=pods[i]["metadata"]["name"])
            for i in targets
        }

    def assert_traffic_reaches(self, targets: list[int], *, what: str) -> float:
        """Every client reaches exactly the backends ``targets`` through the ClusterIP."""
        written = self.written(targets)
        names = self.names()
        want = sorted(e.name or e.ip for e in written.values())
        ip = self.cluster_ip()
        title = (
            f"{what}: TCP {ip}:{HTTP_PORT} (service {self.namespace}/{self.service}) must reach exactly "
            f"{', '.join(f'{e.name} ({e.ip})' for e in written.values())}"
        )
        # One in-pod loop per client per look (fixtures.backendchecks.LOOP_DURATION_S): a proxy
        # still (or wrongly) sending to the other backend of two is seen within a few tries.
        check = backends_check(title, self.clients, ip, HTTP_PORT, expected=dict.fromkeys(self.clients, want),
                               columns=names)

        def with_slices() -> tuple[bool, str]:
            ok, text = check()
            if not ok:
                listed = describe_endpoints(endpoints_from_slices(self.slices()))
                # first: the tables' reproduce commands are long, and a failure message is capped
                text = f"EndpointSlices of {self.service} now list: {listed}\n{text}"
            return ok, text

        return reachability.wait_for_tables(with_slices, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_traffic_to_a_selectorless_service_reaches_exactly_the_manual_endpointslice_addresses(
    namespace, kube, cluster_facts
):
    sl = Selectorless(kube, cluster_facts, namespace, "reach", targets=[0])
    sl.assert_traffic_reaches([0], what=f"manual EndpointSlice {sl.slice_name}")


def test_editing_the_manual_endpointslice_reroutes_traffic_within_the_endpoint_lag(
    namespace, kube, cluster_facts, record_measurement
):
    sl = Selectorless(kube, cluster_facts, namespace, "reroute", targets=[0])
    sl.assert_traffic_reaches([0], what=f"manual EndpointSlice {sl.slice_name} before the edit")
    sl.point([1])
    elapsed = sl.assert_traffic_reaches([1], what=f"manual EndpointSlice {sl.slice_name} re-pointed")
    # An upper bound: from the end of the helm upgrade to the end of the first conforming look.
    record_measurement("reroute_after_slice_edit", [elapsed])


def test_the_controllers_leave_a_manual_endpointslice_as_written(namespace, kube, cluster_facts):
    sl = Selectorless(kube, cluster_facts, namespace, "handsoff", targets=[0, 1], clients=False)
    written = sl.written([0, 1])
    first = kube.list_objects("endpointslices", sl.namespace, field_selector=f"metadata.name={sl.slice_name}")
    assert first, f"manual EndpointSlice {sl.namespace}/{sl.slice_name} does not exist after install"
    version = first[0]["metadata"]["resourceVersion"]
    # A Service update makes both endpoint controllers sync this Service now (their informers'
    # periodic resync is 12-24h away, too far to wait for).
    sl.release = charts.upgrade(kube, sl.release, {"service": {"annotations": {"svcconform/poke": "1"}}})

    def unchanged() -> tuple[bool, str]:
        slices = sl.slices()
        names = sorted(s["metadata"]["name"] for s in slices)
        if names != [sl.slice_name]:
            return False, (f"service {sl.namespace}/{sl.service} has EndpointSlices {names}, expected only "
                           f"the manual {sl.slice_name}")
        mine = slices[0]
        listed = endpoints_from_slices([mine])
        state = f"written: {describe_endpoints(written.values())}; now lists: {describe_endpoints(listed)}"
        problems = endpoint_problems(written, listed)
        if problems:
            return False, f"manual EndpointSlice {sl.slice_name} was changed: {'; '.join(problems)} ({state})"
        now = mine["metadata"]["resourceVersion"]
        if now != version:
            return False, (f"manual EndpointSlice {sl.slice_name} was rewritten (resourceVersion {version} → "
                           f"{now}; managed-by={mine['metadata'].get('labels', {}).get(MANAGED_BY_LABEL)}; "
                           f"{state})")
        if kube.get_object("endpoints", sl.namespace, sl.service) is not None:
            return False, f"the endpoints controller created Endpoints {sl.namespace}/{sl.service}"
        return True, f"{sl.slice_name} as written: {describe_endpoints(written.values())}"

    hold_for(unchanged, window=CONTROLLER_HANDS_OFF_WINDOW,
             what=f"the manual EndpointSlice {sl.namespace}/{sl.slice_name} stays as written")


def test_legacy_endpoints_are_mirrored_into_an_endpointslice_that_carries_traffic(
    namespace, kube, cluster_facts
):
    sl = Selectorless(kube, cluster_facts, namespace, "legacy", targets=[0], legacy_endpoints=True)
    written = sl.written([0])

    def mirrored() -> tuple[bool, str]:
        slices = sl.slices()
        mine = [s for s in slices
                if s["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) == MIRRORING_CONTROLLER]
        others = [s["metadata"]["name"] for s in slices if s not in mine]
        if not mine:
            return False, f"no EndpointSlice managed by {MIRRORING_CONTROLLER}; slices: {others or 'none'}"
        problems = endpoint_problems(written, endpoints_from_slices(mine))
        if others:
            problems.append(f"unexpected other EndpointSlices {others}")
        return not problems, "; ".join(problems) or describe_endpoints(endpoints_from_slices(mine))

    wait_until(mirrored, timeout=ENDPOINTS_TIMEOUT,
               what=f"Endpoints {sl.namespace}/{sl.service} mirrored into an EndpointSlice")
    sl.assert_traffic_reaches([0], what=f"legacy Endpoints {sl.service} (mirrored)")


# --------------------------------------------------------------------------- selector Services


def assert_slices_follow_pods(jig: ServiceJig, *, publish_not_ready: bool = False, what: str,
                              service: str | None = None) -> None:
    """The Service's EndpointSlices equal the controller's view of the live backend pods."""

    def check() -> tuple[bool, str]:
        pods = jig.backend_pods()
        expected = expected_pod_endpoints(pods, publish_not_ready=publish_not_ready)
        observed = jig.endpoints(service)
        problems = endpoint_problems(expected, observed)
        detail = (f"pods: {', '.join(p.describe() for p in pods)}; EndpointSlices list: "
                  f"{describe_endpoints(observed)}")
        return not problems, ("; ".join(problems) + " — " if problems else "") + detail

    wait_until(check, timeout=ENDPOINTS_TIMEOUT, what=what)


def wait_pod_ready(jig: ServiceJig, pod: PodInfo, ready: bool) -> None:
    def check() -> tuple[bool, str]:
        now = next((p for p in jig.backend_pods() if p.name == pod.name), None)
        if now is None:
            return False, f"pod {pod.name} is gone"
        return now.ready is ready, now.describe() + f" ready={now.ready}"

    wait_until(check, timeout=ENDPOINTS_TIMEOUT, what=f"pod {jig.namespace}/{pod.name} ready={ready}")


def test_endpointslices_follow_backends_being_created_and_deleted(jig, namespace):
    j = jig(namespace=namespace, name="follow", backends=1, clients=False)
    assert_slices_follow_pods(j, what=f"EndpointSlices of {j.namespace}/{j.name} with 1 backend")
    j.scale(3)
    assert_slices_follow_pods(j, what=f"EndpointSlices of {j.namespace}/{j.name} after scaling to 3")
    victim = j.backend_pods()[0]
    j.kube.delete_pod(j.namespace, victim.name)

    def gone() -> tuple[bool, str]:
        listed = {e.ip for e in j.endpoints()}
        return victim.ip not in listed, f"{victim.name} ({victim.ip}) still listed: {victim.ip in listed}"

    slices = f"the EndpointSlices of {j.namespace}/{j.name}"
    wait_until(gone, timeout=ENDPOINTS_TIMEOUT, what=f"deleted {victim.name} ({victim.ip}) to leave {slices}")
    j.kube.wait_pods_ready(j.namespace, f"{j.release.selector},{BACKEND_LABEL}", count=3)
    assert_slices_follow_pods(j, what=f"{slices} after deleting {victim.name}")


def test_an_unready_backend_stays_in_the_endpointslice_with_ready_false(jig, namespace):
    j = jig(namespace=namespace, name="unready", backends=2, clients=False)
    pod = j.backend_pods()[0]
    j.set_ready(pod, False)
    wait_pod_ready(j, pod, False)
    assert_slices_follow_pods(j, what=f"EndpointSlices of {j.namespace}/{j.name} with {pod.name} unready")
    listed = describe_endpoints(j.endpoints())
    unready = [e for e in j.endpoints() if e.ip == pod.ip]
    why = f"{pod.name} ({pod.ip}) left the EndpointSlices when unready (must stay, ready=false): {listed}"
    assert unready, why
    j.set_ready(pod, True)
    wait_pod_ready(j, pod, True)
    assert_slices_follow_pods(j, what=f"EndpointSlices of {j.namespace}/{j.name} with {pod.name} ready again")


def test_publish_not_ready_addresses_lists_unready_backends_as_ready(jig, namespace):
    j = jig(namespace=namespace, name="pnr", backends=2, clients=False,
            tweak=tweaks(("service.publishNotReadyAddresses", True)))
    pod = j.backend_pods()[0]
    j.set_ready(pod, False)
    wait_pod_ready(j, pod, False)
    # serving=false (the pod is unready) and ready=true (publishNotReadyAddresses)
    assert_slices_follow_pods(j, publish_not_ready=True,
                              what=f"EndpointSlices of {j.namespace}/{j.name} (publishNotReadyAddresses) "
                                   f"with {pod.name} unready")
