"""Terminating-endpoint and split-slice expectations: the "only terminating, still serving"
precondition, NodePort answers from pods, slices grouped by port set, and the AnsweredBy cell."""

from __future__ import annotations

from dataclasses import dataclass

from fixtures.expectations.model import Endpoint, TrafficPolicy, endpoint_for_pod
from fixtures.expectations.slices import (
    SliceView,
    describe_ports,
    describe_slices,
    only_terminating_problems,
    port_set,
    port_split_problems,
    slice_views,
)
from fixtures.expectations.traffic import nodeport_from_pod_answers
from fixtures.observations import ErrorKind, HttpReply, Unknown
from fixtures.reachability import Mark, mark_of
from fixtures.terminating import AnsweredBy


@dataclass(frozen=True)
class Pod:
    name: str
    node: str
    ip: str
    ready: bool = True
    terminating: bool = False


def terminating(ip: str, node: str, name: str) -> Endpoint:
    return endpoint_for_pod(ip, node, pod_ready=True, terminating=True, name=name)


# --------------------------------------------------------------------------- only terminating


def test_a_terminating_ready_pod_listed_serving_and_not_ready_is_the_fallback_state() -> None:
    pods = [Pod("b0", "w1", "10.0.0.1", terminating=True)]
    assert only_terminating_problems(pods, [terminating("10.0.0.1", "w1", "b0")]) == []


def test_the_precondition_names_what_is_not_in_the_fallback_state() -> None:
    not_yet = only_terminating_problems([Pod("b0", "w1", "10.0.0.1")], [Endpoint("10.0.0.1", "w1", name="b0")])
    assert "pod b0 is not terminating" in not_yet
    unready = only_terminating_problems(
        [Pod("b0", "w1", "10.0.0.1", ready=False, terminating=True)],
        [endpoint_for_pod("10.0.0.1", "w1", pod_ready=False, terminating=True, name="b0")],
    )
    assert any("not Ready: its endpoint is serving=false" in p for p in unready)
    other_ready = only_terminating_problems(
        [Pod("b0", "w1", "10.0.0.1", terminating=True)],
        [terminating("10.0.0.1", "w1", "b0"), Endpoint("10.0.0.9", "w2")],
    )
    assert any("10.0.0.9 is listed ready=true" in p for p in other_ready)
    assert only_terminating_problems([], []) == ["no backend pod is left (the terminating pods already exited)"]
    stale = only_terminating_problems([Pod("b0", "w1", "10.0.0.1", terminating=True)],
                                      [Endpoint("10.0.0.1", "w1", name="b0")])
    assert any("ready=true serving=true terminating=false, expected ready=false serving=true terminating=true"
               in p for p in stale)


# --------------------------------------------------------------------------- NodePort from pods


EPS = (terminating("10.0.0.1", "w1", "b0"),)


def test_cluster_policy_node_ports_answer_pods_everywhere_from_the_terminating_endpoint() -> None:
    for client in ("cp", "w1", "w2"):
        for ingress in ("cp", "w1", "w2"):
            assert nodeport_from_pod_answers(EPS, client_node=client, ingress_node=ingress,
                                             external_traffic_policy=TrafficPolicy.CLUSTER) is True


def test_local_policy_node_ports_answer_pods_only_on_the_endpoint_node_and_promise_nothing_on_their_own() -> None:
    def local(client: str, ingress: str) -> bool | None:
        return nodeport_from_pod_answers(EPS, client_node=client, ingress_node=ingress,
                                         external_traffic_policy=TrafficPolicy.LOCAL)

    assert local("cp", "w1") is True
    assert local("w1", "w1") is True
    assert local("w1", "w2") is False  # upstream: pausePod0 (endpoint node) -> node1 fails
    assert local("cp", "w2") is False
    assert local("w2", "w2") is None  # pod -> own node: kube-proxy treats it as Cluster


def test_a_not_serving_terminating_endpoint_gets_no_traffic_from_pods() -> None:
    gone = (endpoint_for_pod("10.0.0.1", "w1", pod_ready=False, terminating=True),)
    assert nodeport_from_pod_answers(gone, client_node="cp", ingress_node="w1",
                                     external_traffic_policy=TrafficPolicy.CLUSTER) is False


# --------------------------------------------------------------------------- split slices


def slice_obj(name: str, ports: list[dict], addresses: list[str], managed_by: str = "m") -> dict:
    return {"metadata": {"name": name, "labels": {"endpointslice.kubernetes.io/managed-by": managed_by}},
            "ports": ports, "endpoints": [{"addresses": [a]} for a in addresses]}


