"""DNS probe parsers against output captured from real dig 9.18 / glibc getent (see
tests/unit/data/README.md for how each file was made)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from fixtures.observations import ExecResult
from fixtures.probes import Vantage, dig, dig_argv, getent, getent_argv
from fixtures.probes._exec import ProbeError
from fixtures.probes.dns import parse_dig, parse_getent, parse_resolv_conf, resolv_conf

DATA = Path(__file__).parent / "data"


def dig_out(name: str) -> str:
    return (DATA / "dig" / f"{name}.out").read_text()


def test_dig_argv_is_one_bounded_try_without_search_by_default() -> None:
    assert dig_argv("web.ns.svc.cluster.local") == [
        "dig",
        "+tries=1",
        "+time=2",
        "+nosearch",
        "web.ns.svc.cluster.local",
        "A",
    ]
    argv = dig_argv("web", "srv", server="10.96.0.10", search=True, timeout=3)
    assert argv == ["dig", "+tries=1", "+time=3", "+search", "@10.96.0.10", "web", "SRV"]


def test_a_record_answer() -> None:
    ans = parse_dig(dig_out("a_clusterip"), name="web.ns1.svc.cluster.local", rtype="A")
    assert ans.status == "NOERROR"
    assert ans.ok
    assert ans.answered
    assert ans.addresses == {"10.96.12.34"}
    assert ans.server == "127.0.0.1#5353"
    assert ans.question == "web.ns1.svc.cluster.local"
    assert "aa" in ans.flags
    assert "qr" in ans.flags
    assert ans.answers[0].ttl == 0
    assert ans.answers[0].name == "web.ns1.svc.cluster.local"


def test_aaaa_answer_normalises_addresses() -> None:
    ans = parse_dig(dig_out("aaaa"), name="web6.ns1.svc.cluster.local", rtype="AAAA")
    assert ans.addresses == {"fd00:10:96::1234"}


def test_headless_answer_has_every_address() -> None:
    ans = parse_dig(dig_out("a_headless"), name="headless.ns1.svc.cluster.local", rtype="A")
    assert ans.addresses == {"10.244.1.5", "10.244.2.7"}


def test_srv_answer_and_additional_section() -> None:
    ans = parse_dig(dig_out("srv"), name="_http._tcp.web.ns1.svc.cluster.local", rtype="SRV")
    (srv,) = ans.srv
    assert (srv.priority, srv.weight, srv.port, srv.target) == (
        0,
        100,
        80,
        "web.ns1.svc.cluster.local",
    )
    assert [r.rtype for r in ans.additional] == ["A"]
    assert ans.addresses == frozenset()  # the additional A is not an answer


def test_cname_chain() -> None:
    ans = parse_dig(dig_out("cname"), name="ext.ns1.svc.cluster.local", rtype="A")
    assert ans.cnames == ("target.example.test",)
    assert ans.addresses == {"192.0.2.10"}
    only = parse_dig(dig_out("cname_only"), name="ext.ns1.svc.cluster.local", rtype="CNAME")
    assert only.cnames == ("target.example.test",)


@pytest.mark.parametrize(
    ("capture", "status"),
    [
        ("nxdomain", "NXDOMAIN"),
        ("servfail", "SERVFAIL"),
        ("refused", "REFUSED"),
    ],
)
def test_error_rcodes_are_answers_without_records(capture: str, status: str) -> None:
    ans = parse_dig(dig_out(capture), name="x", rtype="A")
    assert ans.status == status
    assert ans.answered
    assert not ans.ok
    assert ans.answers == ()
    assert ans.error is None


def test_nodata_is_noerror_with_no_records() -> None:
    ans = parse_dig(dig_out("nodata"), name="web.ns1.svc.cluster.local", rtype="AAAA")
    assert ans.ok
    assert ans.answers == ()


@pytest.mark.parametrize(
    ("capture", "reason"),
    [
        ("timeout", "timed out"),
        ("refused_port", "connection refused"),
    ],
)
def test_no_answer_at_all(capture: str, reason: str) -> None:
    ans = parse_dig(dig_out(capture), name="web", rtype="A")
    assert ans.status is None
    assert not ans.answered
    assert ans.error is not None
    assert reason in ans.error
    assert ans.timed_out == (reason == "timed out")
    assert "no answer" in ans.summary()


def test_search_expansion_shows_in_question() -> None:
    short = parse_dig(dig_out("search_short"), name="web", rtype="A")
    assert short.question == "web.ns1.svc.cluster.local"
    assert short.addresses == {"10.96.12.34"}
    other = parse_dig(dig_out("search_other_ns"), name="web.ns2", rtype="A")
    assert other.question == "web.ns2.svc.cluster.local"
    exhausted = parse_dig(dig_out("search_nxdomain"), name="nope", rtype="A")
    assert exhausted.question == "nope"
    assert exhausted.status == "REFUSED"


def test_dig_runner_uses_executor_and_reports_exec_failure() -> None:
    calls: list[tuple[list[str], float]] = []

    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        calls.append((list(argv), timeout))
        return ExecResult(tuple(argv), 0, dig_out("a_clusterip"), "")

    v = Vantage(fake, where="pod ns/client-a on a")
    ans = dig(v, "web.ns1.svc.cluster.local")
    assert ans.addresses == {"10.96.12.34"}
    assert ans.where == "pod ns/client-a on a"
    assert calls[0][0][0] == "dig"
    assert calls[0][1] > 2

    def missing(argv: Sequence[str], timeout: float) -> ExecResult:
        return ExecResult(("dig",), 127, "", "sh: dig: not found")

    ans = dig(missing, "web")
    assert ans.status is None
    assert ans.error is not None
    assert "not found" in ans.error


def getent_result(name: str, rc: int = 0) -> ExecResult:
    return ExecResult(("getent",), rc, (DATA / "getent" / f"{name}.out").read_text(), "")


def test_getent_hosts_short_name_through_search_path() -> None:
    h = parse_getent(getent_result("hosts_short"), name="web", database="hosts")
    assert h.found
    assert h.addresses == ("10.96.12.34",)
    assert h.canonical_name == "web.ns1.svc.cluster.local"


def test_getent_ahosts_deduplicates_socket_types() -> None:
    h = parse_getent(getent_result("ahosts_headless"), name="headless", database="ahosts")
    assert h.addresses == ("10.244.1.5", "10.244.2.7")
    assert h.canonical_name == "headless.ns1.svc.cluster.local"
    v6 = parse_getent(getent_result("ahosts_v6"), name="web6", database="ahosts")
    assert v6.address_set == {"fd00:10:96::1234"}


def test_getent_cname_aliases() -> None:
    h = parse_getent(getent_result("hosts_cname"), name="ext", database="hosts")
    assert h.canonical_name == "target.example.test"
    assert h.aliases == ("ext.ns1.svc.cluster.local",)


def test_getent_not_found_is_exit_2() -> None:
    h = parse_getent(getent_result("hosts_missing", rc=2), name="nope", database="hosts")
    assert not h.found
    assert h.returncode == 2
    assert h.error is None


def test_getent_runner_and_bad_database() -> None:
    with pytest.raises(ValueError, match="database"):
        getent_argv("web", "passwd")

    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        return getent_result("ahosts_short")

    assert getent(fake, "web").address_set == {"10.96.12.34"}


def test_resolv_conf_of_a_pod() -> None:
    rc = parse_resolv_conf((DATA / "resolv" / "pod.conf").read_text())
    assert rc.nameservers == ("127.0.0.2",)
    assert rc.search == ("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert rc.ndots == 5


def test_resolv_conf_rules() -> None:
    text = (
        "# generated\nnameserver 10.96.0.10\nnameserver 10.96.0.11 ; second\n"
        "domain old.example\nsearch a.svc.cluster.local svc.cluster.local cluster.local lan\n"
        "options ndots:5 rotate timeout:1\noptions attempts:2\n"
    )
    rc = parse_resolv_conf(text)
    assert rc.nameservers == ("10.96.0.10", "10.96.0.11")
    assert rc.search[-1] == "lan"
    assert len(rc.search) == 4
    assert rc.options == {"ndots": "5", "rotate": None, "timeout": "1", "attempts": "2"}
    assert parse_resolv_conf("nameserver 1.1.1.1\n").ndots == 1
    assert parse_resolv_conf("options ndots:30\n").ndots == 15


def test_resolv_conf_runner_raises_probe_error_when_unreadable() -> None:
    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        return ExecResult(("cat",), 1, "", "cat: /etc/resolv.conf: No such file")

    with pytest.raises(ProbeError, match=r"resolv\.conf"):
        resolv_conf(fake)


def test_dig_argv_can_pin_the_transport() -> None:
    assert dig_argv("web", tcp=True)[4] == "+tcp"
    assert dig_argv("web", tcp=False)[4] == "+notcp"
    assert "+tcp" not in dig_argv("web")
    assert "+notcp" not in dig_argv("web")


def test_dig_names_the_transport_it_used() -> None:
    udp = parse_dig(dig_out("a_clusterip"), name="web.ns1.svc.cluster.local", rtype="A")
    assert udp.transport == "UDP"
    assert udp.summary().endswith("from 127.0.0.1#5353 over UDP: A 10.96.12.34")


def test_real_cluster_answers_over_tcp_and_udp_ptr_and_pod_records() -> None:
    ns = "svcc-dns-capture-c4p7"
    tcp = parse_dig(dig_out("a_tcp"), name=f"web.{ns}.svc.cluster.local", rtype="A")
    udp = parse_dig(dig_out("a_notcp"), name=f"web.{ns}.svc.cluster.local", rtype="A")
    assert (tcp.transport, udp.transport) == ("TCP", "UDP")
    assert tcp.addresses == udp.addresses == {"10.96.8.143"}
    assert tcp.server == "10.96.0.10#53"
    ptr = parse_dig(dig_out("ptr_clusterip"), name="143.8.96.10.in-addr.arpa", rtype="PTR")
    assert ptr.status == "NOERROR"
    assert [r.data for r in ptr.records("PTR")] == [f"web.{ns}.svc.cluster.local"]
    pod = parse_dig(dig_out("a_pod"), name=f"10-244-2-17.{ns}.pod.cluster.local", rtype="A")
    assert pod.addresses == {"10.244.2.17"}
