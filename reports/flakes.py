"""The flake figure: rerun one cell N times on one kept kind cluster, tabulate each test.

``python -m reports.flakes run --cell iptables-kindnet --runs 10 [--out DIR] [--delete-at-end]
[-- PYTEST ARGS]`` runs ``pytest suite --proxy-mode=M --cni=C --keep-cluster
--results-dir=DIR/run-<i>`` N times from the checkout: the first run creates the cell's kind
cluster and keeps it, the later ones reuse it (``--delete-at-end``: the last run deletes it).
Each run's pytest output goes to ``DIR/run-<i>/pytest.log``, what was run and how it ended to
``DIR/run-<i>/run.json``, and one progress line per run to stdout.  Then, as ``table`` does:

``python -m reports.flakes table DIR... [--out DIR]`` reads every ``DIR/run-<n>/`` (the
``results.json`` the results plugin wrote there, in any schema version :mod:`reports.load`
reads; a partial run's is under ``<cell>/runs/<stamp>/``) and writes ``flakes.json`` and
``flakes.md``: one row per test id with its passed / failed / error / skipped / missing counts
over the runs, its verdict and the first failure message; one row per run; the totals (suite
seconds min/median/max per run).  A test is ``flaky`` when it passed in one run and failed
(or errored) in another run that completed.  A run that errored as a whole (status
``error``, or no results.json at all) is counted as an error run, never dropped; its tests'
outcomes are counted in their columns but make no test flaky.  Rows sort by verdict
(flaky, failed, cell error, passed, skipped), then by test id; the outputs hold no time of
their own, so the same runs give the same bytes.

Exit codes: **0** the table was written; **1** ``--strict`` and a test is flaky or failed, or
a run errored; **2** usage error: bad arguments, a DIR without runs, or a pytest run that
collected no tests (pytest's exit 5, which the results plugin turns into exit 4 with status
``error``) or refused its arguments (exit 4 without results) -- repeating it N times would
not help; **130** interrupted (Ctrl-C or SIGTERM): the interrupted run is stopped (SIGINT, so
pytest cleans up), not counted, and the table of the runs done before it is written.

This module reads files and starts pytest; it imports nothing that talks to a cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from reports.errors import ReportError, one_line
from reports.load import discover, load_cell
from reports.model import CNIS, OUTCOMES, PROXY_MODES, TestResult

PROG = "python -m reports.flakes"
#: A run's directory under the out dir: ``run-<n>``, numbered from 1.
RUN_DIR = re.compile(r"^run-([0-9]+)$")
RUN_FILE = "run.json"
LOG_FILE = "pytest.log"
JSON_OUT = "flakes.json"
MD_OUT = "flakes.md"
FLAKES_VERSION = 1
#: A first-failure message is one line of at most this many characters in the table.
MESSAGE_CHARS = 200
#: ... and of at most this many on the terminal, below the test's row.
TEXT_MESSAGE_CHARS = 120
DEFAULT_RUNS = 10
#: A run that takes longer is stopped and counted as an error run.  A whole cell took
#: 7 min 21 s here with a 43 s cluster-up (README, "Two commands"); a cold kind create is
#: bounded by KIND_CREATE_TIMEOUT (900 s) and a CNI install by CNI_INSTALL_TIMEOUT (600 s).
RUN_TIMEOUT_S = 3600.0
#: How long a stopped run gets to clean up after its SIGINT: its namespaces' deletion
#: (NAMESPACE_DELETE_TIMEOUT, 300 s) and, on a last run, the cluster's (KIND_DELETE_TIMEOUT,
#: 180 s), with room.
STOP_GRACE_S = 600.0
#: After SIGTERM (the grace ran out, or a second Ctrl-C), how long before SIGKILL.
TERM_GRACE_S = 30.0

#: pytest's exit codes this tool tells apart (``pytest.ExitCode``).
EXIT_OK, EXIT_TESTS_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, EXIT_NO_TESTS = 0, 1, 2, 4, 5
#: The results plugin's reason when pytest collected nothing (fixtures/results.py).
NO_TESTS_REASON = "no tests were collected"

#: Verdicts of a test over the runs, in the table's order.
FLAKY, FAILED, CELL_ERROR, PASSED, SKIPPED = "flaky", "failed", "cell error", "passed", "skipped"
VERDICTS: tuple[str, ...] = (FLAKY, FAILED, CELL_ERROR, PASSED, SKIPPED)
#: Options the runner sets itself: given after ``--`` they would contradict it.
OWN_OPTIONS = ("--results-dir", "--proxy-mode", "--cni", "--ip-family", "--keep-cluster")
#: The tox env of Cilium's kube-proxy replacement and the cell it writes.
KPR_ENV, KPR_MODE = "cilium-kpr", "none"
IP_FAMILY_VARIANTS = ("ipv6", "dual")


class UsageError(ReportError):
    """A usage error: exit 2 with one line."""


# --- the cell -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellArg:
    """``--cell``: a tox env's cell (``iptables``, ``nftables-flannel``, ``cilium-kpr``,
    ``iptables-kindnet-ipv6``) as pytest options."""

    proxy_mode: str
    cni: str
    ip_family: str = "ipv4"

    @property
    def name(self) -> str:
        """The results directory the suite writes (``none-cilium`` for cilium-kpr)."""
        base = f"{self.proxy_mode}-{self.cni}"
        return base if self.ip_family == "ipv4" else f"{base}-{self.ip_family}"


def parse_cell(text: str) -> CellArg:
    if text == KPR_ENV:
        return CellArg(KPR_MODE, "cilium")
    parts = text.split("-")
    family = "ipv4"
    if len(parts) == 3 and parts[2] in IP_FAMILY_VARIANTS:
        family = parts.pop()
    if len(parts) == 1:
        parts.append("kindnet")
    modes = (*PROXY_MODES, KPR_MODE)
    if len(parts) != 2 or parts[0] not in modes or parts[1] not in CNIS:
        raise UsageError(
            f"--cell {text!r} is not a cell: give <mode>[-<cni>][-ipv6|-dual] with mode one of "
            f"{', '.join(modes)} and CNI one of {', '.join(CNIS)}, or {KPR_ENV}"
        )
    return CellArg(parts[0], parts[1], family)


# --- reading runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run of the cell, as its directory says."""

    label: str  # run-3, or DIR/run-3 when several DIRs are tabulated
    directory: Path
    status: str  # completed, unsupported, error
    reason: str
    tests: tuple[TestResult, ...] = ()
    suite_s: float | None = None
    exit_code: int | None = None
    wall_s: float | None = None  # how long the runner waited for it (run.json)
    cell: str | None = None
    selection: str = ""
    results: Path | None = None  # the results.json read, if any
    #: False for a run the runner stopped (Ctrl-C) or refused (usage error): not in the table
    counted: bool = True
    not_counted_why: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tests if t.outcome == outcome)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def load_run(directory: Path, label: str) -> Run:
    """Read one run directory; never raises for what a run left behind (a run without a
    readable results.json is an ``error`` run saying why), only for a run holding several
    cells (:class:`UsageError`)."""
    meta = _read_json(directory / RUN_FILE)
    code = meta.get("exit_code")
    exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    wall = meta.get("wall_s")
    wall_s = float(wall) if isinstance(wall, int | float) and not isinstance(wall, bool) else None
    counted = meta.get("counted", True) is not False
    why = str(meta.get("not_counted") or "")
    stopped = str(meta.get("stopped") or "")
    try:
        cells = discover(directory)
    except ReportError:
        cells = []
    if len(cells) > 1:
        raise UsageError(f"{directory}: {len(cells)} cells in one run ({', '.join(c.name for c in cells)}); "
                         "a run of the flake figure holds one")
    if not cells:
        said = f"pytest exited {exit_code}" if exit_code is not None else "nothing says how it ended"
        reason = f"the run wrote no results.json ({said}; see {directory.name}/{LOG_FILE})"
        return Run(label, directory, "error", _stopped(stopped, reason), exit_code=exit_code,
                   wall_s=wall_s, counted=counted, not_counted_why=why)
    cell = load_cell(cells[0])
    reason = cell.reason
    if cell.status != "completed" and exit_code not in (None, EXIT_OK, EXIT_TESTS_FAILED):
        reason = f"{reason} (pytest exit {exit_code})"
    return Run(
        label,
        directory,
        cell.status,
        _stopped(stopped, reason),
        tests=cell.tests,
        suite_s=dict(cell.timings).get("suite_s"),
        exit_code=exit_code,
        wall_s=wall_s,
        cell=cell.key,
        selection=cell.selection,
        results=None if cell.load_error and not cell.results_path.exists() else cell.results_path,
        counted=counted,
        not_counted_why=why,
    )


