"""Offline: session-affinity expiry and client-IP judgements, the client-IP loop (its parser
and its shell, run with a stand-in curl), unused kind addresses and host routes, and the
profiles of the new checks (declared by the suite; the legacy rules read old files alike)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from fixtures import hostnet
from fixtures.errors import SvcconformError
from fixtures.expectations.clusterip import affinity_expiry_problem, saw_client_ip
from fixtures.observations import ErrorKind, ExecResult
from fixtures.probes.clientip import clientip_argv, parse_clientip_loop
from reports.legacy_profiles import classify as legacy_classify

# --------------------------------------------------------------------------- affinity expiry


def test_affinity_expiry_is_shown_by_one_answer_from_another_backend() -> None:
    assert affinity_expiry_problem("b1", ["b1", None, "b2"], backends=3, timeout_s=5, idle_s=8) is None


def test_affinity_that_never_expires_names_the_odds_of_bad_luck() -> None:
    why = affinity_expiry_problem("b1", ["b1"] * 10, backends=3, timeout_s=5, idle_s=8)
    assert why is not None
    assert "still sent to b1 by all 10 connection(s)" in why
    assert "timeoutSeconds 5" in why
    assert "1.7e-05" in why  # (1/3)^10


def test_affinity_expiry_without_answers_is_a_problem_of_its_own() -> None:
    why = affinity_expiry_problem("b1", [None, None], backends=3, timeout_s=5, idle_s=8)
    assert why == "no answer to any of 2 connection(s) made after idling 8s"


# --------------------------------------------------------------------------- client IP


@pytest.mark.parametrize(
    ("seen", "verdict"),
    [
        ({"10.244.1.5"}, True),
        ({"10.244.1.5", "172.18.0.3"}, False),
        ({"172.18.0.3"}, False),
        (set(), None),
        (None, None),
    ],
)
def test_saw_client_ip(seen: set[str] | None, verdict: bool | None) -> None:
    assert saw_client_ip("10.244.1.5", seen) is verdict


def test_parse_clientip_loop_pairs_each_backend_with_the_address_it_saw() -> None:
    out = "\n".join(
        [
            "c 0 feat-backend-a 1 10.244.1.5:40112 0 ",
            "c 7 ",
            "c 0 feat-backend-b 1 10.244.1.5:40114 1 ",  # /clientip on a new connection: unknown
            "c 0 feat-backend-c 1 ",  # cut short
            "c 0 feat-backend-b 1 [fd00::5]:40116 0 ",
            "noise",
            "__svcc_clientip__ end",
        ]
    )
    loop = parse_clientip_loop(out, target="10.96.0.10:80", where="pod x", command="kubectl exec ...")
    assert [t.backend for t in loop.tries] == ["feat-backend-a", None, None, None, "feat-backend-b"]
    assert [t.error_kind for t in loop.tries] == [
        None,
        ErrorKind.REFUSED,
        ErrorKind.UNKNOWN,
        ErrorKind.UNKNOWN,
        None,
    ]
    assert loop.seen_by() == {"feat-backend-a": {"10.244.1.5"}, "feat-backend-b": {"fd00::5"}}
    assert not loop.truncated
    assert parse_clientip_loop("c 28 ", target="t").truncated


@pytest.fixture
def fake_curl(tmp_path: Path) -> Path:
    """A curl that answers like agnhost behind a proxy: two backends in turn, each pair of
    transfers on one connection, ``-w`` applied after each transfer."""
    script = tmp_path / "curl"
    state = tmp_path / "n"
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {state} 2>/dev/null || echo 0); echo $((n + 1)) > {state}\n"
        'w=""; for a in "$@"; do [ "$prev" = "-w" ] && w="$a"; prev="$a"; done\n'
        'out() { printf "%s" "$1"; printf "%b" "$(printf "%s" "$w" | sed "s/%{num_connects}/$2/")"; }\n'
        'out "b$((n % 2))" 1; out "10.244.1.5:4$n" 0\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def test_the_clientip_loop_script_runs_and_parses(fake_curl: Path) -> None:
    argv = clientip_argv("10.96.0.10", 80, tries=4, timeout=1)
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["http://10.96.0.10:80", "4", "1"]
    env = {**os.environ, "PATH": f"{fake_curl}:{os.environ['PATH']}"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)
    loop = parse_clientip_loop(proc.stdout, target="10.96.0.10:80")
    assert proc.returncode == 0, proc.stderr
    assert [t.backend for t in loop.tries] == ["b0", "b1", "b0", "b1"], proc.stdout
    assert loop.seen_by() == {"b0": {"10.244.1.5"}, "b1": {"10.244.1.5"}}
    assert not loop.truncated


# --------------------------------------------------------------------------- unused addresses


def test_unused_kind_addresses_sit_in_the_last_slash_24_of_the_nodes_slash_16() -> None:
    nodes = ["172.18.0.2", "172.18.0.3", "172.18.0.4"]
    assert hostnet.unused_kind_addresses(nodes, count=3, slot=0) == [
        "172.18.255.16",
        "172.18.255.17",
        "172.18.255.18",
    ]
    assert hostnet.unused_kind_addresses(nodes, count=1, slot=2) == ["172.18.255.24"]


def test_unused_kind_addresses_on_ipv6_only_nodes_sit_high_in_their_slash_64() -> None:
    nodes = ["fc00:f853:ccd:e793::2", "fc00:f853:ccd:e793::3"]
    assert hostnet.unused_kind_addresses(nodes, count=2, slot=1) == [
        "fc00:f853:ccd:e793::ffff:14",
        "fc00:f853:ccd:e793::ffff:15",
    ]
    assert hostnet.host_prefix("fc00::1") == "fc00::1/128"
    assert hostnet.host_prefix("172.18.255.16") == "172.18.255.16/32"


@pytest.mark.parametrize(
    ("nodes", "count", "slot", "message"),
    [
        ([], 1, 0, "no node address"),
        (["172.18.0.2"], 5, 0, "out of range"),
        (["172.18.0.2"], 1, 60, "out of range"),
        (["172.18.255.16", "172.18.0.2"], 1, 0, "belong to nodes"),
    ],
)
def test_unused_kind_addresses_refuse_what_cannot_work(
    nodes: list[str], count: int, slot: int, message: str
) -> None:
    with pytest.raises(SvcconformError, match=message):
        hostnet.unused_kind_addresses(nodes, count=count, slot=slot)


def test_every_cell_gets_its_own_block_of_addresses() -> None:
    modes = ["iptables", "nftables", "ipvs", "none", "other"]
    cnis = ["kindnet", "calico", "cilium", "flannel", "unknown"]
    slots = [hostnet.cell_slot(m, c) for m in modes for c in cnis]
    assert len(set(slots)) == len(slots)
    assert max(slots) < (256 - hostnet.FIRST) // hostnet.BLOCK


# --------------------------------------------------------------------------- host routes


class FakeIp:
    """``ip`` as fixtures.hostnet.run sees it: node IPs on-link unless listed as routed."""

    def __init__(self, *, routed_via_gateway: set[str] = frozenset(), held: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[list[str]] = []
        self.routed_via_gateway = routed_via_gateway
        self.held = held

    def __call__(self, argv: list[str], *, timeout: float) -> ExecResult:
        self.calls.append(list(argv))
        if argv[:4] == ["ip", "-j", "route", "get"]:
            via = argv[4]
            route = {"dst": via, "dev": "br-1"} | (
                {"gateway": "192.0.2.1"} if via in self.routed_via_gateway else {}
            )
            return ExecResult(tuple(argv), 0, f"[{__import__('json').dumps(route)}]", "", "host")
        if argv[:4] == ["ip", "-j", "route", "show"]:
            address = argv[4].removesuffix("/32")
            out = f'[{{"dst": "{address}", "gateway": "172.18.0.9"}}]' if address in self.held else "[]"
            return ExecResult(tuple(argv), 0, out, "", "host")
        return ExecResult(tuple(argv), 0, "", "", "host")


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostnet.os, "geteuid", lambda: 0)
    monkeypatch.setattr(hostnet.shutil, "which", lambda name: f"/usr/sbin/{name}")


@pytest.mark.usefixtures("as_root")
def test_host_routes_are_added_then_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    ip = FakeIp()
    monkeypatch.setattr(hostnet, "run", ip)
    with hostnet.HostRoutes({"172.18.255.16": "172.18.0.2", "172.18.255.17": "172.18.0.3"}) as routes:
        assert routes.reason == ""
        assert routes.added == {"172.18.255.16": "172.18.0.2", "172.18.255.17": "172.18.0.3"}
    changes = [c for c in ip.calls if c[:3] in (["ip", "route", "add"], ["ip", "route", "del"])]
    assert changes == [
        ["ip", "route", "add", "172.18.255.16/32", "via", "172.18.0.2"],
        ["ip", "route", "add", "172.18.255.17/32", "via", "172.18.0.3"],
        ["ip", "route", "del", "172.18.255.16/32", "via", "172.18.0.2"],
        ["ip", "route", "del", "172.18.255.17/32", "via", "172.18.0.3"],
    ]
    assert routes.added == {}


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        (FakeIp(routed_via_gateway={"172.18.0.3"}), "node 172.18.0.3 is not on a network directly attached"),
        (FakeIp(held={"172.18.255.16"}), "172.18.255.16/32 is already routed on this machine"),
    ],
)
def test_host_routes_are_not_touched_when_they_cannot_work(
    monkeypatch: pytest.MonkeyPatch, ip: FakeIp, reason: str
) -> None:
    monkeypatch.setattr(hostnet, "run", ip)
    with hostnet.HostRoutes({"172.18.255.16": "172.18.0.2", "172.18.255.17": "172.18.0.3"}) as routes:
        assert reason in routes.reason
        assert routes.added == {}
    assert not [c for c in ip.calls if c[:3] in (["ip", "route", "add"], ["ip", "route", "del"])]


def test_host_routes_need_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostnet.os, "geteuid", lambda: 1000)
    assert hostnet.HostRoutes({"172.18.255.16": "172.18.0.2"}).add().reason == "adding host routes needs root"


# --------------------------------------------------------------------------- report profiles


@pytest.mark.parametrize(
    ("test_id", "family", "profile"),  # family: the one old results files record
    [
        (
            "suite/test_session_affinity.py::test_session_affinity_timeout_keeps_a_client_within_it_and_releases_it_after_idling",
            "clusterip",
            "extended",
        ),
        (
            "suite/test_session_affinity.py::test_switching_session_affinity_on_a_live_service_makes_it_sticky_then_spreads_it_again",
            "clusterip",
            "core",
        ),
        (
            "suite/test_session_affinity.py::test_client_ip_affinity_on_a_node_port_keeps_an_outside_client_on_one_backend_per_node",
            "nodeport",
            "core",
        ),
        (
            "suite/test_service_features.py::test_one_port_number_over_tcp_and_udp_reaches_the_backends_on_both_protocols",
            "clusterip",
            "core",
        ),
        (
            "suite/test_service_features.py::test_a_service_labelled_for_another_proxy_is_ignored_until_the_label_is_removed",
            "clusterip",
            "extended",
        ),
        (
            "suite/test_service_features.py::test_external_ips_reach_the_backends_from_pods_nodes_and_this_machine",
            "clusterip",
            "extended",
        ),
        (
            "suite/test_service_features.py::test_backends_see_the_client_pod_ip_through_the_cluster_ip",
            "clusterip",
            "extended",
        ),
    ],
)
def test_the_new_checks_are_classified(test_id: str, family: str, profile: str) -> None:
    """As the suite declares them (the snapshot, itself checked against the collected suite by
    test_profiles_snapshot.py), and as the legacy rules read them under their old families."""
    declared = json.loads((Path(__file__).parent / "data" / "profiles_snapshot.json").read_text())["profiles"]
    assert declared[test_id] == profile
    assert legacy_classify(test_id, family)[0] == profile


def test_the_classified_ids_are_the_suites_tests() -> None:
    root = Path(__file__).parents[2] / "suite"
    text = (root / "test_session_affinity.py").read_text() + (root / "test_service_features.py").read_text()
    for test_id, *_ in test_the_new_checks_are_classified.pytestmark[0].args[1]:  # type: ignore[attr-defined]
        assert f"def {test_id.split('::')[1]}(" in text, test_id
