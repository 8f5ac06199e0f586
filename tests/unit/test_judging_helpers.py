"""Judging helpers the suite calls (moved out of suite/, issue 17 item 3): a DNS lookup's
table mark (:func:`fixtures.expectations.dns.judge_lookup`) and a reachability observation that
counts only answers from ready endpoints (:class:`fixtures.expectations.traffic.FromBackend`)."""

from __future__ import annotations

import pytest

from fixtures import reachability
from fixtures.expectations.dns import ExpectedLookup, LookupOutcome, judge_lookup
from fixtures.expectations.traffic import FromBackend
from fixtures.observations import ErrorKind, HttpReply, Sample, Timeline
from fixtures.probes.udp_socket import UdpLoop

Mark = reachability.Mark
RESOLVABLE = ExpectedLookup("web.ns1.svc.cluster.local", "A", resolvable=True, addresses=frozenset({"10.96.0.5"}))
NXDOMAIN = ExpectedLookup("nope.ns1.svc.cluster.local", "A", resolvable=False)


# --------------------------------------------------------------------------- judge_lookup


@pytest.mark.parametrize(("expected", "problems", "answered", "mark"), [
    (RESOLVABLE, [], True, Mark.REACHED),  # resolved as promised
    (RESOLVABLE, ["NXDOMAIN, expected 10.96.0.5"], True, Mark.BLOCKED),  # promised, not resolved
    (NXDOMAIN, [], True, Mark.BLOCKED),  # NXDOMAIN as promised: the mark the expected table has
    (NXDOMAIN, ["found 10.0.0.1, expected NXDOMAIN"], True, Mark.REACHED),  # resolved, must not
    (RESOLVABLE, ["timed out"], False, Mark.UNKNOWN),  # nothing answered: unknown either way
    (NXDOMAIN, [], False, Mark.UNKNOWN),
])
def test_a_lookup_cell_is_the_promise_without_problems_and_its_opposite_with_them(
    expected: ExpectedLookup, problems: list[str], answered: bool, mark: Mark
) -> None:
    outcome = judge_lookup(expected, problems, answered, "seen", "kubectl exec c -- dig web")
    assert outcome.mark is mark
    assert outcome.command == "kubectl exec c -- dig web"
    want = reachability.expected_mark(expected.resolvable)
    assert (outcome.mark == want) == (answered and not problems)


def test_a_lookup_note_puts_the_problems_before_what_was_seen() -> None:
    ok = judge_lookup(RESOLVABLE, [], True, "NOERROR A 10.96.0.5", "dig")
    bad = judge_lookup(RESOLVABLE, ["no A records", "TTL 0"], True, "NOERROR", "dig")
    assert ok == LookupOutcome(Mark.REACHED, "NOERROR A 10.96.0.5", "dig")
    assert bad.note == "no A records; TTL 0 [NOERROR]"


# --------------------------------------------------------------------------- FromBackend


def http(backend: str | None = None, *, error_kind: ErrorKind | None = None) -> HttpReply:
    if backend is not None:
        return HttpReply("10.96.0.5:80", True, status=200, backend=backend, command="curl x")
    return HttpReply("10.96.0.5:80", False, error="failed", error_kind=error_kind, command="curl x")


def udp(*backends: str | None) -> UdpLoop:
    samples = tuple(Sample(t=float(i), ok=b is not None, backend=b,
                           error_kind=None if b is not None else ErrorKind.NO_REPLY)
                    for i, b in enumerate(backends))
    return UdpLoop(Timeline(target="10.96.0.5:81", samples=samples), command="udp loop")


READY = frozenset({"web-a", "web-b"})


@pytest.mark.parametrize(("obs", "reached"), [
    (http("web-a"), True),  # a ready endpoint answered
    (http("node-x"), False),  # something answered, not a ready endpoint: not the Service
    (http(error_kind=ErrorKind.REFUSED), False),  # the data plane refused
    (http(error_kind=ErrorKind.EXEC), None),  # the probe could not tell
    (udp("node-x", "web-b"), True),  # one ready endpoint among the answers is enough
    (udp("node-x"), False),
    (udp(None, None), False),  # every try unanswered: blocked
])
def test_only_an_answer_from_a_ready_endpoint_counts_as_reached(obs: object, reached: bool | None) -> None:
    judged = FromBackend(obs, READY)
    assert judged.reached is reached
    assert reachability.mark_of(judged) is {True: Mark.REACHED, False: Mark.BLOCKED, None: Mark.UNKNOWN}[reached]


def test_from_backend_names_who_answered_and_the_strangers() -> None:
    stranger = FromBackend(http("node-x"), READY)
    assert stranger.answered_by == {"node-x"}
    assert stranger.command == "curl x"
    assert stranger.summary() == f"{http('node-x').summary()}; answered by non-endpoints ['node-x']"
    looped = FromBackend(udp("web-a", "web-b", None), READY)
    assert looped.answered_by == {"web-a", "web-b"}
    assert looped.command == "udp loop"
    assert looped.summary() == udp("web-a", "web-b", None).summary()
    assert FromBackend(http(error_kind=ErrorKind.TIMEOUT), READY).answered_by == set()
