"""Read a results dir: find the cells and turn each ``results.json`` into a :class:`Cell`.

A results dir holds one sub-directory per cell (``results/<cell>/results.json`` and
``junit.xml``).  A single bad cell never loses the others: a missing, unreadable, non-JSON
or schema-invalid ``results.json`` becomes an ``error`` cell whose reason names the file
and says what is wrong.  Only a results dir with no cells at all is fatal
(:class:`~reports.errors.ReportError`).

The reader checks schema version 1 exactly as ``docs/ARCHITECTURE.md`` fixes it: every key
it documents is required and typed; keys it does not document are ignored (except in
``cell``, where they are kept as extra facts such as a CNI version or IP family).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reports.errors import ReportError, one_line
from reports.model import (
    CNIS,
    CORE,
    EXTENDED,
    JUNIT_FILE,
    OUTCOMES,
    PROXY_MODES,
    RESULTS_FILE,
    RESULTS_SCHEMA_VERSIONS,
    STATUSES,
    Cell,
    CellInfo,
    Health,
    Measurement,
    Rerun,
    TestResult,
)

#: A directory with neither results.json nor junit.xml is still a cell when its name looks
#: like one (``<mode>-<cni>[-variant]``): a cell job that died before writing anything.
_CELL_DIR_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")
#: The family of a test the results plugin could not place in one (``family: null``).
UNCLASSIFIED = "unclassified"
#: ``tests[].profile`` values (schema 3, optional).
PROFILES: tuple[str, ...] = (CORE, EXTENDED)
#: Directories a results dir may hold that are not cells.
NOT_CELLS = frozenset({"artifacts"})


class SchemaError(ValueError):
    """``results.json`` is not schema version 1; ``where`` is the JSON path of the problem."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


def discover(results_dir: Path) -> list[Path]:
    """The cell directories of ``results_dir``, sorted by name.

    Raises :class:`ReportError` when the dir is missing, not a directory or holds no cell.
    """
    if not results_dir.exists():
        raise ReportError(f"{results_dir}: results dir does not exist")
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir}: not a directory")
    try:
        children = sorted(p for p in results_dir.iterdir() if p.is_dir())
    except OSError as exc:
        raise ReportError(f"{results_dir}: cannot list: {exc.strerror or exc}") from None
    cells = [p for p in children if _is_cell_dir(p)]
    if not cells:
        raise ReportError(
            f"{results_dir}: no cells found (expected <cell>/{RESULTS_FILE} sub-directories, "
            "as written by a tox cell env such as `tox -e iptables-kindnet`)"
        )
    return cells


RUNS_DIR = "runs"


def _partial_runs(directory: Path) -> list[Path]:
    """``<cell>/runs/<stamp>/results.json`` files, oldest first (stamps sort by time)."""
    return sorted((directory / RUNS_DIR).glob(f"*/{RESULTS_FILE}"))


def _is_cell_dir(path: Path) -> bool:
    if path.name.startswith(".") or path.name in NOT_CELLS:
        return False
    if (path / RESULTS_FILE).exists() or (path / JUNIT_FILE).exists() or _partial_runs(path):
        return True
    try:
        empty = not any(path.iterdir())
    except OSError:
        empty = False
    return empty and bool(_CELL_DIR_NAME.match(path.name))


def load_cells(results_dir: Path) -> list[Cell]:
    """Every cell of ``results_dir`` in matrix order (see :func:`cell_sort_key`)."""
    return sorted((load_cell(d) for d in discover(results_dir)), key=cell_sort_key)


def cell_sort_key(cell: Cell) -> tuple[int, int, str]:
    """Proxy modes and CNIs in their documented order, unknown ones after, then the name."""
    mode = cell.info.proxy_mode
    cni = cell.info.cni
    return (
        PROXY_MODES.index(mode) if mode in PROXY_MODES else len(PROXY_MODES),
        CNIS.index(cni) if cni in CNIS else len(CNIS),
        cell.key,
    )


