"""The harness every break test shares: opt-in, running one family of the suite in a
subprocess, reading its results.json, and kubectl/kind on a dedicated break cluster.

A break test breaks one behaviour on purpose and checks that the family covering it fails,
naming what broke.  What it breaks, how it restores it and what it asserts stay in the test
file; only the plumbing around that lives here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fixtures.spec import ClusterSpec
from fixtures.tools import find_tool
from images import paths

ROOT = Path(__file__).resolve().parents[2]
#: The cell every break test runs unless told otherwise (its results land in ``<results>/<cell>/``).
CELL_ARGS: tuple[str, ...] = ("--proxy-mode=iptables", "--cni=kindnet", "--keep-cluster")
CELL = "iptables-kindnet"
#: kubectl patch/scale/rollout/wait, kind delete and ``docker exec`` on a local kind cluster
#: (upstream e2e's PodStartTimeout, 5 min).
KUBECTL_TIMEOUT_S = 300

#: Skip reasons: a break on its own cluster, and one on the cell's running (shared) cluster.
DEDICATED_CLUSTER_REASON = (
    "breaks cluster behaviour on purpose on a dedicated kind cluster: set SVCCONFORM_BREAK_TESTS=1")
SHARED_CLUSTER_REASON = (
    "breaks cluster behaviour on purpose (needs a running kind cluster): set SVCCONFORM_BREAK_TESTS=1")


def opt_in(reason: str) -> pytest.MarkDecorator:
    """The ``pytestmark`` of a break test: skipped, with ``reason``, unless ``SVCCONFORM_BREAK_TESTS=1``."""
    return pytest.mark.skipif(os.environ.get("SVCCONFORM_BREAK_TESTS") != "1", reason=reason)


def family_argv(family: str, results_dir: Path, *, select: Sequence[str] = (),
                cell_args: Sequence[str] = CELL_ARGS, extra: Sequence[str] = ()) -> list[str]:
    """``python -m pytest suite -m <family> [select] <cell args> --results-dir=... [extra] -q``."""
    return [sys.executable, "-m", "pytest", "suite", "-m", family, *select, *cell_args,
            f"--results-dir={results_dir}", *extra, "-p", "no:cacheprovider", "-q"]


def run_suite(argv: Sequence[str], *, timeout: float,
              env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` from the repository root, capturing its output; never raises on failure.

    ``env=None`` inherits this process's environment unchanged.
    """
    return subprocess.run(list(argv), cwd=ROOT, env=None if env is None else dict(env), capture_output=True,
                          text=True, timeout=timeout, check=False)


def shared_cluster_env() -> dict[str, str]:
    """This process's environment without ``SVCCONFORM_CLUSTER_SUFFIX``: the cell's own cluster."""
    return {k: v for k, v in os.environ.items() if k != "SVCCONFORM_CLUSTER_SUFFIX"}


