"""The properties family's churn invariant fails, with the reachability tables, when
kube-proxy stops following endpoint changes.

Cluster-wide break, so on a dedicated kind cluster (``SVCCONFORM_CLUSTER_SUFFIX=brk-prop``:
``svcc-iptables-kindnet-brk-prop``), never the shared one:

1. run the churn state machine there (``-m properties -k churn``): it must pass (this also
   creates the cluster);
2. run it again, and as soon as its Service is programmed on every node (its ClusterIP is
   in every node's nat table), freeze the data plane: give the kube-proxy DaemonSet a
   nodeSelector no node matches, so its pods go away and the rules they wrote stay as they
   are (kube-proxy does not clean up on exit).  Freezing only after the Service is
   programmed keeps every probe on addresses the rules still route inside the cluster;
3. the invariant "backends reached from each node equal the ready endpoints" must fail,
   printing the expected and observed tables;
4. restore the DaemonSet and wait for kube-proxy on every node, then delete the cluster
   (``SVCCONFORM_KEEP_BREAK_CLUSTER=1`` keeps it, restored, for a rerun).

Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (it needs Docker, the images, and
about 6 minutes on a 2-core machine).
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from breakkit import (
    KUBECTL_TIMEOUT_S,
    DedicatedCluster,
    by_test_name,
    cell_results,
    family_argv,
    opt_in,
    run_suite,
)

from fixtures.spec import FAMILY_LABEL

pytestmark = opt_in("stops kube-proxy on purpose on a dedicated kind cluster: set SVCCONFORM_BREAK_TESTS=1")

CLUSTER = DedicatedCluster("brk-prop")
kubectl = CLUSTER.kubectl
nodes = CLUSTER.nodes
#: One family run: a cluster create (KIND_CREATE_TIMEOUT, 15 min) in the first; in the
#: broken one each failing invariant waits KUBE_PROXY_ENDPOINT_LAG_TIMEOUT (32s), twice
#: (hypothesis replays the failing example to print it).
FAMILY_RUN_TIMEOUT_S = 1500
#: How long the freezer waits for the churn Service to appear and be programmed: the run's
#: own jig install (POD_START_TIMEOUT, 5 min) plus its programming.
FREEZE_WAIT_S = 360
FREEZE_POLL_S = 0.5
NOWHERE = {"svcconform/break": "kube-proxy-frozen"}
CHURN = "test_after_endpoint_churn_every_node_reaches_exactly_the_ready_endpoints"


def run_churn(results_dir: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The churn state machine alone (``-m properties -k churn``) on the break cluster."""
    argv = family_argv("properties", results_dir, select=("-k", "churn"))
    return run_suite(argv, env=CLUSTER.env(), timeout=FAMILY_RUN_TIMEOUT_S), argv


def churn_cluster_ip() -> str | None:
    namespaces = json.loads(kubectl("get", "ns", "-l", f"{FAMILY_LABEL}=properties", "-o", "json"))
    for ns in namespaces.get("items") or []:
        name = ns["metadata"]["name"]
        if ns.get("status", {}).get("phase") != "Active":
            continue
        ip = kubectl("-n", name, "get", "service", "svc", "-o", "jsonpath={.spec.clusterIP}", check=False)
        if ip.strip():
            return ip.strip()
    return None


def programmed_everywhere(ip: str) -> bool:
    for node in nodes():
        proc = subprocess.run(["docker", "exec", node, "iptables-save", "-t", "nat"], capture_output=True,
                              text=True, timeout=KUBECTL_TIMEOUT_S, check=False)
        if f"-d {ip}/32" not in proc.stdout:
            return False
    return True


class Freezer:
    """Waits (in a thread) for the churn Service to be programmed, then freezes kube-proxy."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.stop = threading.Event()
        self.frozen_ip: str | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, name="freezer", daemon=True)

    def run(self) -> None:
        try:
            waited = 0.0
            while not self.stop.is_set() and waited < FREEZE_WAIT_S:
                ip = churn_cluster_ip()
                if ip and programmed_everywhere(ip):
                    patch = {"spec": {"template": {"spec": {"nodeSelector": NOWHERE}}}}
                    kubectl("-n", "kube-system", "patch", "daemonset", "kube-proxy", "-p", json.dumps(patch))
                    kubectl("-n", "kube-system", "wait", "--for=delete", "pod", "-l", "k8s-app=kube-proxy",
                            f"--timeout={KUBECTL_TIMEOUT_S}s")
                    self.frozen_ip = ip
                    return
                self.stop.wait(FREEZE_POLL_S)
                waited += FREEZE_POLL_S
            self.error = f"the churn Service was not programmed on every node within {FREEZE_WAIT_S}s"
        except (AssertionError, subprocess.TimeoutExpired, ValueError) as exc:
            self.error = str(exc)[:500]
        finally:
            self.done.set()


def restore() -> None:
    """Drop the nodeSelector (a no-op when it was never set) and wait for kube-proxy."""
    unpatch = {"spec": {"template": {"spec": {"nodeSelector": dict.fromkeys(NOWHERE)}}}}
    kubectl("-n", "kube-system", "patch", "daemonset", "kube-proxy", "-p", json.dumps(unpatch), check=False)
    kubectl("-n", "kube-system", "rollout", "status", "daemonset/kube-proxy",
            f"--timeout={KUBECTL_TIMEOUT_S}s", check=False)


def test_churn_invariant_fails_with_the_tables_when_kube_proxy_is_frozen(tmp_path: Path) -> None:
    try:
        baseline_dir = tmp_path / "baseline"
        baseline, argv = run_churn(baseline_dir)
        results = cell_results(baseline_dir, argv, baseline)
        outcomes = {name: t["outcome"] for name, t in by_test_name(results).items()}
        assert baseline.returncode == 0, f"the churn property must pass before the break:\n{baseline.stdout[-4000:]}"
        assert outcomes == {CHURN: "passed"}, outcomes

        broken_dir = tmp_path / "broken"
        freezer = Freezer()
        freezer.thread.start()
        try:
            broken, argv = run_churn(broken_dir)
        finally:
            freezer.stop.set()
            freezer.thread.join(timeout=KUBECTL_TIMEOUT_S * 2)
        assert freezer.frozen_ip, f"kube-proxy was never frozen: {freezer.error}\n{broken.stdout[-3000:]}"
        tests = by_test_name(cell_results(broken_dir, argv, broken))
        churn = tests[CHURN]
        message = churn["message"]
        output = broken.stdout
        assert broken.returncode == 1, f"the churn property must fail with kube-proxy frozen:\n{output[-4000:]}"
        assert churn["outcome"] == "failed", churn
        assert "did not converge to the ready endpoints" in message, message[:3000]
        assert f"TCP {freezer.frozen_ip}:80" in message, message[:3000]
        for part in ("expected", "observed", "mismatching cell"):
            assert part in message, f"the failure must show the tables ({part!r}):\n{message[:3000]}"
        assert "state = EndpointChurnOnCluster()" in output, (
            f"hypothesis must print the failing example:\n{output[-4000:]}")
    finally:
        if CLUSTER.kubeconfig.is_file():
            restore()
        CLUSTER.delete_unless_kept()
