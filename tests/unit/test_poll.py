"""wait_until: returns the time taken, names the timeout, keeps the last detail and error."""

from __future__ import annotations

import pytest

from fixtures import timeouts
from fixtures.poll import WaitTimeout, wait_until
from fixtures.timeouts import POD_START_TIMEOUT, Timeout, describe


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_returns_elapsed_time_until_the_check_holds() -> None:
    clock = FakeClock()
    answers = iter([(False, "1/3 Ready"), (False, "2/3 Ready"), (True, "3/3 Ready")])
    elapsed = wait_until(lambda: next(answers), timeout=10, interval=0.5, what="pods", clock=clock,
                         pause=clock.pause)
    assert elapsed == pytest.approx(1.0)
    assert clock.pauses == [0.5, 0.5]


def test_timeout_names_what_the_constant_the_last_detail_and_the_last_error() -> None:
    clock = FakeClock()
    calls = 0

    def check() -> tuple[bool, str]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("api server went away")
        return False, f"{calls}/3 pods Ready: web-2 ContainerCreating"

    with pytest.raises(WaitTimeout) as err:
        wait_until(check, timeout=POD_START_TIMEOUT, interval=60, what="pods app=web to be Ready",
                   clock=clock, pause=clock.pause)
    message = str(err.value)
    assert "POD_START_TIMEOUT" in message
    assert "300s" in message
    assert "pods app=web to be Ready" in message
    assert "web-2 ContainerCreating" in message
    assert "ConnectionError: api server went away" in message
    assert "\n" not in message
    assert err.value.attempts == calls == 6
    assert clock.now - 100.0 == pytest.approx(300.0)  # never waits past the deadline


def test_checks_at_least_once_even_with_zero_timeout() -> None:
    assert wait_until(lambda: (True, "ok"), timeout=0, what="x") == pytest.approx(0, abs=0.1)
    with pytest.raises(WaitTimeout, match="last observed: nope"):
        wait_until(lambda: (False, "nope"), timeout=0, what="x")


def test_real_pauses_are_bounded_by_the_deadline() -> None:
    with pytest.raises(WaitTimeout) as err:
        wait_until(lambda: (False, "never"), timeout=0.2, interval=0.05, what="nothing")
    assert 0.2 <= err.value.elapsed < 1.0


def test_bad_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="interval > 0"):
        wait_until(lambda: (True, ""), timeout=1, interval=0, what="x")


def test_every_timeout_constant_is_named_and_positive() -> None:
    found = {k: v for k, v in vars(timeouts).items() if isinstance(v, Timeout)}
    assert len(found) > 15
    for name, value in found.items():
        assert value.name == name
        assert float(value) > 0
    assert describe(POD_START_TIMEOUT) == "300s (POD_START_TIMEOUT)"
    assert describe(12.5) == "12.5s"
    assert POD_START_TIMEOUT == 300  # still just a number for every API that takes seconds


def test_no_bare_sleeps_or_unfinished_markers_in_the_framework() -> None:
    import re
    from pathlib import Path

    root = Path(timeouts.__file__).resolve().parent
    pattern = re.compile(r"(^|[^_a-z])(time\.)?sleep\(")
    marker = re.compile("NotImplemented" "Error|TO" "DO|FIX" "ME")
    offenders = [
        f"{path.name}:{n}"
        for path in root.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if (pattern.search(line) and "def " not in line) or marker.search(line)
    ]
    assert not offenders
