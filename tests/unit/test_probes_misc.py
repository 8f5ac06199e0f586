"""env, kube-proxy metrics and the in-pod sampling loop."""

from __future__ import annotations

import http.server
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fixtures.concurrency import Background
from fixtures.observations import ErrorKind, ExecResult
from fixtures.poll import wait_until
from fixtures.probes import (
    NETWORK_PROGRAMMING,
    SYNC_PROXY_RULES,
    ProbeError,
    Vantage,
    environment,
    histogram_delta,
    loop_argv,
    loopctl,
    parse_env,
    parse_loop,
    parse_metrics,
    sample_loop,
    scrape,
)
from fixtures.probes.metrics import metrics_unavailable_reason, summarize
from fixtures.probes.sampling import peek_loop

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- env


def test_env_values_keep_their_equals_signs() -> None:
    env = parse_env("A=1\nWEB_PORT=tcp://10.96.0.5:80\nQ=a=b==c\nEMPTY=\n")
    assert env.variables == {"A": "1", "WEB_PORT": "tcp://10.96.0.5:80", "Q": "a=b==c", "EMPTY": ""}
    assert "A" in env
    assert env["Q"] == "a=b==c"
    assert env.get("nope") is None
    assert env.with_prefix("WEB_") == {"WEB_PORT": "tcp://10.96.0.5:80"}


def test_env_multiline_value_continues_previous_variable() -> None:
    env = parse_env("CERT=line1\nline2\nB=2\n")
    assert env.variables == {"CERT": "line1\nline2", "B": "2"}


def test_env_nul_separated_is_exact() -> None:
    env = parse_env("A=x\ny\0B=1=2\0")
    assert env.variables == {"A": "x\ny", "B": "1=2"}


def test_env_of_this_process_round_trips() -> None:
    """Real ``env`` output (from this machine) parses back to the environment given."""
    out = subprocess.run(
        ["env"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "X_SERVICE_HOST": "10.96.0.1", "WEIRD": "a=b c"},
    ).stdout
    assert parse_env(out).variables == {
        "PATH": "/usr/bin:/bin",
        "X_SERVICE_HOST": "10.96.0.1",
        "WEIRD": "a=b c",
    }


def test_environment_runner_raises_when_exec_fails() -> None:
    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        return ExecResult(tuple(argv), 1, "", "error: unable to upgrade connection")

    with pytest.raises(ProbeError, match="unable to upgrade"):
        environment(fake)


# --------------------------------------------------------------------------- metrics


def prom(name: str) -> str:
    return (DATA / "metrics" / f"kube-proxy-{name}.prom").read_text()


def test_kube_proxy_histograms() -> None:
    m = parse_metrics(prom("before"))
    sync = m.histogram(SYNC_PROXY_RULES, ip_family="IPv4")
    assert sync is not None
    assert sync.count == 6
    assert sync.sum == pytest.approx(0.2574)
    assert sync.buckets[0] == (0.001, 0.0)
    assert sync.buckets[-1][0] == float("inf")
    assert len(sync.buckets) == 16  # 15 exponential buckets + Inf
    assert sync.quantile(0.5) == 0.016  # 2 of 6 observations are <= 8 ms, 4 <= 16 ms
    prog = m.histogram(NETWORK_PROGRAMMING)
    assert prog is not None
    assert prog.count == 4
    assert prog.quantile(1.0) == 3.0
    assert m.value("kubeproxy_sync_proxy_rules_endpoint_changes_total") == 0


def test_histogram_delta_between_scrapes() -> None:
    before, after = parse_metrics(prom("before")), parse_metrics(prom("after"))
    d = histogram_delta(before, after, SYNC_PROXY_RULES, ip_family="IPv4")
    assert d is not None
    assert d.count == 2
    assert d.sum == pytest.approx(0.0583)
    p = histogram_delta(before, after, NETWORK_PROGRAMMING)
    assert p is not None
    assert p.count == 1
    assert p.quantile(0.5) == 0.5
    # a histogram knows the p50 only to within its bucket: (0.25, 0.5]
    assert summarize(p)["p50"] == [0.25, 0.5]
    assert p.quantile_bounds(0.5) == (0.25, 0.5)
    # a restarted kube-proxy (counters went down): the later scrape is the answer
    back = histogram_delta(after, before, SYNC_PROXY_RULES)
    assert back is not None
    assert back.count == 6
    assert histogram_delta(before, after, "kubeproxy_nope") is None
    assert summarize(None)["count"] == 0


