"""What a report is made of: typed, immutable views of ``results/<cell>/results.json``.

These are plain dataclasses with no I/O; :mod:`reports.load` builds them from the files
(``docs/ARCHITECTURE.md``, "results.json (schema version 1)").  Everything a report shows
that is *derived* (family counts, verdicts, profiles) lives in :mod:`reports.analysis`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fixtures import families as _families
from fixtures import spec as _spec

#: The families, in the order every report shows them, with their default profiles: one
#: source, the registry :mod:`fixtures.families` (standard library only, no cluster access),
#: named here for reports.  Also the proxy modes and the CNIs, from :mod:`fixtures.spec`.
FAMILIES: tuple[str, ...] = _families.FAMILIES
CORE_FAMILIES: tuple[str, ...] = _families.CORE_FAMILIES
EXTENDED_FAMILIES: tuple[str, ...] = _families.EXTENDED_FAMILIES
DEFAULT_PROFILES: Mapping[str, str] = _families.DEFAULT_PROFILES
#: The profile names a test can have (``tests[].profile``).
CORE: str = _families.CORE
EXTENDED: str = _families.EXTENDED
PROXY_MODES: tuple[str, ...] = _spec.PROXY_MODES
CNIS: tuple[str, ...] = _spec.CNIS

#: ``tests[].outcome`` values; ``error`` (a setup/teardown error) counts as a failure.
OUTCOMES: tuple[str, ...] = ("passed", "failed", "skipped", "error")
#: ``status`` values of a cell.
STATUSES: tuple[str, ...] = ("completed", "unsupported", "error")

RESULTS_SCHEMA_VERSION = 3
#: Every results.json version this reader understands (2 and 3 only add optional keys).
RESULTS_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5)
RESULTS_FILE = "results.json"
JUNIT_FILE = "junit.xml"


@dataclass(frozen=True)
class Measurement:
    """One recorded measurement of a test: its samples and their percentiles."""

    name: str
    unit: str
    samples: tuple[float, ...]
    p50: float | None
    p90: float | None
    max: float | None
    #: schema 3: the p99, the change measured, the samples by node, their largest error
    #: bound, and what a Prometheus histogram said per node (``histogram.by_node``)
    p99: float | None = None
    kind: str | None = None
    by_node: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    resolution: float | None = None
    histogram: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TestResult:
    """One entry of ``tests[]``."""

    __test__ = False  # not a pytest test class, whatever its name

    id: str  # pytest node id: suite/test_dns.py::test_name[param]
    family: str
    outcome: str
    duration_s: float
    message: str
    diagnostics: str | None  # relative path of the failure bundle, or None
    measurements: tuple[Measurement, ...] = ()
    #: ``tests[].profile`` as the suite declared it ("core"/"extended"); None in files
    #: written before it was recorded (then :mod:`reports.legacy_profiles` classifies)
    profile: str | None = None
    profile_reason: str = ""
    #: schema 4: the cluster configuration the check judged against, one line each
    configuration: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The test's name without its file: ``test_name[param]`` (or ``Class::test``)."""
        _, sep, rest = self.id.partition("::")
        return rest if sep else self.id

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error")


@dataclass(frozen=True)
class Health:
    """The data-plane health pass of a cell (schema 5 ``cell.health``): node x layer."""

    healthy: bool
    summary: str
    seconds: float
    layers: tuple[str, ...]
    #: ``(node, ((layer, status, evidence), ...))`` in the file's order
    nodes: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...]
    broken: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellInfo:
    """The ``cell`` object: what cluster the results come from."""

    name: str  # as the results plugin named it (the tox env)
    proxy_mode: str
    cni: str
    provider: str = ""
    kubernetes_version: str | None = None
    nodes: int | None = None
    kernel: str | None = None
    suite_version: str | None = None
    node_image: str | None = None
    airgapped: bool | None = None
    #: Keys of ``cell`` this reader does not know (e.g. a CNI version): shown as extra facts.
    extra: tuple[tuple[str, str], ...] = ()
    #: schema 4: detected facts whose sources disagree (``cell.detection[].finding``), as
    #: ``fact: finding`` lines
    findings: tuple[str, ...] = ()
    #: schema 5: the data-plane health pass (``cell.health``), None when the cell has none
    health: Health | None = None

    @property
    def ip_family(self) -> str | None:
        return dict(self.extra).get("ip_family")


@dataclass(frozen=True)
class Rerun:
    """A partial rerun written beside a cell's full results (never replacing them)."""

    stamp: str  # its directory under ``<cell>/runs/``
    finished: str | None
    selection: str
    status: str
    tests: tuple[TestResult, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One cell of the matrix, read from ``<results-dir>/<key>/results.json``.

    ``key`` is the directory name, unique within a results dir (it differs from
    ``info.name`` for variants such as ``iptables-kindnet-ipv6``).  A cell whose file could
    not be read or is not schema v1 is an ``error`` cell whose ``reason`` names the file.
    """

    key: str
    directory: Path
    info: CellInfo
    status: str
    reason: str
    tests: tuple[TestResult, ...] = ()
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    timings: tuple[tuple[str, float], ...] = ()
    hypothesis_seed: str | None = None  # hypothesis accepts integers and strings
    #: SHA-256 of the results.json bytes, None when there was no readable file.
    sha256: str | None = None
    #: True when the results file itself was missing, unreadable or invalid.
    load_error: bool = False
    #: The run selected part of the suite (``run.partial``): it earns no profile.
    partial: bool = False
    #: What the run selected, as results.json's ``run.selection`` says ("" before schema 2).
    selection: str = ""
    #: Later partial reruns of this cell (``<cell>/runs/<stamp>/results.json``), oldest first.
    reruns: tuple[Rerun, ...] = ()
    #: results.json ``performance`` (schema 3): the budget verdict, never the conformance one.
    performance: Mapping[str, Any] | None = None
    #: results.json ``families`` (schema 3): family → default profile of the suite that ran;
    #: None when the file does not say.
    families: Mapping[str, str] | None = None
    #: The run's own directory when it is not ``directory``: a cell that has only partial
    #: runs is shown as its latest, whose files are in ``<cell>/runs/<stamp>/``.
    run_directory: Path | None = None

    @property
    def results_path(self) -> Path:
        return (self.run_directory or self.directory) / RESULTS_FILE

    @property
    def junit_path(self) -> Path:
        return (self.run_directory or self.directory) / JUNIT_FILE
