"""Vendor mode: the suite validates a cluster it reaches only through the API server, with its
pod images pulled from a registry the user names.

A managed cluster is simulated on this machine (``vendorkit``) on a dedicated kind cluster
(``svcc-iptables-kindnet-vendor``), never the cells' shared ones:

1. create the cluster (the fixtures' kind provider), build and start ``svcconform/registry``
   on the kind network, published on ``127.0.0.1:<port>``;
2. point every node's containerd at it for ``localhost:<port>/...`` (hosts.toml) and remove
   the suite's images the node image preloads, so every suite pod has to pull;
3. ``python -m images push localhost:<port>``;
4. run the suite with ``--kubeconfig`` inside a network namespace that reaches the API server
   (forwarded on its own ``127.0.0.1``) and nothing else, with no Docker engine in sight.

Opt-in: skipped unless ``SVCCONFORM_VENDOR_TESTS=1`` (it needs Docker, the images from
``tox -e images``, root for ``ip netns``, and a full suite run: about an hour on a 2-core
machine).  ``SVCCONFORM_KEEP=1`` keeps the cluster afterwards (a rerun reuses it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from vendorkit import (
    ApiOnlyRunner,
    Registry,
    configure_nodes_for_registry,
    copy_kubeconfig,
    free_loopback_port,
    images_cmd,
    remove_preloaded_suite_images,
    start_registry,
    stop_registry,
)

from fixtures.poll import wait_until
from fixtures.providers import KindProvider
from fixtures.spec import ClusterSpec
from fixtures.tools import find_tool
from images import catalog
from reports import profiles
from reports.load import load_cell

pytestmark = pytest.mark.skipif(
    os.environ.get("SVCCONFORM_VENDOR_TESTS") != "1",
    reason="simulates a managed cluster (dedicated kind cluster, local registry, network namespace, "
    "about an hour): set SVCCONFORM_VENDOR_TESTS=1",
)

SPEC = ClusterSpec(proxy_mode="iptables", cni="kindnet", name_suffix="vendor")
#: A whole suite run on a 2-core machine (every family, convergence included), with margin.
SUITE_RUN_TIMEOUT_S = 5400
#: A run that stops at the preflight image check: the kubelets report ErrImagePull within
#: seconds; the preflight waits at most POD_START_TIMEOUT (5 min).
PREFLIGHT_RUN_TIMEOUT_S = 900
#: kubectl against the forwarded API server.
KUBECTL_TIMEOUT_S = 60
KUBELET_PORT = 10250
#: The simulated managed cluster has no LoadBalancer implementation: the family is skipped
#: after this one wait (test_foreign_cluster.py judges one).
NO_LB_TIMEOUT_S = 30


@dataclass
class Vendor:
    provider: KindProvider
    registry: Registry
    runner: ApiOnlyRunner
    kubeconfig: Path
    timings: dict[str, float]


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vendor]:
    timings: dict[str, float] = {}
    provider = KindProvider(SPEC)
    registry: Registry | None = None
    runner: ApiOnlyRunner | None = None
    t0 = time.monotonic()
    try:
        provider.prepare()
        provider.up()
        timings["cluster_up_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        images_cmd("registry-image")
        registry = start_registry()
        nodes = [n.name for n in provider.nodes()]
        configure_nodes_for_registry(nodes, registry.host, registry.server)
        remove_preloaded_suite_images(nodes)
        timings["registry_setup_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        pushed = images_cmd("push", registry.host)
        timings["push_s"] = round(time.monotonic() - t0, 1)
        assert f"--image-registry {registry.host}" in pushed.stdout, pushed.stdout
        kubeconfig = copy_kubeconfig(provider.kubeconfig, tmp_path_factory.mktemp("runner"))
        runner = ApiOnlyRunner(kubeconfig).start()
        print(f"vendor setup: cluster {SPEC.cluster_name}, registry {registry.host}, netns {runner.name}, "
              f"timings {timings}")
        yield Vendor(provider, registry, runner, kubeconfig, timings)
    finally:
        if runner is not None:
            runner.close()
        if registry is not None:
            stop_registry(registry.name)
        if os.environ.get("SVCCONFORM_KEEP") != "1":
            provider.down()
        else:
            provider.close()


def suite_argv(kubeconfig: Path, registry: str, results_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "suite", "--kubeconfig", str(kubeconfig), "--image-registry", registry,
            "--results-dir", str(results_dir), "-p", "no:cacheprovider", "-q",
            # no LoadBalancer implementation runs for this cluster: one short wait, not 10 min
            "--load-balancer-timeout", str(NO_LB_TIMEOUT_S)]


def the_results(results_dir: Path, proc: subprocess.CompletedProcess[str]) -> tuple[Path, dict[str, Any]]:
    """The one results.json of a run (its cell is detected): ``<results_dir>/<cell>/``, or
    ``<cell>/runs/<stamp>/`` for a partial run (``-m``)."""
    files = [*results_dir.glob("*/results.json"), *results_dir.glob("*/runs/*/results.json")]
    assert len(files) == 1, f"expected one results.json under {results_dir}, got {files}:\n" \
                            f"{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    return files[0].parent, json.loads(files[0].read_text())


def test_the_runner_reaches_the_api_server_and_nothing_else(vendor: Vendor) -> None:
    kubectl = str(find_tool("kubectl"))
    proc = vendor.runner.run([kubectl, f"--kubeconfig={vendor.kubeconfig}", "get", "nodes", "-o",
                              "jsonpath={range .items[*]}{.status.addresses[?(@.type=='InternalIP')].address}"
                              " {end}"], timeout=KUBECTL_TIMEOUT_S)
    assert proc.returncode == 0, f"kubectl get nodes from {vendor.runner.name}: {proc.stderr}"
    node_ips = proc.stdout.split()
    assert len(node_ips) == SPEC.nodes, proc.stdout
    for ip in node_ips:
        error = vendor.runner.connect_error(ip, KUBELET_PORT)
        assert "Network is unreachable" in (error or "connected"), (
            f"{ip}:{KUBELET_PORT} must be unreachable from {vendor.runner.name}, got {error or 'a connection'}")
    docker = vendor.runner.run(["docker", "ps"], timeout=KUBECTL_TIMEOUT_S)
    assert docker.returncode != 0, "the runner must not reach a Docker engine"


def test_suite_passes_from_a_runner_that_reaches_only_the_api_server(vendor: Vendor, tmp_path: Path) -> None:
    argv = suite_argv(vendor.kubeconfig, vendor.registry.host, tmp_path)
    t0 = time.monotonic()
    proc = vendor.runner.run(argv, timeout=SUITE_RUN_TIMEOUT_S)
    print(f"suite run in {vendor.runner.name}: exit {proc.returncode} after {time.monotonic() - t0:.0f}s")
    cell_dir, results = the_results(tmp_path, proc)
    assert results["status"] == "completed", (results["status"], results.get("reason"), proc.stdout[-4000:])
    assert results["cell"]["proxy_mode"] == SPEC.proxy_mode, results["cell"]
    assert results["cell"]["cni"] == SPEC.cni, results["cell"]
    assert cell_dir.name == SPEC.cell, cell_dir
    # what was detected, and on what evidence: kube-proxy itself, asked from a node
    detection = results["cell"]["detection"]
    assert detection["proxy_mode_probe"]["value"] == SPEC.proxy_mode, detection
    assert detection["ip_family"]["value"] == "ipv4", detection
    # this machine is no vantage here: reported as not tried, with why
    host = results["cell"]["vantages"]["this_machine"]
    assert host["reachable"] is False, host
    assert "does not reach the node addresses" in host["reason"], host
    # the suite's pods ran the pushed images, pulled by digest from the registry
    suite_images = results["cell"]["images"]["suite"]
    for role, ref in catalog.suite_images(vendor.registry.host).items():
        assert suite_images[role]["image"] == ref, suite_images
        assert any("@sha256:" in i for i in suite_images[role]["image_ids"]), suite_images

    not_passed = [t for t in results["tests"] if t["outcome"] not in ("passed", "skipped")]
    assert not not_passed, "tests that did not pass from the API-only runner:\n" + "\n".join(
        f"{t['id']}: {t['outcome']}: {t['message'][:1500]}" for t in not_passed)
    assert any(t["outcome"] == "passed" for t in results["tests"]), proc.stdout[-4000:]

    cell = load_cell(cell_dir)
    profile = profiles.cell_profile(cell.status, cell.tests)
    skipped = [t for t in results["tests"] if t["outcome"] == "skipped"]
    print(f"profile {profile}; {len(results['tests'])} tests, {len(skipped)} skipped")
    assert profile in (profiles.CORE, profiles.EXTENDED), (
        profile, sorted({t["family"] for t in results["tests"] if t["outcome"] == "passed"}))


def test_a_wrong_image_registry_is_one_line_error_before_any_family_runs(vendor: Vendor, tmp_path: Path) -> None:
    nowhere = f"localhost:{free_loopback_port()}"
    argv = suite_argv(vendor.kubeconfig, nowhere, tmp_path)
    proc = vendor.runner.run(argv, timeout=PREFLIGHT_RUN_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"the run must fail with --image-registry {nowhere}:\n{output[-4000:]}"
    wanted = set(catalog.suite_images(nowhere).values())
    lines = [ln for ln in output.splitlines()
             if "python -m images push" in ln and any(ref in ln for ref in wanted)]
    assert lines, f"no line names a missing image under {nowhere} and 'python -m images push':\n{output[-4000:]}"
    results_files = [*tmp_path.glob("*/results.json"), *tmp_path.glob("*/runs/*/results.json")]
    ran = [t for f in results_files for t in json.loads(f.read_text()).get("tests", [])
           if t["outcome"] in ("passed", "failed")]
    assert not ran, f"tests ran although the images cannot be pulled: {[t['id'] for t in ran]}"


#: A cluster policy that refuses hostNetwork pods in the suite's namespaces, as a managed
#: cluster's policy engine might (a ValidatingAdmissionPolicy, GA since Kubernetes 1.30):
#: the Pod Security labels cannot lift it.
NO_HOST_NETWORK_POLICY = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: svcc-test-no-host-network}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"]}
  validations:
  - expression: "!has(object.spec.hostNetwork) || object.spec.hostNetwork == false"
    message: "hostNetwork pods are not allowed here (svcconform vendor-mode test policy)"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: svcc-test-no-host-network}
spec:
  policyName: svcc-test-no-host-network
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {app.kubernetes.io/created-by: svcconform}
"""
#: The nodeport family alone: its outside checks need hostNetwork vantages, its pod checks not.
NODEPORT_RUN_TIMEOUT_S = 1200
#: The API server's policy informer picks a new policy up within seconds.
POLICY_ACTIVE_TIMEOUT_S = 60
PROBE_NAMESPACE = "svcc-vendor-policy-probe"


