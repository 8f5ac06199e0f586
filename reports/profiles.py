"""Core vs Extended: which tests every conformant cluster must pass, and which are optional.

In the spirit of Gateway API conformance profiles, every test is

* **Core** — behaviour Kubernetes promises for every Service on every conformant cluster;
* **Extended** — optional features and service-level expectations a conformant
  implementation may lack.

The suite declares it: each family of ``fixtures/families.py`` has a default profile, and a
check that differs says so with ``@pytest.mark.extended(reason=...)`` (or ``core``).  Since
results.json schema 3 every test records it (``tests[].profile``, ``profile_reason``) and
:func:`classify_test` takes it as is.  Files that record none (schema 1 and 2) are classified
by :mod:`reports.legacy_profiles`, the name rules the report used when they were written.

A cell's profile (:func:`cell_profile`):

* ``none`` — the cell did not complete (``unsupported``/``error``), or a Core test failed or
  errored, or some Core family has no passed test (a family that was entirely skipped or
  absent proves nothing);
* ``core`` — every Core test that ran passed and every Core family has a passed test;
* ``extended`` — ``core``, and every Extended test that ran passed, and at least one did.

The Core families are those of the suite that ran, as its results.json ``families`` says (so
a newer report with more families judges an older run by its own); without that key, this
registry's (:data:`CORE_FAMILIES`) when the tests record their profiles, else the ones the
suite had before profiles were recorded (:data:`reports.legacy_profiles.LEGACY_CORE_FAMILIES`).
Skipped tests neither fail nor satisfy a profile; the report shows their counts beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reports import legacy_profiles
from reports.model import CORE, CORE_FAMILIES, EXTENDED, EXTENDED_FAMILIES, TestResult

NONE = "none"
PROFILES: tuple[str, ...] = (EXTENDED, CORE, NONE)
#: The rule of a profile the test recorded (any other rule is a legacy one).
DECLARED = "declared"

__all__ = ["CORE", "CORE_FAMILIES", "DECLARED", "EXTENDED", "EXTENDED_FAMILIES", "NONE", "PROFILES",
           "Classification", "cell_profile", "classify_test", "required_core_families"]


@dataclass(frozen=True)
class Classification:
    profile: str  # CORE or EXTENDED
    rule: str  # DECLARED, or the legacy rule that decided
    reason: str = ""  # the declared reason (empty for a legacy classification)


def classify_test(test: TestResult) -> Classification:
    """Core or Extended: as recorded, else by the legacy rules."""
    if test.profile is not None:
        return Classification(test.profile, DECLARED, test.profile_reason)
    profile, rule = legacy_profiles.classify(test.id, test.family)
    return Classification(profile, rule)


def required_core_families(tests: Sequence[TestResult],
                           families: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The families that need a passed Core test for the Core profile: the Core ones of the
    suite that ran (results.json ``families``), else — for a file recording profiles but not
    its families — this registry's, else the legacy ones."""
    if families is not None:
        return tuple(name for name, profile in families.items() if profile == CORE)
    if tests and all(t.profile is not None for t in tests):
        return CORE_FAMILIES
    return legacy_profiles.LEGACY_CORE_FAMILIES


def cell_profile(status: str, tests: Iterable[TestResult], families: Mapping[str, str] | None = None) -> str:
    """``extended``, ``core`` or ``none`` for a cell (see the module docstring); ``families``
    is the cell's results.json ``families`` when it has one."""
    if status != "completed":
        return NONE
    tests = tuple(tests)
    core_failed = ext_failed = False
    ext_passed = False
    core_passed_families: set[str] = set()
    for test in tests:
        profile = classify_test(test).profile
        if profile == CORE:
            if test.failed:
                core_failed = True
            elif test.outcome == "passed":
                core_passed_families.add(test.family)
        elif test.failed:
            ext_failed = True
        elif test.outcome == "passed":
            ext_passed = True
    if core_failed or not set(required_core_families(tests, families)) <= core_passed_families:
        return NONE
    if ext_failed or not ext_passed:
        return CORE
    return EXTENDED
