"""The health pass names a broken layer on the right node, and a broken cell is judged fast.

On one dedicated kind cluster (``SVCCONFORM_CLUSTER_SUFFIX=brk-health``:
``svcc-iptables-kindnet-brk-health``), one break at a time, each undone before the next:

1. healthy: a short family run; ``cell.health`` is healthy, within its 30 s budget;
2. **kube-proxy gone from one worker** (a node affinity keeps its DaemonSet off that node,
   and its rules are flushed): clusterip and nodeport run (no setup error), their failing
   checks name that node only, and the health pass names the Service proxy and kube-proxy
   there;
3. **kube-proxy frozen on one worker** (SIGSTOP: the pod stays Running and Ready): the health
   pass names kube-proxy on that node as not programming;
4. **the pod network cut from one worker to another** (a FORWARD drop towards the other's pod
   CIDR on the first): the health pass names the pod network for that pair, not the
   Service proxy;
5. **a dead data plane** (kube-proxy idles on every node, rules flushed): the whole suite gives
   its verdict within 5 minutes of suite time, the health pass naming the Service proxy on
   every node.

Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1``.  The cluster is deleted at the end
unless ``SVCCONFORM_KEEP_BREAK_CLUSTER=1``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from breakkit import (
    DEDICATED_CLUSTER_REASON,
    IDLE_COMMAND,
    ROOT,
    DedicatedCluster,
    cell_results,
    family_argv,
    flush_kube_proxy_rules,
    node_sh,
    opt_in,
    outcomes,
    run_suite,
    set_kube_proxy_command,
)

pytestmark = opt_in(DEDICATED_CLUSTER_REASON)

CLUSTER = DedicatedCluster("brk-health")
#: A family run: the first creates the cluster (KIND_CREATE_TIMEOUT, 15 min).
RUN_TIMEOUT_S = 1800
#: The issue's budgets: the health pass, and a whole suite on a dead data plane.
HEALTH_BUDGET_S = 30
DEAD_DATA_PLANE_BUDGET_S = 300
#: A family with few, quick checks: enough for a session, so a health pass.
QUICK = "env"


#: Each scenario's results stay here for reading afterwards (pytest's tmp dirs rotate).
OUT = ROOT / "results" / "breaks" / "health"


def run(name: str, marker: str, *, full: bool = False) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    tmp = OUT / name
    shutil.rmtree(tmp, ignore_errors=True)
    argv = family_argv(marker, tmp)
    if full:  # the whole suite, not a -m selection
        i = argv.index("suite") + 1
        assert argv[i] == "-m", argv
        del argv[i:i + 2]
    started = time.monotonic()
    proc = run_suite(argv, env=CLUSTER.env(), timeout=RUN_TIMEOUT_S)
    results = cell_results(tmp, argv, proc)
    wall = time.monotonic() - started
    print(f"{name} ({marker or 'the whole suite'}): exit {proc.returncode} in {wall:.0f}s, suite "
          f"{results['timings'].get('suite_s')}s; health: {results['cell'].get('health', {}).get('summary')}")
    return proc, results


def health_of(results: dict[str, Any]) -> dict[str, Any]:
    h = results["cell"].get("health")
    assert h is not None, "results.json has no cell.health"
    return dict(h)


def status(h: dict[str, Any], node: str, layer: str) -> str:
    return str(h["nodes"][node][layer]["status"])


def workers() -> list[str]:
    return [n for n in CLUSTER.nodes() if "control-plane" not in n]


def pod_cidr(node: str) -> str:
    return CLUSTER.kubectl("get", "node", node, "-o", "jsonpath={.spec.podCIDR}").strip()


def test_a_healthy_cluster_passes_the_health_pass_within_its_budget() -> None:
    proc, res = run("healthy", QUICK)
    h = health_of(res)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert h["healthy"], h["broken"]
    assert h["seconds"] <= HEALTH_BUDGET_S, h["seconds"]


def test_kube_proxy_gone_from_one_node_fails_there_only_and_is_no_setup_error() -> None:
    first, second = workers()[:2]
    affinity = {"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [second]}]}]}}}}}}}
    CLUSTER.kubectl("-n", "kube-system", "patch", "daemonset", "kube-proxy", "--type=strategic",
                    "-p", json.dumps(affinity))
    try:
        CLUSTER.kubectl("-n", "kube-system", "rollout", "status", "daemonset", "kube-proxy", "--timeout=300s")
        flush_kube_proxy_rules(second)
        _, res = run("gone", "clusterip or nodeport")
    finally:
        CLUSTER.kubectl("-n", "kube-system", "patch", "daemonset", "kube-proxy", "--type=json", "-p",
                        json.dumps([{"op": "remove", "path": "/spec/template/spec/affinity"}]))
        CLUSTER.kubectl("-n", "kube-system", "rollout", "status", "daemonset", "kube-proxy", "--timeout=300s")
    h = health_of(res)
    assert status(h, second, "kube-proxy") == "broken", h["nodes"][second]
    assert status(h, second, "Service proxy") == "broken", h["nodes"][second]
    assert status(h, first, "Service proxy") == "ok", h["nodes"][first]
    tests = outcomes(res)
    errors = {n: m[:300] for n, (o, m) in tests.items() if o == "error"}
    assert not errors, f"kube-proxy missing on one node made setup errors: {errors}"
    failed = {n: m for n, (o, m) in tests.items() if o == "failed"}
    assert failed, "nothing failed with kube-proxy gone from a node"
    unnamed = {n: m[:600] for n, m in failed.items() if second not in m}
    assert not unnamed, f"failures that do not name {second}: {unnamed}"
    early = [n for n, m in failed.items() if "health pass explains" in m]
    print(f"kube-proxy gone from {second}: {len(failed)} failed, {len(early)} stopped early naming the layer; "
          f"suite {res['timings']['suite_s']:.0f}s")


def test_kube_proxy_frozen_on_one_node_is_named_as_not_programming() -> None:
    first, second = workers()[:2]
    node_sh(first, "pkill -STOP kube-proxy")
    try:
        _, res = run("frozen", QUICK)
    finally:
        node_sh(first, "pkill -CONT kube-proxy")
    h = health_of(res)
    assert status(h, first, "kube-proxy") == "broken", h["nodes"][first]
    evidence = h["nodes"][first]["kube-proxy"]["evidence"]
    assert "programs nothing" in evidence or "does not program" in evidence, evidence
    assert status(h, second, "kube-proxy") == "ok", h["nodes"][second]
    assert h["seconds"] <= HEALTH_BUDGET_S, h["seconds"]


def test_a_pod_network_cut_between_two_nodes_is_named_for_that_pair() -> None:
    first, second = workers()[:2]
    rule = f"FORWARD -d {pod_cidr(second)} -j DROP"
    node_sh(first, f"iptables -I {rule}")
    try:
        _, res = run("cut", QUICK)
    finally:
        node_sh(first, f"iptables -D {rule}")
    h = health_of(res)
    assert status(h, first, "pod network") == "broken", h["nodes"][first]
    assert second in h["nodes"][first]["pod network"]["evidence"]
    assert status(h, first, "Service proxy") != "broken", h["nodes"][first]
    assert h["seconds"] <= HEALTH_BUDGET_S, h["seconds"]


@pytest.mark.xfail(strict=True, reason=(
    "measured 2026-12-08: 761 s of suite time (77 failed, 17 passed, no error; 1045 s before the "
    "zone check and the 3 s cut); each check's own setup (namespaces, Helm installs) is what is "
    "left, and the 5-minute budget needs modules run concurrently (issue 23 item 4)"))
def test_a_dead_data_plane_gets_the_whole_suites_verdict_within_five_minutes() -> None:
    original = json.loads(CLUSTER.kubectl("-n", "kube-system", "get", "daemonset", "kube-proxy", "-o",
                                          "jsonpath={.spec.template.spec.containers[0].command}"))
    try:
        set_kube_proxy_command(CLUSTER, IDLE_COMMAND)
        for node in CLUSTER.nodes():
            flush_kube_proxy_rules(node)
        proc, res = run("dead", "", full=True)
    finally:
        set_kube_proxy_command(CLUSTER, original)
    h = health_of(res)
    assert all(status(h, n, "Service proxy") == "broken" for n in h["nodes"]), h["broken"]
    assert "Service proxy broken on every node" in h["summary"], h["summary"]
    assert proc.returncode != 0
    counts: dict[str, int] = {}
    for o, _ in outcomes(res).values():
        counts[o] = counts.get(o, 0) + 1
    print(f"dead data plane: {counts} in {res['timings']['suite_s']:.0f}s of suite time")
    assert res["timings"]["suite_s"] <= DEAD_DATA_PLANE_BUDGET_S, res["timings"]


@pytest.fixture(autouse=True, scope="module")
def _delete_break_cluster() -> Iterator[None]:
    yield
    CLUSTER.delete_unless_kept()
