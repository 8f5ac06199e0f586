"""reports.flakes: the flake figure's table from synthetic runs, each run's pytest command,
and how the runner treats pytest's exit codes, a timeout and Ctrl-C (subprocess mocked)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from reports import flakes
from reports.flakes import CellArg, RunOptions, load_runs, parse_cell, pytest_argv, tabulate

SAMPLES = Path(__file__).parent / "data" / "results"
DNS = "suite/test_dns.py::test_service_a_record_resolves_to_cluster_ip"
ENV = "suite/test_env_discovery.py::test_pod_sees_service_host_and_port_variables"
NODEPORT = "suite/test_nodeport.py::test_nodeport_keeps_a_udp_flow_on_its_backend[udp]"
LB = "suite/test_loadbalancer.py::test_load_balancer_is_provisioned"


FAMILY = {DNS: "dns", ENV: "env", NODEPORT: "nodeport", LB: "loadbalancer"}


def _test(test_id: str, outcome: str, message: str = "", *, version: int = 4) -> dict[str, Any]:
    family = FAMILY[test_id]
    entry: dict[str, Any] = {"id": test_id, "family": family, "outcome": outcome, "duration_s": 1.5,
                             "message": message, "diagnostics": None, "measurements": {}}
    if version >= 3:
        entry.update(profile="core", profile_reason=f"{family}: the family's default")
    return entry


def results_doc(tests: list[dict[str, Any]], *, version: int = 4, status: str = "completed",
                reason: str = "", suite_s: float | None = 40.0, cell: str = "iptables-kindnet",
                selection: str = "the whole suite") -> dict[str, Any]:
    mode, cni = cell.split("-")[:2]
    doc: dict[str, Any] = {
        "schema_version": version,
        "cell": {"name": cell, "proxy_mode": mode, "cni": cni, "provider": "kind",
                 "kubernetes_version": "v1.34.4", "nodes": 3, "kernel": "6.18.0",
                 "suite_version": "0.1.0", "images": {"node": "svcconform/kind-node:v1.34.4", "airgapped": True}},
        "status": status,
        "reason": reason,
        "started": "2026-12-07T22:00:00+00:00",
        "finished": "2026-12-07T22:01:00+00:00",
        "duration_s": 60.0,
        "timings": {"cluster_create_s": 5.0, "suite_s": suite_s},
        "hypothesis_seed": None,
        "tests": tests,
    }
    if version >= 2:
        doc["run"] = {"args": [], "selection": selection, "partial": selection != "the whole suite",
                      "collected": len(tests), "deselected": 0, "suite_commit": None, "suite_dirty": None}
    return doc


def write_run(out: Path, index: int, doc: dict[str, Any] | None, *, exit_code: int | None = 0,
              partial_stamp: str | None = None, meta: dict[str, Any] | None = None) -> Path:
    """``out/run-<index>/`` as the runner leaves it: run.json, and the results plugin's file."""
    run_dir = out / f"run-{index}"
    run_dir.mkdir(parents=True)
    if doc is not None:
        cell_dir = run_dir / doc["cell"]["name"]
        if partial_stamp:
            cell_dir = cell_dir / "runs" / partial_stamp
        cell_dir.mkdir(parents=True)
        (cell_dir / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    run_meta = {"run": index, "exit_code": exit_code, "wall_s": 50.0 + index, **(meta or {})}
    (run_dir / flakes.RUN_FILE).write_text(json.dumps(run_meta), encoding="utf-8")
    return run_dir


LONG_FAILURE = "expected every node to answer on udp/30080\nobserved: " + "timeout " * 60 + "| from kind-worker2"


@pytest.fixture
def four_runs(tmp_path: Path) -> Path:
    """run-1 schema 4, run-2 the schema-1 sample plus two tests, run-3 a cell-level error,
    run-4 pytest died before writing anything."""
    out = tmp_path / "flakes"
    write_run(out, 1, results_doc([_test(DNS, "passed"), _test(NODEPORT, "passed"), _test(LB, "skipped", "no LB")],
                                  suite_s=40.0), exit_code=0)
    old = json.loads((SAMPLES / "iptables-kindnet" / "results.json").read_text())
    assert old["schema_version"] == 1
    old["tests"] += [_test(NODEPORT, "failed", LONG_FAILURE, version=1), _test(LB, "skipped", "no LB", version=1)]
    write_run(out, 2, old, exit_code=1)
    cell_error = results_doc([_test(DNS, "error", "cell setup failed: kind create timed out"),
                              _test(NODEPORT, "error", "cell setup failed (as above)")],
                             status="error", reason="cluster setup failed: kind create timed out", suite_s=None)
    write_run(out, 3, cell_error, exit_code=1)
    write_run(out, 4, None, exit_code=3)
    return out


def _rows(table: flakes.Table) -> dict[str, flakes.Row]:
    return {row.id: row for row in table.rows}


def test_tabulates_counts_verdicts_and_first_failure(four_runs: Path) -> None:
    table = tabulate(load_runs([four_runs]))
    assert table.cell == "iptables-kindnet"
    assert [r.label for r in table.runs] == ["run-1", "run-2", "run-3", "run-4"]
    assert [r.status for r in table.runs] == ["completed", "completed", "error", "error"]
    rows = _rows(table)
    nodeport = rows[NODEPORT]
    assert nodeport.counts == {"passed": 1, "failed": 1, "skipped": 0, "error": 1}
    assert nodeport.missing == 1  # run-4 wrote nothing
    assert nodeport.verdict == flakes.FLAKY
    label, message = nodeport.first_failure or ("", "")
    assert label == "run-2"
    assert "\n" not in message
    assert len(message) == flakes.MESSAGE_CHARS
    assert message.startswith("expected every node to answer on udp/30080 observed: timeout")
    assert message.endswith("…")
    # passed twice, errored in the run that failed as a whole: counted, but not a flake
    dns = rows[DNS]
    assert dns.counts == {"passed": 2, "failed": 0, "skipped": 0, "error": 1}
    assert dns.verdict == flakes.PASSED
    assert dns.first_failure == ("run-3", "cell setup failed: kind create timed out")
    assert rows[LB].verdict == flakes.SKIPPED
    assert rows[LB].missing == 2
    # the schema-1 sample's own tests appear once, all passed
    assert rows[ENV].counts["passed"] == 1
    assert rows[ENV].missing == 3
    assert len(rows) == 24 + 2


def test_error_runs_say_why(four_runs: Path) -> None:
    runs = load_runs([four_runs])
    assert runs[2].reason == "cluster setup failed: kind create timed out"
    assert runs[2].suite_s is None
    assert runs[3].status == "error"
    assert runs[3].reason == "the run wrote no results.json (pytest exited 3; see run-4/pytest.log)"
    assert runs[3].tests == ()


def test_totals_and_stable_ordering(four_runs: Path) -> None:
    table = tabulate(load_runs([four_runs]))
    # suite seconds over the runs that recorded them: run-1 40.0, run-2 the sample's 1203.6
    assert table.suite_seconds == (40.0, pytest.approx(621.8), 1203.6)
    assert table.statuses() == {"completed": 2, "error": 2}
    line = flakes.totals_line(table)
    assert line.startswith("iptables-kindnet: 4 runs (2 completed, 2 error); suite seconds per run "
                           "min/median/max 40.0/621.8/1203.6; 26 tests (1 flaky,")
    verdicts = [row.verdict for row in table.rows]
    assert verdicts == sorted(verdicts, key=flakes.VERDICTS.index)
    passed = [row.id for row in table.rows if row.verdict == flakes.PASSED]
    assert passed == sorted(passed)
    assert table.rows[0].id == NODEPORT
    assert table.bad


def test_outputs_are_written_and_byte_identical(four_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert flakes.main(["table", str(four_runs)]) == 0
    first = {name: (four_runs / name).read_bytes() for name in (flakes.JSON_OUT, flakes.MD_OUT)}
    out = capsys.readouterr().out
    assert out.startswith("flakes: iptables-kindnet: 4 runs")
    assert f"    1     1     1     0     1  flaky      {NODEPORT}" in out
    assert "first failure (run-2): expected every node" in out
    assert flakes.main(["table", str(four_runs)]) == 0  # its own outputs are no run
    assert {name: (four_runs / name).read_bytes() for name in first} == first
    doc = json.loads(first[flakes.JSON_OUT])
    assert doc["totals"]["runs"] == 4
    assert doc["totals"]["suite_s"] == {"min": 40.0, "median": pytest.approx(621.8), "max": 1203.6}
    assert doc["totals"]["verdicts"]["flaky"] == 1
    assert [r["status"] for r in doc["runs"]] == ["completed", "completed", "error", "error"]
    assert doc["runs"][0]["results"] == "run-1/iptables-kindnet/results.json"
    assert doc["runs"][3]["results"] is None
    assert doc["runs"][1]["wall_s"] == 52.0
    top = doc["tests"][0]
    assert top["id"] == NODEPORT
    assert (top["passed"], top["failed"], top["error"], top["skipped"], top["missing"]) == (1, 1, 1, 0, 1)
    assert top["first_failure"]["run"] == "run-2"
    md = first[flakes.MD_OUT].decode()
    assert md.startswith("# Flake figure: iptables-kindnet, 4 runs\n")
    assert "| run-3 | error | 0 | 0 | 2 | 0 | — | 53.0 | cluster setup failed: kind create timed out |" in md
    assert f"| `{NODEPORT}` | 1 | 1 | 1 | 0 | 1 | flaky | run-2: expected" in md
    assert "\\| from kind-worker2" not in md  # cut before it; a kept pipe would be escaped
    assert all(line.count("|") - line.count("\\|") in (0, 9, 10) for line in md.splitlines())


def test_strict_fails_on_a_flake(four_runs: Path) -> None:
    assert flakes.main(["table", str(four_runs), "--strict"]) == 1


def test_a_partial_run_is_read_from_its_stamp_directory(tmp_path: Path) -> None:
    out = tmp_path / "flakes"
    for i, outcome in enumerate(("passed", "passed", "passed"), start=1):
        write_run(out, i, results_doc([_test(ENV, outcome)], selection="-m 'env'", suite_s=10.0 + i),
                  partial_stamp=f"20261208T00000{i}Z")
    table = tabulate(load_runs([out]))
    assert [row.verdict for row in table.rows] == [flakes.PASSED]
    assert table.rows[0].counts["passed"] == 3
    assert table.suite_seconds == (11.0, 12.0, 13.0)
    assert not table.bad
    assert "Selection: `-m 'env'`." in flakes.as_markdown(table)


def test_runs_are_ordered_by_number_and_several_dirs_pool(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for i in (10, 2, 1):
        write_run(a, i, results_doc([_test(ENV, "passed")]))
    write_run(b, 1, results_doc([_test(ENV, "failed", "no HOST var")]))
    (a / "run-x").mkdir()  # not a run
    runs = load_runs([a, b])
    assert [r.label for r in runs] == [f"{a}/run-1", f"{a}/run-2", f"{a}/run-10", f"{b}/run-1"]
    assert tabulate(runs).rows[0].verdict == flakes.FLAKY


def test_a_results_dir_is_one_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(SAMPLES / "iptables-kindnet", results / "iptables-kindnet")
    runs = load_runs([results])
    assert [r.label for r in runs] == [str(results)]
    assert runs[0].count("passed") == 24


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        (lambda d: None, "no run-<n>/ directories"),
        (lambda d: (write_run(d, 1, results_doc([], cell="iptables-kindnet")),
                    write_run(d, 2, results_doc([], cell="nftables-kindnet"))), "of 2 cells"),
        (lambda d: shutil.copytree(SAMPLES, d / "run-1", dirs_exist_ok=True), "5 cells in one run"),
    ],
    ids=["no-runs", "two-cells", "cells-in-one-run"],
)
def test_bad_dirs_are_usage_errors(tmp_path: Path, setup: Callable[[Path], object], problem: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "d"
    d.mkdir()
    setup(d)
    assert flakes.main(["table", str(d)]) == 2
    assert problem in capsys.readouterr().err


def test_several_dirs_need_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert flakes.main(["table", str(tmp_path), str(tmp_path)]) == 2
    assert "give --out" in capsys.readouterr().err


# --- the cell and each run's command -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cell", "name"),
    [
        ("iptables-kindnet", CellArg("iptables", "kindnet"), "iptables-kindnet"),
        ("nftables", CellArg("nftables", "kindnet"), "nftables-kindnet"),
        ("ipvs-flannel", CellArg("ipvs", "flannel"), "ipvs-flannel"),
        ("cilium-kpr", CellArg("none", "cilium"), "none-cilium"),
        ("nftables-kindnet-ipv6", CellArg("nftables", "kindnet", "ipv6"), "nftables-kindnet-ipv6"),
        ("iptables-kindnet-dual", CellArg("iptables", "kindnet", "dual"), "iptables-kindnet-dual"),
    ],
)
def test_parse_cell(text: str, cell: CellArg, name: str) -> None:
    assert parse_cell(text) == cell
    assert cell.name == name


@pytest.mark.parametrize("text", ["", "iptable-kindnet", "iptables-weave", "iptables-kindnet-ipv5", "a-b-c-d"])
def test_parse_cell_refuses_what_is_no_cell(text: str) -> None:
    with pytest.raises(flakes.UsageError, match="is not a cell"):
        parse_cell(text)


def test_pytest_argv() -> None:
    argv = pytest_argv(CellArg("nftables", "kindnet"), Path("/o/run-2"), keep_cluster=True,
                       extra=("-m", "dns"), python="/py")
    assert argv == ["/py", "-m", "pytest", "suite", "--proxy-mode=nftables", "--cni=kindnet", "--keep-cluster",
                    "--results-dir=/o/run-2", "-m", "dns"]
    argv = pytest_argv(CellArg("none", "cilium", "ipv6"), Path("/o/run-3"), keep_cluster=False, extra=(),
                       python="/py")
    assert argv == ["/py", "-m", "pytest", "suite", "--proxy-mode=none", "--cni=cilium", "--ip-family=ipv6",
                    "--results-dir=/o/run-3"]


# --- the runner, with a fake pytest ---------------------------------------------------


class FakeProc:
    """A finished (or, with ``wait_raises``, still running) pytest process."""

    def __init__(self, returncode: int, wait_raises: list[BaseException] | None = None) -> None:
        self.final = returncode
        self.returncode: int | None = None
        self.raises = list(wait_raises or [])
        self.signals: list[int] = []

    def wait(self, timeout: float | None = None) -> int:
        if self.raises:
            raise self.raises.pop(0)
        self.returncode = self.final
        return self.final

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)

    def terminate(self) -> None:
        self.signals.append(signal.SIGTERM)

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)


