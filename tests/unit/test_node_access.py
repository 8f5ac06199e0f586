"""What the suite asks the framework about nodes and the machine's Docker (moved out of
suite/, issue 17 item 3): a provider's node vantage, kube-proxy's metrics on every node, and
how cloud-provider-kind is set up for a kind cluster."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from framework_fakes import FakeProvider

from fixtures import loadbalancer as lbx
from fixtures import nodemetrics
from fixtures.observations import ExecResult, MetricSamples, Unknown
from fixtures.providers.kind import KindProvider
from fixtures.spec import ClusterSpec
from fixtures.timeouts import NODE_EXEC_TIMEOUT
from images import catalog

METRICS = """\
# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram
kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.1"} 3
kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="+Inf"} 4
kubeproxy_sync_proxy_rules_duration_seconds_sum 0.5
kubeproxy_sync_proxy_rules_duration_seconds_count 4
"""


class NodesProvider(FakeProvider):
    """Records every node exec; ``n-worker2`` cannot be entered."""

    def __init__(self, spec: ClusterSpec) -> None:
        super().__init__(spec)
        self.calls: list[tuple[str, tuple[str, ...], float]] = []

    def node_exec(self, node: str, argv: Sequence[str], *, timeout: float = 0) -> ExecResult:
        self.calls.append((node, tuple(argv), timeout))
        if node == "n-worker2":
            return ExecResult(tuple(argv), 1, "", "curl: (7) connection refused", f"node {node}")
        return ExecResult(tuple(argv), 0, METRICS, "", f"node {node}")


# --------------------------------------------------------------------------- node vantage


def test_a_node_vantage_runs_through_node_exec_with_the_timeout_capped() -> None:
    provider = NodesProvider(ClusterSpec())
    vantage = provider.node_vantage("n-worker")
    assert (vantage.where, vantage.node) == ("node n-worker", "n-worker")
    assert vantage.reproduce(["curl", "-s", "x"]) == "docker exec n-worker curl -s x"
    assert vantage(["true"], 1.0).ok
    vantage(["true"], NODE_EXEC_TIMEOUT + 100)
    assert provider.calls == [("n-worker", ("true",), 1.0), ("n-worker", ("true",), NODE_EXEC_TIMEOUT)]


# --------------------------------------------------------------------------- kube-proxy metrics


def test_kube_proxy_metrics_are_scraped_on_every_node_and_a_failure_is_unknown() -> None:
    provider = NodesProvider(ClusterSpec())
    got = nodemetrics.kube_proxy_metrics(provider, provider.facts()).scrape_all()
    assert sorted(got) == ["n-control-plane", "n-worker", "n-worker2"]
    ok = got["n-worker"]
    assert isinstance(ok, MetricSamples)
    assert ok.where == "node n-worker"
    assert ok.histogram("kubeproxy_sync_proxy_rules_duration_seconds") is not None
    failed = got["n-worker2"]
    assert isinstance(failed, Unknown)
    assert "scrape of 127.0.0.1:10249 failed on node n-worker2" in failed.error
    assert {argv[-1] for _, argv, _ in provider.calls} == {"http://127.0.0.1:10249/metrics"}


@pytest.mark.parametrize(("spec", "node_exec", "why"), [
    (ClusterSpec(proxy_mode="iptables"), True, None),
    (ClusterSpec(proxy_mode="none", cni="cilium"), True, "runs no kube-proxy (proxy mode none, CNI cilium)"),
    (ClusterSpec(proxy_mode="nftables"), False, "the kind provider has no access to nodes and there are no "
     "hostNetwork vantage pods"),
])
def test_kube_proxy_metrics_are_unavailable_without_kube_proxy_or_node_access(
    spec: ClusterSpec, node_exec: bool, why: str | None
) -> None:
    provider = NodesProvider(spec)
    provider.supports_node_exec = node_exec
    reason = nodemetrics.kube_proxy_metrics(provider, provider.facts()).unavailable
    assert reason is None if why is None else why in str(reason)


# --------------------------------------------------------------------------- cloud-provider-kind


@pytest.mark.parametrize(("returncode", "stdout", "name"), [
    (0, "svcc-iptables-kindnet\n", "svcc-iptables-kindnet"),
    (0, "<no value>\n", None),  # a container, but not a kind node
    (0, "\n", None),
    (1, "", None),  # no such container on this machine's Docker
])
def test_the_kind_cluster_of_a_node_is_its_containers_label(
    monkeypatch: pytest.MonkeyPatch, returncode: int, stdout: str, name: str | None
) -> None:
    seen: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, returncode, stdout, "")

    monkeypatch.setattr(lbx.subprocess, "run", run)
    assert lbx.kind_cluster_name("n-worker") == name
    assert seen == [["docker", "inspect", "-f", '{{index .Config.Labels "io.x-k8s.kind.cluster"}}', "n-worker"]]


def test_the_proxy_image_is_the_kind_providers_else_the_resolved_catalogs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kind = KindProvider(ClusterSpec(), work_dir=tmp_path)
    kind.image_set = replace(catalog.AIRGAPPED, lb_proxy_image="mine/lb-proxy:1")
    monkeypatch.setattr(catalog, "resolve", lambda: replace(catalog.AIRGAPPED, lb_proxy_image="catalog/lb:1"))
    assert lbx.proxy_image(kind) == "mine/lb-proxy:1"
    kind.image_set = None  # not prepared: the catalog's
    assert lbx.proxy_image(kind) == "catalog/lb:1"
    assert lbx.proxy_image(FakeProvider(ClusterSpec())) == "catalog/lb:1"

    def missing() -> catalog.ImageSet:
        raise catalog.ImagesMissing("no images")

    monkeypatch.setattr(catalog, "resolve", missing)
    assert lbx.proxy_image(FakeProvider(ClusterSpec())) is None  # upstream's envoy


def test_cloud_provider_kind_for_a_cluster_logs_under_the_clusters_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SVCCONFORM_CACHE", str(tmp_path))
    monkeypatch.setattr(catalog, "resolve", lambda: replace(catalog.AIRGAPPED, lb_proxy_image="catalog/lb:1"))
    ccm = lbx.for_cluster(FakeProvider(ClusterSpec()), "svcc-x")
    assert ccm.log_path == tmp_path / "clusters" / "svcc-x" / "cloud-provider-kind.log"
    assert ccm.proxy_image == "catalog/lb:1"
    assert ccm.process is None  # not started
