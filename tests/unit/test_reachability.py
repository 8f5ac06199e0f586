"""Reachability tables: expected vs observed, side-by-side rendering, reproduce commands."""

from __future__ import annotations

import pytest

from fixtures import reachability
from fixtures.expectations import Endpoint, TrafficPolicy, backend_matrix, nodeport_answering_nodes
from fixtures.observations import ErrorKind, HttpReply, Unknown
from fixtures.reachability import (
    Mark,
    ReachabilityCheck,
    Table,
    backend_table,
    compare,
    expected_backend_table,
    expected_table,
    mark_of,
    observed_table,
)
from fixtures.reachability import _column_keys as column_keys

NODES = ["cp", "w1", "w2"]
EPS = (Endpoint("10.244.1.2", "w1", name="web-a"), Endpoint("10.244.2.2", "w2", name="web-b"))


def reply(ok: bool, kind: ErrorKind | None = None, cmd: str = "") -> HttpReply:
    return HttpReply(
        target="172.18.0.2:30080",
        ok=ok,
        status=200 if ok else None,
        error_kind=kind,
        error=None if ok else "Failed to connect",
        elapsed=0.001,
        command=cmd,
    )


def test_cells_from_observations() -> None:
    assert mark_of(reply(True)) is Mark.REACHED
    assert mark_of(reply(False, ErrorKind.REFUSED)) is Mark.BLOCKED
    assert mark_of(reply(False, ErrorKind.TIMEOUT)) is Mark.BLOCKED
    assert mark_of(reply(False, ErrorKind.EXEC)) is Mark.UNKNOWN
    assert mark_of(Unknown(target="x", error="boom")) is Mark.UNKNOWN
    assert mark_of(None) is Mark.UNKNOWN


def test_column_keys() -> None:
    assert column_keys(3) == ["A", "B", "C"]
    assert column_keys(28)[-2:] == ["AA", "AB"]


def test_nodeport_local_table_mismatch_names_the_cell_and_the_command() -> None:
    answers = nodeport_answering_nodes(NODES, EPS, TrafficPolicy.LOCAL)
    expected = expected_table(
        "NodePort web:80 from the host, externalTrafficPolicy=Local", ["host"], NODES, lambda r, c: answers[c]
    )
    results = {
        ("host", "cp"): reply(True, cmd="curl http://172.18.0.2:30080/hostname"),  # should not answer
        ("host", "w1"): reply(True),
        ("host", "w2"): reply(False, ErrorKind.TIMEOUT, cmd="curl http://172.18.0.4:30080/hostname"),
    }
    observed = observed_table("NodePort web:80 from the host, externalTrafficPolicy=Local", results)
    cmp = compare(expected, observed)
    assert not cmp.ok
    assert [(m.row, m.column, m.expected, m.observed) for m in cmp.mismatches] == [
        ("host", "cp", Mark.BLOCKED, Mark.REACHED),
        ("host", "w2", Mark.REACHED, Mark.BLOCKED),
    ]
    text = cmp.render()
    lines = text.splitlines()
    assert lines[1].startswith("expected")
    assert "observed" in lines[1]
    assert lines[3].split() == ["host", "X", ".", ".", "host", ".", ".", "X"]
    assert "  A = cp" in lines
    assert "reproduce: curl http://172.18.0.2:30080/hostname" in text
    assert "host -> w2: expected ., observed X" in text
    assert "timeout" in text


def test_unknown_never_matches_and_any_is_skipped() -> None:
    expected = expected_table("t", ["a"], ["x", "y"], lambda r, c: None if c == "y" else True)
    observed = observed_table(
        "t", {("a", "x"): Unknown("x", "pod gone"), ("a", "y"): reply(False, ErrorKind.REFUSED)}
    )
    cmp = compare(expected, observed)
    assert len(cmp.mismatches) == 1
    assert cmp.mismatches[0].observed is Mark.UNKNOWN
    assert "probe error: pod gone" in cmp.render()


def test_matching_tables() -> None:
    t = expected_table("t", ["a"], ["x"], lambda r, c: True)
    o = Table("t", [], [])
    o.set("a", "x", Mark.REACHED)
    cmp = compare(t, o)
    assert cmp.ok
    assert cmp.render().endswith("tables match")


def test_backend_tables_show_unexpected_backends() -> None:
    clients = {"client-cp": "cp", "client-w1": "w1", "client-w2": "w2"}
    want = backend_matrix(clients, EPS, TrafficPolicy.LOCAL)
    expected = expected_backend_table(
        "ClusterIP backends, internalTrafficPolicy=Local", want, ["web-a", "web-b"]
    )
    seen = {"client-cp": set(), "client-w1": {"web-a", "web-old"}, "client-w2": None}
    observed = backend_table(
        "ClusterIP backends, internalTrafficPolicy=Local",
        seen,
        ["web-a", "web-b"],
        commands={"client-w1": "kubectl exec client-w1 -- curl ..."},
    )
    assert observed.columns == ["web-a", "web-b", "web-old"]
    cmp = compare(expected, observed)
    got = {(m.row, m.column, m.expected.value, m.observed.value) for m in cmp.mismatches}
    assert got == {
        ("client-w1", "web-old", "X", "."),
        ("client-w2", "web-a", "X", "?"),
        ("client-w2", "web-b", ".", "?"),
    }
    assert "kubectl exec client-w1" in cmp.render()


def test_reachability_check_records_every_try() -> None:
    expected = expected_table("t", ["a"], ["x"], lambda r, c: True)
    answers = iter([False, True])

    def observe() -> Table:
        t = Table("t", [], [])
        t.set("a", "x", Mark.REACHED if next(answers) else Mark.BLOCKED)
        return t

    check = ReachabilityCheck(expected, observe)
    ok, detail = check()
    assert not ok
    assert "1 mismatching cell" in detail
    ok, _ = check()
    assert ok
    assert check.tries == 2
    assert check.last is not None
    assert check.last.ok


def test_wait_for_tables_keeps_the_rendered_tables_line_by_line_on_timeout():
    table = "TCP 10.96.0.5:80 (. reached)\nexpected    observed\nnode-a .    node-a X"

    def check():
        return False, table

    with pytest.raises(reachability.TablesMismatch) as err:
        reachability.wait_for_tables(check, timeout=0, what="TCP 10.96.0.5:80", problem="no match")
    text = str(err.value)
    first, *rest = text.splitlines()
    assert first.startswith("TCP 10.96.0.5:80: no match within ")
    assert "(1 observations)" in first
    assert "\n".join(rest) == table
    assert isinstance(err.value, AssertionError)


def test_wait_for_tables_reports_the_last_error_and_returns_once_the_tables_match():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("exec failed")
        return True, "tables match"

    assert reachability.wait_for_tables(flaky, timeout=5, interval=0.01, what="w") >= 0
    with pytest.raises(reachability.TablesMismatch, match=r"last error: RuntimeError: boom"):
        reachability.wait_for_tables(lambda: (_ for _ in ()).throw(RuntimeError("boom")), timeout=0, what="w")