Script = Callable[[int, Path], tuple[dict[str, Any] | None, FakeProc]]


class FakePytest:
    """Stands in for the spawn: records each argv, writes what ``script(run, results_dir)`` says."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.argvs: list[list[str]] = []
        self.procs: list[FakeProc] = []

    def __call__(self, argv: list[str], cwd: Path, log: IO[bytes]) -> Any:
        self.argvs.append(argv)
        results_dir = Path(next(a for a in argv if a.startswith("--results-dir=")).split("=", 1)[1])
        doc, proc = self.script(len(self.argvs), results_dir)
        log.write(b"===== fake pytest =====\n")
        if doc is not None:
            cell_dir = results_dir / doc["cell"]["name"]
            cell_dir.mkdir(parents=True)
            (cell_dir / "results.json").write_text(json.dumps(doc), encoding="utf-8")
        self.procs.append(proc)
        return proc


def _ticks() -> Iterator[float]:
    t = 0.0
    while True:
        yield t
        t += 30.0


def _run(tmp_path: Path, script: Script, *, runs: int = 3, delete_at_end: bool = False,
         extra: tuple[str, ...] = ()) -> tuple[int, FakePytest, str]:
    fake = FakePytest(script)
    clock = _ticks()
    stream = _Stream()
    opts = RunOptions(cell=CellArg("iptables", "kindnet"), runs=runs, out=tmp_path / "out", extra=extra,
                      delete_at_end=delete_at_end)
    code = flakes.run_cell(opts, stream=stream, spawn=fake, clock=lambda: next(clock))
    return code, fake, stream.text


class _Stream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def _passing(run: int, results_dir: Path) -> tuple[dict[str, Any], FakeProc]:
    outcome = "failed" if run == 2 else "passed"
    return results_doc([_test(DNS, outcome, "NXDOMAIN"), _test(LB, "skipped", "no LB")]), FakeProc(1 if run == 2 else 0)


def test_every_run_keeps_the_cluster_and_the_table_is_written(tmp_path: Path) -> None:
    code, fake, text = _run(tmp_path, _passing, extra=("-m", "dns"))
    assert code == 0
    out = tmp_path / "out"
    assert [a[3:] for a in fake.argvs] == [
        ["suite", "--proxy-mode=iptables", "--cni=kindnet", "--keep-cluster", f"--results-dir={out}/run-{i}",
         "-m", "dns"] for i in (1, 2, 3)
    ]
    lines = text.splitlines()
    assert lines[:3] == ["run 1/3: 1 passed, 0 failed, 1 skipped (completed) in 30 s",
                         "run 2/3: 0 passed, 1 failed, 1 skipped (completed) in 30 s",
                         "run 3/3: 1 passed, 0 failed, 1 skipped (completed) in 30 s"]
    assert lines[3].startswith("flakes: iptables-kindnet: 3 runs (3 completed)")
    assert (out / "flakes.json").exists()
    assert (out / "run-2" / "pytest.log").read_text().startswith("===== fake pytest")
    meta = json.loads((out / "run-2" / "run.json").read_text())
    assert meta["exit_code"] == 1
    assert meta["argv"] == fake.argvs[1]
    row = tabulate(load_runs([out])).rows[0]
    assert (row.id, row.verdict, row.first_failure) == (DNS, flakes.FLAKY, ("run-2", "NXDOMAIN"))


def test_delete_at_end_lets_the_last_run_delete_the_cluster(tmp_path: Path) -> None:
    _, fake, _ = _run(tmp_path, _passing, delete_at_end=True)
    assert ["--keep-cluster" in argv for argv in fake.argvs] == [True, True, False]


def test_a_cell_error_run_is_counted_and_the_runs_go_on(tmp_path: Path) -> None:
    def script(run: int, results_dir: Path) -> tuple[dict[str, Any] | None, FakeProc]:
        if run == 1:
            return results_doc([_test(DNS, "error", "cell setup failed: no nodes")], status="error",
                               reason="cluster setup failed: no nodes", suite_s=None), FakeProc(1)
        if run == 2:
            return None, FakeProc(3)  # pytest's internal error, nothing written
        return results_doc([_test(DNS, "passed")]), FakeProc(0)

    code, fake, text = _run(tmp_path, script)
    assert code == 0
    assert len(fake.argvs) == 3
    lines = text.splitlines()
    assert lines[0] == ("run 1/3: 0 passed, 0 failed, 0 skipped, 1 error (error) in 30 s: "
                        "cluster setup failed: no nodes")
    assert lines[1].startswith("run 2/3: 0 passed, 0 failed, 0 skipped (error) in 30 s, pytest exit 3: "
                               "the run wrote no results.json (pytest exited 3; see ")
    table = tabulate(load_runs([tmp_path / "out"]))
    assert table.statuses() == {"completed": 1, "error": 2}
    assert table.rows[0].verdict == flakes.PASSED  # a cell error is no flake


@pytest.mark.parametrize(
    ("rc", "doc", "problem"),
    [
        (5, None, "pytest collected no tests (exit 5)"),
        (4, results_doc([], status="error", reason="no tests were collected for cell iptables-kindnet (check "
                        "the test path and any -m/-k filter): a cell that ran nothing is not a pass"),
         "pytest collected no tests (the results plugin's exit 4"),
        (4, None, "pytest refused the arguments (exit 4): ===== fake pytest ====="),
    ],
    ids=["exit-5", "plugin-exit-4", "refused"],
)
def test_no_tests_is_a_usage_error_not_success(tmp_path: Path, rc: int, doc: dict[str, Any] | None,
                                               problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, fake, _ = _run(tmp_path, lambda run, d: (doc, FakeProc(rc)))
    assert code == 2
    assert len(fake.argvs) == 1  # the same arguments would collect nothing nine more times
    assert f"error: run 1/3: {problem}" in capsys.readouterr().err
    assert not (tmp_path / "out" / "flakes.json").exists()  # no run was counted: no table
    meta = json.loads((tmp_path / "out" / "run-1" / "run.json").read_text())
    assert meta["counted"] is False
    assert meta["not_counted"].startswith("usage error: pytest ")


def test_exit_5_through_subprocess_popen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The real spawn path, with subprocess.Popen mocked: pytest's own exit 5 ends the runs."""
    calls: list[tuple[list[str], dict[str, Any]]] = []

    def popen(argv: list[str], **kwargs: Any) -> FakeProc:
        calls.append((argv, kwargs))
        return FakeProc(5)

    monkeypatch.setattr(flakes.subprocess, "Popen", popen)
    out = tmp_path / "out"
    code = flakes.main(["run", "--cell", "nftables-kindnet", "--runs", "4", "--out", str(out),
                        "--", "-m", "no-such-family"])
    assert code == 2
    assert len(calls) == 1
    argv, kwargs = calls[0]
    assert argv[1:] == ["-m", "pytest", "suite", "--proxy-mode=nftables", "--cni=kindnet", "--keep-cluster",
                        f"--results-dir={out}/run-1", "-m", "no-such-family"]
    assert kwargs["start_new_session"] is True
    assert kwargs["cwd"] == Path(flakes.__file__).resolve().parents[1]
    assert "pytest collected no tests (exit 5)" in capsys.readouterr().err


