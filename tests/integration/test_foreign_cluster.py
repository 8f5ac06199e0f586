"""A cluster the suite did not configure: judged by its own facts, LoadBalancer included.

Issue 21's second vendor scenario.  The cluster is made from a kind config of this test's own
(``data/foreign-cluster.yaml``, written as a user would, not by the kind provider): nftables,
pod CIDR 10.32.0.0/16, Service CIDR 10.112.0.0/20, cluster domain ``corp.example``, no zone
labels.  As in ``test_vendor_mode.py`` the suite's images are removed from the nodes and
pulled from a registry on the kind network, and pytest runs in a network namespace that
reaches only the API server.  A LoadBalancer implementation runs outside the suite, the way a
cloud controller does: cloud-provider-kind, started by this test on the host (it watches the
cluster through Docker and writes each Service's ingress); the suite, which never starts one
with ``--kubeconfig``, can judge it only from its in-cluster vantages, since the runner
reaches no ingress address.

1. Without the LoadBalancer implementation, the loadbalancer family is skipped with one
   reason after one provisioning wait, not one per check.
2. With it, the whole suite: every Core family passed, the loadbalancer family passed, profile
   core or better, every cluster fact in ``cell.detection`` with its evidence, and the
   kube-proxy metrics check run through the node vantages.

Opt-in like the vendor test (``SVCCONFORM_VENDOR_TESTS=1``, ``tox -e vendor``); about 15
minutes on a 2-core machine.  ``SVCCONFORM_KEEP=1`` keeps the cluster (a rerun reuses it).
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
import yaml
from vendorkit import (
    ApiOnlyRunner,
    ExternalLoadBalancer,
    Registry,
    configure_nodes_for_registry,
    copy_kubeconfig,
    images_cmd,
    remove_preloaded_suite_images,
    sh,
    start_registry,
    stop_registry,
)

from fixtures.kindconfig import CGROUP_V1_KUBELET_PATCH
from fixtures.tools import find_tool
from images import catalog, docker, hostenv
from reports import profiles
from reports.load import load_cell

pytestmark = pytest.mark.skipif(
    os.environ.get("SVCCONFORM_VENDOR_TESTS") != "1",
    reason="creates a hand-configured kind cluster, a local registry and a network namespace, then runs "
    "the whole suite (about 15 min): set SVCCONFORM_VENDOR_TESTS=1",
)

CONFIG = Path(__file__).resolve().parent / "data" / "foreign-cluster.yaml"
#: What the hand-written config sets (the facts the suite must find on its own).
DOMAIN = "corp.example"
SERVICE_CIDR = "10.112.0.0/20"
POD_PREFIX = "10.32."
#: kind create of 3 nodes from a preloaded node image: 40-95 s here; kind's own wait is 5 min.
KIND_CREATE_TIMEOUT_S = 600
KIND_DELETE_TIMEOUT_S = 180
#: The whole suite on a 2-core machine, with margin (a healthy run: about 12 min).
SUITE_RUN_TIMEOUT_S = 3600
#: The loadbalancer family alone with no implementation: one provisioning wait
#: (LB_TIMEOUT_S) plus namespace and chart setup.
LB_TIMEOUT_S = 60
LB_ONLY_RUN_TIMEOUT_S = 900
#: What the family may cost in all without an implementation: the one wait, plus the setup
#: of its releases (helm installs, pods Ready: ~30 s here) and margin.
LB_SKIP_BUDGET_S = LB_TIMEOUT_S + 90
NO_LB_REASON = "no LoadBalancer implementation assigned an ingress within"


@dataclass
class Foreign:
    name: str
    kubeconfig: Path
    registry: Registry
    runner: ApiOnlyRunner
    timings: dict[str, float]


def kind_config(tmp: Path) -> tuple[str, Path]:
    """The test's own config, plus only what this machine needs to boot it: the suite's
    air-gapped node image (no registry serves kind's), its CoreDNS tag, and the kubelet patch
    cgroup v1 hosts need."""
    config = yaml.safe_load(CONFIG.read_text())
    image_set = catalog.resolve()
    for node in config["nodes"]:
        node["image"] = image_set.node_image
    patches = list(config.get("kubeadmConfigPatches") or []) + list(image_set.kubeadm_patches)
    if hostenv.HostEnv.detect().cgroup_v1:
        patches.append(CGROUP_V1_KUBELET_PATCH)
    config["kubeadmConfigPatches"] = patches
    path = tmp / "kind.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(config["name"]), path


def node_names(kind: str, name: str) -> list[str]:
    return sh([kind, "get", "nodes", "--name", name]).stdout.split()


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Foreign]:
    kind = str(find_tool("kind"))
    tmp = tmp_path_factory.mktemp("foreign")
    name, config = kind_config(tmp)
    kubeconfig = tmp / "kubeconfig"
    timings: dict[str, float] = {}
    registry: Registry | None = None
    runner: ApiOnlyRunner | None = None
    t0 = time.monotonic()
    existing = sh([kind, "get", "clusters"]).stdout.split()
    try:
        if name in existing and os.environ.get("SVCCONFORM_KEEP") == "1":
            sh([kind, "export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig)])
        else:
            if name in existing:
                sh([kind, "delete", "cluster", "--name", name], timeout=KIND_DELETE_TIMEOUT_S)
            sh([kind, "create", "cluster", "--config", str(config), "--kubeconfig", str(kubeconfig),
                "--wait", "5m"], timeout=KIND_CREATE_TIMEOUT_S)
        docker.guard_kind_network()  # nothing from the kind network leaves this machine
        timings["cluster_up_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        images_cmd("registry-image")
        registry = start_registry()
        nodes = node_names(kind, name)
        configure_nodes_for_registry(nodes, registry.host, registry.server)
        remove_preloaded_suite_images(nodes)
        images_cmd("push", registry.host)
        timings["registry_setup_s"] = round(time.monotonic() - t0, 1)
        runner = ApiOnlyRunner(copy_kubeconfig(kubeconfig, tmp_path_factory.mktemp("runner"))).start()
        print(f"foreign setup: cluster {name} from {CONFIG.name}, registry {registry.host}, netns {runner.name}, "
              f"timings {timings}")
        yield Foreign(name, runner.kubeconfig, registry, runner, timings)
    finally:
        if runner is not None:
            runner.close()
        if registry is not None:
            stop_registry(registry.name)
        if os.environ.get("SVCCONFORM_KEEP") != "1":
            sh([kind, "delete", "cluster", "--name", name], timeout=KIND_DELETE_TIMEOUT_S, check=False)


def run_suite(foreign: Foreign, results_dir: Path, *extra: str, timeout: float
              ) -> tuple[subprocess.CompletedProcess[str], Path, dict[str, Any]]:
    argv = [sys.executable, "-m", "pytest", "suite", "--kubeconfig", str(foreign.kubeconfig), "--image-registry",
            foreign.registry.host, "--results-dir", str(results_dir), "-p", "no:cacheprovider", "-q", *extra]
    t0 = time.monotonic()
    proc = foreign.runner.run(argv, timeout=timeout)
    print(f"suite {' '.join(extra)} in {foreign.runner.name}: exit {proc.returncode} after "
          f"{time.monotonic() - t0:.0f}s; {proc.stdout.strip().splitlines()[-1:] or proc.stderr[-500:]}")
    files = [*results_dir.glob("*/results.json"), *results_dir.glob("*/runs/*/results.json")]
    assert len(files) == 1, f"expected one results.json under {results_dir}, got {files}:\n" \
                            f"{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    return proc, files[0].parent, json.loads(files[0].read_text())


def lb_tests(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in results["tests"] if t["family"] == "loadbalancer"]


def test_without_a_load_balancer_the_family_is_skipped_once_with_one_reason(
        foreign: Foreign, tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc, _, results = run_suite(foreign, tmp_path, "-m", "loadbalancer", "--load-balancer-timeout",
                                 str(LB_TIMEOUT_S), timeout=LB_ONLY_RUN_TIMEOUT_S)
    took = time.monotonic() - t0
    tests = lb_tests(results)
    assert tests, proc.stdout[-4000:]
    not_skipped = [(t["id"], t["outcome"], t["message"][:300]) for t in tests if t["outcome"] != "skipped"]
    assert not not_skipped, not_skipped
    reasons = {t["message"] for t in tests}
    assert len(reasons) == 1, reasons
    assert NO_LB_REASON in reasons.pop(), tests[0]["message"]
    spent = sum(t["duration_s"] for t in tests)
    print(f"loadbalancer family without an implementation: {len(tests)} skipped, {spent:.0f}s in its tests, "
          f"{took:.0f}s for the whole run")
    assert spent <= LB_SKIP_BUDGET_S, f"the family cost {spent:.0f}s, more than one {LB_TIMEOUT_S}s wait"


def test_the_whole_suite_judges_the_cluster_by_its_own_facts(foreign: Foreign, tmp_path: Path) -> None:
    with ExternalLoadBalancer():
        proc, cell_dir, results = run_suite(foreign, tmp_path, timeout=SUITE_RUN_TIMEOUT_S)
    assert results["status"] == "completed", (results["status"], results.get("reason"), proc.stdout[-4000:])
    assert results["cell"]["proxy_mode"] == "nftables", results["cell"]
    detection = results["cell"]["detection"]
    facts = {k: (detection.get(k) or {}) for k in ("cluster_domain", "service_cidrs", "pod_cidrs",
                                                   "node_port_range", "dns_ips", "zones")}
    print("facts:\n" + "\n".join(f"  {k}: {v}" for k, v in facts.items()))
    assert facts["cluster_domain"]["value"] == DOMAIN, facts
    assert "resolv.conf" in facts["cluster_domain"]["evidence"], facts
    assert facts["service_cidrs"]["value"] == SERVICE_CIDR, facts
    assert all(c.startswith(POD_PREFIX) for c in facts["pod_cidrs"]["value"].split(",")), facts
    assert facts["node_port_range"]["value"] == "30000-32767", facts
    assert facts["dns_ips"]["value"].startswith("10.112."), facts
    assert facts["zones"]["value"] == "", facts
    assert "no node carries" in facts["zones"]["evidence"], facts
    assert all(f["evidence"] for f in facts.values()), facts
    assert not [f for f in facts.values() if f.get("finding")], facts
    assert detection["load_balancer"]["value"], detection.get("load_balancer")
    assert detection["kube_proxy_metrics"]["value"], detection.get("kube_proxy_metrics")

    not_passed = [t for t in results["tests"] if t["outcome"] not in ("passed", "skipped")]
    assert not not_passed, "tests that did not pass on the foreign cluster:\n" + "\n".join(
        f"{t['id']}: {t['outcome']}: {t['message'][:1500]}" for t in not_passed)
    lb = lb_tests(results)
    assert lb, "no loadbalancer check ran"
    assert all(t["outcome"] == "passed" for t in lb), [(t["id"], t["outcome"], t["message"][:300]) for t in lb]
    metrics = [t for t in results["tests"] if "network_programming" in t["id"]]
    assert metrics, "the kube-proxy metrics check did not run"
    assert all(t["outcome"] == "passed" for t in metrics), metrics
    dns = [t for t in results["tests"] if t["family"] == "dns" and t["outcome"] == "passed"]
    assert dns, "no DNS check passed"
    assert all(any(DOMAIN in line for line in t.get("configuration", [])) for t in dns), dns[:1]

    cell = load_cell(cell_dir)
    profile = profiles.cell_profile(cell.status, cell.tests)
    skipped = [t for t in results["tests"] if t["outcome"] == "skipped"]
    print(f"profile {profile}; {len(results['tests'])} tests, {len(skipped)} skipped: "
          + "; ".join(sorted({t['message'][:120] for t in skipped})))
    assert profile in (profiles.CORE, profiles.EXTENDED), profile
