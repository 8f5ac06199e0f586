"""The dns family fails, naming DNS resolution, when cluster DNS is down.

Cluster-wide break, so on a dedicated kind cluster (``SVCCONFORM_CLUSTER_SUFFIX=brk-dns``:
``svcc-iptables-kindnet-brk-dns``), never the shared one:

1. run ``-m dns`` there: it must pass (this also creates the cluster);
2. scale ``kube-system/coredns`` to 0 and wait until its pods are gone (nothing can answer
   a query sent to the ``kube-dns`` ClusterIP any more);
3. run ``-m dns`` again: every lookup test must fail with a message naming DNS resolution
   and the missing answer; the resolv.conf test (a file kubelet writes, no query) still passes;
4. restore CoreDNS's replicas, then delete the cluster (``SVCCONFORM_KEEP_BREAK_CLUSTER=1``
   keeps it, restored, for a rerun).

Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (it needs Docker, the images, and
about 8 minutes on a 2-core machine).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from breakkit import (
    DEDICATED_CLUSTER_REASON,
    KUBECTL_TIMEOUT_S,
    DedicatedCluster,
    cell_results,
    family_argv,
    opt_in,
    outcomes,
    run_suite,
)

pytestmark = opt_in(DEDICATED_CLUSTER_REASON)

CLUSTER = DedicatedCluster("brk-dns")
kubectl = CLUSTER.kubectl
#: One family run: a cluster create (KIND_CREATE_TIMEOUT, 15 min) in the first, then the 9
#: dns tests, each failing only after DNS_PROPAGATION_TIMEOUT (30s) when DNS is down.
FAMILY_RUN_TIMEOUT_S = 1500
#: The dns tests that must keep passing while CoreDNS is down: they ask no DNS server.
NO_QUERY_TESTS = {"test_resolv_conf_has_cluster_dns_the_namespace_search_list_and_ndots_5"}


def run_family(results_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    argv = family_argv("dns", results_dir)
    proc = run_suite(argv, env=CLUSTER.env(), timeout=FAMILY_RUN_TIMEOUT_S)
    return proc, cell_results(results_dir, argv, proc)


def test_dns_family_fails_naming_dns_resolution_when_coredns_is_scaled_to_zero(tmp_path: Path) -> None:
    baseline, results = run_family(tmp_path / "baseline")
    assert baseline.returncode == 0, f"dns family must pass before the break:\n{baseline.stdout[-4000:]}"
    tests = outcomes(results)
    assert tests, "the baseline run reported no dns tests"
    assert all(o == "passed" for o, _ in tests.values()), tests

    replicas = kubectl("-n", "kube-system", "get", "deployment", "coredns", "-o", "jsonpath={.spec.replicas}")
    try:
        kubectl("-n", "kube-system", "scale", "deployment", "coredns", "--replicas=0")
        kubectl("-n", "kube-system", "wait", "--for=delete", "pod", "-l", "k8s-app=kube-dns",
                f"--timeout={KUBECTL_TIMEOUT_S}s")
        broken, results = run_family(tmp_path / "broken")
    finally:
        kubectl("-n", "kube-system", "scale", "deployment", "coredns", f"--replicas={replicas or 2}")
        kubectl("-n", "kube-system", "rollout", "status", "deployment", "coredns",
                f"--timeout={KUBECTL_TIMEOUT_S}s")

    assert broken.returncode != 0, f"dns family passed with CoreDNS at 0 replicas:\n{broken.stdout[-4000:]}"
    tests = outcomes(results)
    must_fail = set(tests) - NO_QUERY_TESTS
    wrong = {name: tests[name] for name in must_fail if tests[name][0] != "failed"}
    assert not wrong, f"with CoreDNS down these did not fail: {wrong}"
    unnamed = {name: tests[name][1][:300] for name in must_fail
               if "DNS resolution" not in tests[name][1] or "no DNS answer" not in tests[name][1]}
    assert not unnamed, f"failures that do not name DNS resolution and the missing answer: {unnamed}"
    for name in NO_QUERY_TESTS:
        assert tests[name][0] == "passed", f"{name} asks no DNS server, yet: {tests[name]}"
    print("\n".join(f"{name}: {msg[:1500]}" for name, (_, msg) in sorted(tests.items()) if name in must_fail))


@pytest.fixture(autouse=True, scope="module")
def _delete_break_cluster() -> Iterator[None]:
    yield
    CLUSTER.delete_unless_kept()
