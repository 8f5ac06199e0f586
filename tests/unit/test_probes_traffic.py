"""HTTP/UDP probe parsers against captured curl/nc output, and the host-side probes against
real sockets on loopback (offline: nothing leaves this machine)."""

from __future__ import annotations

import errno
import http.server
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import requests

from fixtures.observations import (
    ConnectResult,
    DialReply,
    ErrorKind,
    ExecResult,
    HttpReply,
    UdpReply,
    split_host_port,
)
from fixtures.probes import (
    EXEC_OVERHEAD_S,
    Vantage,
    curl_argv,
    http_get,
    kubectl_exec_prefix,
    pod_vantage,
    udp_argv,
)
from fixtures.probes.traffic import _CURL_WRITE_OUT as curl_write_out
from fixtures.probes.traffic import (
    AGNHOST_DIAL_TRY_S,
    CONNECT_TIMEOUT_S,
    classify_exception,
    dial_argv,
    dial_from,
    health_check,
    http_from_host,
    parse_curl,
    parse_dial,
    parse_health_check,
    parse_udp,
    tcp_connect,
    udp_exchange,
)
from fixtures.probes.udp_socket import udp_from_host

DATA = Path(__file__).parent / "data"


def curl_capture(name: str) -> ExecResult:
    d = DATA / "curl"
    return ExecResult(
        ("curl",),
        int((d / f"{name}.rc").read_text()),
        (d / f"{name}.stdout").read_text(),
        (d / f"{name}.stderr").read_text(),
    )


def nc_capture(name: str) -> ExecResult:
    d = DATA / "nc"
    return ExecResult(
        ("sh",),
        int((d / f"{name}.rc").read_text()),
        (d / f"{name}.stdout").read_text(),
        (d / f"{name}.stderr").read_text(),
    )


def test_split_host_port_go_forms() -> None:
    assert split_host_port("10.244.1.5:40312") == ("10.244.1.5", 40312)
    assert split_host_port("[fd00::5]:80") == ("fd00::5", 80)
    assert split_host_port("10.0.0.1") == ("10.0.0.1", None)
    assert split_host_port("fd00::5") == ("fd00::5", None)


def test_curl_argv_fetches_both_paths_on_one_connection() -> None:
    argv = curl_argv("10.96.0.5", 80)
    assert argv[0] == "curl"
    assert "-v" in argv
    assert "--fail-early" in argv
    assert argv[-2:] == ["http://10.96.0.5:80/hostname", "http://10.96.0.5:80/clientip"]
    assert curl_argv("fd00::5", 80, ["/hostname"])[-1] == "http://[fd00::5]:80/hostname"


def test_curl_argv_and_dial_argv_run_curl_the_way_parse_curl_reads_it() -> None:
    assert curl_argv("10.96.0.5", 80, connect_timeout=1.5, max_time=4) == [
        "curl",
        "-sS",
        "-v",
        "--noproxy",
        "*",
        "--fail-early",
        "--connect-timeout",
        "1.5",
        "--max-time",
        "4",
        "-w",
        curl_write_out,
        "http://10.96.0.5:80/hostname",
        "http://10.96.0.5:80/clientip",
    ]
    # /dial: the same curl on one URL, without --fail-early, allowing 3 tries x agnhost's 5 s
    # plus reaching agnhost (2 s connect + 1 s)
    same_curl = curl_argv("10.244.1.5", 8080, ["/dial"], connect_timeout=2, max_time=18)
    dial = dial_argv("10.244.1.5", 8080, "10.96.0.5", 80, tries=3)
    assert dial[:-1] == [a for a in same_curl[:-1] if a != "--fail-early"]


