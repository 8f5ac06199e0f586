"""The dns family's TCP check fails, and only it, when cluster DNS stops answering over TCP.

Cluster-wide break (the ``kube-system/kube-dns`` Service), so on a dedicated kind cluster
(``SVCCONFORM_CLUSTER_SUFFIX=brk-dnstcp``: ``svcc-iptables-kindnet-brk-dnstcp``), never the
shared one:

1. run ``-m dns -k "tcp or resolve_to_the_cluster_ip"`` there: it must pass (this also
   creates the cluster);
2. remove the ``dns-tcp`` port (TCP 53) from the kube-dns Service: kube-proxy then rejects TCP
   to the DNS ClusterIP while UDP keeps working (CoreDNS itself is untouched);
3. run the same selection again: the TCP/UDP test must FAIL with the DNS table, its ``over
   TCP`` columns without an answer (``?``) and its ``over UDP`` ones still resolving; the
   ClusterIP name test (libc and dig over UDP) must still pass;
4. put the port back, then delete the cluster (``SVCCONFORM_KEEP_BREAK_CLUSTER=1`` keeps it).

Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (it needs Docker, the images, and
about 8 minutes on a 2-core machine).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from breakkit import (
    DEDICATED_CLUSTER_REASON,
    DedicatedCluster,
    cell_results,
    family_argv,
    opt_in,
    outcomes,
    run_suite,
)

pytestmark = opt_in(DEDICATED_CLUSTER_REASON)

CLUSTER = DedicatedCluster("brk-dnstcp")
kubectl = CLUSTER.kubectl
#: A cluster create (KIND_CREATE_TIMEOUT, 15 min) in the first run, then the dns scene.
FAMILY_RUN_TIMEOUT_S = 1500
SELECT = ("-k", "tcp or resolve_to_the_cluster_ip")
TCP_TEST = "test_lookups_over_tcp_answer_as_over_udp"
UDP_TEST = "test_service_names_resolve_to_the_cluster_ip_from_every_node_and_namespace"


def run_family(results_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    argv = family_argv("dns", results_dir, select=SELECT)
    proc = run_suite(argv, env=CLUSTER.env(), timeout=FAMILY_RUN_TIMEOUT_S)
    return proc, cell_results(results_dir, argv, proc)


def test_dns_tcp_check_fails_when_the_dns_service_loses_its_tcp_port(tmp_path: Path) -> None:
    baseline, results = run_family(tmp_path / "baseline")
    assert baseline.returncode == 0, f"the selection must pass before the break:\n{baseline.stdout[-4000:]}"
    assert set(outcomes(results)) == {TCP_TEST, UDP_TEST}, outcomes(results)

    ports = json.loads(kubectl("-n", "kube-system", "get", "service", "kube-dns", "-o", "jsonpath={.spec.ports}"))
    index = next(i for i, p in enumerate(ports) if p.get("protocol") == "TCP" and p.get("port") == 53)
    try:
        kubectl("-n", "kube-system", "patch", "service", "kube-dns", "--type=json",
                "-p", json.dumps([{"op": "remove", "path": f"/spec/ports/{index}"}]))
        broken, results = run_family(tmp_path / "broken")
    finally:
        kubectl("-n", "kube-system", "patch", "service", "kube-dns", "--type=json",
                "-p", json.dumps([{"op": "replace", "path": "/spec/ports", "value": ports}]))

    assert broken.returncode != 0, f"dns passed with kube-dns missing TCP 53:\n{broken.stdout[-4000:]}"
    tests = outcomes(results)
    outcome, message = tests[TCP_TEST]
    assert outcome == "failed", f"{TCP_TEST}: {outcome} {message[:500]}"
    for needle in ("DNS resolution", "over TCP", "no DNS answer", "mismatching cell"):
        assert needle in message, f"{TCP_TEST} failed without naming {needle!r}: {message[:3000]}"
    mismatches = [line for line in message.splitlines() if "-> dig" in line and ": expected" in line]
    assert mismatches, f"no mismatching cells listed: {message[:3000]}"
    assert all("over TCP" in line for line in mismatches), f"UDP lookups broke too: {mismatches}"
    assert tests[UDP_TEST][0] == "passed", f"{UDP_TEST} uses UDP only, yet: {tests[UDP_TEST]}"
    print(f"{TCP_TEST}: {message[:5000]}")


@pytest.fixture(autouse=True, scope="module")
def _delete_break_cluster() -> Iterator[None]:
    yield
    CLUSTER.delete_unless_kept()
