"""Session affinity, UDP recovery after a backend swap, node ports following the type;
and the parser of the fast UDP loop (fixtures.probes.udp_socket)."""

from __future__ import annotations

from fixtures.expectations.clusterip import (
    node_port_presence_problems,
    session_affinity_problems,
    udp_recovery_problem,
)
from fixtures.expectations.model import Service, ServicePort, ServiceType
from fixtures.observations import ErrorKind
from fixtures.probes.udp_socket import classify_udp_try, parse_udp_loop, udp_loop_argv


def test_affinity_accepts_one_backend_per_client_even_different_ones():
    got = session_affinity_problems(
        {"w1": ["a", "a", None, "a"], "w2": ["b", "b"]}, ready_backends=["a", "b"]
    )
    assert got == {}


def test_affinity_names_a_client_answered_by_two_backends():
    got = session_affinity_problems({"w1": ["a", "b", "a"]}, ready_backends=["a", "b"])
    assert "2 backends" in got["w1"]
    assert "a x2" in got["w1"]
    assert "b x1" in got["w1"]


def test_affinity_flags_no_answers_and_unknown_backends():
    got = session_affinity_problems({"w1": [None, None], "w2": ["z"]}, ready_backends=["a"])
    assert "no answer" in got["w1"]
    assert "not a ready endpoint" in got["w2"]


def test_udp_recovery_within_the_bound():
    samples = [(10.0, "old"), (11.0, None), (12.0, None), (13.5, "new")]
    delay, problem = udp_recovery_problem(samples, new_backend="new", ready_at=12.0, within=5)
    assert problem is None
    assert delay == 1.5


def test_udp_recovery_before_ready_counts_as_zero_delay():
    delay, problem = udp_recovery_problem([(11.0, "new")], new_backend="new", ready_at=12.0, within=5)
    assert (delay, problem) == (0.0, None)


def test_udp_recovery_too_late_or_never():
    delay, problem = udp_recovery_problem([(30.0, "new")], new_backend="new", ready_at=12.0, within=5)
    assert delay == 18.0
    assert problem is not None
    assert "expected within 5s" in problem
    delay, problem = udp_recovery_problem(
        [(10.0, "old"), (13.0, None)], new_backend="new", ready_at=12.0, within=5
    )
    assert (
        delay is None
    )
    assert (
        problem is not None
    )
    assert (
        "never answered" in problem
    )
    assert (
        "stale conntrack" in problem
    )


def _svc(type_: ServiceType, *node_ports: int | None) -> Service:
    ports = tuple(ServicePort(port=80 + i, name=f"p{i}", node_port=n) for i, n in enumerate(node_ports))
    return Service("s", "ns", type=type_, ports=ports)


def test_node_ports_present_and_in_range():
    assert (
        node_port_presence_problems(_svc(ServiceType.NODE_PORT, 30001, 32767), expect_node_ports=True) == []
    )
    problems = node_port_presence_problems(
        _svc(ServiceType.NODE_PORT, 30001, None, 80), expect_node_ports=True
    )
    assert len(problems) == 2
    assert "not allocated" in problems[0]
    assert "outside" in problems[1]
    assert node_port_presence_problems(_svc(ServiceType.CLUSTER_IP, None), expect_node_ports=True) == [
        "port p0/TCP nodePort not allocated",
        "type is ClusterIP, expected NodePort",
    ]


def test_node_ports_released_on_cluster_ip():
    assert node_port_presence_problems(_svc(ServiceType.CLUSTER_IP, None), expect_node_ports=False) == []
    problems = node_port_presence_problems(_svc(ServiceType.CLUSTER_IP, 30001), expect_node_ports=False)
    assert problems == ["port p0/TCP nodePort 30001 still allocated on a ClusterIP Service"]


def test_udp_loop_output_parses_replies_refusals_and_silence():
    out = "\n".join(
        [
            "__svcc_udp__ start=1000",
            "u 1001 0 backend-a",
            "u 1101 1 dd: error reading 'standard input': Connection refused",
            "u 1201 124 ",
            "u 1301 0 ",
            "garbage",
            "__svcc_udp__ end=1400",
        ]
    )
    tl = parse_udp_loop(out, target="10.96.0.1:81")
    assert [s.backend for s in tl.samples] == ["backend-a", None, None, None]
    assert [s.error_kind for s in tl.samples] == [
        None,
        ErrorKind.REFUSED,
        ErrorKind.NO_REPLY,
        ErrorKind.NO_REPLY,
    ]
    assert tl.started == 1.0
    assert tl.finished == 1.4
    assert not tl.truncated


def test_udp_loop_truncated_output_and_argv():
    assert parse_udp_loop("__svcc_udp__ start=5\nu 6 0 x", target="t").truncated
    assert classify_udp_try(1, "No route to host") is ErrorKind.UNREACHABLE
    assert classify_udp_try(2, "weird") is ErrorKind.UNKNOWN
    # a socket destroyed under the client (Cilium's socket-LB termination), as dd reports it
    assert classify_udp_try(1, "dd: error reading 'standard input': Software caused connection abort") \
        is ErrorKind.ABORTED
    assert ErrorKind.ABORTED.conclusive
    argv = udp_loop_argv("10.0.0.1", 81, duration=2.5, same_socket=False, stop_unless="old")
    assert argv[0:2] == ["bash", "-c"]
    assert argv[3:] == [
        "10.0.0.1",
        "81",
        "hostname",
        "2500",
        "1000000",
        "100",
        "1",
        "0",
        "old",
    ]