@pytest.mark.parametrize(
    ("reply", "reached"),
    [
        (HttpReply(target="t", ok=False, status=503), True),
        (HttpReply(target="t", ok=False, error_kind=ErrorKind.RESET), False),
        (HttpReply(target="t", ok=False, error_kind=ErrorKind.EXEC), None),
        (UdpReply(target="t", ok=True), True),
        (UdpReply(target="t", ok=False, error_kind=ErrorKind.NO_REPLY), False),
        (UdpReply(target="t", ok=False), None),
        (ConnectResult(target="t", ok=True), True),
        (ConnectResult(target="t", ok=False, error_kind=ErrorKind.UNREACHABLE), False),
        (ConnectResult(target="t", ok=False, error_kind=ErrorKind.UNKNOWN), None),
        (DialReply(via="v", target="t", protocol="http", request="hostname", responses=("b",)), True),
        (
            DialReply(via="v", target="t", protocol="udp", request="hostname", error_kind=ErrorKind.TIMEOUT),
            False,
        ),
        (
            DialReply(via="v", target="t", protocol="http", request="hostname", error_kind=ErrorKind.RESOLVE),
            None,
        ),
        (
            DialReply(via="v", target="t", protocol="http", request="hostname", error="x", responses=("b",)),
            None,
        ),
    ],
)
def test_reached_is_one_rule_for_every_reply(
    reply: HttpReply | UdpReply | ConnectResult | DialReply, reached: bool | None
) -> None:
    assert reply.reached is reached


def test_curl_ok_pairs_backend_and_client_address() -> None:
    r = parse_curl(curl_capture("ok"), target="127.0.0.1:8080")
    assert r.ok
    assert r.status == 200
    assert r.reached
    assert r.backend == "backend-7d9f8c6b5-x2x4z"
    assert (r.client_ip, r.client_port) == ("127.0.0.1", 54222)
    assert r.elapsed is not None
    assert r.elapsed < 1
    v6 = parse_curl(curl_capture("ok_v6"), target="[::1]:8080")
    assert v6.client_ip == "::1"
    assert v6.backend == "backend-7d9f8c6b5-x2x4z"


def test_curl_hostname_only() -> None:
    r = parse_curl(curl_capture("hostname_only"), target="127.0.0.1:8080")
    assert r.ok
    assert r.backend == "backend-7d9f8c6b5-x2x4z"
    assert r.client_ip is None


@pytest.mark.parametrize(
    ("capture", "kind"),
    [
        ("refused", ErrorKind.REFUSED),
        ("refused_reject", ErrorKind.REFUSED),
        ("reset_syn", ErrorKind.REFUSED),
        ("unreachable", ErrorKind.UNREACHABLE),
        ("connect_timeout", ErrorKind.TIMEOUT),
        ("read_timeout", ErrorKind.TIMEOUT),
        ("reset_after_connect", ErrorKind.RESET),
        ("empty_reply", ErrorKind.EMPTY_REPLY),
    ],
)
def test_curl_failures_are_classified(capture: str, kind: ErrorKind) -> None:
    r = parse_curl(curl_capture(capture), target="127.0.0.1:1")
    assert not r.ok
    assert r.error_kind is kind
    assert r.reached is False
    assert r.error
    assert r.elapsed is not None
    assert kind.value in r.summary()


def test_curl_refusal_is_prompt_and_timeout_is_not() -> None:
    refused = parse_curl(curl_capture("refused_reject"), target="x")
    timeout = parse_curl(curl_capture("connect_timeout"), target="x")
    assert refused.elapsed is not None
    assert refused.elapsed < 0.1
    assert timeout.elapsed is not None
    assert timeout.elapsed >= 1


def test_curl_http_status() -> None:
    r = parse_curl(curl_capture("status_503"), target="x")
    assert not r.ok
    assert r.status == 503
    assert r.error_kind is ErrorKind.HTTP_STATUS
    assert r.reached is True


def test_curl_missing_tool_is_exec_error_not_a_verdict() -> None:
    r = parse_curl(ExecResult(("curl",), 127, "", "sh: curl: not found"), target="x")
    assert r.error_kind is ErrorKind.EXEC
    assert r.reached is None