def _stopped(stopped: str, reason: str) -> str:
    return f"{stopped}: {reason}" if stopped else reason


def _run_dirs(directory: Path) -> list[Path]:
    """``run-<n>`` sub-directories, by number."""
    found = []
    with contextlib.suppress(OSError):
        for child in directory.iterdir():
            match = RUN_DIR.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def load_runs(dirs: Sequence[Path]) -> list[Run]:
    """Every run of ``dirs``, in the order given and by run number within each.  A DIR
    without ``run-<n>/`` that holds a results dir itself is one run."""
    if not dirs:
        raise UsageError("no DIR given")
    runs: list[Run] = []
    for directory in dirs:
        if not directory.is_dir():
            raise UsageError(f"{directory}: not a directory")
        found = _run_dirs(directory)
        prefix = "" if len(dirs) == 1 else f"{directory}/"
        if found:
            runs += [load_run(path, f"{prefix}{path.name}") for path in found]
        elif (directory / RUN_FILE).exists() or _holds_cell(directory):
            runs.append(load_run(directory, str(directory)))
        else:
            raise UsageError(f"{directory}: no run-<n>/ directories (as `{PROG} run` writes) and no "
                             "<cell>/results.json in it")
    cells = sorted({r.cell for r in runs if r.cell and r.counted})
    if len(cells) > 1:
        raise UsageError(f"the runs are of {len(cells)} cells ({', '.join(cells)}); a flake figure is of one")
    return runs