def test_ctrl_c_stops_the_run_and_writes_the_table_of_the_runs_done(tmp_path: Path) -> None:
    def script(run: int, results_dir: Path) -> tuple[dict[str, Any] | None, FakeProc]:
        doc = results_doc([_test(DNS, "passed")])
        if run == 2:  # pytest, sent SIGINT, writes status error "the run was interrupted"
            doc = results_doc([_test(DNS, "failed", "KeyboardInterrupt")], status="error",
                              reason="the run was interrupted")
            return doc, FakeProc(2, wait_raises=[KeyboardInterrupt()])
        return doc, FakeProc(0)

    code, fake, text = _run(tmp_path, script, runs=5, delete_at_end=True)
    assert code == 130
    assert len(fake.argvs) == 2
    assert fake.procs[1].signals == [signal.SIGINT]  # one SIGINT: pytest cleans up
    assert "run 2/5: interrupted (Ctrl-C or SIGTERM) after 30 s: not counted" in text
    assert "the runs kept the kind cluster" in text
    table = tabulate(load_runs([tmp_path / "out"]))
    assert [r.label for r in table.runs] == ["run-1"]
    assert [r.label for r in table.not_counted] == ["run-2"]
    assert table.rows[0].verdict == flakes.PASSED
    md = (tmp_path / "out" / "flakes.md").read_text()
    assert "| run-2 | not counted | | | | | | | interrupted (Ctrl-C or SIGTERM) after 30 s |" in md


