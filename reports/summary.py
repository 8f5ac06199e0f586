"""``summary.json``: the machine-readable verdict, and checking it against the results later.

The format is ``reports/schema/summary.schema.json`` (version :data:`SCHEMA_VERSION`), with the
families of ``fixtures/families.py`` filled in by :func:`schema`.

Checksums: each cell records ``results_sha256``, the SHA-256 of its ``results.json`` bytes
(``null`` when the cell had no readable file).  The top-level ``results_sha256`` is the
SHA-256 of the lines ``"<digest>  <cell>/results.json\\n"`` for every cell with a digest,
sorted by cell name — exactly what ``sha256sum`` prints, so it can be recomputed without
this tool::

    cd results && LC_ALL=C sha256sum */results.json | LC_ALL=C sort -k2 | sha256sum
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.analysis import cell_verdict, families_of, family_stats, measurements, profile_of
from reports.errors import ReportError
from reports.load import discover
from reports.model import FAMILIES, RESULTS_FILE, Cell
from reports.vendor import VendorInfo

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schema" / "summary.schema.json"


def schema() -> dict[str, Any]:
    """``summary.schema.json`` completed from the family registry: ``families`` starts with
    the registry's in order, and every cell has an entry for each (the file names none)."""
    doc: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    top = doc["properties"]["families"]
    top["prefixItems"] = [{"const": f} for f in FAMILIES]
    top["minItems"] = len(FAMILIES)
    doc["$defs"]["cell"]["properties"]["families"]["required"] = list(FAMILIES)
    return doc


def digest_lines(digests: Mapping[str, str | None]) -> str:
    """The ``sha256sum``-style listing the aggregate digest is computed over."""
    return "".join(
        f"{digest}  {name}/{RESULTS_FILE}\n" for name, digest in sorted(digests.items()) if digest is not None
    )


def aggregate_digest(digests: Mapping[str, str | None]) -> str:
    """SHA-256 over the sorted per-cell digests (see the module docstring)."""
    return hashlib.sha256(digest_lines(digests).encode("ascii")).hexdigest()


def suite_version(cells: Sequence[Cell]) -> str | None:
    """The suite version all cells agree on; ``mixed: a, b`` when they differ."""
    versions = sorted({c.info.suite_version for c in cells if c.info.suite_version})
    if not versions:
        return None
    return versions[0] if len(versions) == 1 else "mixed: " + ", ".join(versions)


def _measurements(cell: Cell) -> dict[str, dict[str, Any]]:
    return {
        v.key: {
            "test": v.test_id,
            "unit": v.unit,
            "count": len(v.samples),
            "p50": v.p50,
            "p90": v.p90,
            "max": v.max,
        }
        for v in measurements(cell)
    }


def _performance(cell: Cell) -> dict[str, Any] | None:
    """The cell's performance verdict in brief (results.json schema 3; None before)."""
    perf = cell.performance
    if not perf:
        return None
    baseline = perf.get("baseline")
    sync = perf.get("min_sync_period_s")
    return {
        "verdict": str(perf.get("verdict") or "not measured"),
        "over_budget": sorted(str(r.get("measurement")) for r in perf.get("budgets") or ()
                              if r.get("verdict") == "over budget"),
        "regressions": int(baseline.get("regressions") or 0) if isinstance(baseline, dict) else None,
        "min_sync_period_s": float(sync) if isinstance(sync, int | float) else None,
    }


def cell_entry(cell: Cell, families: Sequence[str]) -> dict[str, Any]:
    stats = family_stats(cell, families)
    entry: dict[str, Any] = {
        "name": cell.key,
        "tox_env": cell.info.name,
        "proxy_mode": cell.info.proxy_mode,
        "cni": cell.info.cni,
        "status": cell.status,
        "reason": cell.reason,
        "verdict": cell_verdict(cell),
        "profile": profile_of(cell),
        "kubernetes_version": cell.info.kubernetes_version,
        "suite_version": cell.info.suite_version,
        "families": {
            f: {
                "passed": s.counts.passed,
                "failed": s.counts.failed,
                "skipped": s.counts.skipped,
                "total": s.counts.total,
                "verdict": s.verdict,
                "core_verdict": s.core_verdict,
                "extended_verdict": s.extended_verdict,
            }
            for f, s in stats.items()
        },
        "measurements": _measurements(cell),
        "results_sha256": cell.sha256,
        "partial": cell.partial,
        "selection": cell.selection,
        "reruns": [
            {"stamp": r.stamp, "selection": r.selection, "status": r.status,
             "passed": sum(t.outcome == "passed" for t in r.tests),
             "failed": sum(t.failed for t in r.tests),
             "skipped": sum(t.outcome == "skipped" for t in r.tests)}
            for r in cell.reruns
        ],
    }
    performance = _performance(cell)
    if performance is not None:
        entry["performance"] = performance
    return entry


def build_summary(cells: Sequence[Cell], *, generated: str, vendor: VendorInfo | None) -> dict[str, Any]:
    families = families_of(cells)
    entries = [cell_entry(c, families) for c in cells]
    return {
        "schema_version": SCHEMA_VERSION,
        "generated": generated,
        "suite_version": suite_version(cells),
        "vendor": vendor.as_dict() if vendor else None,
        "families": list(families),
        "cells": entries,
        "results_sha256": aggregate_digest({c.key: c.sha256 for c in cells}),
    }


def dumps(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


# --- verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    problems: tuple[str, ...]


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReportError(f"{path}: unreadable: {exc.strerror or exc}") from None


def read_summary(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such summary file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: unreadable: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(f"{path}: not a summary.json of schema version {SCHEMA_VERSION}")
    cells = doc.get("cells")
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) for c in cells
    ):
        raise ReportError(f"{path}: 'cells' must be a list of objects with a 'name'")
    return doc


def verify(results_dir: Path, summary_path: Path) -> Verification:
    """Recompute every digest from ``results_dir`` and compare with ``summary_path``.

    Problems name the cell: a changed, removed or added ``results.json`` and an aggregate
    that does not match the per-cell digests (an edited summary).
    """
    doc = read_summary(summary_path)
    recorded: dict[str, str | None] = {c["name"]: c.get("results_sha256") for c in doc["cells"]}
    problems: list[str] = []
    actual: dict[str, str | None] = {}
    for name, want in sorted(recorded.items()):
        path = results_dir / name / RESULTS_FILE
        got = _file_digest(path)
        actual[name] = got
        if got == want:
            continue
        if got is None:
            problems.append(f"{name}: {path} is missing (recorded sha256 {want})")
        elif want is None:
            problems.append(f"{name}: {path} appeared (no results.json when summarised)")
        else:
            problems.append(f"{name}: {path} was modified (sha256 {got} != recorded {want})")
    try:
        present = {p.name for p in discover(results_dir)}
    except ReportError:
        present = set()
    for name in sorted(present - set(recorded)):
        problems.append(f"{name}: cell {results_dir / name} is not in {summary_path}")
    if doc.get("results_sha256") != aggregate_digest(recorded):
        problems.append(
            f"{summary_path}: results_sha256 does not match its cells' digests (the summary was edited)"
        )
    return Verification(ok=not problems, checked=len(recorded), problems=tuple(problems))
