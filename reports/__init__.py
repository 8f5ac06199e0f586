"""Vendor validation reports from svcconform results.

``python -m reports <results-dir>`` reads every ``<results-dir>/<cell>/results.json`` (schema
v1, ``docs/ARCHITECTURE.md``) and writes ``report.html``, ``summary.json``, ``summary.md``
and a merged ``junit.xml``; see ``reports/README.md``.  This package only reads files: it
imports nothing that talks to a cluster.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m reports`` (see :mod:`reports.cli`)."""
    from reports.cli import main as cli_main

    return cli_main(argv)
