"""Convergence times read off timelines (fixtures.convergence) and the burst accumulation
of fixtures.churn — pure, offline."""

from __future__ import annotations

import pytest

from fixtures import convergence
from fixtures.churn import accumulate
from fixtures.convergence import Event, Outcome
from fixtures.observations import Sample, Timeline


def timeline(*tries: tuple[float, str | None], started: float = 0.0) -> Timeline:
    """``(t, backend)``; backend None: a failed try."""
    samples = tuple(Sample(t=t, ok=b is not None, backend=b, exit_code=0 if b else 7) for t, b in tries)
    return Timeline(target="10.96.0.1:80", samples=samples, started=started, where="pod ns/c on n1")


def test_served_is_the_first_success_after_the_change():
    tl = timeline((1.0, None), (1.1, None), (1.2, "a"), (1.3, "a"))
    m = convergence.measure(tl, Event("service created", 1.05, Outcome.SERVED))
    assert m.delay == pytest.approx(0.15)
    assert m.resolution == pytest.approx(0.1)


def test_served_from_a_backend_waits_for_that_backend():
    tl = timeline((1.0, "a"), (1.1, "a"), (1.2, "b"))
    m = convergence.measure(tl, Event("scale-up", 1.0, Outcome.SERVED, backend="b"))
    assert m.delay == pytest.approx(0.2)


def test_rejected_is_settled_failure_and_a_flap_pushes_it_later():
    tl = timeline((1.0, "a"), (1.1, None), (1.2, "a"), (1.3, None), (1.4, None))
    m = convergence.measure(tl, Event("service deleted", 1.0, Outcome.REJECTED))
    assert m.delay == pytest.approx(0.3)


def test_gone_is_the_try_after_the_backend_last_answered():
    tl = timeline((1.0, "a"), (1.1, "b"), (1.2, "a"), (1.3, "b"), (1.4, "b"))
    m = convergence.measure(tl, Event("pod deleted", 1.0, Outcome.GONE, backend="a"))
    assert m.delay == pytest.approx(0.3)


def test_the_window_ends_at_the_next_change():
    tl = timeline((1.0, "a"), (1.1, "b"), (2.0, "a"))
    m = convergence.measure(tl, Event("readiness failed", 1.0, Outcome.GONE, backend="a", until=1.5))
    assert m.delay == pytest.approx(0.1)
    late = convergence.measure(tl, Event("readiness failed", 1.0, Outcome.GONE, backend="a"))
    assert late.delay is None
    assert "still answered" in late.detail


def test_a_loop_started_after_the_change_measures_nothing():
    tl = timeline((2.0, "a"), started=1.5)
    m = convergence.measure(tl, Event("service created", 1.0, Outcome.SERVED))
    assert m.delay is None
    assert "started" in m.detail


def test_verdict_names_the_ceiling_and_every_sample():
    tl = timeline((1.0, None), (1.5, "a"))
    ms = convergence.measure_all([tl], [Event("service created", 1.0, Outcome.SERVED)])
    assert convergence.verdict("created", ms, ceiling=1.0) is None
    message = convergence.verdict("created", ms, ceiling=0.001)
    assert message is not None
    assert "ceiling 0.001s (--convergence-ceiling)" in message
    assert "[0.500]" in message
    assert "pod ns/c on n1" in message


def test_an_unconverged_sample_always_fails_the_verdict():
    tl = timeline((1.0, "a"), (1.1, "a"))
    ms = convergence.measure_all([tl], [Event("pod deleted", 1.0, Outcome.GONE, backend="a")])
    assert convergence.delays(ms) == []
    assert "not converged" in (convergence.verdict("deleted", ms, ceiling=100) or "")


def test_bursts_add_up_while_the_expectation_holds():
    want = frozenset({"a", "b"})
    union = accumulate(None, None, want, {"a"})
    union = accumulate(union, want, want, {"b"})
    assert union == want


def test_an_unexpected_backend_or_a_new_expectation_starts_over():
    want = frozenset({"a", "b"})
    union = accumulate(frozenset({"a"}), want, want, {"b", "stale"})
    assert union == {"b", "stale"}
    assert accumulate(frozenset({"a", "b"}), want, frozenset({"a"}), {"a"}) == {"a"}
    assert accumulate(frozenset({"a"}), want, want, None) == {"a"}
    assert accumulate(frozenset({"a"}), want, frozenset({"c"}), None) is None


def test_a_stale_answer_in_an_earlier_burst_does_not_outlive_the_stale_rules():
    want = frozenset({"a"})
    union = accumulate(None, None, want, {"a", "stale"})  # before kube-proxy caught up
    assert union == {"a", "stale"}
    assert accumulate(union, want, want, {"a"}) == {"a"}  # converged: judged on this burst
