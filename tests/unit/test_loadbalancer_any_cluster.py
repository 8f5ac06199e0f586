"""The LoadBalancer family on any cluster, offline: its options, what each ingress path
promises to each vantage (``fixtures/expectations/loadbalancer.py``), provisioning once with
its skip reason and detection, and the judging tables (``fixtures/loadbalancer.py``)."""

from __future__ import annotations

import socket
import time
import types
from pathlib import Path
from typing import Any

import pytest

from fixtures import loadbalancer as lbx
from fixtures import options
from fixtures.expectations import loadbalancer as lbe
from fixtures.expectations.model import TrafficPolicy
from fixtures.spec import InvalidSpec
from fixtures.timeouts import CLUSTER_LOAD_BALANCER_TIMEOUT, LOAD_BALANCER_TIMEOUT

POD, NODE, OUTSIDE = lbe.VantageKind.POD, lbe.VantageKind.NODE, lbe.VantageKind.OUTSIDE
LOCAL, CLUSTER = TrafficPolicy.LOCAL, TrafficPolicy.CLUSTER


def ns(**kw: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**kw)


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("value", ["internal-vip", "example.com/internal-vip", "io.cilium/l2-announcer",
                                   "a", "A_b.c-9"])
def test_a_qualified_load_balancer_class_is_taken_as_given(value: str) -> None:
    got = options.load_balancer_from_options(ns(svcc_load_balancer_class=value, svcc_load_balancer_timeout=None))
    assert got == options.LoadBalancerOptions(load_balancer_class=value, timeout=None)


@pytest.mark.parametrize("value", ["", "/x", "example.com/", "Example.com/x", "a b", "-x", "x" * 64,
                                   "example..com/x"])
def test_a_bad_load_balancer_class_is_an_invalid_spec_naming_the_option(value: str) -> None:
    with pytest.raises(InvalidSpec, match=r"^--load-balancer-class: "):
        options.load_balancer_from_options(ns(svcc_load_balancer_class=value))


@pytest.mark.parametrize(("value", "seconds"), [("90", 90.0), ("2.5", 2.5), ("300s", 300.0), (" 60 ", 60.0)])
def test_the_load_balancer_timeout_is_seconds(value: str, seconds: float) -> None:
    assert options.load_balancer_from_options(ns(svcc_load_balancer_timeout=value)).timeout == seconds


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan", "soon", ""])
def test_a_bad_load_balancer_timeout_is_an_invalid_spec_naming_the_option(value: str) -> None:
    with pytest.raises(InvalidSpec, match=r"^--load-balancer-timeout: "):
        options.load_balancer_from_options(ns(svcc_load_balancer_timeout=value))


def test_no_options_mean_no_class_and_the_providers_default_timeout() -> None:
    assert options.load_balancer_from_options(ns()) == options.LoadBalancerOptions()
    assert lbx.provisioning_timeout("kind", None) is LOAD_BALANCER_TIMEOUT
    assert lbx.provisioning_timeout("existing", None) is CLUSTER_LOAD_BALANCER_TIMEOUT
    given = lbx.provisioning_timeout("existing", 42.0)
    assert float(given) == 42.0
    assert given.name == "--load-balancer-timeout"
    assert CLUSTER_LOAD_BALANCER_TIMEOUT > LOAD_BALANCER_TIMEOUT


# ----------------------------------------------------------------------------- ingresses


def service(*ingress: dict[str, Any], finalizers: list[str] | None = None) -> dict[str, Any]:
    return {"metadata": {"finalizers": finalizers or []}, "status": {"loadBalancer": {"ingress": list(ingress)}}}


def test_ingresses_carry_ip_mode_ports_and_hostnames() -> None:
    svc = service({"ip": "172.18.0.9", "ipMode": "Proxy", "ports": [{"port": 80, "protocol": "TCP"}]},
                  {"hostname": "abc.elb.example.com"}, {"ip": "fd00::9"}, {})
    got = lbe.ingresses(svc)
    assert got == [lbe.Ingress("172.18.0.9", "Proxy", ((80, "TCP"),)),
                   lbe.Ingress("", None, (), "abc.elb.example.com"), lbe.Ingress("fd00::9", None, ())]
    assert [i.address for i in got] == ["172.18.0.9", "abc.elb.example.com", "fd00::9"]
    assert lbe.ingress_for_family(svc, "IPv4") == got[0]
    assert lbe.ingress_for_family(svc, "IPv6") == got[2]
    assert lbe.ingress_for_family(service({"hostname": "h.example"}), "IPv4") == lbe.Ingress("", None, (), "h.example")
    assert lbe.ingress_for_family(service(), "IPv4") is None
    assert lbe.ingress_for_family(None, "IPv4") is None


