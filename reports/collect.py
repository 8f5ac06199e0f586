"""Merge per-job result artifacts into one results dir: ``python -m reports.collect``.

The nightly workflow runs one job per cell; each uploads its ``results/`` as an artifact
named ``results-<cell>``, and the report job downloads them all side by side::

    artifacts/results-iptables-kindnet/iptables-kindnet/results.json
    artifacts/results-iptables-kindnet-ipv6/iptables-kindnet/results.json   (same tox env)
    artifacts/results-cilium-kpr/job.json                                   (died early)

``python -m reports.collect artifacts results`` turns that into one results dir with one
directory per *job* (``results/iptables-kindnet``, ``results/iptables-kindnet-ipv6``, ...),
so IP-family variants of the same tox env do not overwrite each other.  A job that left no
``results.json`` gets a schema-v1 ``error`` cell saying so (from its ``job.json`` when it
wrote one), so a cell that crashed is reported instead of silently missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reports.errors import ReportError, one_line
from reports.load import guess_mode_cni
from reports.model import RESULTS_FILE

PREFIX = "results-"
JOB_FILE = "job.json"


def _job_info(artifact: Path) -> dict[str, Any]:
    path = artifact / JOB_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def missing_results(variant: str, job: dict[str, Any]) -> dict[str, Any]:
    """A results.json (schema v1, status ``error``) for a job that wrote none."""
    mode, cni = guess_mode_cni(variant)
    tox_env = str(job.get("tox_env") or variant)
    outcome = job.get("outcome") or "unknown"
    where = f"; see {job['run_url']}" if job.get("run_url") else ""
    now = datetime.now(tz=UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "schema_version": 1,
        "cell": {
            "name": tox_env,
            "proxy_mode": str(job.get("proxy_mode") or mode),
            "cni": str(job.get("cni") or cni),
            "provider": "kind",
            "kubernetes_version": None,
            "nodes": None,
            "kernel": None,
            "suite_version": None,
            "images": {"node": None, "airgapped": None},
        },
        "status": "error",
        "reason": one_line(
            f"the {variant} job (tox -e {tox_env}) wrote no {RESULTS_FILE}; "
            f"tox step outcome: {outcome}{where}"
        ),
        "started": now,
        "finished": now,
        "duration_s": 0.0,
        "timings": {"cluster_create_s": None, "suite_s": None},
        "hypothesis_seed": None,
        "tests": [],
    }


def collect(artifacts: Path, results: Path) -> list[str]:
    """Copy every artifact's cell into ``results/<variant>``; return one line per cell."""
    if not artifacts.is_dir():
        raise ReportError(f"{artifacts}: artifacts dir does not exist")
    jobs = sorted(p for p in artifacts.iterdir() if p.is_dir() and p.name.startswith(PREFIX))
    if not jobs:
        raise ReportError(f"{artifacts}: no {PREFIX}<cell> artifact directories")
    results.mkdir(parents=True, exist_ok=True)
    lines = []
    for artifact in jobs:
        variant = artifact.name[len(PREFIX) :]
        cells = sorted(p.parent for p in artifact.glob(f"*/{RESULTS_FILE}"))
        if len(cells) > 1:
            raise ReportError(
                f"{artifact}: {len(cells)} cells in one job's artifact "
                f"({', '.join(c.name for c in cells)}); expected one"
            )
        dest = results / variant
        if dest.exists():
            raise ReportError(f"{dest}: already exists; two artifacts for cell {variant}?")
        if cells:
            shutil.copytree(cells[0], dest)
            lines.append(f"{variant}: {cells[0].relative_to(artifacts)}")
        else:
            dest.mkdir()
            doc = missing_results(variant, _job_info(artifact))
            (dest / RESULTS_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            lines.append(f"{variant}: no {RESULTS_FILE} (recorded as an error cell)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m reports.collect",
        description="Merge downloaded results-<cell> artifacts into one results dir.",
    )
    p.add_argument("artifacts", type=Path, help="directory holding results-<cell>/ artifacts")
    p.add_argument("results", type=Path, help="results dir to create (one sub-dir per cell)")
    args = p.parse_args(argv)
    try:
        for line in collect(args.artifacts, args.results):
            print(line)
    except (ReportError, OSError) as exc:
        print(f"python -m reports.collect: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