def cell_results(results_dir: Path, argv: Sequence[str],
                 proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The run's results.json: ``<results_dir>/iptables-kindnet/results.json``, or for a
    partial run (``-m <family>``, as break tests run) the latest
    ``<results_dir>/iptables-kindnet/runs/<stamp>/results.json``; fails the test, with the
    run's output, when the run wrote none."""
    runs = sorted((results_dir / CELL / "runs").glob("*/results.json"))
    results_file = runs[-1] if runs else results_dir / CELL / "results.json"
    assert results_file.is_file(), (
        f"no results.json from {' '.join(argv)}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return dict(json.loads(results_file.read_text()))


def only_results(results_dir: Path, argv: Sequence[str],
                 proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one ``<results_dir>/*/results.json`` the run wrote (whatever its cell); fails the
    test, with the run's output, unless there is exactly one."""
    files = [*results_dir.glob("*/results.json"), *results_dir.glob("*/runs/*/results.json")]
    assert len(files) == 1, f"expected one results.json from {' '.join(argv)}:\n{proc.stdout[-3000:]}"
    return dict(json.loads(files[0].read_text()))


def by_test_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """results.json's ``tests`` keyed by test function name (the id's last ``::`` part)."""
    return {t["id"].split("::")[-1]: t for t in results["tests"]}


def outcomes(results: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``{test name: (outcome, message)}`` of a results.json."""
    return {name: (t["outcome"], t["message"]) for name, t in by_test_name(results).items()}


def cluster_kubeconfig(cluster_name: str) -> Path:
    """The kubeconfig the suite's kind provider writes for the kind cluster ``cluster_name``."""
    return paths.cache_dir() / "clusters" / cluster_name / "kubeconfig"


def run_kubectl(kubeconfig: Path, args: Sequence[str], *, timeout: float,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The pinned kubectl against ``kubeconfig``; never raises on a non-zero exit."""
    return subprocess.run([str(find_tool("kubectl")), f"--kubeconfig={kubeconfig}", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


class DedicatedCluster:
    """The iptables/kindnet kind cluster a cluster-wide break gets to itself.

    The suite is pointed at it with ``SVCCONFORM_CLUSTER_SUFFIX=<suffix>`` (cluster
    ``svcc-iptables-kindnet-<suffix>``), never at the cell's shared cluster.
    """

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.name = ClusterSpec(proxy_mode="iptables", cni="kindnet", name_suffix=suffix).cluster_name

    @property
    def kubeconfig(self) -> Path:
        return cluster_kubeconfig(self.name)

    def env(self) -> dict[str, str]:
        """This process's environment, with the suite pointed at this cluster."""
        return {**os.environ, "SVCCONFORM_CLUSTER_SUFFIX": self.suffix}

    def kubectl(self, *args: str, check: bool = True) -> str:
        """kubectl against this cluster; its stdout.  ``check`` fails the test on a non-zero exit."""
        proc = run_kubectl(self.kubeconfig, args, timeout=KUBECTL_TIMEOUT_S)
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}"
        return proc.stdout

    def nodes(self) -> list[str]:
        """The cluster's node names (each a kind node container)."""
        return self.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split()

    def delete_unless_kept(self) -> None:
        """``kind delete cluster``, unless ``SVCCONFORM_KEEP_BREAK_CLUSTER=1`` keeps it for a rerun."""
        if os.environ.get("SVCCONFORM_KEEP_BREAK_CLUSTER") == "1":
            return
        subprocess.run([str(find_tool("kind")), "delete", "cluster", "--name", self.name],
                       capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S, check=False)


#: JSON pointer of the kube-proxy container's command in its DaemonSet.
KUBE_PROXY_COMMAND_PATH = "/spec/template/spec/containers/0/command"
#: What the kube-proxy container runs while broken: idles, exits at once on SIGTERM.
IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]


def set_kube_proxy_command(cluster: DedicatedCluster, command: list[str]) -> None:
    """Replace the kube-proxy container's command and wait for the new pods everywhere."""
    cluster.kubectl("-n", "kube-system", "patch", "daemonset", "kube-proxy", "--type=json", "-p",
                    json.dumps([{"op": "replace", "path": KUBE_PROXY_COMMAND_PATH, "value": command}]))
    cluster.kubectl("-n", "kube-system", "rollout", "status", "daemonset", "kube-proxy",
                    f"--timeout={KUBECTL_TIMEOUT_S}s")


def node_sh(node: str, script: str, *, check: bool = True) -> str:
    """``docker exec <node> sh -c script`` on a kind node container; its stdout."""
    proc = subprocess.run(["docker", "exec", node, "sh", "-c", script], capture_output=True, text=True,
                          timeout=KUBECTL_TIMEOUT_S, check=False)
    if check:
        assert proc.returncode == 0, f"on {node}: {script}: {proc.stderr.strip()}"
    return proc.stdout


def flush_kube_proxy_rules(node: str) -> None:
    """Drop every KUBE-* chain and rule from the node's iptables (kind node = container)."""
    node_sh(node, "iptables-save | grep -v KUBE | iptables-restore")
    left = node_sh(node, "iptables-save | grep -c KUBE-SVC || true")
    assert left.strip() == "0", f"KUBE-SVC rules still on {node} after the flush: {left}"
