"""Command line: ``python -m reports <results-dir> [--vendor-info FILE] [--out DIR]``.

Exit codes:

* 0 — the report was written (whatever the cells' verdicts: the report *is* the verdict),
  or ``--verify`` found every digest unchanged;
* 1 — ``--strict`` and some cell failed, errored or passed no test (all skipped, or none);
  or ``--verify`` found a modified, missing or added cell (each named on its own line);
* 2 — bad input: no results dir or no cells in it, a bad ``--vendor-info`` file, an
  unwritable ``--out`` (one line on stderr naming the file).

A bad cell (missing, unreadable or invalid ``results.json``) is not fatal: it is reported
as an ``error`` cell, and a one-line warning naming the file goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from reports.analysis import BAD_VERDICTS, cell_verdict
from reports.errors import ReportError
from reports.html import render_html
from reports.junit import merge_junit
from reports.load import load_cells
from reports.markdown import render_markdown
from reports.scale import load_scale_runs
from reports.summary import build_summary, dumps, verify
from reports.vendor import VendorInfo, load_vendor

PROG = "python -m reports"
OUTPUTS = ("report.html", "summary.json", "summary.md", "junit.xml")


def generated_at() -> str:
    """Now (UTC, ISO-8601), or ``$SOURCE_DATE_EPOCH`` for reproducible reports."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            when = datetime.fromtimestamp(int(epoch), tz=UTC)
        except (ValueError, OverflowError, OSError):
            raise ReportError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix timestamp") from None
    else:
        when = datetime.now(tz=UTC)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Turn svcconform results (<results-dir>/<cell>/results.json) into "
        "report.html, summary.json, summary.md and a merged junit.xml.",
    )
    p.add_argument("results_dir", type=Path, help="directory holding one sub-directory per cell")
    p.add_argument("--out", type=Path, help="where to write the reports (default: results_dir)")
    p.add_argument(
        "--vendor-info",
        type=Path,
        metavar="FILE",
        help="YAML with implementation, version, contact, url and optional notes",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a cell failed, errored or passed no test (unsupported is not a failure)",
    )
    p.add_argument(
        "--verify",
        type=Path,
        metavar="SUMMARY",
        help="write nothing; check the results against SUMMARY's checksums (exit 1 if changed)",
    )
    return p


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise ReportError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def write_reports(
    results_dir: Path, out_dir: Path, vendor: VendorInfo | None
) -> tuple[list[Path], list[str]]:
    """Write every output into ``out_dir``; return the paths and each cell's verdict."""
    scale = load_scale_runs(results_dir)
    try:
        cells = load_cells(results_dir)
    except ReportError:
        if not scale:
            raise
        cells = []  # only scale benchmark results: the report is their Scale section
    for run in scale:
        if run.load_error:
            _warn(f"{run.load_error} (listed as not read in the Scale section)")
    for cell in cells:
        if cell.load_error:
            _warn(f"{cell.reason} (reported as error cell {cell.key!r})")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out_dir}: cannot create: {exc.strerror or exc}") from None
    summary = build_summary(cells, generated=generated_at(), vendor=vendor)
    junit, warnings = merge_junit(cells)
    for w in warnings:
        _warn(w)
    html = render_html(cells, summary=summary, vendor=vendor, out_dir=out_dir, scale=scale)
    markdown = render_markdown(cells, summary=summary, vendor=vendor, scale=scale)
    contents = {
        "report.html": html.encode("utf-8"),
        "summary.json": dumps(summary).encode("utf-8"),
        "summary.md": markdown.encode("utf-8"),
        "junit.xml": junit,
    }
    written = []
    for name in OUTPUTS:
        _write(out_dir / name, contents[name])
        written.append(out_dir / name)
    verdicts = [f"{c.key}={cell_verdict(c)}" for c in cells]
    return written, verdicts


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verify is not None:
            result = verify(args.results_dir, args.verify)
            for problem in result.problems:
                print(f"{PROG}: verify: {problem}", file=sys.stderr)
            if not result.ok:
                print(f"{PROG}: verification FAILED ({len(result.problems)} problem(s))")
                return 1
            print(f"{PROG}: verified {result.checked} cell(s) against {args.verify}")
            return 0
        vendor = load_vendor(args.vendor_info) if args.vendor_info else None
        out_dir = args.out if args.out is not None else args.results_dir
        written, verdicts = write_reports(args.results_dir, out_dir, vendor)
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{PROG}: {len(verdicts)} cell(s): {', '.join(verdicts)}")
    print(f"{PROG}: wrote {', '.join(str(p) for p in written)}")
    bad = [v for v in verdicts if v.rsplit("=", 1)[1] in BAD_VERDICTS]
    if args.strict and bad:
        print(f"{PROG}: --strict: {len(bad)} cell(s) not passing: {', '.join(bad)}")
        return 1
    return 0