def test_curl_without_connection_reuse_is_unknown() -> None:
    res = curl_capture("ok")
    stdout = res.stdout.replace("conns=0", "conns=1")
    r = parse_curl(ExecResult(res.argv, 0, stdout, ""), target="x")
    assert not r.ok
    assert r.error_kind is ErrorKind.UNKNOWN
    assert r.backend is None


def test_http_get_runner_passes_timeout_and_reproduce_command() -> None:
    seen: list[float] = []

    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        seen.append(timeout)
        return curl_capture("ok")

    v = Vantage(
        fake,
        where="pod ns/client-w1 on w1",
        reproduce_prefix=kubectl_exec_prefix("/k/cfg", "ns", "client-w1"),
    )
    r = http_get(v, "127.0.0.1", 8080)
    assert r.ok
    assert r.where == "pod ns/client-w1 on w1"
    assert r.command.startswith("kubectl --kubeconfig /k/cfg -n ns exec client-w1 -- curl ")
    assert seen
    assert seen[0] > 10


def test_udp_argv_is_a_timed_nc() -> None:
    argv = udp_argv("10.96.0.5", 81, "clientip", wait=1)
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["clientip", "10.96.0.5", "81", "1"]
    assert "nc -u" in argv[2]


def test_udp_replies() -> None:
    h = parse_udp(nc_capture("hostname_ok"), target="x", command="hostname", wait=1)
    assert h.ok
    assert h.backend == "backend-7d9f8c6b5-x2x4z"
    assert h.reached
    c = parse_udp(nc_capture("clientip_ok"), target="x", command="clientip", wait=1)
    assert c.ok
    assert c.client_ip == "127.0.0.1"
    assert c.client_port == 49724


@pytest.mark.parametrize(
    ("capture", "kind"),
    [
        ("refused", ErrorKind.REFUSED),
        ("closed_port", ErrorKind.REFUSED),
        ("no_reply", ErrorKind.NO_REPLY),
    ],
)
def test_udp_failures(capture: str, kind: ErrorKind) -> None:
    r = parse_udp(nc_capture(capture), target="x", wait=1)
    assert not r.ok
    assert r.error_kind is kind
    assert r.reached is False


def test_udp_exec_failure() -> None:
    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        return ExecResult(tuple(argv), 127, "", "sh: nc: not found")

    r = udp_exchange(fake, "10.0.0.1", 81)
    assert r.error_kind is ErrorKind.EXEC
    assert r.reached is None


def test_health_check_bodies() -> None:
    ok = parse_health_check(200, (DATA / "healthcheck" / "healthcheck-200.json").read_text(), target="x")
    assert (ok.local_endpoints, ok.service_name, ok.service_namespace, ok.proxy_healthy) == (
        2,
        "web",
        "svcc-etp-r1-ab12",
        True,
    )
    no = parse_health_check(503, (DATA / "healthcheck" / "healthcheck-503.json").read_text(), target="x")
    assert no.status == 503
    assert no.local_endpoints == 0
    junk = parse_health_check(200, "<html>", target="x")
    assert junk.error == "body is not JSON"


def test_classify_exception_walks_the_cause_chain() -> None:
    inner = OSError(errno.EHOSTUNREACH, "No route to host")
    outer = requests.exceptions.ConnectionError(inner)
    assert classify_exception(outer) is ErrorKind.UNREACHABLE
    assert classify_exception(requests.exceptions.ConnectTimeout()) is ErrorKind.TIMEOUT
    assert classify_exception(ValueError("x")) is ErrorKind.UNKNOWN


# --------------------------------------------------------------------------- live loopback


class _Agnhostish(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Go's net/http

    def do_GET(self) -> None:
        if self.path == "/hostname":
            body = b"backend-1"
        elif self.path == "/clientip":
            body = f"{self.client_address[0]}:{self.client_address[1]}".encode()
        elif self.path == "/healthz":
            body = (DATA / "healthcheck" / "healthcheck-503.json").read_bytes()
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        else:
            body = b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def agnhostish() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Agnhostish)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_from_host_pairs_backend_and_source(agnhostish: int) -> None:
    r = http_from_host("127.0.0.1", agnhostish)
    assert r.ok
    assert r.backend == "backend-1"
    assert r.client_ip == "127.0.0.1"
    assert r.where == "host"
    assert "curl" in r.command