def test_an_ingress_describes_an_absent_ip_mode_as_vip() -> None:
    assert lbe.Ingress("10.0.0.5", None, ()).describe() == "10.0.0.5, ipMode absent (= VIP)"
    assert lbe.Ingress("10.0.0.5", "Proxy", ()).describe() == "10.0.0.5, ipMode Proxy"
    assert lbe.Ingress("", None, (), "h.example").describe() == "hostname h.example"


# ----------------------------------------------------------------------------- paths


@pytest.mark.parametrize(("ingress", "short"), [
    (lbe.Ingress("10.0.0.5", None, ()), True),  # absent ipMode = VIP
    (lbe.Ingress("10.0.0.5", "VIP", ()), True),
    (lbe.Ingress("10.0.0.5", "Proxy", ()), False),
    (lbe.Ingress("", None, (), "h.example"), False),  # kube-proxy programs no names
])
def test_vip_is_short_circuited_and_proxy_or_a_hostname_goes_through_the_load_balancer(
        ingress: lbe.Ingress, short: bool) -> None:
    assert lbe.path_of(ingress).short_circuit is short


def test_a_known_implementation_is_judged_by_what_it_does_and_says_when_its_status_disagrees() -> None:
    lying = lbe.path_of(lbe.Ingress("172.18.0.9", "VIP", ()), implementation_ip_mode="Proxy",
                        implementation="cloud-provider-kind")
    assert not lying.short_circuit
    assert lying.basis == "cloud-provider-kind is ipMode Proxy; its status says ipMode VIP"
    honest = lbe.path_of(lbe.Ingress("172.18.0.9", "Proxy", ()), implementation_ip_mode="Proxy",
                         implementation="cloud-provider-kind")
    assert honest.basis == "cloud-provider-kind is ipMode Proxy"
    assert "through the load balancer" in honest.describe()


# ----------------------------------------------------------------------------- promises

VIP_PATH = lbe.path_of(lbe.Ingress("10.0.0.5", None, ()))
PROXY_PATH = lbe.path_of(lbe.Ingress("10.0.0.5", "Proxy", ()))
READY = {"b1", "b2"}


@pytest.mark.parametrize(("kind", "path", "policy", "lb_source", "source"), [
    # Cluster: kube-proxy (or the load balancer's nodes) SNAT: the source is never promised.
    (POD, VIP_PATH, CLUSTER, None, None),
    (NODE, VIP_PATH, CLUSTER, None, None),
    (OUTSIDE, VIP_PATH, CLUSTER, None, None),
    (POD, PROXY_PATH, CLUSTER, "10.0.0.5", None),
    # Local, short-circuited: pods keep their address, nodes are masqueraded, outside kept.
    (POD, VIP_PATH, LOCAL, None, "own"),
    (NODE, VIP_PATH, LOCAL, None, None),
    (OUTSIDE, VIP_PATH, LOCAL, None, "own"),
    # Local through the load balancer: the load balancer's address when known, else nothing.
    (POD, PROXY_PATH, LOCAL, "10.0.0.5", "10.0.0.5"),
    (NODE, PROXY_PATH, LOCAL, "10.0.0.5", "10.0.0.5"),
    (OUTSIDE, PROXY_PATH, LOCAL, "10.0.0.5", "10.0.0.5"),
    (POD, PROXY_PATH, LOCAL, None, None),
    (OUTSIDE, PROXY_PATH, LOCAL, None, None),
])
def test_what_each_vantage_must_see_follows_the_path_and_the_policy(kind, path, policy, lb_source,
                                                                   source) -> None:
    got = lbe.promise(kind, path, policy, ready=READY, own_address="own", lb_source=lb_source)
    assert got.backends == frozenset(READY)  # every path reaches every ready endpoint it may use
    assert got.source == source
    assert got.why


def test_an_unknown_own_address_promises_no_source() -> None:
    assert lbe.promise(POD, VIP_PATH, LOCAL, ready=READY, own_address="").source is None