def test_scrape_runner() -> None:
    def node(argv: Sequence[str], timeout: float) -> ExecResult:
        assert argv[-1] == "http://127.0.0.1:10249/metrics"
        return ExecResult(tuple(argv), 0, prom("after"), "", where="node w1")

    assert scrape(node).where == "node w1"

    def refused(argv: Sequence[str], timeout: float) -> ExecResult:
        return ExecResult(tuple(argv), 7, "", "curl: (7) Failed to connect")

    with pytest.raises(ProbeError, match="Failed to connect"):
        scrape(refused)


# --------------------------------------------------------------------------- sampling loop


def test_loop_output_parses_to_a_timeline() -> None:
    tl = parse_loop((DATA / "loop_ok.out").read_text(), target="127.0.0.1:8080")
    assert not tl.truncated
    assert tl.started is not None
    assert tl.finished is not None
    assert len(tl.samples) >= 15
    assert all(s.ok for s in tl.samples)
    assert tl.backends == {"backend-7d9f8c6b5-x2x4z"}
    assert tl.max_gap <= 0.1


def test_loop_timeouts_keep_resolution_under_100ms() -> None:
    tl = parse_loop((DATA / "loop_timeout.out").read_text(), target="x")
    assert tl.samples
    assert not any(s.ok for s in tl.samples)
    assert {s.error_kind for s in tl.samples} == {ErrorKind.TIMEOUT}
    assert tl.max_gap <= 0.1


def test_timeline_transitions() -> None:
    lines = [
        "__svcc_loop__ start=1000",
        "s 1000 0 a",
        "s 1050 0 b",
        "s 1100 7 ",
        "s 1150 0 a",
        "s 1200 7 ",
        "s 1250 7 ",
        "s 1300 7 ",
        "__svcc_loop__ end=1350",
    ]
    text = "\n".join(lines)
    tl = parse_loop(text, target="x")
    assert tl.backends == {"a", "b"}
    settled = tl.settled_after(False)
    assert settled is not None
    assert settled.t == pytest.approx(1.2)
    first_fail = tl.first(ok=False)
    assert first_fail is not None
    assert first_fail.error_kind is ErrorKind.REFUSED
    gone_b = tl.settled_without("b")
    assert gone_b is not None
    assert gone_b.t == pytest.approx(1.1)
    last_a = tl.last(backend="a")
    assert last_a is not None
    assert last_a.t == pytest.approx(1.15)
    assert tl.settled_after(True) is None


def test_timeline_first_and_last_match_ok_and_backend() -> None:
    tl = parse_loop("__svcc_loop__ start=1000\ns 1000 0 a\ns 1050 7 \ns 1100 0 b\ns 1150 0 a\n", target="x")
    after_a = tl.first(1.05, backend="a")
    assert after_a is not None
    assert after_a.t == pytest.approx(1.15)
    first_ok = tl.first(1.01, ok=True)
    assert first_ok is not None
    assert first_ok.backend == "b"
    assert tl.first(1.01, ok=False, backend="a") is None
    last_fail = tl.last(ok=False)
    assert last_fail is not None
    assert last_fail.t == pytest.approx(1.05)
    last_any = tl.last()
    assert last_any is not None
    assert last_any.t == pytest.approx(1.15)
    assert tl.last(ok=True, backend="c") is None


def test_truncated_loop_output_is_flagged() -> None:
    tl = parse_loop("__svcc_loop__ start=5\ns 5 0 a\n", target="x")
    assert tl.truncated
    assert len(tl.samples) == 1


def test_sample_loop_reports_a_loop_that_did_not_run() -> None:
    def fake(argv: Sequence[str], timeout: float) -> ExecResult:
        return ExecResult(tuple(argv), 2, "", "sh: 1: Syntax error")

    with pytest.raises(ProbeError, match="printed nothing"):
        sample_loop(fake, "10.0.0.1", 80, duration=1)


