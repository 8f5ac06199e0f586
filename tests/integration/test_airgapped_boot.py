"""The air-gapped node image boots a real 3-node kind cluster per proxy mode.

Needs Docker and the node image (`tox -e images`); skipped with that reason otherwise.
Uses its own cluster per mode (suffix ``boot``) and deletes it afterwards.  Cluster-up
time is recorded as data in ``results/benchmarks/cluster-up.jsonl`` (a benchmark, not a
timed assertion).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fixtures.providers.kind import KindProvider
from fixtures.spec import ClusterSpec
from images import catalog

ROOT = Path(__file__).resolve().parents[2]


def _docker_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False).returncode == 0


pytestmark = [
    pytest.mark.skipif(not _docker_ok(), reason="no Docker engine: run 'python -m images docker-up'"),
    pytest.mark.skipif(catalog.AIRGAPPED_NODE_IMAGE not in catalog.local_docker_images(),
                       reason=f"{catalog.AIRGAPPED_NODE_IMAGE} not built: run 'tox -e images'"),
]


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_airgapped_node_image_boots_three_ready_nodes_with_dns_and_services(mode: str, tmp_path: Path):
    spec = ClusterSpec(proxy_mode=mode, cni="kindnet", name_suffix="boot")
    provider = KindProvider(spec)
    provider.prepare()
    t0 = time.monotonic()
    try:
        provider.up()
        up_s = time.monotonic() - t0
        facts = provider.facts()
        assert len(facts.nodes) == 3
        assert len(facts.workers) == 2
        assert facts.proxy_mode == mode
        assert facts.kubernetes_version.startswith("v1.34")
        kube = provider.kube
        coredns = kube.pods("kube-system", "k8s-app=kube-dns")
        assert coredns, "no CoreDNS pods"
        assert all(p.ready for p in coredns), [p.describe() for p in coredns]
        record = {"mode": mode, "cluster_up_s": round(up_s, 1), "node_image": catalog.AIRGAPPED_NODE_IMAGE,
                  "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        out = ROOT / "results" / "benchmarks" / "cluster-up.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        # Services work: the suite's clusterip, nodeport and dns checks against this cluster.
        proc = subprocess.run(
            ["python3", "-m", "pytest", "suite", "-m", "clusterip or nodeport or dns",
             f"--proxy-mode={mode}", "--cni=kindnet", "--keep-cluster", "-q", "-p", "no:cacheprovider",
             f"--results-dir={tmp_path / 'results'}"],
            cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False,
            env={**os.environ, "SVCCONFORM_CLUSTER_SUFFIX": "boot"},
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    finally:
        provider.down()