# ----------------------------------------------------------------------------- judging


def tries(*spec: tuple[str | None, str | None]) -> list[lbe.Try]:
    return [lbe.Try(b, ip) if b else lbe.Try(None, None, ip or "refused") for b, ip in spec]


def test_problems_name_failures_strangers_missing_backends_and_the_wrong_source() -> None:
    want = lbe.promise(POD, VIP_PATH, LOCAL, ready=READY, own_address="10.244.1.5")
    assert lbe.problems(want, tries(("b1", "10.244.1.5"), ("b2", "10.244.1.5"))) == []
    assert lbe.problems(want, []) == ["no tries ran"]
    failed = lbe.problems(want, tries(("b1", "10.244.1.5"), (None, "timeout"), (None, "refused")))
    assert failed == ["2 of 3 attempts failed (refused, timeout)"]  # missing b2 is not claimed then
    assert lbe.problems(want, tries(("b1", "10.244.1.5"), ("b1", "10.244.1.5"))) == [
        "ready endpoints never answered: ['b2']"]
    assert lbe.problems(want, tries(("b1", "10.244.1.5"), ("b2", "10.244.1.5"), ("old", "10.244.1.5"))) == [
        "answered by ['old'], not a ready endpoint"]
    wrong = lbe.problems(want, tries(("b1", "172.18.0.3"), ("b2", "10.244.1.5")))
    assert len(wrong) == 1
    assert wrong[0].startswith("the backend must see source 10.244.1.5 (")
    assert wrong[0].endswith("it saw ['172.18.0.3']")


def test_outside_the_source_ranges_nobody_may_be_served() -> None:
    assert lbe.nobody_served(tries((None, "timeout"), (None, "refused"))) == []
    assert lbe.nobody_served(tries(("b1", "x"), (None, "timeout"))) == [
        "1 of 2 attempts were served from outside the source ranges"]


# ----------------------------------------------------------------------------- provisioning


def event(component: str, reason: str) -> dict[str, Any]:
    return {"source": {"component": component}, "reason": reason}


def test_the_cloud_provider_service_controller_is_known_by_its_events() -> None:
    ccm = lbe.event_evidence([event("service-controller", "EnsuringLoadBalancer"),
                              event("service-controller", "EnsuredLoadBalancer")])
    assert ccm.cloud_provider_controller
    assert ccm.describe() == "events from service-controller (EnsuringLoadBalancer, EnsuredLoadBalancer)"
    metallb = lbe.event_evidence([event("metallb-controller", "IPAllocated"),
                                  {"reportingComponent": "metallb-speaker", "reason": "nodeAssigned"}])
    assert not metallb.cloud_provider_controller
    assert metallb.components == ("metallb-controller", "metallb-speaker")
    assert lbe.event_evidence([]).describe() == "no events"
    assert not lbe.event_evidence([event("service-controller", "Type")]).cloud_provider_controller


PORTS = {(80, "TCP"), (81, "UDP")}


def test_the_suite_cloud_provider_kind_must_proxy_list_ports_hold_the_finalizer_and_run_one_container() -> None:
    ing = lbe.Ingress("172.18.0.9", "Proxy", ((80, "TCP"), (81, "UDP")))
    ok, judged = lbe.provisioning_problems(ing, PORTS, [lbe.CLEANUP_FINALIZER], suite_ccm=True,
                                           cloud_provider_controller=True, proxy_containers=["c1"])
    assert ok == []
    assert "one proxy container" in judged
    bad, _ = lbe.provisioning_problems(lbe.Ingress("172.18.0.9", "VIP", ()), PORTS, [], suite_ccm=True,
                                       cloud_provider_controller=True, proxy_containers=[])
    assert [p.split(" (")[0].split(":")[0] for p in bad] == [
        "no ingress ports", "ipMode 'VIP'", "no finalizer service.kubernetes.io/load-balancer-cleanup",
        "0 proxy containers labelled for it"]


