"""reports.profiles and reports.analysis: declared and legacy Core/Extended, profiles, verdicts."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from reports import legacy_profiles, profiles
from reports.analysis import (
    cell_verdict,
    family_stats,
    measurements,
    only_extended_failed,
    percentile,
    profile_of,
)
from reports.legacy_profiles import LEGACY_CORE_FAMILIES, classify, normalize_name
from reports.load import load_cell
from reports.model import FAMILIES, Cell, CellInfo, Measurement, TestResult
from reports.profiles import CORE, CORE_FAMILIES, EXTENDED, classify_test

SAMPLES = Path(__file__).parent / "data" / "results"


# --- legacy classification table (files without recorded profiles) ----------------------


@pytest.mark.parametrize(
    ("test_id", "family", "profile", "rule"),
    [
        ("suite/test_dns.py::test_service_a_record_resolves_to_cluster_ip", "dns", CORE, "family-default"),
        (
            "suite/test_env_discovery.py::test_pod_sees_service_host_and_port_variables",
            "env",
            CORE,
            "family-default",
        ),
        (
            "suite/test_clusterip.py::test_clusterip_reachable_from_every_node[udp]",
            "clusterip",
            CORE,
            "family-default",
        ),
        # basic ClientIP affinity is Core, its timeout Extended
        ("suite/test_clusterip.py::test_session_affinity_client_ip_sticks", "clusterip", CORE, "family-default"),
        (
            "suite/test_clusterip.py::test_session_affinity_timeout_expires",
            "clusterip",
            EXTENDED,
            "session-affinity-timeout",
        ),
        (
            "suite/test_clusterip.py::test_affinity[sessionAffinityConfig.timeoutSeconds=10]",
            "clusterip",
            EXTENDED,
            "session-affinity-timeout",
        ),
        ("suite/test_nodeport.py::test_nodeport_reachable_from_the_host", "nodeport", CORE, "family-default"),
        (
            "suite/test_external_traffic_policy.py::test_local_policy_preserves_client_ip",
            "etp",
            CORE,
            "family-default",
        ),
        (
            "suite/test_external_traffic_policy.py::test_cluster_policy_reaches_from_every_node",
            "etp",
            CORE,
            "family-default",
        ),
        (
            "suite/test_external_traffic_policy.py::test_health_check_node_port_answers",
            "etp",
            EXTENDED,
            "health-check-node-port",
        ),
        ("suite/test_etp.py::test_probe[healthCheckNodePort]", "etp", EXTENDED, "health-check-node-port"),
        (
            "suite/test_clusterip.py::test_internal_traffic_policy_local_uses_node_local_endpoints",
            "clusterip",
            EXTENDED,
            "internal-traffic-policy",
        ),
        (
            "suite/test_clusterip.py::test_traffic_distribution_prefer_close",
            "clusterip",
            EXTENDED,
            "traffic-distribution",
        ),
        # the module's tests name the behaviour, not the field: the whole module is Extended
        (
            "suite/test_traffic_distribution.py::"
            "test_traffic_stays_in_the_clients_zone_or_on_its_node_when_an_endpoint_is_there[PreferSameNode]",
            "clusterip",
            EXTENDED,
            "traffic-distribution",
        ),
        (
            "suite/test_traffic_distribution.py::"
            "test_a_service_without_traffic_distribution_carries_no_hints_and_spreads_over_every_zone",
            "clusterip",
            EXTENDED,
            "traffic-distribution",
        ),
        # the same behaviour words in another module do not make a test Extended
        ("suite/test_clusterip.py::test_traffic_stays_in_the_clients_zone", "clusterip", CORE, "family-default"),
        ("suite/test_clusterip.py::test_reachable[sctp]", "clusterip", EXTENDED, "sctp"),
        (
            "suite/test_clusterip.py::test_external_ips_route_to_backends",
            "clusterip",
            EXTENDED,
            "external-ips",
        ),
        ("suite/test_dns.py::test_ptr_records_extended", "dns", EXTENDED, "extended-keyword"),
        ("suite/test_dns.py::test_lookup[extended-aaaa]", "dns", EXTENDED, "extended-keyword"),
        (
            "suite/test_selectorless.py::test_manual_endpointslice_routes_traffic",
            "selectorless",
            CORE,
            "family-default",
        ),
        (
            "suite/test_convergence.py::test_new_endpoint_reachable_within_ceiling",
            "convergence",
            EXTENDED,
            "family-default",
        ),
        (
            "suite/test_properties.py::test_every_backend_reachable",
            "properties",
            EXTENDED,
            "family-default",
        ),
        ("suite/test_other.py::test_something", "unclassified", EXTENDED, "unknown-family"),
        (
            "suite/test_nodeport.py::test_nodeport_reachable_on_localhost",
            "nodeport",
            EXTENDED,
            "nodeport-localhost",
        ),
        ("suite/test_dns.py::test_localhost_is_not_a_service", "dns", CORE, "family-default"),
        # the file name is not part of the match: only the test's own name is
        ("suite/test_external_ips.py::test_plain_clusterip", "clusterip", CORE, "family-default"),
    ],
)
def test_classification_table(test_id: str, family: str, profile: str, rule: str) -> None:
    assert classify(test_id, family) == (profile, rule)
    # a file without recorded profiles is read with these rules
    assert classify_test(_t(test_id, family)) == profiles.Classification(profile, rule)


def test_extended_ids_win_over_the_family(monkeypatch: pytest.MonkeyPatch) -> None:
    test_id = "suite/test_dns.py::test_plain_lookup"
    assert classify(test_id, "dns")[0] == CORE
    monkeypatch.setattr(legacy_profiles, "EXTENDED_IDS", frozenset({test_id}))
    assert classify(test_id, "dns") == (EXTENDED, "extended-id")
    assert classify(test_id + "[ipv6]", "dns")[0] == EXTENDED  # parameters stripped


def test_every_listed_extended_id_is_a_suite_node_id() -> None:
    for test_id in legacy_profiles.EXTENDED_IDS:
        assert test_id.startswith("suite/test_")
        assert "::test_" in test_id
        assert "[" not in test_id, "list ids without parameters"


def test_the_registry_splits_every_family_and_the_legacy_rules_say_why() -> None:
    assert set(CORE_FAMILIES) | set(profiles.EXTENDED_FAMILIES) == set(FAMILIES)
    assert not set(CORE_FAMILIES) & set(profiles.EXTENDED_FAMILIES)
    assert set(LEGACY_CORE_FAMILIES) <= set(CORE_FAMILIES)  # old files' families keep their names
    assert all(r.why and r.profile == EXTENDED for r in legacy_profiles.RULES)
    assert len({r.name for r in legacy_profiles.RULES}) == len(legacy_profiles.RULES)


def test_a_recorded_profile_is_taken_as_is() -> None:
    """The suite declares profiles; the name rules only read files that record none."""
    test = _t("suite/test_clusterip.py::test_sctp_load_balancer_extended", "clusterip")
    assert classify_test(test).profile == EXTENDED  # legacy: three keywords say so
    declared = replace(test, profile=CORE, profile_reason="promised")
    assert classify_test(declared) == profiles.Classification(CORE, "declared", "promised")
    plain = _t("suite/test_dns.py::test_lookup", "dns")
    assert classify_test(replace(plain, profile=EXTENDED)).profile == EXTENDED


def test_a_family_the_registry_does_not_know_is_extended_unless_recorded() -> None:
    assert classify_test(_t("suite/test_x.py::test_y", "not-a-family")) == profiles.Classification(
        EXTENDED, "unknown-family")
    assert classify_test(_t("suite/test_x.py::test_y", "not-a-family", profile=CORE)).profile == CORE


def test_normalize_name_reads_separators_alike() -> None:
    assert normalize_name("suite/a.py::TestX::test_Y-z[a.b c]") == "testx::test_y_z[a_b_c]"


# --- cell profiles -----------------------------------------------------------------------


def _t(test_id: str, family: str, outcome: str = "passed", profile: str | None = None) -> TestResult:
    return TestResult(
        id=test_id, family=family, outcome=outcome, duration_s=1.0, message="", diagnostics=None,
        profile=profile,
    )


def _core_passes() -> list[TestResult]:
    """A legacy file's (no recorded profiles): a passed test in each of its Core families."""
    return [_t(f"suite/test_{f}.py::test_{f}_works", f) for f in LEGACY_CORE_FAMILIES]