def _holds_cell(directory: Path) -> bool:
    try:
        discover(directory)
    except ReportError:
        return False
    return True


# --- the table ------------------------------------------------------------------------


def first_line(message: str, chars: int = MESSAGE_CHARS) -> str:
    """A message as one line of at most ``chars`` characters (``…`` where it was cut)."""
    text = one_line(message)
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


@dataclass
class Row:
    """One test over the runs."""

    id: str
    family: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    missing: int = 0
    #: outcomes seen in runs that completed: what the verdict is judged on
    completed: set[str] = field(default_factory=set)
    first_failure: tuple[str, str] | None = None  # (run label, message)

    @property
    def verdict(self) -> str:
        failed = bool(self.completed & {"failed", "error"})
        if "passed" in self.completed and failed:
            return FLAKY
        if failed:
            return FAILED
        if "passed" in self.completed:
            return PASSED
        if self.completed:
            return SKIPPED
        return CELL_ERROR  # seen only in runs that errored as a whole


@dataclass(frozen=True)
class Table:
    cell: str
    runs: tuple[Run, ...]  # counted runs, in order
    not_counted: tuple[Run, ...]
    rows: tuple[Row, ...]

    @property
    def suite_seconds(self) -> tuple[float, float, float] | None:
        values = [r.suite_s for r in self.runs if r.suite_s is not None]
        if not values:
            return None
        return min(values), statistics.median(values), max(values)

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for run in self.runs:
            out[run.status] = out.get(run.status, 0) + 1
        return out

    def verdicts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for row in self.rows:
            out[row.verdict] += 1
        return out

    @property
    def bad(self) -> bool:
        """What ``--strict`` fails on: a flaky or failed test, or a run that errored."""
        v = self.verdicts()
        return bool(v[FLAKY] or v[FAILED] or self.statuses().get("error"))


