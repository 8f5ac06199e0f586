"""How to re-run one test of one cell, and where its diagnostics bundle is."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from urllib.parse import quote

from reports.model import CNIS, PROXY_MODES, Cell, TestResult

#: What pytest's ``-k`` grammar accepts as one identifier (pytest >= 7).
_K_IDENT = re.compile(r"^[\w:+\-.\[\]\\/]+$")


def k_expression(test: TestResult) -> str:
    """A ``-k`` expression selecting ``test``: its function name with parameters when the
    grammar allows them, else without."""
    name = test.id.rsplit("::", 1)[-1]
    if _K_IDENT.match(name):
        return name
    return name.split("[", 1)[0]


def tox_command(cell: Cell, test: TestResult) -> str:
    """``tox -e <cell> -- -k '<test>'`` (plus ``--ip-family`` for an IP-family variant)."""
    argv = ["tox", "-e", cell.info.name, "--"]
    if cell.info.ip_family:
        argv.append(f"--ip-family={cell.info.ip_family}")
    argv += ["-k", k_expression(test)]
    return shlex.join(argv)


def pytest_command(cell: Cell, test: TestResult) -> str | None:
    """``pytest --proxy-mode=.. --cni=.. '<nodeid>'``; None for a cell pytest options cannot
    describe (e.g. a kube-proxy replacement, where only the tox env knows the setup)."""
    if cell.info.proxy_mode not in PROXY_MODES or cell.info.cni not in CNIS:
        return None
    argv = ["pytest", f"--proxy-mode={cell.info.proxy_mode}", f"--cni={cell.info.cni}"]
    if cell.info.ip_family:
        argv.append(f"--ip-family={cell.info.ip_family}")
    argv.append(test.id)
    return shlex.join(argv)


def diagnostics_target(cell: Cell, test: TestResult) -> tuple[Path, bool] | None:
    """Where ``test.diagnostics`` points and whether it exists.

    The path is relative to the cell's directory; one relative to the results dir (the
    cell directory's parent) is accepted too.
    """
    if not test.diagnostics:
        return None
    rel = Path(test.diagnostics)
    candidates = [rel] if rel.is_absolute() else [cell.directory / rel, cell.directory.parent / rel]
    for candidate in candidates:
        if candidate.exists():
            return candidate, True
    return candidates[0], False


def href(target: Path, out_dir: Path) -> str:
    """A relative URL from a page in ``out_dir`` to ``target``."""
    rel = os.path.relpath(target.resolve(), out_dir.resolve())
    return quote(rel.replace(os.sep, "/"))