def test_a_second_ctrl_c_terminates_then_kills(tmp_path: Path) -> None:
    proc = FakeProc(-9, wait_raises=[KeyboardInterrupt(), subprocess.TimeoutExpired("pytest", 30)])
    assert flakes.stop(proc, grace_s=1, term_grace_s=1) == -9
    assert proc.signals == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def test_a_run_past_its_timeout_is_stopped_and_counted_as_an_error(tmp_path: Path) -> None:
    def script(run: int, results_dir: Path) -> tuple[dict[str, Any] | None, FakeProc]:
        if run == 1:
            doc = results_doc([_test(DNS, "error", "KeyboardInterrupt")], status="error",
                              reason="the run was interrupted")
            return doc, FakeProc(2, wait_raises=[subprocess.TimeoutExpired("pytest", 3600)])
        return results_doc([_test(DNS, "passed")]), FakeProc(0)

    code, fake, text = _run(tmp_path, script, runs=2)
    assert code == 0
    assert fake.procs[0].signals == [signal.SIGINT]
    assert ("run 1/2: 0 passed, 0 failed, 0 skipped, 1 error (error) in 30 s, pytest exit 2: stopped after "
            "3600 s (--run-timeout): the run was interrupted (pytest exit 2)") in text


def test_the_runner_refuses_its_own_options_and_old_runs(tmp_path: Path) -> None:
    with pytest.raises(flakes.UsageError, match="sets --results-dir"):
        _run(tmp_path, _passing, extra=("--results-dir=/tmp/x",))
    with pytest.raises(flakes.UsageError, match=r"sets .*--keep-cluster"):
        _run(tmp_path, _passing, extra=("--keep-cluster",))
    write_run(tmp_path / "out", 1, results_doc([]))
    with pytest.raises(flakes.UsageError, match="holds runs already"):
        _run(tmp_path, _passing)
    assert flakes.main(["run", "--cell", "iptables-kindnet", "--runs", "0", "--out", str(tmp_path / "o")]) == 2
