"""hold_for: a condition that must keep holding for a whole window."""

from __future__ import annotations

import pytest

from fixtures.poll import HoldBroken, hold_for
from fixtures.timeouts import CONTROLLER_HANDS_OFF_WINDOW


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def test_holds_for_the_whole_window() -> None:
    clock = FakeClock()
    checks = hold_for(lambda: (True, "same"), window=2, interval=0.5, what="x", clock=clock, pause=clock.pause)
    assert checks == 5
    assert clock.now == pytest.approx(2.0)


def test_zero_window_still_checks_twice() -> None:
    clock = FakeClock()
    assert hold_for(lambda: (True, ""), window=0, what="x", clock=clock, pause=clock.pause) == 2


def test_breaks_at_the_first_false_with_its_detail_and_the_window_name() -> None:
    clock = FakeClock()
    answers = iter([(True, "ok"), (False, "slice rewritten: 10.0.0.9 added")])
    with pytest.raises(HoldBroken) as err:
        hold_for(lambda: next(answers), window=CONTROLLER_HANDS_OFF_WINDOW, interval=1, what="slice stays",
                 clock=clock, pause=clock.pause)
    message = str(err.value)
    assert "slice stays stopped holding after 1.0s" in message
    assert "CONTROLLER_HANDS_OFF_WINDOW" in message
    assert "10.0.0.9 added" in message


def test_an_exception_breaks_the_hold() -> None:
    def boom() -> tuple[bool, str]:
        raise ConnectionError("api down")

    with pytest.raises(HoldBroken, match="ConnectionError: api down"):
        hold_for(boom, window=1, what="x")