def policy_enforced(kubectl: list[str], tmp_path: Path) -> tuple[bool, str]:
    """Is a hostNetwork pod in a namespace of the suite refused yet (server-side dry run)?"""
    manifest = tmp_path / "probe.yaml"
    manifest.write_text(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: probe, namespace: {PROBE_NAMESPACE}}}\n"
        "spec: {hostNetwork: true, containers: [{name: c, image: svcconform/client:1}]}\n")
    subprocess.run([*kubectl, "create", "namespace", PROBE_NAMESPACE], capture_output=True, text=True,
                   timeout=KUBECTL_TIMEOUT_S, check=False)
    subprocess.run([*kubectl, "label", "namespace", PROBE_NAMESPACE, "app.kubernetes.io/created-by=svcconform"],
                   capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S, check=False)
    proc = subprocess.run([*kubectl, "create", "--dry-run=server", "-f", str(manifest)], capture_output=True,
                          text=True, timeout=KUBECTL_TIMEOUT_S, check=False)
    return "hostNetwork pods are not allowed" in proc.stderr, (proc.stderr or proc.stdout).strip()


def test_checks_whose_pods_admission_refuses_are_skipped_with_the_refusal(vendor: Vendor, tmp_path: Path) -> None:
    kubectl = [str(find_tool("kubectl")), f"--kubeconfig={vendor.provider.kubeconfig}"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(NO_HOST_NETWORK_POLICY)
    applied = subprocess.run([*kubectl, "apply", "-f", str(policy)], capture_output=True, text=True,
                             timeout=KUBECTL_TIMEOUT_S, check=False)
    assert applied.returncode == 0, applied.stderr
    try:
        wait_until(lambda: policy_enforced(kubectl, tmp_path), timeout=POLICY_ACTIVE_TIMEOUT_S,
                   what="the hostNetwork policy to refuse a server-side dry run")
        argv = [*suite_argv(vendor.kubeconfig, vendor.registry.host, tmp_path), "-m", "nodeport"]
        proc = vendor.runner.run(argv, timeout=NODEPORT_RUN_TIMEOUT_S)
    finally:
        for what in (["-f", str(policy)], ["namespace", PROBE_NAMESPACE, "--wait=false"]):
            subprocess.run([*kubectl, "delete", "--ignore-not-found", *what], capture_output=True,
                           text=True, timeout=KUBECTL_TIMEOUT_S, check=False)
    cell_dir, results = the_results(tmp_path, proc)
    assert cell_dir.parent.name == "runs", cell_dir  # -m nodeport is a partial run: beside, not over
    assert results["run"]["partial"] is True, results["run"]
    assert results["status"] == "completed", (results.get("reason"), proc.stdout[-4000:])
    outcomes = {t["id"].split("::", 1)[1]: t for t in results["tests"]}
    refused = {name: t for name, t in outcomes.items() if t["outcome"] == "skipped"
               and "refused by the cluster's admission" in t["message"]}
    assert "test_every_node_ip_answers_the_tcp_node_port_from_outside_the_cluster" in refused, outcomes
    assert all("hostNetwork pods are not allowed here" in t["message"] for t in refused.values()), refused
    failed = {name: t["message"][:800] for name, t in outcomes.items() if t["outcome"] in ("failed", "error")}
    assert not failed, failed
    assert outcomes["test_pods_on_every_node_reach_every_node_ip_on_the_tcp_node_port"]["outcome"] == "passed"
    print(f"admission: {len(refused)} checks skipped with the refusal, "
          f"{sum(t['outcome'] == 'passed' for t in outcomes.values())} passed")