def _declared(tests: list[TestResult]) -> list[TestResult]:
    return [replace(t, profile=classify_test(t).profile) for t in tests]


EXT = _t("suite/test_convergence.py::test_ceiling", "convergence")


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        ([*_core_passes(), EXT], "extended"),
        (_core_passes(), "core"),  # no Extended test passed: not extended
        ([*_core_passes(), replace(EXT, outcome="failed")], "core"),
        ([*_core_passes(), replace(EXT, outcome="skipped")], "core"),
        ([*_core_passes(), EXT, replace(EXT, id=EXT.id + "2", outcome="error")], "core"),
        ([*_core_passes()[1:], EXT], "none"),  # a Core family with no passed test
        ([*_core_passes(), _t("suite/test_dns.py::test_more", "dns", "failed"), EXT], "none"),
        ([*_core_passes(), _t("suite/test_dns.py::test_more", "dns", "error"), EXT], "none"),
        # a skipped Core test neither fails nor satisfies
        ([*_core_passes(), _t("suite/test_dns.py::test_more", "dns", "skipped"), EXT], "extended"),
        ([replace(t, outcome="skipped") for t in _core_passes()] + [EXT], "none"),
        ([], "none"),
    ],
)
def test_cell_profile(tests: list[TestResult], expected: str) -> None:
    assert profiles.cell_profile("completed", tests) == expected