def guess_mode_cni(key: str) -> tuple[str, str]:
    """Proxy mode and CNI from a directory name, for cells whose file says nothing."""
    parts = key.split("-")
    mode = parts[0] if parts and parts[0] in PROXY_MODES else "unknown"
    cni = parts[1] if len(parts) > 1 and parts[1] in CNIS else "unknown"
    if mode == "unknown" and parts and parts[0] in CNIS:  # e.g. cilium-kpr
        cni = parts[0]
    return mode, cni


def error_cell(directory: Path, reason: str, sha256: str | None = None) -> Cell:
    """An ``error`` cell for a directory whose results could not be read."""
    mode, cni = guess_mode_cni(directory.name)
    return Cell(
        key=directory.name,
        directory=directory,
        info=CellInfo(name=directory.name, proxy_mode=mode, cni=cni),
        status="error",
        reason=one_line(reason),
        sha256=sha256,
        load_error=True,
    )


def load_cell(directory: Path) -> Cell:
    """Read one cell with its later partial reruns; never raises for bad content (that
    becomes an ``error`` cell).  A cell that has only partial runs is its latest one."""
    runs = _partial_runs(directory)
    if not (directory / RESULTS_FILE).exists() and runs:
        latest = _load_file(runs[-1], directory)
        return dataclasses.replace(latest, reruns=_reruns(runs[:-1], after=None),
                                   run_directory=runs[-1].parent)
    cell = _load_file(directory / RESULTS_FILE, directory)
    return dataclasses.replace(cell, reruns=_reruns(runs, after=cell.finished))


def _reruns(paths: Sequence[Path], *, after: str | None) -> tuple[Rerun, ...]:
    """The readable partial runs finished after ``after`` (an ISO time; None: all)."""
    out = []
    for path in paths:
        run = _load_file(path, path.parent)
        if run.load_error or (after and run.finished and run.finished <= after):
            continue
        out.append(Rerun(stamp=path.parent.name, finished=run.finished, selection=run.selection,
                         status=run.status, tests=run.tests))
    return tuple(out)