def test_another_implementation_is_judged_only_on_what_is_generic() -> None:
    vip = lbe.Ingress("10.0.0.5", None, ())
    found, judged = lbe.provisioning_problems(vip, PORTS, [], suite_ccm=False, cloud_provider_controller=False)
    assert found == []
    assert "ingress ports not listed (optional)" in judged
    assert "finalizer not judged (no cloud-provider service controller in the events)" in judged
    wrong_ports = lbe.Ingress("10.0.0.5", "VIP", ((80, "TCP"),))
    found, _ = lbe.provisioning_problems(wrong_ports, PORTS, [], suite_ccm=False, cloud_provider_controller=True)
    assert found[0].startswith("ingress ports [(80, 'TCP')]")
    assert found[1].startswith("no finalizer")  # the cloud-provider controller adds it: required there


class FakeKube:
    """Services and events as a cluster shows them; ``assign_after`` gets before the ingress."""

    def __init__(self, ingress: dict[str, Any] | None, *, assign_after: int = 0,
                 events: list[dict[str, Any]] | None = None) -> None:
        self.ingress, self.assign_after, self.events, self.gets = ingress, assign_after, events or [], 0
        self.event_selectors: list[str] = []

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        if self.ingress is None or self.gets <= self.assign_after:
            return {"status": {"loadBalancer": {}}}
        return service(self.ingress)

    def list_objects(self, kind: str, namespace: str, *, field_selector: str = "") -> list[dict[str, Any]]:
        assert kind == "events"
        self.event_selectors.append(field_selector)
        return self.events


def cluster_impl(timeout: float = 0.3, lb_class: str | None = None) -> lbx.Implementation:
    return lbx.Implementation(None, None, lb_class, lbx.provisioning_timeout("existing", timeout))


def test_nothing_assigning_an_ingress_gives_the_one_skip_reason_after_one_wait() -> None:
    kube = FakeKube(None)
    got = lbx.provision(kube, "svcc-lb-1", "lb", cluster_impl(0.3, "example.com/internal"), family="IPv4")
    assert got.ingress is None
    reason = got.skip_reason()
    assert reason.startswith("no LoadBalancer implementation assigned an ingress within 0.3 s (tried once: "
                             "Service svcc-lb-1/lb, type LoadBalancer, loadBalancerClass example.com/internal, "
                             "implementation the cluster's own; its status.loadBalancer stayed {}; no events)")
    assert got.detection() == {"value": "none", "evidence": reason}
    assert kube.event_selectors == ["involvedObject.kind=Service,involvedObject.name=lb"]


def test_an_ingress_from_the_clusters_own_implementation_is_recorded_with_its_evidence() -> None:
    kube = FakeKube({"ip": "10.0.0.5", "ipMode": "VIP"}, assign_after=1,
                    events=[event("service-controller", "EnsuringLoadBalancer")])
    got = lbx.provision(kube, "svcc-lb-1", "lb", cluster_impl(30), family="IPv4")
    assert got.ingress == lbe.Ingress("10.0.0.5", "VIP", ())
    found = got.detection()
    assert found["value"].startswith("the cluster's own: ingress 10.0.0.5 assigned within ")
    assert found["value"].endswith(" s, ipMode VIP, class <none>")
    assert found["evidence"].startswith("Service svcc-lb-1/lb: ingress 10.0.0.5 assigned within ")
    assert found["evidence"].endswith("; events from service-controller (EnsuringLoadBalancer)")


def test_the_suite_cloud_provider_kind_is_recorded_as_such() -> None:
    ccm = lbx.CloudProviderKind(Path("/nonexistent/cpk.log"), None, binary=Path("/nonexistent/cpk"))
    impl = lbx.Implementation(ccm, "svcc-iptables-kindnet", None, LOAD_BALANCER_TIMEOUT)
    got = lbx.provision(FakeKube({"ip": "172.18.0.9", "ipMode": "Proxy"}), "ns", "lb", impl, family="IPv4")
    assert got.detection()["value"] == "cloud-provider-kind (the suite's, on this machine)"
    assert got.detection()["evidence"].endswith("; log /nonexistent/cpk.log")
    assert impl.known_ip_mode == "Proxy"
    assert impl.lb_source(got.ingress) == "172.18.0.9"  # type: ignore[arg-type]
    assert cluster_impl().known_ip_mode is None
    assert cluster_impl().lb_source(got.ingress) is None  # type: ignore[arg-type]


def test_the_load_balancer_class_goes_into_the_chart_values_only_when_given() -> None:
    values: dict[str, Any] = {"service": {}}
    cluster_impl().service_tweak(values)
    assert values == {"service": {}}
    cluster_impl(lb_class="example.com/x").service_tweak(values)
    assert values == {"service": {"loadBalancerClass": "example.com/x"}}


