"""What the report derives from a cell: family counts and verdicts, the cell's verdict and
profile, its measurements.  Pure functions of :class:`~reports.model.Cell`.

Verdicts (a family's and a cell's):

==============  ==================================================================
``passed``      at least one test passed, none failed or errored
``failed``      a test failed or errored (``core_verdict`` tells whether Core did)
``skipped``     every test of the family was skipped
``not-run``     no test of the family (or of the cell) ran at all
``unsupported`` the cell is ``unsupported``: the environment cannot run it
``error``       the cell is ``error``: its run or its results file broke
==============  ==================================================================

Only ``passed`` is ever shown green.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reports.model import FAMILIES, Cell, Measurement, TestResult
from reports.profiles import CORE, EXTENDED, NONE, cell_profile, classify_test

VERDICTS: tuple[str, ...] = ("passed", "failed", "skipped", "not-run", "unsupported", "error")
#: Cell verdicts that make ``--strict`` exit 1: nothing verified, or something broke.
#: ``unsupported`` is not among them: the environment cannot run the cell, not a failure.
BAD_VERDICTS: frozenset[str] = frozenset({"failed", "error", "skipped", "not-run"})


@dataclass(frozen=True)
class Counts:
    passed: int = 0
    failed: int = 0  # failed + error outcomes
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def add(self, test: TestResult) -> Counts:
        if test.failed:
            return Counts(self.passed, self.failed + 1, self.skipped)
        if test.outcome == "passed":
            return Counts(self.passed + 1, self.failed, self.skipped)
        return Counts(self.passed, self.failed, self.skipped + 1)


def verdict_of(counts: Counts) -> str:
    if counts.failed:
        return "failed"
    if counts.passed:
        return "passed"
    if counts.skipped:
        return "skipped"
    return "not-run"


@dataclass(frozen=True)
class FamilyStats:
    family: str
    counts: Counts
    core: Counts
    extended: Counts
    verdict: str
    core_verdict: str
    extended_verdict: str


def families_of(cells: Iterable[Cell]) -> tuple[str, ...]:
    """The documented families, then any other family some cell reported (sorted)."""
    extra = sorted({t.family for c in cells for t in c.tests} - set(FAMILIES))
    return FAMILIES + tuple(extra)


def family_stats(cell: Cell, families: Sequence[str] = FAMILIES) -> dict[str, FamilyStats]:
    """Per family of ``families``: counts, Core/Extended counts and verdicts."""
    counts = {f: Counts() for f in families}
    core = {f: Counts() for f in families}
    ext = {f: Counts() for f in families}
    for test in cell.tests:
        if test.family not in counts:
            continue
        counts[test.family] = counts[test.family].add(test)
        if classify_test(test).profile == CORE:
            core[test.family] = core[test.family].add(test)
        else:
            ext[test.family] = ext[test.family].add(test)
    out: dict[str, FamilyStats] = {}
    for f in families:
        if cell.status == "completed":
            v, cv, ev = verdict_of(counts[f]), verdict_of(core[f]), verdict_of(ext[f])
        else:
            v = cv = ev = cell.status
        out[f] = FamilyStats(f, counts[f], core[f], ext[f], v, cv, ev)
    return out


def cell_counts(cell: Cell) -> Counts:
    total = Counts()
    for test in cell.tests:
        total = total.add(test)
    return total


def cell_verdict(cell: Cell) -> str:
    """``unsupported``/``error`` from the status; else the verdict of all its tests.

    A completed cell whose tests were all skipped is ``skipped``; one without tests
    ``not-run`` — neither is green.
    """
    if cell.status != "completed":
        return cell.status
    return verdict_of(cell_counts(cell))


def profile_of(cell: Cell) -> str:
    """The cell's profile; a partial run (part of the suite selected) earns none."""
    if cell.partial:
        return NONE
    return cell_profile(cell.status, cell.tests, cell.families)


def profile_of_test(test: TestResult) -> str:
    return classify_test(test).profile


def is_extended(test: TestResult) -> bool:
    return profile_of_test(test) == EXTENDED


def only_extended_failed(cell: Cell) -> bool:
    """The cell failed, but no Core test did (shown amber, not red)."""
    failed = [t for t in cell.tests if t.failed]
    return bool(failed) and all(is_extended(t) for t in failed)


def failures(cell: Cell) -> list[TestResult]:
    return [t for t in cell.tests if t.failed]


# --- measurements ----------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample list."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class MeasurementView:
    """A measurement as the report shows it: keyed uniquely within a cell."""

    key: str  # the measurement name, or "<test name>:<name>" when two tests share a name
    test_id: str
    measurement: Measurement

    @property
    def unit(self) -> str:
        return self.measurement.unit

    @property
    def samples(self) -> tuple[float, ...]:
        return self.measurement.samples

    def _stat(self, recorded: float | None, q: float) -> float | None:
        if recorded is not None:
            return recorded
        return percentile(self.samples, q) if self.samples else None

    @property
    def p50(self) -> float | None:
        """As recorded by the suite; computed (nearest rank) only when it recorded none."""
        return self._stat(self.measurement.p50, 50)

    @property
    def p90(self) -> float | None:
        return self._stat(self.measurement.p90, 90)

    @property
    def max(self) -> float | None:
        return self._stat(self.measurement.max, 100)


def measurements(cell: Cell) -> list[MeasurementView]:
    """Every measurement of the cell, sorted by key."""
    pairs = [(t, m) for t in cell.tests for m in t.measurements]
    seen: dict[str, int] = {}
    for _, m in pairs:
        seen[m.name] = seen.get(m.name, 0) + 1
    views = [
        MeasurementView(m.name if seen[m.name] == 1 else f"{t.name}:{m.name}", t.id, m) for t, m in pairs
    ]
    return sorted(views, key=lambda v: v.key)