def _load_file(path: Path, directory: Path) -> Cell:
    if not path.exists():
        return error_cell(directory, f"{path}: missing (the cell's run wrote no results)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return error_cell(directory, f"{path}: unreadable: {exc.strerror or exc}")
    digest = hashlib.sha256(raw).hexdigest()
    if not raw.strip():
        return error_cell(directory, f"{path}: empty file", digest)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return error_cell(directory, f"{path}: not UTF-8 ({exc.reason})", digest)
    except json.JSONDecodeError as exc:
        return error_cell(
            directory,
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            digest,
        )
    try:
        return parse_results(doc, directory=directory, sha256=digest)
    except SchemaError as exc:
        return error_cell(directory, f"{path}: not a valid results.json: {exc}", digest)


# --- schema v1 -------------------------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(where, f"expected an object, got {_type_name(value)}")
    return value


def _key(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise SchemaError(where, f"missing required key {key!r}")
    return obj[key]


def _str(obj: Mapping[str, Any], key: str, where: str, *, nullable: bool = False) -> str | None:
    value = _key(obj, key, where)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise SchemaError(f"{where}.{key}", f"expected a string, got {_type_name(value)}")
    return value


def _req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _str(obj, key, where)
    assert value is not None
    return value


def _num(obj: Mapping[str, Any], key: str, where: str, *, nullable: bool = False) -> float | None:
    value = _key(obj, key, where)
    if value is None and nullable:
        return None
    return _as_number(value, f"{where}.{key}")


def _as_number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(where, f"expected a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise SchemaError(where, f"expected a finite number, got {value}")
    return float(value)


def _int(obj: Mapping[str, Any], key: str, where: str, *, nullable: bool = False) -> int | None:
    value = _key(obj, key, where)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{where}.{key}", f"expected an integer, got {_type_name(value)}")
    return value


def _choice(value: str, valid: tuple[str, ...], where: str) -> str:
    if value not in valid:
        raise SchemaError(where, f"{value!r} is not one of {', '.join(valid)}")
    return value


_CELL_KEYS = frozenset(
    {
        "name",
        "proxy_mode",
        "cni",
        "provider",
        "kubernetes_version",
        "nodes",
        "kernel",
        "suite_version",
        "images",
    }
)


#: Version 2 cell keys, shown as readable facts (:func:`_v2_facts`) rather than raw JSON.
_V2_CELL_KEYS = frozenset({"detection", "vantages", "health"})
_DETECTION_NAMES = (("proxy_mode", "detected proxy mode"), ("proxy_mode_probe", "kube-proxy /proxyMode"),
                    ("cni", "detected CNI"), ("ip_family", "detected IP family"),
                    ("kube_proxy_version", "kube-proxy version"), ("cni_version", "CNI version"),
                    # schema 4: the cluster-wide facts (fixtures/clusterinfo.py FACT_NAMES)
                    ("cluster_domain", "cluster domain"), ("service_cidrs", "Service CIDRs"),
                    ("pod_cidrs", "pod CIDRs"), ("node_port_range", "node-port range"),
                    ("dns_ips", "cluster DNS Service IPs"), ("zones", "node zones"))
#: How a fact's ``source`` (schema 4) reads beside its value; "cluster" says nothing extra.
_SOURCE_NOTES = {"inferred": "inferred", "override": "given on the command line", "unknown": "not known"}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _v2_facts(obj: Mapping[str, Any], images: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What a vendor reads in the report: each detection with its evidence, whether this
    machine was a vantage (and why not), and the suite's images with what the nodes ran."""
    facts: list[tuple[str, str]] = []
    detection = _mapping(obj.get("detection"))
    known = dict(_DETECTION_NAMES)
    for key in [*known, *sorted(k for k in detection if k not in known)]:
        item = detection.get(key)
        if isinstance(item, Mapping):
            value = str(item.get("value") or "—")
            note = _SOURCE_NOTES.get(str(item.get("source") or ""))
            if note:
                value = f"{value} [{note}]"
            name = known.get(key, key.replace("_", " "))
            facts.append((name, f"{value} ({item.get('evidence', '')})" if item.get("evidence") else value))
    vantages = _mapping(obj.get("vantages"))
    host = vantages.get("this_machine")
    if isinstance(host, Mapping):
        state = "used" if host.get("reachable") else "not tried"
        facts.append(("this machine as a vantage", f"{state}: {host.get('reason', '')}"))
    suite = _mapping(images.get("suite"))
    for role, entry in sorted(suite.items()):
        if isinstance(entry, Mapping):
            ids = ", ".join(str(i) for i in entry.get("image_ids") or []) or "not resolved"
            facts.append((f"image {role}", f"{entry.get('image', '?')} ({ids})"))
    return tuple(facts)


def _parse_cell_info(value: object) -> CellInfo:
    where = "cell"
    obj = _obj(value, where)
    images = _obj(_key(obj, "images", where), f"{where}.images")
    airgapped = _key(images, "airgapped", f"{where}.images")
    if airgapped is not None and not isinstance(airgapped, bool):
        raise SchemaError(f"{where}.images.airgapped", f"expected a boolean, got {_type_name(airgapped)}")
    extra = tuple(
        (k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))
        for k, v in sorted(obj.items())
        if k not in _CELL_KEYS and k not in _V2_CELL_KEYS
    ) + _v2_facts(obj, images)
    name = _req_str(obj, "name", where)
    if not name:
        raise SchemaError(f"{where}.name", "must not be empty")
    return CellInfo(
        name=name,
        proxy_mode=_req_str(obj, "proxy_mode", where),
        cni=_req_str(obj, "cni", where),
        provider=_req_str(obj, "provider", where),
        kubernetes_version=_str(obj, "kubernetes_version", where, nullable=True),
        nodes=_int(obj, "nodes", where, nullable=True),
        kernel=_str(obj, "kernel", where, nullable=True),
        suite_version=_str(obj, "suite_version", where, nullable=True),
        node_image=_str(images, "node", f"{where}.images", nullable=True),
        airgapped=airgapped,
        extra=extra,
        findings=_findings(obj),
        health=_health(obj.get("health"), f"{where}.health"),
    )


def _health(value: object, where: str) -> Health | None:
    """schema 5 ``cell.health``: the data-plane health pass (absent before)."""
    if value is None:
        return None
    obj = _obj(value, where)
    healthy = _key(obj, "healthy", where)
    if not isinstance(healthy, bool):
        raise SchemaError(f"{where}.healthy", f"expected a boolean, got {_type_name(healthy)}")
    nodes = []
    for node, layers in _mapping(obj.get("nodes")).items():
        cells = tuple((str(layer), str(_mapping(v).get("status", "")), str(_mapping(v).get("evidence", "")))
                      for layer, v in _mapping(layers).items())
        nodes.append((str(node), cells))
    seconds = obj.get("seconds", 0)
    return Health(
        healthy=healthy, summary=str(obj.get("summary", "")),
        seconds=float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else 0.0,
        layers=tuple(str(x) for x in obj.get("layers") or ()), nodes=tuple(nodes),
        broken=tuple(str(x) for x in obj.get("broken") or ()),
        actions=tuple(str(x) for x in obj.get("actions") or ()),
    )


def _findings(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """``fact: finding`` for each detection whose sources disagree (schema 4)."""
    known = dict(_DETECTION_NAMES)
    out = []
    for key, item in sorted(_mapping(obj.get("detection")).items()):
        if isinstance(item, Mapping) and item.get("finding"):
            out.append(f"{known.get(key, key.replace('_', ' '))}: {item['finding']}")
    return tuple(out)


def _parse_measurements(value: object, where: str) -> tuple[Measurement, ...]:
    obj = _obj(value, where)
    out: list[Measurement] = []
    for name in sorted(obj):
        mwhere = f"{where}.{name}"
        m = _obj(obj[name], mwhere)
        raw_samples = _key(m, "samples", mwhere)
        if not isinstance(raw_samples, list):
            raise SchemaError(f"{mwhere}.samples", f"expected an array, got {_type_name(raw_samples)}")
        samples = tuple(_as_number(s, f"{mwhere}.samples[{i}]") for i, s in enumerate(raw_samples))
        out.append(
            Measurement(
                name=name,
                unit=_req_str(m, "unit", mwhere),
                samples=samples,
                p50=_num(m, "p50", mwhere, nullable=True),
                p90=_num(m, "p90", mwhere, nullable=True),
                max=_num(m, "max", mwhere, nullable=True),
                p99=_num(m, "p99", mwhere, nullable=True) if "p99" in m else None,
                kind=_str(m, "kind", mwhere, nullable=True) if "kind" in m else None,
                by_node=_by_node(m.get("by_node"), f"{mwhere}.by_node"),
                resolution=_num(m, "resolution", mwhere, nullable=True) if "resolution" in m else None,
                histogram=(_obj(m["histogram"], f"{mwhere}.histogram")
                           if m.get("histogram") is not None else None),
            )
        )
    return tuple(out)


def _by_node(value: object, where: str) -> dict[str, tuple[float, ...]]:
    """``by_node``: node → its samples (schema 3; absent before)."""
    if value is None:
        return {}
    obj = _obj(value, where)
    out: dict[str, tuple[float, ...]] = {}
    for node, samples in sorted(obj.items()):
        if not isinstance(samples, list):
            raise SchemaError(f"{where}.{node}", f"expected an array, got {_type_name(samples)}")
        out[node] = tuple(_as_number(s, f"{where}.{node}[{i}]") for i, s in enumerate(samples))
    return out


def _parse_test(value: object, where: str) -> TestResult:
    obj = _obj(value, where)
    test_id = _req_str(obj, "id", where)
    if not test_id:
        raise SchemaError(f"{where}.id", "must not be empty")
    family = _str(obj, "family", where, nullable=True) or UNCLASSIFIED
    outcome = _choice(_req_str(obj, "outcome", where), OUTCOMES, f"{where}.outcome")
    duration = _num(obj, "duration_s", where)
    assert duration is not None
    profile = obj.get("profile")  # schema 3, optional: absent in older files
    if profile is not None:
        if not isinstance(profile, str):
            raise SchemaError(f"{where}.profile", f"expected a string, got {_type_name(profile)}")
        _choice(profile, PROFILES, f"{where}.profile")
    reason = obj.get("profile_reason")
    if reason is not None and not isinstance(reason, str):
        raise SchemaError(f"{where}.profile_reason", f"expected a string, got {_type_name(reason)}")
    configuration = obj.get("configuration") or []  # schema 4, optional
    if not isinstance(configuration, list) or not all(isinstance(c, str) for c in configuration):
        raise SchemaError(f"{where}.configuration", "expected an array of strings")
    return TestResult(
        id=test_id,
        family=family,
        outcome=outcome,
        duration_s=duration,
        message=_str(obj, "message", where, nullable=True) or "",
        diagnostics=_str(obj, "diagnostics", where, nullable=True) or None,
        measurements=_parse_measurements(obj.get("measurements") or {}, f"{where}.measurements"),
        profile=profile,
        profile_reason=reason or "",
        configuration=tuple(configuration),
    )


def _seed(obj: Mapping[str, Any]) -> str | None:
    """``hypothesis_seed``: an integer, a string (hypothesis accepts both) or null."""
    value = _key(obj, "hypothesis_seed", "$")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SchemaError(
            "hypothesis_seed", f"expected an integer, a string or null, got {_type_name(value)}"
        )
    return str(value)


def parse_results(doc: object, *, directory: Path, sha256: str | None = None) -> Cell:
    """Build a :class:`Cell` from a decoded results.json; :class:`SchemaError` if invalid."""
    obj = _obj(doc, "$")
    version = _key(obj, "schema_version", "$")
    if version not in RESULTS_SCHEMA_VERSIONS or isinstance(version, bool):
        raise SchemaError(
            "schema_version",
            f"{version!r} is not supported (this report reads versions "
            f"{', '.join(map(str, RESULTS_SCHEMA_VERSIONS))})",
        )
    info = _parse_cell_info(_key(obj, "cell", "$"))
    status = _choice(_req_str(obj, "status", "$"), STATUSES, "status")
    reason = _req_str(obj, "reason", "$")
    timings_obj = _obj(_key(obj, "timings", "$"), "timings")
    timings = tuple(
        (k, _as_number(v, f"timings.{k}"))
        for k, v in sorted(timings_obj.items())
        if v is not None  # a phase that never ran
    )
    raw_tests = _key(obj, "tests", "$")
    if not isinstance(raw_tests, list):
        raise SchemaError("tests", f"expected an array, got {_type_name(raw_tests)}")
    tests = tuple(_parse_test(t, f"tests[{i}]") for i, t in enumerate(raw_tests))
    if status != "completed" and not reason.strip():
        reason = f"status {status} without a reason"
    run = _mapping(obj.get("run"))
    families = _families(obj.get("families"))
    return Cell(
        key=directory.name,
        directory=directory,
        info=info,
        status=status,
        reason=one_line(reason),
        tests=tests,
        started=_str(obj, "started", "$", nullable=True),
        finished=_str(obj, "finished", "$", nullable=True),
        duration_s=_num(obj, "duration_s", "$", nullable=True),
        timings=timings,
        hypothesis_seed=_seed(obj),
        sha256=sha256,
        partial=run.get("partial") is True,
        selection=str(run.get("selection") or ""),
        performance=_mapping(obj.get("performance")) or None,
        families=families,
    )


def _families(value: object) -> dict[str, str] | None:
    """``families`` (schema 3, optional): the suite's families and their default profiles."""
    if value is None:
        return None
    obj = _obj(value, "families")
    for name, profile in obj.items():
        if not isinstance(profile, str):
            raise SchemaError(f"families.{name}", f"expected a string, got {_type_name(profile)}")
        _choice(profile, PROFILES, f"families.{name}")
    return dict(obj)
