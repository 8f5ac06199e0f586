"""Declared profiles: the suite, collected (no cluster), against ``data/profiles_snapshot.json``.

The snapshot is every check's profile as the old name rules (now ``reports/legacy_profiles.py``)
classified it when profiles became declared; every one matched.  A listed check that changes
profile, or is no longer collected (renamed, removed), fails here: edit the snapshot with the
change, on purpose.  A check added later needs no entry (its marker is in its own diff).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures.families import DEFAULT_PROFILES, FAMILIES

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).parent / "data" / "profiles_snapshot.json"
#: A cold interpreter collecting the suite: ~2 s; generous for a loaded machine.
COLLECT_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """nodeid → {family, profile, reason} of every suite check, from ``pytest suite --collect-only``."""
    out = tmp_path_factory.mktemp("profiles") / "collected.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["SVCC_PROFILES_OUT"] = str(out)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suite", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "suite_profiles"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=COLLECT_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, f"collecting the suite failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    found: dict[str, dict[str, Any]] = json.loads(out.read_text())
    assert found, "no suite check collected"
    return found


def snapshot() -> dict[str, str]:
    profiles: dict[str, str] = json.loads(SNAPSHOT.read_text())["profiles"]
    return profiles


def test_every_snapshot_check_keeps_its_profile(collected: dict[str, dict[str, Any]]) -> None:
    changed = [f"{test_id}: {want} in the snapshot, declared {collected[test_id]['profile']}"
               for test_id, want in snapshot().items()
               if test_id in collected and collected[test_id]["profile"] != want]
    gone = [f"{test_id} ({want}): not collected any more" for test_id, want in snapshot().items()
            if test_id not in collected]
    if changed or gone:
        pytest.fail(f"declared profiles differ from {SNAPSHOT.relative_to(ROOT)} (edit it if the change is "
                    "meant, with the check's new id or profile):\n" + "\n".join(changed + gone), pytrace=False)


def test_every_check_has_a_family_of_the_registry_and_a_reason(collected: dict[str, dict[str, Any]]) -> None:
    for test_id, got in collected.items():
        assert got["family"] in FAMILIES, test_id
        assert got["profile"] in ("core", "extended"), test_id
        assert got["reason"].strip(), test_id


def test_checks_that_differ_from_their_family_say_why_in_their_own_words(
        collected: dict[str, dict[str, Any]]) -> None:
    """A family default's reason starts with the family's name; a marker's is the author's."""
    for test_id, got in collected.items():
        default = got["profile"] == DEFAULT_PROFILES[got["family"]]
        assert got["reason"].startswith(f"{got['family']}: ") == default, (test_id, got)
