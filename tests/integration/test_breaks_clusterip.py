"""The clusterip and nodeport families fail, naming reachability, when kube-proxy is gone.

Cluster-wide break, so on a dedicated kind cluster (``SVCCONFORM_CLUSTER_SUFFIX=brk-cip``:
``svcc-iptables-kindnet-brk-cip``), never the shared one, and both families on it one
after the other (one cluster create):

1. the nodeport family runs green on the fresh cluster (baseline: the cluster works);
2. kube-proxy is stopped and its rules are flushed on every node (``iptables-save | grep -v
   KUBE | iptables-restore``): no ClusterIP or nodePort is translated any more.  Its pods
   stay (kube-proxy missing from a node is ``test_breaks_health.py``'s case): the
   DaemonSet's command becomes an idle shell (kube-proxy has no readiness probe, so the pods
   are Ready and program nothing);
3. ``-m clusterip`` then ``-m nodeport`` must FAIL: every check that sends traffic fails,
   the reachability ones with their expected/observed tables (``mismatching cell``);
   the allocation checks (ClusterIP in the service CIDR, nodePorts in range) send no
   traffic and must still pass, so the failures point at the data plane;
4. the command is put back (kube-proxy comes back and re-programs), then the cluster
   is deleted (``SVCCONFORM_KEEP_BREAK_CLUSTER=1`` keeps it).

The nodeport half lives here too (``test_breaks_nodeport.py`` would need its own cluster).
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from breakkit import (
    DEDICATED_CLUSTER_REASON,
    IDLE_COMMAND,
    DedicatedCluster,
    cell_results,
    family_argv,
    flush_kube_proxy_rules,
    opt_in,
    outcomes,
    run_suite,
    set_kube_proxy_command,
)

pytestmark = opt_in(DEDICATED_CLUSTER_REASON)

CLUSTER = DedicatedCluster("brk-cip")
kubectl = CLUSTER.kubectl
#: One family run: a cluster create (KIND_CREATE_TIMEOUT, 15 min) in the first, then ~10
#: tests each failing after a 32 s data-plane wait when kube-proxy is gone.
FAMILY_RUN_TIMEOUT_S = 1500
#: Checks that send no traffic (names without parameters): they must keep passing with
#: kube-proxy gone.  Allocation, the EndpointSlice controller's hints, a hostNetwork
#: endpoint's address and a LoadBalancer's status are the control plane's work.
NO_TRAFFIC = {
    "test_cluster_ip_is_allocated_from_the_service_cidr_and_outside_the_pod_cidr",
    "test_node_ports_are_allocated_from_the_node_port_range",
    "test_the_endpointslice_controller_hints_each_endpoint_for_its_zone_and_for_prefer_same_node_its_node",
    "test_a_host_network_backends_endpoint_address_is_its_nodes_ip",
    # cloud-provider-kind writes the LoadBalancer status; no packet crosses a node for it
    "test_load_balancer_is_provisioned_with_an_ingress_ip_in_proxy_mode",
}


def sends_no_traffic(name: str) -> bool:
    return name.split("[", 1)[0] in NO_TRAFFIC
#: Checks judged by a reachability table: their failure must show the mismatching cells.
TABLES = {
    "test_every_node_reaches_every_ready_backend_over_tcp",
    "test_every_node_reaches_every_ready_backend_over_udp",
    "test_every_port_of_a_multi_port_service_reaches_its_numeric_or_named_target_port",
    "test_internal_traffic_policy_local_answers_only_from_nodes_with_a_local_endpoint",
    "test_changing_the_type_to_node_port_and_back_adds_then_removes_the_node_port",
    "test_every_node_ip_answers_the_tcp_node_port_from_outside_the_cluster",
    "test_every_node_ip_answers_the_udp_node_port_from_outside_the_cluster",
    "test_pods_on_every_node_reach_every_node_ip_on_the_tcp_node_port",
    "test_pods_on_every_node_reach_every_node_ip_on_the_udp_node_port",
}


def run_family(family: str, results_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    argv = family_argv(family, results_dir)
    proc = run_suite(argv, env=CLUSTER.env(), timeout=FAMILY_RUN_TIMEOUT_S)
    return proc, cell_results(results_dir, argv, proc)


def test_clusterip_and_nodeport_fail_naming_reachability_when_kube_proxy_is_stopped(tmp_path: Path) -> None:
    baseline, results = run_family("nodeport", tmp_path / "baseline")
    assert baseline.returncode == 0, f"nodeport family must pass before the break:\n{baseline.stdout[-4000:]}"
    assert all(o == "passed" for o, _ in outcomes(results).values()), outcomes(results)

    runs: dict[str, dict[str, tuple[str, str]]] = {}
    procs: dict[str, subprocess.CompletedProcess[str]] = {}
    original = json.loads(kubectl("-n", "kube-system", "get", "daemonset", "kube-proxy", "-o",
                                  "jsonpath={.spec.template.spec.containers[0].command}"))
    assert "kube-proxy" in (original or [""])[0], f"unexpected kube-proxy command: {original}"
    try:
        set_kube_proxy_command(CLUSTER, IDLE_COMMAND)
        for node in CLUSTER.nodes():
            flush_kube_proxy_rules(node)
        for family in ("clusterip", "nodeport"):
            procs[family], res = run_family(family, tmp_path / family)
            runs[family] = outcomes(res)
    finally:
        set_kube_proxy_command(CLUSTER, original)

    for family, tests in runs.items():
        assert procs[family].returncode != 0, f"{family} passed with kube-proxy stopped:\n{procs[family].stdout[-4000:]}"
        assert tests, f"the {family} run reported no tests"
        check_broken_family(family, tests)


def check_broken_family(family: str, tests: dict[str, tuple[str, str]]) -> None:
    """What a family's results must show with kube-proxy stopped (also run on saved results)."""
    must_fail = {n for n in tests if not sends_no_traffic(n)}
    wrong = {n: tests[n] for n in must_fail if tests[n][0] != "failed"}
    assert not wrong, f"{family}: with kube-proxy stopped these did not fail: {wrong}"
    for name in {n for n in tests if sends_no_traffic(n)}:
        assert tests[name][0] == "passed", f"{name} sends no traffic, yet: {tests[name]}"
    unnamed = {n: tests[n][1][:400] for n in must_fail & TABLES if "mismatching cell" not in tests[n][1]}
    assert not unnamed, f"{family}: reachability failures without their tables: {unnamed}"
    # results.json keeps the tables as rendered: a header line "expected ... observed" and
    # one line per client row, not flattened onto the summary line.
    flat = {n: tests[n][1][:400] for n in must_fail & TABLES
            if not re.search(r"^expected +observed$", tests[n][1], re.MULTILINE)}
    assert not flat, f"{family}: reachability failures whose tables were flattened: {flat}"
    print("\n".join(f"{family}/{n}: {msg[:1500]}" for n, (_, msg) in sorted(tests.items()) if n in must_fail))


@pytest.fixture(autouse=True, scope="module")
def _delete_break_cluster() -> Iterator[None]:
    yield
    CLUSTER.delete_unless_kept()