class _Host(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"backend-1")

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def backend() -> Iterator[socketserver.TCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Host)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.server_close()


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("sh")), reason="needs sh and curl")
def test_the_real_loop_sees_a_backend_go_away(backend: socketserver.TCPServer) -> None:
    """Runs the loop script with this machine's sh/date/curl; the server stops mid-loop."""
    port = backend.server_address[1]

    def stop() -> None:
        backend.shutdown()
        backend.server_close()

    stopper = threading.Timer(0.5, stop)

    def local(argv: Sequence[str], timeout: float) -> ExecResult:
        stopper.start()
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        return ExecResult(tuple(argv), p.returncode, p.stdout, p.stderr, where="host")

    tl = sample_loop(local, "127.0.0.1", int(port), duration=1.2)
    assert loop_argv("127.0.0.1", 1, duration=1)[:2] == ["sh", "-c"]
    assert tl.samples[0].ok
    assert tl.samples[0].backend == "backend-1"
    gone = tl.settled_after(False)
    assert gone is not None
    assert tl.started is not None
    assert 0.3 < gone.t - tl.started < 1.2
    # resolution under load is shown by the captured loops above; here only sanity
    assert tl.max_gap < 0.5


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("sh")), reason="needs sh and curl")
def test_the_real_loop_can_be_peeked_while_it_runs_and_stopped(
    backend: socketserver.TCPServer, tmp_path: Path
) -> None:
    """A stoppable loop with its log file: peek_loop reads the tries made so far while the
    loop runs, stop() ends exactly that loop and removes its PID and log files."""
    port = int(backend.server_address[1])

    def local(argv: Sequence[str], timeout: float) -> ExecResult:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        # As through a pod's exec: a process ended by a signal exits 128 + signal.
        rc = 128 - p.returncode if p.returncode < 0 else p.returncode
        return ExecResult(tuple(argv), rc, p.stdout, p.stderr, where="host")

    loop = loopctl.StoppableLoop(Vantage(local, where="host"), str(tmp_path / "svcc-loop-t.pid"))
    assert loop.log_file == str(tmp_path / "svcc-loop-t.log")
    bg = Background(lambda: sample_loop(loop.vantage, "127.0.0.1", port, duration=30,
                                        log_file=loop.log_file)).start()
    wait_until(lambda: (loopctl.running(loop), "loop running"), timeout=10, what="the loop to start")

    def seen() -> tuple[bool, str]:
        tl = peek_loop(local, loop.log_file, "127.0.0.1", port)
        return tl.first(ok=True, backend="backend-1") is not None, f"{len(tl.samples)} tries"

    wait_until(seen, timeout=10, what="the loop's log to show backend-1")
    partial = peek_loop(local, loop.log_file, "127.0.0.1", port)
    assert partial.truncated
    assert partial.started is not None
    loopctl.stop(loop)
    tl = bg.result(timeout=10)
    assert tl.truncated  # killed: no end marker
    assert len(tl.samples) >= len(partial.samples) > 0
    assert tl.samples[: len(partial.samples)] == partial.samples  # the file holds what stdout had
    assert not Path(loop.pidfile).exists()
    assert not Path(loop.log_file).exists()
    with pytest.raises(ProbeError, match="could not read the sampling loop's log"):
        peek_loop(local, loop.log_file, "127.0.0.1", port)


def test_loop_argv_passes_the_log_file_only_when_given() -> None:
    plain = loop_argv("10.96.0.9", 80, duration=2)
    logged = loop_argv("10.96.0.9", 80, duration=2, log_file="/tmp/x.log")
    assert logged == [*plain, "/tmp/x.log"]
    assert plain[3:] == ["http://10.96.0.9:80/hostname", "2000", "50", "0.08"]


@pytest.mark.parametrize(
    ("proxy_mode", "provider", "node_access", "needle"),
    [
        ("none", "kind", True, "runs no kube-proxy"),
        ("iptables", "existing", False, "existing provider has no access to nodes and there are no hostNetwork"),
        ("nftables", "existing", False, "127.0.0.1:10249"),
    ],
)
def test_kube_proxy_metrics_are_skipped_with_a_reason_without_kube_proxy_or_node_access(
    proxy_mode, provider, node_access, needle
):
    why = metrics_unavailable_reason(proxy_mode=proxy_mode, cni="cilium", provider=provider, node_access=node_access,
                                     vantages=False)
    assert why is not None
    assert needle in why


def test_kube_proxy_metrics_are_read_on_a_kind_cluster_with_kube_proxy():
    assert metrics_unavailable_reason(proxy_mode="iptables", cni="kindnet", provider="kind", node_access=True,
                                      vantages=False) is None


def test_kube_proxy_metrics_are_read_from_the_loopback_of_the_clusters_family():
    from fixtures.probes.metrics import metrics_argv, metrics_host

    assert metrics_argv(host=metrics_host("ipv6"))[-1] == "http://[::1]:10249/metrics"
    assert metrics_argv(host=metrics_host("ipv4"))[-1] == "http://127.0.0.1:10249/metrics"
    assert metrics_host("dual") == "127.0.0.1"
