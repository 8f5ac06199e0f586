"""The bounded probe pool never fails inside a worker; Background runs one call aside."""

from __future__ import annotations

import threading
import time

import pytest

from fixtures.concurrency import Background, run_all, run_matrix
from fixtures.observations import Unknown


def test_results_keep_key_order_and_exceptions_become_unknown() -> None:
    def boom() -> int:
        raise ConnectionError("pod gone")

    out = run_all({"b": lambda: 2, "a": boom, "c": lambda: 3})
    assert list(out) == ["b", "a", "c"]
    assert out["b"] == 2
    unknown = out["a"]
    assert isinstance(unknown, Unknown)
    assert unknown.error == "ConnectionError: pod gone"
    assert unknown.target == "a"
    assert unknown.reached is None


def test_pool_is_bounded() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def task() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(0.05)
        with lock:
            running -= 1

    run_all(dict.fromkeys(range(12), task), max_workers=3)
    assert peak <= 3


def test_batch_timeout_marks_unfinished_tasks_unknown() -> None:
    gate = threading.Event()
    out = run_all({"fast": lambda: 1, "stuck": lambda: gate.wait(5)}, timeout=0.2)
    gate.set()
    assert out["fast"] == 1
    stuck = out["stuck"]
    assert isinstance(stuck, Unknown)
    assert "did not finish" in stuck.error


def test_matrix_runs_every_pair() -> None:
    out = run_matrix(["n1", "n2"], [80, 81], lambda node, port: f"{node}:{port}")
    assert out == {("n1", 80): "n1:80", ("n1", 81): "n1:81", ("n2", 80): "n2:80", ("n2", 81): "n2:81"}
    failed = run_matrix(["n1"], [80], lambda node, port: 1 // 0)
    cell = failed[("n1", 80)]
    assert isinstance(cell, Unknown)
    assert cell.target == "n1 -> 80"


def test_bad_pool_size_and_empty_batch() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        run_all({"a": lambda: 1}, max_workers=0)
    assert run_all({}) == {}


def test_background_returns_value_or_raises() -> None:
    with Background(time.monotonic) as job:
        pass
    assert job.result(timeout=5) > 0
    assert job.done

    def fail() -> None:
        raise RuntimeError("loop broke")

    bad = Background(fail).start()
    with pytest.raises(RuntimeError, match="loop broke"):
        bad.result(timeout=5)
    gate = threading.Event()
    slow = Background(lambda: gate.wait(5)).start()
    with pytest.raises(TimeoutError, match="still running"):
        slow.result(timeout=0.05)
    gate.set()
    assert slow.result(timeout=5) is True
    with pytest.raises(RuntimeError, match="never started"):
        Background(lambda: 1).result(timeout=1)
