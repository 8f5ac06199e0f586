"""``junit.xml`` merged from every cell's ``junit.xml``.

Each ``<testsuite>`` is renamed ``<cell>: <original name>`` and every ``<testcase>``'s
``classname`` is prefixed with ``<cell>.``, so tests of different cells never collide in a
CI test view; each suite carries a ``cell`` property.  A cell without a readable
``junit.xml`` (``unsupported``, ``error``, a broken file) gets a synthetic suite with one
test case: skipped for ``unsupported`` (unsupported is not a failure), an error otherwise,
with the reason as its message.  The root ``<testsuites>`` totals are recomputed.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from reports.errors import one_line
from reports.model import Cell

_COUNTS = ("tests", "failures", "errors", "skipped")


def _suites(root: ET.Element) -> list[ET.Element]:
    if root.tag == "testsuite":
        return [root]
    if root.tag == "testsuites":
        return list(root.iter("testsuite"))
    raise ValueError(f"root element <{root.tag}> is neither <testsuites> nor <testsuite>")


def _synthetic(cell: Cell, reason: str, kind: str) -> ET.Element:
    suite = ET.Element("testsuite", name=f"{cell.key}: svcconform")
    case = ET.SubElement(suite, "testcase", classname=f"{cell.key}.svcconform", name="cell", time="0")
    ET.SubElement(case, kind, message=one_line(reason)[:1000]).text = reason
    return suite


def _count(suite: ET.Element) -> dict[str, int]:
    cases = suite.findall("testcase")
    return {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }


def _mark(suite: ET.Element, cell: Cell) -> None:
    props = suite.find("properties")
    if props is None:
        props = ET.Element("properties")
        suite.insert(0, props)
    ET.SubElement(props, "property", name="cell", value=cell.key)
    ET.SubElement(props, "property", name="cell_status", value=cell.status)


def cell_suites(cell: Cell) -> tuple[list[ET.Element], str | None]:
    """The cell's suites, renamed; and a warning when its junit.xml could not be used."""
    path = cell.junit_path
    warning: str | None = None
    if path.exists():
        try:
            suites = _suites(ET.parse(path).getroot())
        except (ET.ParseError, ValueError, OSError) as exc:
            warning = f"{path}: not usable JUnit XML: {one_line(str(exc))}"
            suite = _synthetic(cell, warning, "error")
            _mark(suite, cell)
            return [suite], warning
        for suite in suites:
            original = suite.get("name") or "pytest"
            suite.set("name", f"{cell.key}: {original}")
            for case in suite.iter("testcase"):
                case.set("classname", f"{cell.key}.{case.get('classname') or ''}".rstrip("."))
            _mark(suite, cell)
        if suites:
            return suites, None
    if cell.status == "unsupported":
        suite = _synthetic(cell, f"unsupported: {cell.reason}", "skipped")
    elif cell.status == "error":
        suite = _synthetic(cell, f"error: {cell.reason}", "error")
    else:
        if cell.tests:
            warning = f"{path}: missing; the merged JUnit XML has no test cases for {cell.key}"
        suite = ET.Element("testsuite", name=f"{cell.key}: svcconform")
    _mark(suite, cell)
    return [suite], warning


def merge_junit(cells: Sequence[Cell]) -> tuple[bytes, list[str]]:
    """The merged document (UTF-8 bytes) and warnings about cells whose file was unusable."""
    root = ET.Element("testsuites", name="svcconform")
    warnings: list[str] = []
    totals = dict.fromkeys(_COUNTS, 0)
    time_total = 0.0
    for cell in cells:
        suites, warning = cell_suites(cell)
        if warning:
            warnings.append(warning)
        for suite in suites:
            counts = _count(suite)
            for k in _COUNTS:
                suite.set(k, str(counts[k]))
                totals[k] += counts[k]
            with contextlib.suppress(ValueError):
                time_total += float(suite.get("time") or 0)
            root.append(suite)
    for k in _COUNTS:
        root.set(k, str(totals[k]))
    root.set("time", f"{time_total:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n", warnings