# ----------------------------------------------------------------------------- this machine


def test_this_machine_reaches_an_ingress_that_accepts_or_refuses() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert lbx.host_reaches("127.0.0.1", port).reachable
    refused = lbx.host_reaches("127.0.0.1", port)  # closed now: refused is an answer too
    assert refused.reachable
    assert "refused" in refused.reason


def test_this_machine_not_reaching_the_ingress_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_a: Any, **_k: Any) -> None:
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(lbx.socket, "create_connection", unreachable)
    got = lbx.host_reaches("172.18.0.9", 80)
    assert not got.reachable
    assert got.not_tried() == ("this machine: not tried (this machine does not reach the ingress "
                               "172.18.0.9:80: Network is unreachable)")


# ----------------------------------------------------------------------------- the table


def test_the_look_table_shows_each_vantage_and_what_to_rerun_when_wrong() -> None:
    rows = [lbx.LbVantage("client pod on n1", POD, "10.244.1.5"), lbx.LbVantage("node n1 (hostNetwork)", NODE, "")]
    seen = {"client pod on n1": lbx.Observed(tuple(tries(("b1", "10.244.1.5"))), "kubectl exec p -- curl"),
            "node n1 (hostNetwork)": lbx.Observed(tuple(tries(("b1", "172.18.0.2"), (None, "timeout"))),
                                                  "kubectl exec h -- curl")}

    def want(v: lbx.LbVantage, ready: frozenset[str]) -> lbe.Promise:
        return lbe.promise(v.kind, VIP_PATH, LOCAL, ready=ready, own_address=v.own_address)

    check = lbx.look_check("TCP 10.0.0.5:80", rows, lambda v: seen[v.row], want, ready=lambda: {"b1": "n1"},
                           not_tried=["this machine: not tried (no route)"])
    ok, text = check()
    assert not ok
    lines = text.splitlines()
    assert lines[:3] == ["TCP 10.0.0.5:80", "  ready endpoints (pod -> node): {'b1': 'n1'}",
                         "  client pod on n1 (10.244.1.5): ok"]
    assert "  node n1 (hostNetwork) (address unknown): WRONG" in lines
    assert "    try  1: backend b1, source seen 172.18.0.2" in lines
    assert "    try  2: FAILED (timeout)" in lines
    assert "    problem: 1 of 2 attempts failed (timeout)" in lines
    assert "    reproduce: kubectl exec h -- curl" in lines
    assert lines[-1] == "  this machine: not tried (no route)"


def test_a_vantage_whose_probe_raised_is_unknown_not_passed() -> None:
    def boom(_v: lbx.LbVantage) -> lbx.Observed:
        raise RuntimeError("pod gone")

    check = lbx.look_check("t", [lbx.LbVantage("client pod on n1", POD, "")], boom,
                           lambda v, r: lbe.promise(v.kind, VIP_PATH, CLUSTER, ready=r), ready=dict)
    ok, text = check()
    assert not ok
    assert "client pod on n1: ? probe error RuntimeError: pod gone" in text
    ok, text = lbx.look_check("t", [], boom, lambda v, r: lbe.promise(v.kind, VIP_PATH, CLUSTER, ready=r),
                              ready=dict)()
    assert not ok
    assert text.endswith("no vantage to probe from")


def test_the_seconds_recorded_count_from_the_services_creation() -> None:
    kube = FakeKube({"ip": "10.0.0.5"})
    got = lbx.provision(kube, "ns", "lb", cluster_impl(30), family="IPv4", created=time.monotonic() - 12.0)
    assert 12.0 <= got.seconds < 20.0
    assert "assigned within 12." in got.detection()["value"] or "assigned within 13." in got.detection()["value"]


def test_identical_tries_in_a_row_are_one_row() -> None:
    got = lbx.try_rows(tries(("b1", "x"), (None, "timeout"), (None, "timeout"), (None, "timeout"), ("b1", "x")))
    assert got == ["try  1: backend b1, source seen x", "try  2-4: FAILED (timeout)", "try  5: backend b1, source seen x"]
    assert lbx.try_rows([]) == []
    assert lbx.try_rows(tries(*[(None, "refused")] * 16)) == ["try  1-16: FAILED (refused)"]