def tabulate(runs: Sequence[Run]) -> Table:
    counted = [r for r in runs if r.counted]
    rows: dict[str, Row] = {}
    seen: list[set[str]] = []
    for run in counted:
        ids: set[str] = set()
        for test in run.tests:
            if test.id in ids:
                continue  # the results plugin writes one entry per test; keep the first
            ids.add(test.id)
            row = rows.setdefault(test.id, Row(test.id, test.family))
            row.counts[test.outcome] += 1
            if run.status == "completed":
                row.completed.add(test.outcome)
            if test.failed and row.first_failure is None:
                message = test.message or f"{test.outcome} without a message"
                row.first_failure = (run.label, first_line(message))
        seen.append(ids)
    for row in rows.values():
        row.missing = sum(1 for ids in seen if row.id not in ids)
    order = sorted(rows.values(), key=lambda r: (VERDICTS.index(r.verdict), r.id))
    names = [r.cell for r in counted if r.cell]
    return Table(cell=names[0] if names else "unknown", runs=tuple(counted),
                 not_counted=tuple(r for r in runs if not r.counted), rows=tuple(order))


def _fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def totals_line(table: Table) -> str:
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(table.statuses().items()))
    secs = table.suite_seconds
    suite = ("suite seconds per run min/median/max " + "/".join(_fmt_s(v) for v in secs)
             if secs else "no suite seconds recorded")
    v = table.verdicts()
    tests = ", ".join(f"{n} {name}" for name, n in v.items() if n)
    return (f"{table.cell}: {len(table.runs)} runs ({statuses or 'none'}); {suite}; "
            f"{len(table.rows)} tests ({tests or 'none'})")