def test_with_recorded_profiles_every_core_family_of_the_registry_needs_a_pass() -> None:
    """A legacy file needs its old Core families; a file recording profiles the registry's
    (an added Core family, e.g. affinity, then counts)."""
    legacy = [*_core_passes(), EXT]
    assert profiles.cell_profile("completed", legacy) == "extended"
    assert set(CORE_FAMILIES) - set(LEGACY_CORE_FAMILIES), "the registry has a Core family old files lack"
    assert profiles.cell_profile("completed", _declared(legacy)) == "none"
    everything = _declared([*legacy, *(_t(f"suite/test_{f}.py::test_{f}_works", f) for f in CORE_FAMILIES)])
    assert profiles.cell_profile("completed", everything) == "extended"
    assert profiles.required_core_families(everything) == CORE_FAMILIES
    assert profiles.required_core_families([*everything, EXT]) == LEGACY_CORE_FAMILIES  # one unrecorded
    assert profiles.required_core_families([]) == LEGACY_CORE_FAMILIES


def test_a_run_that_recorded_its_families_is_judged_by_them() -> None:
    """results.json ``families``: a run of a suite without a Core family a newer registry has
    keeps its profile in the newer report; a Core family it had must still pass."""
    ran = {**dict.fromkeys(LEGACY_CORE_FAMILIES, CORE), "convergence": EXTENDED}
    tests = _declared([*_core_passes(), EXT])
    assert profiles.cell_profile("completed", tests) == "none"  # this registry has more Core families
    assert profiles.cell_profile("completed", tests, ran) == "extended"
    assert profiles.cell_profile("completed", tests, {**ran, "hairpin": CORE}) == "none"
    cell = Cell(key="iptables-kindnet", directory=Path("."), status="completed", reason="", tests=tuple(tests),
                info=CellInfo(name="iptables-kindnet", proxy_mode="iptables", cni="kindnet"), families=ran)
    assert profile_of(cell) == "extended"


@pytest.mark.parametrize("status", ["unsupported", "error"])
def test_cells_that_did_not_complete_have_no_profile(status: str) -> None:
    assert profiles.cell_profile(status, [*_core_passes(), EXT]) == "none"


