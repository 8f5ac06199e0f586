"""fixtures/families.py is the one registry of families: everything that lists them derives from
it (issue 17 item 1), so adding a family is one entry there plus its suite module.

Here: the registry is well formed and stdlib-only; the two JSON schemas name no family in
their files and require the registry's once loaded; the report's rows and tags, the Core
families of a cell's profile and the printed table follow it; and the docs point at it
instead of listing families by hand (a hand-written list goes stale the day a family is added).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures import families, results
from fixtures.families import CORE, EXTENDED, FAMILIES, REGISTRY, Family
from reports import model, profiles, summary
from reports.analysis import families_of

ROOT = Path(__file__).resolve().parents[2]
#: Names that are a public interface (markers in CI scripts, results files, reports): never renamed.
PUBLIC = ("dns", "env", "clusterip", "nodeport", "etp", "selectorless", "convergence", "properties")
DOCS = ("README.md", "docs/ARCHITECTURE.md", "reports/README.md")


def test_the_registry_is_well_formed_and_keeps_the_public_names() -> None:
    assert families.problems() == []
    assert set(PUBLIC) <= set(FAMILIES)
    assert set(families.CORE_FAMILIES) | set(families.EXTENDED_FAMILIES) == set(FAMILIES)
    assert [f for f in FAMILIES if families.DEFAULT_PROFILES[f] == CORE] == list(families.CORE_FAMILIES)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (Family("Hair-pin", "x", CORE, "y"), "lowercase letters and digits"),
        (Family("h" * 37, "x", CORE, "y"), "at most 36"),
        (Family("extended", "x", CORE, "y"), "name of a profile marker"),
        (Family("dns", "x", CORE, "y"), "listed twice"),
        (Family("zzexample", "x", "optional", "y"), "default profile 'optional'"),
        (Family("zzexample", "", CORE, "y"), "description must be one non-empty line"),
        (Family("zzexample", "x", EXTENDED, "two\nlines"), "why must be one non-empty line"),
    ],
)
def test_registry_problems_are_named(entry: Family, problem: str) -> None:
    found = families.problems((*REGISTRY, entry))
    assert any(problem in line and repr(entry.name) in line for line in found), found


def test_the_registry_imports_only_the_standard_library() -> None:
    """reports reads it: it must not drag in pytest, the cluster client or anything of ours."""
    path = ROOT / "fixtures" / "families.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, f"{path.name} imports {name}"


def _strings(doc: Any) -> list[str]:
    """Every string value (not key: ``properties`` is also a JSON Schema keyword) of a document."""
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in _strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return [doc] if isinstance(doc, str) else []


@pytest.mark.parametrize("path", ["fixtures/results.schema.json", "reports/schema/summary.schema.json"])
def test_the_schema_files_name_no_family(path: str) -> None:
    named = sorted(set(FAMILIES) & set(_strings(json.loads((ROOT / path).read_text()))))
    assert not named, f"{path} lists families {named}: they come from fixtures/families.py when loaded"


def test_the_results_schema_takes_its_family_enum_from_the_registry() -> None:
    family = results.schema()["$defs"]["family"]
    assert family["oneOf"] == [{"enum": list(FAMILIES)}, {"type": "null"}]


def test_the_summary_schema_requires_the_registrys_families() -> None:
    doc = summary.schema()
    assert [i["const"] for i in doc["properties"]["families"]["prefixItems"]] == list(FAMILIES)
    assert doc["$defs"]["cell"]["properties"]["families"]["required"] == list(FAMILIES)


def test_the_reports_follow_the_registry() -> None:
    assert model.FAMILIES == FAMILIES
    assert families_of([]) == FAMILIES  # the report's rows, before any extra family a cell reports
    assert (profiles.CORE_FAMILIES, profiles.EXTENDED_FAMILIES) == (families.CORE_FAMILIES,
                                                                    families.EXTENDED_FAMILIES)


def test_python_m_fixtures_families_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "fixtures.families"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    rows = re.findall(r"^\| `([a-z0-9]+)` \| (Core|Extended) \| (.+) \|$", out, re.M)
    assert rows == [(f.name, f.default_profile.capitalize(), f.description) for f in REGISTRY]


def test_the_docs_point_at_the_registry() -> None:
    for doc in DOCS:
        assert "fixtures/families.py" in (ROOT / doc).read_text(), f"{doc} does not name fixtures/families.py"


@pytest.mark.parametrize("doc", DOCS)
def test_no_doc_lists_the_families_by_hand(doc: str) -> None:
    """A line naming three or more families (`dns`, "env", ...) is a hand-made list: it would
    go stale when a family is added.  Point at fixtures/families.py (or `python -m
    fixtures.families`) instead."""
    lists = []
    for number, line in enumerate((ROOT / doc).read_text().splitlines(), 1):
        named = {f for f in FAMILIES if f"`{f}`" in line or f'"{f}"' in line}
        if len(named) >= 3:
            lists.append(f"{doc}:{number} lists {sorted(named)}")
    assert not lists, "\n".join(lists)
