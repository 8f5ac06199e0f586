"""The traffic probes against output of the REAL agnhost netexec (v1.34.4 build), captured by
running our own argv builders against it on loopback (tests/unit/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.observations import ErrorKind, ExecResult
from fixtures.probes import parse_curl, parse_dial, parse_loop, parse_udp

DATA = Path(__file__).parent / "data" / "agnhost"
BACKEND = "backend-7d9f8c6b5-x2x4z"  # the hostname agnhost ran under


def captured(name: str) -> ExecResult:
    return ExecResult(
        ("captured",),
        int((DATA / f"{name}.rc").read_text()),
        (DATA / f"{name}.stdout").read_text(),
        (DATA / f"{name}.stderr").read_text(),
    )


@pytest.mark.parametrize(("name", "ip"), [("curl_ok", "127.0.0.1"), ("curl_ok_v6", "::1")])
def test_hostname_and_clientip_over_one_connection(name: str, ip: str) -> None:
    r = parse_curl(captured(name), target="x")
    assert r.ok
    assert r.backend == BACKEND
    assert r.client_ip == ip
    assert r.client_port is not None
    # the port agnhost saw is curl's own local port: one connection for both requests
    assert f"lport={r.client_port}" in captured(name).stdout


def test_udp_commands() -> None:
    h = parse_udp(captured("udp_hostname"), target="x", command="hostname", wait=1)
    assert h.backend == BACKEND
    c = parse_udp(captured("udp_clientip"), target="x", command="clientip", wait=1)
    assert c.client_ip == "127.0.0.1"
    # agnhost ignores unknown commands: no reply until nc gives up
    u = parse_udp(captured("udp_unknown_command"), target="x", command="bogus", wait=1)
    assert u.error_kind is ErrorKind.NO_REPLY


def test_dial_from_agnhost() -> None:
    ok = parse_dial(captured("dial_http_ok"), via="v", target="t")
    assert ok.responses == (BACKEND, BACKEND)
    assert ok.ok
    ip = parse_dial(captured("dial_http_clientip"), via="v", target="t", request="clientip")
    assert ip.responses[0].startswith("127.0.0.1:")
    udp = parse_dial(captured("dial_udp_ok"), via="v", target="t", protocol="udp")
    assert udp.responses == (BACKEND,)


@pytest.mark.parametrize("name", ["dial_http_refused", "dial_udp_refused"])
def test_dial_refused(name: str) -> None:
    r = parse_dial(captured(name), via="v", target="t")
    assert r.error_kind is ErrorKind.REFUSED
    assert r.reached is False


def test_healthz_is_an_empty_200() -> None:
    assert captured("healthz").stdout.startswith("HTTP/1.1 200 OK")


def test_loop_against_agnhost_and_its_death() -> None:
    ok = parse_loop(captured("loop_ok").stdout, target="x")
    assert ok.backends == {BACKEND}
    assert ok.max_gap <= 0.1
    killed = parse_loop(captured("loop_backend_killed").stdout, target="x")
    assert killed.started is not None
    gone = killed.settled_after(False)
    assert gone is not None
    assert gone.error_kind is ErrorKind.REFUSED
    assert 0.5 < gone.t - killed.started < 0.8  # killed 0.6 s into the loop
    last = killed.last(backend=BACKEND)
    assert last is not None
    assert gone.t - last.t <= 0.1  # the transition is resolved to one sample gap