def test_sample_profiles_and_verdicts() -> None:
    got = {
        name: (cell_verdict(c), profile_of(c))
        for name in (
            "iptables-kindnet",
            "nftables-flannel",
            "nftables-kindnet",
            "ipvs-kindnet",
            "iptables-cilium",
        )
        for c in [load_cell(SAMPLES / name)]
    }
    assert got == {
        "iptables-kindnet": ("passed", "extended"),
        "nftables-flannel": ("failed", "core"),  # only a convergence ceiling failed
        "nftables-kindnet": ("failed", "none"),  # a NodePort test failed
        "ipvs-kindnet": ("unsupported", "none"),
        "iptables-cilium": ("error", "none"),
    }
    assert only_extended_failed(load_cell(SAMPLES / "nftables-flannel"))
    assert not only_extended_failed(load_cell(SAMPLES / "nftables-kindnet"))


# --- family stats ------------------------------------------------------------------------


def test_family_stats_count_and_split_core_from_extended() -> None:
    cell = load_cell(SAMPLES / "nftables-flannel")
    stats = family_stats(cell)
    conv = stats["convergence"]
    assert (conv.counts.passed, conv.counts.failed, conv.counts.skipped, conv.counts.total) == (1, 1, 0, 2)
    assert (conv.verdict, conv.core_verdict, conv.extended_verdict) == ("failed", "not-run", "failed")
    etp = stats["etp"]
    assert etp.counts.total == 4
    assert (etp.core.total, etp.extended.total) == (3, 1)  # healthCheckNodePort is Extended
    props = stats["properties"]
    assert (props.counts.passed, props.counts.skipped, props.verdict) == (1, 1, "passed")


def test_family_verdicts_of_cells_that_did_not_run() -> None:
    for name, status in (("ipvs-kindnet", "unsupported"), ("iptables-cilium", "error")):
        stats = family_stats(load_cell(SAMPLES / name))
        assert {s.verdict for s in stats.values()} == {status}
        assert {s.core_verdict for s in stats.values()} == {status}


def test_error_outcome_counts_as_failed_and_all_skipped_is_not_green() -> None:
    base = load_cell(SAMPLES / "iptables-kindnet")
    errored = replace(base, tests=(replace(base.tests[0], outcome="error"), *base.tests[1:]))
    assert family_stats(errored)["dns"].counts.failed == 1
    assert cell_verdict(errored) == "failed"
    skipped = replace(base, tests=tuple(replace(t, outcome="skipped") for t in base.tests))
    assert cell_verdict(skipped) == "skipped"
    assert family_stats(skipped)["dns"].verdict == "skipped"
    assert cell_verdict(replace(base, tests=())) == "not-run"


# --- measurements ------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(samples, 50) == 3.0
    assert percentile(samples, 90) == 5.0
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 5.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_measurements_use_recorded_percentiles_and_fill_gaps(tmp_path: Path) -> None:
    m1 = Measurement("sync_s", "s", (1.0, 2.0, 3.0, 4.0), p50=2.5, p90=None, max=None)
    m2 = Measurement("sync_s", "s", (), p50=None, p90=None, max=None)
    cell = Cell(
        key="iptables-kindnet",
        directory=tmp_path,
        info=CellInfo(name="iptables-kindnet", proxy_mode="iptables", cni="kindnet"),
        status="completed",
        reason="",
        tests=(
            replace(_t("suite/test_convergence.py::test_a", "convergence"), measurements=(m1,)),
            replace(_t("suite/test_convergence.py::test_b", "convergence"), measurements=(m2,)),
        ),
    )
    views = {v.key: v for v in measurements(cell)}
    assert set(views) == {"test_a:sync_s", "test_b:sync_s"}  # same name in two tests
    a = views["test_a:sync_s"]
    assert (a.p50, a.p90, a.max) == (2.5, 4.0, 4.0)
    b = views["test_b:sync_s"]
    assert (b.p50, b.p90, b.max) == (None, None, None)


def test_the_readme_documents_every_legacy_rule() -> None:
    readme = (Path(__file__).parents[2] / "reports" / "README.md").read_text()
    documented = re.findall(r"^\| `([a-z-]+)` \| (Core|Extended|the family's) \|", readme, re.M)
    expected = ([("extended-id", "Extended")] + [(r.name, r.profile.capitalize()) for r in legacy_profiles.RULES]
                + [(legacy_profiles.FAMILY_DEFAULT, "the family's"), (legacy_profiles.UNKNOWN_FAMILY, "Extended")])
    assert documented == expected