A = port_set([{"name": "http", "port": 8080, "protocol": "TCP"}])
B = port_set([{"name": "http", "port": 9090}])


def test_slice_views_read_ports_addresses_and_the_manager() -> None:
    views = slice_views([slice_obj("s-b", [{"name": "http", "port": 9090}], ["10.0.0.2"]),
                         slice_obj("s-a", [{"name": "http", "port": 8080, "protocol": "TCP"}], ["10.0.0.1"], "x")])
    assert views == [SliceView("s-a", A, frozenset({"10.0.0.1"}), "x"), SliceView("s-b", B, frozenset({"10.0.0.2"}), "m")]
    assert describe_ports(A | B) == "http=8080/TCP,http=9090/TCP"
    assert describe_slices(views, {"10.0.0.1": "p0"}) == "s-a [http=8080/TCP]: p0 (10.0.0.1); s-b [http=9090/TCP]: 10.0.0.2"
    assert describe_slices([]) == "(no EndpointSlices)"


def test_slices_split_by_port_match_the_pods_port_sets() -> None:
    expected = {A: {"10.0.0.1"}, B: {"10.0.0.2"}}
    views = [SliceView("a", A, frozenset({"10.0.0.1"})), SliceView("b", B, frozenset({"10.0.0.2"})),
             SliceView("empty", A, frozenset())]
    assert port_split_problems(expected, views) == []
    # the same port set over two slices (an address split) is one group
    split = [SliceView("a1", A, frozenset({"10.0.0.1"})), SliceView("a2", A, frozenset({"10.0.0.3"}))]
    assert port_split_problems({A: {"10.0.0.1", "10.0.0.3"}}, split) == []


def test_split_problems_name_a_missing_port_set_misfiled_and_unexpected_addresses() -> None:
    expected = {A: {"10.0.0.1"}, B: {"10.0.0.2"}}
    missing = port_split_problems(expected, [SliceView("a", A, frozenset({"10.0.0.1"}))], {"10.0.0.2": "p1"})
    assert missing == ["no EndpointSlice has ports http=9090/TCP (expected for p1 (10.0.0.2))"]
    misfiled = port_split_problems(expected, [SliceView("a", A, frozenset({"10.0.0.1", "10.0.0.2"})),
                                              SliceView("b", B, frozenset({"10.0.0.2"}))])
    assert misfiled == ["10.0.0.2 is listed with ports http=8080/TCP, expected with http=9090/TCP"]
    other = port_set([{"name": "http", "port": 7070}])
    extra = port_split_problems({A: {"10.0.0.1"}}, [SliceView("a", A, frozenset({"10.0.0.1"})),
                                                      SliceView("x", other, frozenset({"10.0.0.7"}))])
    assert extra == ["unexpected EndpointSlice ports http=7070/TCP listing 10.0.0.7"]
    dropped = port_split_problems({A: {"10.0.0.1", "10.0.0.3"}}, [SliceView("a", A, frozenset({"10.0.0.1"}))])
    assert dropped == ["10.0.0.3 is missing from the slices with ports http=8080/TCP"]


# --------------------------------------------------------------------------- AnsweredBy


def reply(backend: str | None, client_ip: str | None = None, ok: bool = True,
          kind: ErrorKind | None = None) -> HttpReply:
    return HttpReply(target="10.0.0.1:30080", ok=ok, status=200 if ok else None, backend=backend,
                     client_ip=client_ip, error_kind=kind, command="curl ...")


def test_answered_by_counts_only_the_expected_backend_and_source() -> None:
    want = frozenset({"b0"})
    assert mark_of(AnsweredBy(reply("b0"), want)) is Mark.REACHED
    stranger = AnsweredBy(reply("other"), want)
    assert mark_of(stranger) is Mark.BLOCKED
    assert "answered by other, not by ['b0']" in stranger.summary()
    snat = AnsweredBy(reply("b0", "10.244.1.1"), want, "172.18.0.1")
    assert mark_of(snat) is Mark.BLOCKED
    assert "saw 10.244.1.1, not the client's 172.18.0.1" in snat.summary()
    assert mark_of(AnsweredBy(reply("b0", "172.18.0.1"), want, "172.18.0.1")) is Mark.REACHED
    assert mark_of(AnsweredBy(reply(None, ok=False, kind=ErrorKind.REFUSED), want)) is Mark.BLOCKED
    assert mark_of(AnsweredBy(Unknown("x", "boom"), want)) is Mark.UNKNOWN
    assert AnsweredBy(reply("b0"), want).command == "curl ..."
