"""The scale runner's one measuring move, offline: loops started on every node's client, the
change made only once they all run, the delay per node read off each loop's own tries, and
every loop stopped — against fake client pods that serve a ClusterIP some time after the change."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from fixtures.observations import ExecResult
from fixtures.probes import Vantage
from fixtures.probes.loopctl import PIDFILE_WRAPPER, RUNNING_CHECK, STOP_SCRIPT
from fixtures.scale import runner
from fixtures.scale.runner import ScaleConfig, ScaleRun
from fixtures.spec import ClusterSpec

INTERVAL_S = 0.05


class FakeClientPod:
    """A client pod whose sampling loop is answered ``delay`` seconds after the change (never
    when None), by ``backend``; it runs the loop, the PID check, ``cat`` of the log and the stop."""

    def __init__(self, world: World, delay: float | None, backend: str = "web-a") -> None:
        self.world = world
        self.delay = delay
        self.backend = backend
        self.started: float | None = None
        self.stopped = threading.Event()
        self.commands: list[str] = []

    def lines(self, until: float) -> list[str]:
        assert self.started is not None
        out = [f"__svcc_loop__ start={round(self.started * 1000)}"]
        t = self.started
        while t <= until:
            changed = self.world.changed_at
            ok = self.delay is not None and changed is not None and t >= changed + self.delay
            out.append(f"s {round(t * 1000)} 0 {self.backend}" if ok else f"s {round(t * 1000)} 7 ")
            t += INTERVAL_S
        return out

    def __call__(self, argv: Sequence[str], timeout: float) -> ExecResult:
        args = tuple(argv)
        if args[:3] == ("sh", "-c", PIDFILE_WRAPPER):
            self.commands.append("loop")
            self.started = time.time()
            self.stopped.wait(timeout=float(args[8]) / 1000)
            return ExecResult(args, 143, "\n".join(self.lines(time.time())) + "\n", "")
        if args[:3] == ("sh", "-c", RUNNING_CHECK):
            self.commands.append("running?")
            return ExecResult(args, 0 if self.started is not None and not self.stopped.is_set() else 1, "", "")
        if args[0] == "cat":
            self.commands.append("peek")
            return ExecResult(args, 0, "\n".join(self.lines(time.time())) + "\n", "")
        if args[:3] == ("sh", "-c", STOP_SCRIPT):
            self.commands.append("stop")
            self.stopped.set()
            return ExecResult(args, 0, "", "")
        raise AssertionError(f"unexpected command {args}")


class World:
    changed_at: float | None = None


def make_run(tmp_path: Path, pods: dict[str, FakeClientPod]) -> ScaleRun:
    run = ScaleRun(spec=ClusterSpec(), config=ScaleConfig(), results_dir=tmp_path, run_id="r1", images={})
    run.clients = {node: Vantage(pod, where=f"pod svcc-scale/scale-client-{node}", node=node)
                   for node, pod in pods.items()}
    return run


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SCALE_POLL_INTERVAL", 0.1)


def test_the_change_waits_for_every_loop_and_each_node_gets_its_own_delay(tmp_path: Path) -> None:
    world = World()
    pods = {"cp": FakeClientPod(world, 0.1), "w1": FakeClientPod(world, 0.3), "w2": FakeClientPod(world, 0.6)}
    run = make_run(tmp_path, pods)

    def change() -> float:
        assert all(p.started is not None for p in pods.values())  # every loop runs before the change
        world.changed_at = time.time()
        return world.changed_at

    measured = run.served("10.96.0.50", None, change, scenario="one more Service", label="more-100-00",
                          timeout=5.0)
    assert set(measured) == {"cp", "w1", "w2"}
    for node, want in (("cp", 0.1), ("w1", 0.3), ("w2", 0.6)):
        m = measured[node]
        assert m.delay is not None
        assert want <= m.delay <= want + 2 * INTERVAL_S, (node, m.delay)
        assert m.resolution == pytest.approx(INTERVAL_S, abs=0.01)
        assert m.where == node
    for pod in pods.values():
        assert pod.commands[0] == "loop"
        assert "stop" in pod.commands  # no loop is left running in a pod


def test_a_swap_is_served_only_when_the_new_backend_answers(tmp_path: Path) -> None:
    world = World()
    pods = {"w1": FakeClientPod(world, 0.2, backend="web-b"), "w2": FakeClientPod(world, 0.2, backend="web-c")}
    run = make_run(tmp_path, pods)

    def change() -> float:
        world.changed_at = time.time()
        return world.changed_at

    measured = run.served("10.96.0.20", "web-c", change, scenario="endpoint change", label="svc-00000 → web-c",
                          timeout=1.0)
    assert measured["w2"].delay is not None
    assert measured["w1"].delay is None  # answered, but by the old backend only
    assert "web-c" in measured["w1"].describe()


def test_a_node_that_never_serves_is_a_sample_that_did_not_converge(tmp_path: Path) -> None:
    world = World()
    pods = {"w1": FakeClientPod(world, 0.1), "w2": FakeClientPod(world, None)}
    run = make_run(tmp_path, pods)

    def change() -> float:
        world.changed_at = time.time()
        return world.changed_at

    started = time.monotonic()
    measured = run.served("10.96.0.51", None, change, scenario="one more Service", label="more-100-01",
                          timeout=1.0)
    assert time.monotonic() - started < 5.0  # bounded by the timeout, then the loops are stopped
    assert measured["w1"].delay is not None
    assert measured["w2"].delay is None
    assert "not converged" in measured["w2"].describe()
    assert "stop" in pods["w2"].commands
