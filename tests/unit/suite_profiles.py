"""A pytest plugin (``-p suite_profiles``) that writes every collected suite check's family and
declared profile as JSON to ``$SVCC_PROFILES_OUT``: what ``test_profiles_snapshot.py`` compares
with its snapshot.  Run with ``--collect-only``: no cluster is needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fixtures.markers import family_of, profile_of


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suite = (config.rootpath / "suite").resolve()
    found = {}
    for item in items:
        if not item.path.resolve().is_relative_to(suite):
            continue
        declared = profile_of(item)
        found[item.nodeid] = {"family": family_of(item), "profile": declared.profile if declared else None,
                              "reason": declared.reason if declared else ""}
    Path(os.environ["SVCC_PROFILES_OUT"]).write_text(json.dumps(found, indent=1, sort_keys=True))