def test_http_from_host_refused() -> None:
    r = http_from_host("127.0.0.1", _free_port(), connect_timeout=1)
    assert not r.ok
    assert r.error_kind is ErrorKind.REFUSED


@pytest.fixture
def silent_server() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    yield s.getsockname()[1]
    s.close()


def test_http_from_host_read_timeout(silent_server: int) -> None:
    r = http_from_host("127.0.0.1", silent_server, read_timeout=0.3)
    assert r.error_kind is ErrorKind.TIMEOUT


def _serve_once(handler: Callable[[socket.socket], None]) -> int:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)

    def run() -> None:
        conn, _ = s.accept()
        conn.recv(1024)
        handler(conn)
        s.close()

    threading.Thread(target=run, daemon=True).start()
    return int(s.getsockname()[1])


def test_http_from_host_reset_and_empty_reply() -> None:
    def reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def empty(conn: socket.socket) -> None:
        conn.close()

    assert http_from_host("127.0.0.1", _serve_once(reset)).error_kind is ErrorKind.RESET
    assert http_from_host("127.0.0.1", _serve_once(empty)).error_kind is ErrorKind.EMPTY_REPLY


@pytest.fixture
def udp_agnhostish() -> Iterator[int]:
    """Answers each ``hostname`` datagram with ``backend-1``, as agnhost's UDP server."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))

    def run() -> None:
        while True:
            try:
                data, peer = s.recvfrom(4096)
            except OSError:
                return
            if data == b"hostname":
                s.sendto(b"backend-1\n", peer)

    threading.Thread(target=run, daemon=True).start()
    yield int(s.getsockname()[1])
    s.close()


def test_udp_from_host_reply_refused_and_silence(udp_agnhostish: int) -> None:
    r = udp_from_host("127.0.0.1", udp_agnhostish, wait=2)
    assert r.ok
    assert r.reply == "backend-1"
    assert r.backend == "backend-1"
    assert r.where == "host"
    assert r.command == f"printf hostname | nc -u -w 2 127.0.0.1 {udp_agnhostish}"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = int(closed.getsockname()[1])
    refused = udp_from_host("127.0.0.1", closed_port)
    assert not refused.ok
    assert refused.error_kind is ErrorKind.REFUSED
    assert refused.reached is False
    assert (refused.where, refused.backend, refused.reply) == ("host", None, "")

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        quiet = udp_from_host("127.0.0.1", int(silent.getsockname()[1]), wait=0.2)
    assert quiet.error_kind is ErrorKind.NO_REPLY
    assert quiet.error == "no reply within 0.2s"
    assert quiet.elapsed is not None
    assert quiet.elapsed >= 0.2


def test_tcp_connect(agnhostish: int) -> None:
    assert tcp_connect("127.0.0.1", agnhostish).ok
    closed = tcp_connect("127.0.0.1", _free_port())
    assert not closed.ok
    assert closed.error_kind is ErrorKind.REFUSED
    assert closed.reached is False


def test_health_check_live(agnhostish: int) -> None:
    hc = health_check("127.0.0.1", agnhostish)
    assert hc.status == 503
    assert hc.local_endpoints == 0
    dead = health_check("127.0.0.1", _free_port())
    assert dead.status is None
    assert dead.error_kind is ErrorKind.REFUSED


class _FakeKube:
    kubeconfig = Path("/tmp/kubeconfig")

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[str, ...], str | None, float]] = []

    def exec(
        self,
        namespace: str,
        pod: str,
        argv: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = 60,
    ) -> ExecResult:
        self.calls.append((namespace, pod, tuple(argv), container, timeout))
        return curl_capture("ok")


def test_pod_vantage_execs_through_kube_and_reproduces_with_kubectl() -> None:
    kube = _FakeKube()
    v = pod_vantage(kube, "ns", "client-w1", node="w1")
    r = http_get(v, "10.96.0.5", 80)
    assert r.ok
    assert r.where == "pod ns/client-w1 on w1"
    assert kube.calls[0][:2] == ("ns", "client-w1")
    assert r.command.startswith("kubectl --kubeconfig /tmp/kubeconfig -n ns exec client-w1 -- curl -sS -v")


@pytest.mark.parametrize(
    ("rc", "stderr", "kind"),
    [
        (255, "svcconform: exec failed: 404 Not Found: pods client-x not found", ErrorKind.EXEC),
        (124, "svcconform: timed out after 15s", ErrorKind.EXEC),
    ],
)
def test_exec_layer_failures_are_unknown_not_blocked(rc: int, stderr: str, kind: ErrorKind) -> None:
    r = parse_curl(ExecResult(("curl",), rc, "", stderr), target="x")
    assert r.error_kind is kind
    assert r.reached is None


# --------------------------------------------------------------------------- agnhost /dial


def dial_body(name: str) -> str:
    return (DATA / "agnhost-dial" / f"{name}.json").read_text()


def curl_ok_with(body: str) -> ExecResult:
    """A curl run whose single transfer returned ``body`` (write-out line as curl prints it)."""
    mark = (
        "\n__svcc_curl__ exit=0 code=200 conns=1 connect=0.000200 total=0.004000 remote=10.244.1.5 "
        "rport=8080 local=10.244.2.9 lport=40000 url=http://10.244.1.5:8080/dial?host=x\n"
    )
    return ExecResult(("curl",), 0, body + mark, "")


def test_dial_argv_asks_the_backend_to_dial() -> None:
    argv = dial_argv("10.244.1.5", 8080, "10.96.0.5", 80, request="clientip", protocol="udp", tries=3)
    url = argv[-1]
    assert url.startswith("http://10.244.1.5:8080/dial?")
    assert "host=10.96.0.5" in url
    assert "port=80" in url
    assert "request=clientip" in url
    assert "protocol=udp" in url
    assert "tries=3" in url
    assert float(argv[argv.index("--max-time") + 1]) > 15  # 3 tries x agnhost's 5 s each


def test_dial_responses() -> None:
    r = parse_dial(curl_ok_with(dial_body("dial_http_ok")), via="10.244.1.5:8080", target="10.96.0.5:80")
    assert r.ok
    assert r.reached is True
    assert r.responses == ("backend-1", "backend-1")
    assert "backend-1" in r.summary()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("dial_http_refused", ErrorKind.REFUSED),
        ("dial_http_timeout", ErrorKind.TIMEOUT),
        ("dial_udp_refused", ErrorKind.REFUSED),
        ("dial_udp_timeout", ErrorKind.TIMEOUT),
    ],
)
def test_dial_errors_are_classified_from_gos_messages(name: str, kind: ErrorKind) -> None:
    r = parse_dial(curl_ok_with(dial_body(name)), via="v", target="t")
    assert not r.ok
    assert r.error_kind is kind
    assert r.reached is False
    assert r.error is None


def test_dial_via_an_unreachable_pod_is_unknown() -> None:
    r = parse_dial(curl_capture("refused"), via="10.244.1.5:8080", target="t")
    assert r.reached is None
    assert r.error is not None
    assert "cannot reach agnhost" in r.error
    garbage = parse_dial(curl_ok_with("404 page not found"), via="v", target="t")
    assert garbage.reached is None


def test_dial_from_runner() -> None:
    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        assert timeout == AGNHOST_DIAL_TRY_S + CONNECT_TIMEOUT_S + 1 + EXEC_OVERHEAD_S
        return curl_ok_with(dial_body("dial_http_ok"))

    r = dial_from(Vantage(fake, where="pod ns/client-w1"), "10.244.1.5", 8080, "10.96.0.5", 80)
    assert r.via == "10.244.1.5:8080"
    assert r.target == "10.96.0.5:80"
    assert r.where == "pod ns/client-w1"
