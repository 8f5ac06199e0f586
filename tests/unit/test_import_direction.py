"""Imports go one way: suite → fixtures → images; reports stands alone (issue 17, item 4).

Every ``.py`` under ``suite/``, ``fixtures/``, ``images/``, ``reports/`` and the root
``conftest.py`` (the suite's pytest plugin, so counted as ``suite``) is parsed, and every import
counts: at module level, under ``if TYPE_CHECKING:`` and inside functions (a function-local
import hides a cycle from the interpreter, not from the design).  ``tests/`` may import
anything and is not scanned.

* An import from one package into another must follow :data:`ALLOWED`, or be one of the
  file-exact :data:`PERMITTED` / :data:`KNOWN_EXCEPTIONS` pairs.
* No package may hold an import cycle between its modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED_DIRS = ("suite", "fixtures", "images", "reports")
SCANNED_FILES = ("conftest.py",)
#: First components of module names that belong to this repository.
PACKAGES = ("suite", "fixtures", "images", "reports", "tests", "conftest")

#: Package → the other packages it may import (its own modules are always allowed).
ALLOWED: dict[str, tuple[str, ...]] = {
    "suite": ("fixtures",),
    "fixtures": ("images",),
    "images": (),
    "reports": (),
}

#: (file, module it imports) allowed by design, outside :data:`ALLOWED`.
PERMITTED: dict[tuple[str, str], str] = {
    # The names of proxy modes and CNIs are defined once, in fixtures.spec, and the families
    # with their default profiles in the registry fixtures.families (standard library only);
    # neither talks to a cluster.  reports reads them through reports.model and nowhere else.
    ("reports/model.py", "fixtures.spec"): "reports.model re-exports the spec's names",
    ("reports/model.py", "fixtures.families"): "reports.model re-exports the family registry",
}

#: (file, module it imports) that break the direction today and are being removed: issue 17,
#: item 3 (the suite only calls the framework).  Delete an entry when its import goes.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}

#: Modules no file under ``suite/`` may import, with no exception (issue 17, item 3: the suite
#: only calls the framework).  Running programs (Docker, kind, curl on the host) and knowing
#: the images are the framework's part: ask ``fixtures/``.
SUITE_FORBIDDEN: dict[str, str] = {
    "subprocess": "the suite runs no program itself: ask fixtures/ (a provider, a probe, a helper)",
    "images": "the suite does not know the images or their paths: ask fixtures/",
}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root, e.g. images/build.py
    line: int
    source: str  # module doing the import, e.g. images.build
    target: str  # module imported, e.g. images.primitives


def package_of(module: str) -> str:
    top = module.split(".", 1)[0]
    return "suite" if top == "conftest" else top


def source_files(root: Path) -> list[Path]:
    files = [p for d in SCANNED_DIRS if (root / d).is_dir() for p in sorted((root / d).rglob("*.py"))
             if "__pycache__" not in p.parts]
    return files + [root / f for f in SCANNED_FILES if (root / f).is_file()]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(node: ast.Import | ast.ImportFrom, source: str, is_package: bool,
                     known: set[str]) -> Iterator[str]:
    """The modules an import statement loads: ``from a import b`` is module ``a.b`` when
    that is one of ``known``, else (a name defined in) ``a``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = source.split(".") if is_package else source.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        full = f"{base}.{alias.name}"
        yield full if full in known else base


def scan(root: Path) -> list[Import]:
    """Every import of a repository module by a scanned file, wherever it sits in the file."""
    paths = {module_name(root, p): p for p in source_files(root)}
    known = set(paths)
    found: list[Import] = []
    for source, path in sorted(paths.items()):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in imported_modules(node, source, path.name == "__init__.py", known):
                if target.split(".", 1)[0] in PACKAGES and target != source:
                    found.append(Import(rel, node.lineno, source, target))
    return sorted(found, key=lambda i: (i.file, i.line, i.target))


def allowed_text(package: str) -> str:
    others = [f"{package} → {p}" for p in ALLOWED[package]]
    others += [f"{f} → {m}" for f, m in PERMITTED if f.startswith(f"{package}/")]
    return ", ".join(others) if others else f"{package} imports only {package}"


def direction_violations(root: Path) -> list[str]:
    """One line per (file, module) pair that imports against the direction."""
    seen: set[tuple[str, str]] = set()
    lines: list[str] = []
    for imp in scan(root):
        src, dst = package_of(imp.source), package_of(imp.target)
        pair = (imp.file, imp.target)
        if src == dst or dst in ALLOWED[src] or pair in PERMITTED or pair in KNOWN_EXCEPTIONS or pair in seen:
            continue
        seen.add(pair)
        lines.append(f"{imp.file}:{imp.line} imports {imp.target}: {src} must not import {dst} "
                     f"(allowed: {allowed_text(src)})")
    return lines