def as_json(table: Table, out_dir: Path) -> dict[str, Any]:
    def where(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return os.path.relpath(path, out_dir)
        except ValueError:
            return str(path)

    secs = table.suite_seconds
    return {
        "flakes_version": FLAKES_VERSION,
        "cell": table.cell,
        "totals": {
            "runs": len(table.runs),
            "statuses": table.statuses(),
            "suite_s": None if secs is None else {"min": secs[0], "median": secs[1], "max": secs[2]},
            "tests": len(table.rows),
            "verdicts": table.verdicts(),
        },
        "runs": [
            {
                "run": r.label,
                "status": r.status,
                "reason": r.reason,
                "exit_code": r.exit_code,
                "selection": r.selection,
                "counts": {o: r.count(o) for o in OUTCOMES},
                "suite_s": r.suite_s,
                "wall_s": r.wall_s,
                "results": where(r.results),
            }
            for r in table.runs
        ],
        "not_counted": [{"run": r.label, "why": r.not_counted_why} for r in table.not_counted],
        "tests": [
            {
                "id": row.id,
                "family": row.family,
                **row.counts,
                "missing": row.missing,
                "verdict": row.verdict,
                "first_failure": None if row.first_failure is None
                else {"run": row.first_failure[0], "message": row.first_failure[1]},
            }
            for row in table.rows
        ],
    }


def _md(text: str) -> str:
    return one_line(text).replace("|", "\\|")


def as_markdown(table: Table) -> str:
    lines = [f"# Flake figure: {table.cell}, {len(table.runs)} runs", "", totals_line(table) + ".", ""]
    selections = sorted({r.selection for r in table.runs if r.selection})
    if selections:
        lines += [f"Selection: {', '.join(f'`{s}`' for s in selections)}.", ""]
    lines += ["| run | status | passed | failed | error | skipped | suite s | wall s | reason |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in table.runs:
        counts = " | ".join(str(r.count(o)) for o in ("passed", "failed", "error", "skipped"))
        lines.append(f"| {_md(r.label)} | {r.status} | {counts} | {_fmt_s(r.suite_s)} | {_fmt_s(r.wall_s)} "
                     f"| {_md(r.reason)} |")
    for r in table.not_counted:
        lines.append(f"| {_md(r.label)} | not counted | | | | | | | {_md(r.not_counted_why)} |")
    lines += ["", "| test | passed | failed | error | skipped | missing | verdict | first failure |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in table.rows:
        c = row.counts
        first = f"{row.first_failure[0]}: {_md(row.first_failure[1])}" if row.first_failure else ""
        lines.append(f"| `{_md(row.id)}` | {c['passed']} | {c['failed']} | {c['error']} | {c['skipped']} "
                     f"| {row.missing} | {row.verdict} | {first} |")
    return "\n".join(lines) + "\n"


def as_text(table: Table) -> str:
    """The terminal's table: counts first, so the columns stay aligned whatever the ids."""
    lines = [f"flakes: {totals_line(table)}"]
    for r in table.not_counted:
        lines.append(f"  {r.label}: not counted ({r.not_counted_why})")
    lines.append(f"{'pass':>5} {'fail':>5} {'err':>5} {'skip':>5} {'miss':>5}  {'verdict':<10} test")
    for row in table.rows:
        c = row.counts
        lines.append(f"{c['passed']:>5} {c['failed']:>5} {c['error']:>5} {c['skipped']:>5} {row.missing:>5}  "
                     f"{row.verdict:<10} {row.id}")
        if row.first_failure is not None:
            label, message = row.first_failure
            lines.append(f"{'':>42}first failure ({label}): {first_line(message, TEXT_MESSAGE_CHARS)}")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ReportError(f"{path}: cannot write: {exc.strerror or exc}") from None


def write_table(table: Table, out_dir: Path) -> list[Path]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out_dir}: cannot create: {exc.strerror or exc}") from None
    written = [out_dir / JSON_OUT, out_dir / MD_OUT]
    _write(written[0], json.dumps(as_json(table, out_dir), indent=2, ensure_ascii=False) + "\n")
    _write(written[1], as_markdown(table))
    return written


def report(runs: Sequence[Run], out_dir: Path, stream: IO[str]) -> Table:
    """Tabulate ``runs``, write flakes.json and flakes.md into ``out_dir``, print the table."""
    table = tabulate(runs)
    written = write_table(table, out_dir)
    stream.write(as_text(table))
    stream.write(f"{PROG}: wrote {', '.join(str(p) for p in written)}\n")
    stream.flush()
    return table


# --- running ----------------------------------------------------------------------------


def repo_root() -> Path:
    """The checkout whose ``suite/`` is run: this package's parent, else the working dir."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "suite").is_dir() else Path.cwd()


def pytest_argv(cell: CellArg, results_dir: Path, *, keep_cluster: bool, extra: Sequence[str],
                python: str = sys.executable) -> list[str]:
    """The command of one run."""
    argv = [python, "-m", "pytest", "suite", f"--proxy-mode={cell.proxy_mode}", f"--cni={cell.cni}"]
    if cell.ip_family != "ipv4":
        argv.append(f"--ip-family={cell.ip_family}")
    if keep_cluster:
        argv.append("--keep-cluster")
    return [*argv, f"--results-dir={results_dir}", *extra]


def check_extra(extra: Sequence[str]) -> None:
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in OWN_OPTIONS:
            raise UsageError(f"{arg!r} after '--': {PROG} run sets {', '.join(OWN_OPTIONS)} itself "
                             "(use --cell, --out and --delete-at-end)")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(proc: subprocess.Popen[bytes], *, grace_s: float = STOP_GRACE_S,
         term_grace_s: float = TERM_GRACE_S) -> int:
    """Stop a run as Ctrl-C would (SIGINT: pytest runs its teardowns), then harder."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        return proc.wait(timeout=term_grace_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        return proc.wait()


def wait_run(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, str]:
    """The run's exit code and, when it had to be stopped, why.

    On Ctrl-C or SIGTERM the run is stopped first, then :class:`KeyboardInterrupt` goes on."""
    try:
        return proc.wait(timeout=timeout_s), ""
    except subprocess.TimeoutExpired:
        return stop(proc), f"stopped after {timeout_s:g} s (--run-timeout)"
    except KeyboardInterrupt:
        stop(proc)
        raise


def _progress(run: Run, index: int, total: int) -> str:
    counts = ", ".join(f"{run.count(o)} {o}" for o in ("passed", "failed", "skipped", "error")
                       if o != "error" or run.count(o))
    line = f"run {index}/{total}: {counts} ({run.status}) in {run.wall_s or 0:.0f} s"
    if run.exit_code not in (EXIT_OK, EXIT_TESTS_FAILED):
        line += f", pytest exit {run.exit_code}"
    if run.status != "completed":
        line += f": {first_line(run.reason)}"
    return line


def usage_problem(run: Run) -> str:
    """Why a run is a usage error (every later run would repeat it), or ""."""
    if run.exit_code == EXIT_NO_TESTS:
        return "pytest collected no tests (exit 5): check the test path and the -m/-k filter after '--'"
    if run.exit_code == EXIT_USAGE and NO_TESTS_REASON in run.reason:
        return (f"pytest collected no tests (the results plugin's exit 4: {first_line(run.reason)}): "
                "check the -m/-k filter after '--'")
    if run.exit_code == EXIT_USAGE and run.results is None:
        return f"pytest refused the arguments (exit 4): {_log_tail(run.directory / LOG_FILE)}"
    return ""


def _log_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"no log at {path}"
    return f"{first_line(lines[-1]) if lines else 'empty log'} (log: {path})"


Spawn = Callable[[list[str], Path, IO[bytes]], subprocess.Popen[bytes]]


def _spawn(argv: list[str], cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    # its own session: the terminal's Ctrl-C reaches this runner only, which passes pytest
    # exactly one SIGINT (a second one would cut its cleanup short)
    return subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


@dataclass
class RunOptions:
    cell: CellArg
    runs: int
    out: Path
    extra: tuple[str, ...] = ()
    delete_at_end: bool = False
    run_timeout_s: float = RUN_TIMEOUT_S
    strict: bool = False


def run_cell(opts: RunOptions, *, stream: IO[str] | None = None, spawn: Spawn = _spawn,
             clock: Callable[[], float] = time.monotonic) -> int:
    """Run the cell ``opts.runs`` times, then write and print the table (to ``stream``,
    default stdout; errors to stderr); the exit code."""
    stream = stream or sys.stdout
    check_extra(opts.extra)
    if opts.runs < 1:
        raise UsageError(f"--runs {opts.runs}: give at least 1")
    if existing := _run_dirs(opts.out):
        raise UsageError(f"--out {opts.out} holds runs already ({existing[0].name}..{existing[-1].name}): "
                         "give another --out, or tabulate them with `table`")
    root = repo_root()
    runs: list[Run] = []
    code = 0
    kept = False  # whether the last run started kept the cluster
    say = _printer(stream)
    with _sigterm_as_interrupt():
        try:
            for index in range(1, opts.runs + 1):
                kept = index < opts.runs or not opts.delete_at_end
                run, problem = _one_run(opts, index, root, keep_cluster=kept, spawn=spawn, clock=clock)
                runs.append(run)
                if not run.counted and not problem:
                    say(f"run {index}/{opts.runs}: {run.not_counted_why}: not counted")
                    code = 130
                    break
                if problem:
                    say(f"{PROG}: error: run {index}/{opts.runs}: {problem}", err=True)
                    code = 2
                    break
                say(_progress(run, index, opts.runs))
        except KeyboardInterrupt:  # between runs: the runs done stand
            say(f"{PROG}: interrupted")
            code = 130
    if opts.delete_at_end and kept and code and any(r.counted for r in runs):
        say(f"{PROG}: the runs kept the kind cluster and the last run, which --delete-at-end lets delete "
            "it, did not happen: `kind get clusters` lists it, `kind delete cluster --name <it>` deletes it")
    if not any(r.counted for r in runs):
        return code or 2
    table = report(runs, opts.out, stream)
    if code:
        return code
    return 1 if opts.strict and table.bad else 0


def _one_run(opts: RunOptions, index: int, root: Path, *, keep_cluster: bool, spawn: Spawn,
             clock: Callable[[], float]) -> tuple[Run, str]:
    """Run pytest once into ``run-<index>/``; the run as read back, and a usage problem."""
    run_dir = opts.out / f"run-{index}"
    run_dir.mkdir(parents=True)
    argv = pytest_argv(opts.cell, run_dir, keep_cluster=keep_cluster, extra=opts.extra)
    meta: dict[str, Any] = {"run": index, "of": opts.runs, "argv": argv, "cwd": str(root),
                            "started": datetime.now(UTC).isoformat(timespec="seconds"), "log": LOG_FILE}
    started = clock()
    proc: subprocess.Popen[bytes] | None = None
    interrupted = False
    rc: int | None
    try:
        with (run_dir / LOG_FILE).open("wb") as log:
            proc = spawn(argv, root, log)
            rc, stopped = wait_run(proc, opts.run_timeout_s)
    except KeyboardInterrupt:
        if proc is not None and proc.poll() is None:
            stop(proc)
        interrupted, rc, stopped = True, (proc.returncode if proc is not None else None), "interrupted"
    meta.update(exit_code=rc, wall_s=round(clock() - started, 3))
    if stopped:
        meta["stopped"] = stopped
    if interrupted:
        meta.update(counted=False,
                    not_counted=f"interrupted (Ctrl-C or SIGTERM) after {meta['wall_s']:.0f} s")
    _write(run_dir / RUN_FILE, json.dumps(meta, indent=2) + "\n")
    run = load_run(run_dir, run_dir.name)
    problem = "" if interrupted else usage_problem(run)
    if problem:
        meta.update(counted=False, not_counted=f"usage error: {problem}")
        _write(run_dir / RUN_FILE, json.dumps(meta, indent=2) + "\n")
        run = load_run(run_dir, run_dir.name)
    return run, problem


def _printer(stream: IO[str]) -> Callable[..., None]:
    def say(line: str, *, err: bool = False) -> None:
        target = sys.stderr if err else stream
        target.write(line + "\n")
        target.flush()

    return say


# --- command line ---------------------------------------------------------------------


STRICT_HELP = "exit 1 when a test is flaky or failed, or a run errored"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Rerun one cell N times on one kept kind cluster and tabulate each test's outcomes "
        "(flakes.json, flakes.md).",
    )
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run", help="run the cell N times, then write the table",
                       description="Arguments after '--' go to pytest (e.g. -- -m dns).")
    r.add_argument("--cell", required=True, help="the tox env's cell: iptables-kindnet, nftables-flannel, "
                   "cilium-kpr, iptables-kindnet-ipv6, ...")
    r.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"how many runs (default {DEFAULT_RUNS})")
    r.add_argument("--out", type=Path, help="where run-<i>/, flakes.json and flakes.md go "
                   "(default results/flakes/<cell> in the checkout)")
    r.add_argument("--delete-at-end", action="store_true",
                   help="the last run deletes the kind cluster (default: every run keeps it)")
    r.add_argument("--run-timeout", type=float, default=RUN_TIMEOUT_S, metavar="SECONDS",
                   help=f"stop a run after this long, counted as an error run (default {RUN_TIMEOUT_S:g})")
    r.add_argument("--strict", action="store_true", help=STRICT_HELP)
    t = sub.add_parser("table", help="tabulate the runs of DIR... (run-<n>/ sub-directories)")
    t.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    t.add_argument("--out", type=Path, help="where flakes.json and flakes.md go (default: DIR, if one)")
    t.add_argument("--strict", action="store_true", help=STRICT_HELP)
    return p


def main(argv: Sequence[str] | None = None, *, stream: IO[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    args = build_parser().parse_args(args_in)
    try:
        if args.mode == "table":
            if extra:
                raise UsageError(f"table takes no pytest arguments (got {' '.join(extra)})")
            if args.out is None and len(args.dirs) > 1:
                raise UsageError("several DIRs: give --out for flakes.json and flakes.md")
            table = report(load_runs(args.dirs), args.out or args.dirs[0], stream or sys.stdout)
            return 1 if args.strict and table.bad else 0
        cell = parse_cell(args.cell)
        out = (args.out or repo_root() / "results" / "flakes" / cell.name).absolute()
        return run_cell(RunOptions(cell=cell, runs=args.runs, out=out, extra=tuple(extra),
                                   delete_at_end=args.delete_at_end, run_timeout_s=args.run_timeout,
                                   strict=args.strict), stream=stream)
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