def suite_forbidden_imports(root: Path) -> list[str]:
    """One line per import of a :data:`SUITE_FORBIDDEN` module (or one of its submodules)
    by a file under ``suite/``, wherever it sits in the file."""
    found: list[tuple[str, int, str]] = []
    for path in sorted((root / "suite").rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            found += [(rel, node.lineno, n) for n in names if n.split(".", 1)[0] in SUITE_FORBIDDEN]
    return [f"{rel}:{line} imports {name}: {SUITE_FORBIDDEN[name.split('.', 1)[0]]}"
            for rel, line, name in sorted(found)]


def cycles(root: Path) -> list[str]:
    """One line per import cycle between modules of one package: the shortest cycle through
    the first module (by name) of each strongly connected component, with where each link is."""
    imports = scan(root)
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if package_of(imp.source) == package_of(imp.target):
            graph.setdefault(imp.source, {}).setdefault(imp.target, imp)

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    lines = []
    for component in sorted(components):
        start, members = component[0], set(component)
        # breadth-first from start back to start, inside the component
        paths = {start: [start]}
        frontier = [start]
        cycle: list[str] = []
        while frontier and not cycle:
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, {})):
                    if w == start:
                        cycle = [*paths[v], start]
                        break
                    if w in members and w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
                if cycle:
                    break
            frontier = nxt
        links = [graph[a][b] for a, b in pairwise(cycle)]
        lines.append(f"import cycle in {package_of(start)}: {' → '.join(cycle)} ("
                     + "; ".join(f"{i.file}:{i.line} imports {i.target}" for i in links)
                     + f"; all of {', '.join(component)} are in the cycle)")
    return lines


def test_imports_follow_suite_fixtures_images_and_reports_stands_alone() -> None:
    problems = direction_violations(ROOT)
    if problems:
        pytest.fail("imports against the direction suite → fixtures → images:\n" + "\n".join(problems),
                    pytrace=False)


def test_the_suite_imports_neither_subprocess_nor_images() -> None:
    problems = suite_forbidden_imports(ROOT)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_no_package_has_an_import_cycle() -> None:
    problems = cycles(ROOT)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_every_listed_exception_still_exists() -> None:
    """An exception whose import is gone must leave the lists, so it cannot come back unseen."""
    present = {(imp.file, imp.target) for imp in scan(ROOT)}
    stale = [f"{f} no longer imports {m}: remove it from {name} in {Path(__file__).name}"
             for name, table in (("PERMITTED", PERMITTED), ("KNOWN_EXCEPTIONS", KNOWN_EXCEPTIONS))
             for f, m in table if (f, m) not in present]
    if stale:
        pytest.fail("\n".join(stale), pytrace=False)


# --- the checker itself, on a made-up tree ------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path):
    def write(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
        for d in SCANNED_DIRS:
            (tmp_path / d).mkdir(exist_ok=True)
            (tmp_path / d / "__init__.py").touch()
        return tmp_path

    return write


def test_checker_reports_function_local_back_edges_one_line_each(tree) -> None:
    root = tree({
        "images/a.py": "def f():\n    import fixtures.spec\n    from fixtures import kube\n",
        "fixtures/spec.py": "",
        "fixtures/kube.py": "import suite.test_x\n",
        "suite/test_x.py": "from fixtures import spec\nfrom images import a\n",
        "reports/model.py": "from fixtures import spec\n",
        "reports/load.py": "from ..fixtures import spec\n",
    })
    assert direction_violations(root) == [
        "fixtures/kube.py:1 imports suite.test_x: fixtures must not import suite (allowed: fixtures → images)",
        "images/a.py:2 imports fixtures.spec: images must not import fixtures (allowed: images imports only images)",
        "images/a.py:3 imports fixtures.kube: images must not import fixtures (allowed: images imports only images)",
        "reports/load.py:1 imports fixtures.spec: reports must not import fixtures "
        "(allowed: reports/model.py → fixtures.spec, reports/model.py → fixtures.families)",
        "suite/test_x.py:2 imports images.a: suite must not import images (allowed: suite → fixtures)",
    ]


def test_checker_finds_subprocess_and_images_anywhere_in_the_suite(tree) -> None:
    root = tree({
        "suite/test_a.py": "import os\nimport subprocess\n\ndef f():\n    from subprocess import run\n",
        "suite/sub/test_b.py": "from images import catalog\nimport images.paths as p\nfrom . import subprocess\n",
        "fixtures/tools.py": "import subprocess\n",  # the framework may
        "conftest.py": "import subprocess\n",  # the root plugin is not under suite/
    })
    run = SUITE_FORBIDDEN["subprocess"]
    images = SUITE_FORBIDDEN["images"]
    assert suite_forbidden_imports(root) == [
        f"suite/sub/test_b.py:1 imports images: {images}",
        f"suite/sub/test_b.py:2 imports images.paths: {images}",
        f"suite/test_a.py:2 imports subprocess: {run}",
        f"suite/test_a.py:5 imports subprocess: {run}",
    ]


def test_checker_finds_cycles_hidden_in_functions_and_type_checking_blocks(tree) -> None:
    root = tree({
        "images/build.py": "def f():\n    from images import cilium\n",
        "images/cilium.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from images.build import B\n",
        "images/primitives.py": "",
        "images/flannel.py": "from images.primitives import B\n",
    })
    assert cycles(root) == [
        "import cycle in images: images.build → images.cilium → images.build "
        "(images/build.py:2 imports images.cilium; images/cilium.py:3 imports images.build; "
        "all of images.build, images.cilium are in the cycle)",
    ]
