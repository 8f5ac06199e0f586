"""flannel, offline: the air-gapped build definitions, the manifest, the installer and the node image
choice.  The real build and cluster are exercised by ``python -m images ensure --cni flannel`` and
``pytest suite --cni=flannel``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures import cni
from fixtures.errors import SvcconformError, ToolMissing
from fixtures.kindconfig import POD_SUBNET_V4
from fixtures.observations import ExecResult
from fixtures.providers import KindProvider
from fixtures.spec import ClusterSpec
from images import build, catalog, core, flannel, loadbalancer, primitives, tools, versions
from images.hostenv import HostEnv, KernelFeature

UPSTREAM_MAIN = """package main

import (
\t"github.com/flannel-io/flannel/pkg/backend"
\t_ "github.com/flannel-io/flannel/pkg/backend/alloc"
\t_ "github.com/flannel-io/flannel/pkg/backend/tencentvpc"
\t_ "github.com/flannel-io/flannel/pkg/backend/udp"
\t_ "github.com/flannel-io/flannel/pkg/backend/vxlan"
\t_ "github.com/flannel-io/flannel/pkg/backend/udpx"
)
"""


# --- build definitions ---------------------------------------------------------------


def test_patched_main_drops_exactly_the_unbuildable_backends() -> None:
    out = flannel.patched_main(UPSTREAM_MAIN)
    assert "backend/tencentvpc" not in out
    assert '"github.com/flannel-io/flannel/pkg/backend/udp"' not in out
    for kept in ("backend/alloc", "backend/vxlan", "backend/udpx", 'flannel/pkg/backend"'):
        assert kept in out
    assert out.count("\n") == UPSTREAM_MAIN.count("\n") - 2


def test_patched_main_refuses_an_unexpected_layout() -> None:
    with pytest.raises(ValueError, match="backend 'tencentvpc'"):
        flannel.patched_main(UPSTREAM_MAIN.replace("tencentvpc", "tencent"))


def test_go_builds_pin_versions_and_name_outputs() -> None:
    builds = flannel.go_builds()
    daemon, plugin = builds["flanneld"], builds["flannel-cni"]
    assert daemon.version == versions.FLANNEL
    assert daemon.outputs == ("flanneld",)
    assert f"pkg/version.Version={versions.FLANNEL}" in daemon.ldflags
    assert daemon.require == ()  # resolved by go build -mod=mod, not go get (see the docstring)
    go_mod = flannel.wrapper_go_mod()
    assert go_mod.startswith("module svcconform.local/flanneld\n")  # `go build .` writes flanneld
    assert f"require github.com/flannel-io/flannel {versions.FLANNEL}" in go_mod
    assert "replace" not in go_mod
    assert plugin.require == (f"github.com/containernetworking/plugins@{versions.FLANNEL_CNI_PLUGINS}",)
    assert plugin.packages == ("github.com/containernetworking/plugins/plugins/meta/flannel",)
    assert plugin.outputs == ("flannel",)
    assert daemon.key() != plugin.key()


def test_image_def_holds_both_binaries_on_the_debian_base() -> None:
    d = flannel.image_def()
    assert d.tag == catalog.FLANNEL_IMAGE == f"svcconform/flannel:{versions.FLANNEL}"
    dockerfile = d.dockerfile()
    assert dockerfile.startswith("FROM svcconform/debian-base:")
    assert "COPY flanneld /opt/bin/flanneld" in dockerfile
    assert "COPY flannel-cni /opt/bin/flannel-cni" in dockerfile
    assert {"iptables", "nftables", "iproute2"} <= set(d.packages)


def test_flannel_node_image_is_separate_and_chosen_per_cni() -> None:
    assert catalog.AIRGAPPED_FLANNEL_NODE_IMAGE != catalog.AIRGAPPED_NODE_IMAGE
    assert catalog.AIRGAPPED.node_image_for("flannel") == catalog.AIRGAPPED_FLANNEL_NODE_IMAGE
    assert catalog.AIRGAPPED.node_image_for("kindnet") == catalog.AIRGAPPED_NODE_IMAGE
    assert catalog.OFFICIAL.node_image_for("flannel") == catalog.OFFICIAL.node_image


# --- manifest --------------------------------------------------------------------------


def manifest_docs() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(flannel.MANIFEST.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_manifest_matches_the_built_image_and_the_kind_config() -> None:
    assert cni.FLANNEL.manifest == flannel.MANIFEST
    docs = manifest_docs()
    assert set(docs) == {"Namespace", "ClusterRole", "ClusterRoleBinding", "ServiceAccount",
                         "ConfigMap", "DaemonSet"}
    ds = docs["DaemonSet"]
    assert (ds["metadata"]["namespace"], ds["metadata"]["name"]) == (cni.FLANNEL.namespace, cni.FLANNEL.daemonset)
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    containers = pod["initContainers"] + pod["containers"]
    assert {c["image"] for c in containers} == {catalog.FLANNEL_IMAGE}
    assert {c["imagePullPolicy"] for c in containers} == {"IfNotPresent"}
    plugin, conf = pod["initContainers"]
    assert plugin["command"] + plugin["args"] == ["cp", "-f", flannel.CNI_PLUGIN_PATH, "/opt/cni/bin/flannel"]
    assert conf["args"][-1] == "/etc/cni/net.d/10-flannel.conflist"
    daemon = pod["containers"][0]
    assert daemon["command"] == [flannel.FLANNELD_PATH]
    assert {"--ip-masq", "--kube-subnet-mgr"} <= set(daemon["args"])
    assert "NET_ADMIN" in daemon["securityContext"]["capabilities"]["add"]

    data = docs["ConfigMap"]["data"]
    net = json.loads(data["net-conf.json"])
    assert net == {"Network": POD_SUBNET_V4["flannel"], "Backend": {"Type": "vxlan"}}
    conflist = json.loads(data["cni-conf.json"])
    # containernetworking/plugins v0.9.1's flannel plugin speaks CNI spec <= 0.4.0.
    assert conflist["cniVersion"] == "0.3.1"
    assert [p["type"] for p in conflist["plugins"]] == ["flannel", "portmap"]


# --- installer -------------------------------------------------------------------------


def ds_status(desired: int, updated: int, available: int, generation: int = 1, observed: int = 1) -> dict[str, Any]:
    return {"metadata": {"generation": generation},
            "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                       "updatedNumberScheduled": updated, "numberAvailable": available}}


@pytest.mark.parametrize(("ds", "done", "detail"), [
    (None, False, "DaemonSet not found"),
    ({"metadata": {}}, False, "0/0 pods available"),
    (ds_status(3, 3, 2), False, "2/3 pods available, 3 up to date (want 3 nodes)"),
    (ds_status(2, 2, 2), False, "2/2 pods available"),  # a node has not joined yet
    (ds_status(3, 3, 3, generation=2, observed=1), False, "generation 2 not yet observed"),
    (ds_status(3, 3, 3), True, "3/3 pods available"),
])
def test_daemonset_rolled_out(ds: dict[str, Any] | None, done: bool, detail: str) -> None:
    ok, text = cni.daemonset_rolled_out(ds, 3)
    assert ok is done
    assert detail in text


@dataclass
class FakeKube:
    states: list[dict[str, Any] | None]
    asked: list[tuple[str, str, str]] = field(default_factory=list)

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.asked.append((kind, namespace, name))
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


@dataclass
class FakeProvider:
    kube: FakeKube
    kubeconfig: Path = Path("/tmp/kubeconfig")
    spec: ClusterSpec = field(default_factory=lambda: ClusterSpec(cni="flannel"))
    ready_waits: list[float] = field(default_factory=list)

    def wait_ready(self, timeout: float) -> None:
        self.ready_waits.append(timeout)


def installer(returncode: int = 0, stderr: str = "") -> tuple[cni.ManifestInstaller, list[list[str]]]:
    calls: list[list[str]] = []

    def runner(argv: list[str], *, timeout: float) -> ExecResult:
        calls.append(list(argv))
        return ExecResult(tuple(argv), returncode, "", stderr, "host")

    def find(name: str, pinned_only: bool = False) -> Path:
        assert (name, pinned_only) == ("kubectl", True)
        return Path("/pinned/kubectl")

    from dataclasses import replace
    return replace(cni.FLANNEL, runner=runner, find=find), calls


def test_installer_applies_with_the_pinned_kubectl_then_waits() -> None:
    inst, calls = installer()
    provider = FakeProvider(FakeKube([ds_status(3, 3, 3)]))
    inst(provider)  # type: ignore[arg-type]
    assert calls == [["/pinned/kubectl", "--kubeconfig=/tmp/kubeconfig", "apply", "-f", str(flannel.MANIFEST)]]
    assert provider.kube.asked == [("daemonsets", "kube-flannel", "kube-flannel-ds")]
    assert [getattr(t, "name", "") for t in provider.ready_waits] == ["CLUSTER_READY_TIMEOUT"]


def test_installer_apply_failure_is_one_line() -> None:
    inst, _ = installer(1, "error: unable to recognize \"flannel.yaml\": no matches\nmore")
    provider = FakeProvider(FakeKube([None]))
    with pytest.raises(SvcconformError, match=r"installing flannel: kubectl apply .* failed: error: unable"):
        inst(provider)  # type: ignore[arg-type]
    assert provider.kube.asked == []
    assert provider.ready_waits == []


def test_installers_are_wired_for_flannel_and_cilium() -> None:
    assert dict(cni.INSTALLERS) == {"flannel": cni.FLANNEL, "cilium": cni.CILIUM}


# --- the kind provider picks the flannel node image ------------------------------------


def test_kind_provider_boots_flannel_cells_from_the_flannel_node_image(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    for tool, script in (("kind", ""), ("helm", ""), ("docker", "#!/bin/sh\necho 28.0\n")):
        (tmp_path / "bin" / tool).write_text(script)
        (tmp_path / "bin" / tool).chmod(0o755)

    def find(name: str, pinned_only: bool = False) -> Path:
        path = tmp_path / "bin" / name
        if not path.exists():
            raise ToolMissing(name)
        return path

    host = HostEnv("6.18.0", KernelFeature("ip_vs", False, "# CONFIG_IP_VS is not set"), 2, None)
    p = KindProvider(ClusterSpec(cni="flannel"), work_dir=tmp_path / "w", host=host,
                     resolve_images=lambda: catalog.AIRGAPPED, cni_installers=cni.INSTALLERS, find=find)
    p.prepare()
    assert p.node_image == catalog.AIRGAPPED_FLANNEL_NODE_IMAGE
    assert p.images() == {"node": catalog.AIRGAPPED_FLANNEL_NODE_IMAGE, "airgapped": True}
    assert p.expected_version() == versions.KUBERNETES
    assert p.config is not None
    assert p.config["networking"]["disableDefaultCNI"] is True
    assert p.config["networking"]["podSubnet"] == "10.244.0.0/16"
    assert {n["image"] for n in p.config["nodes"]} == {catalog.AIRGAPPED_FLANNEL_NODE_IMAGE}


# --- the driver builds flannel only for flannel cells ------------------------------------


def fake_builder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Any, list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []
    b = primitives.Builder(cache=tmp_path)
    monkeypatch.setattr(b, "go_build", lambda gb: calls.append(("go", gb.name)) or tmp_path / gb.name)
    monkeypatch.setattr(tools, "install", lambda builder, kube_bin: None)
    monkeypatch.setattr(b, "base_image", lambda: None)
    monkeypatch.setattr(core, "component_images", lambda builder, cni, bins: ["a:1"])
    monkeypatch.setattr(core, "node_base", lambda builder, kube_bin: None)
    monkeypatch.setattr(b, "docker_build", lambda step, tag, *a, **k: calls.append(("image", tag)) or "k")
    monkeypatch.setattr(b, "docker_image_id", lambda tag: f"id-of-{tag}")
    monkeypatch.setattr(b, "step", lambda step, key, fn, ok=None: calls.append(("step", f"{step}={key}")))
    monkeypatch.setattr(loadbalancer, "install_ccm", lambda builder: calls.append(("tool", "cloud-provider-kind")))
    return b, calls


def test_kindnet_cells_build_no_flannel_and_keep_their_node_image_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    b, calls = fake_builder(monkeypatch, tmp_path)
    build.airgapped(b, "kindnet")
    assert not any("flannel" in what for _, what in calls)
    # the key is the one from before flannel existed: node base id, preload, their ids, manifest
    key = primitives.sha("node", f"id-of-{primitives.NODE_BASE_IMAGE}", ["a:1"], ["id-of-a:1"],
                         primitives.file_digest(primitives.MANIFESTS / "kindnet.yaml"), versions.KUBERNETES)
    assert ("step", f"node-image={key}") in calls


def test_every_air_gapped_cell_gets_cloud_provider_kind_and_the_lb_proxy_image(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for cell_cni in ("kindnet", "flannel"):
        b, calls = fake_builder(monkeypatch, tmp_path)
        build.airgapped(b, cell_cni)
        assert ("tool", "cloud-provider-kind") in calls
        assert ("image", catalog.LB_PROXY_IMAGE) in calls


def test_flannel_cells_add_the_flannel_image_and_node_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    b, calls = fake_builder(monkeypatch, tmp_path)
    build.airgapped(b, "flannel")
    assert ("go", "flanneld") in calls
    assert ("go", "flannel-cni") in calls
    assert ("image", catalog.FLANNEL_IMAGE) in calls
    steps = [what.split("=")[0] for kind, what in calls if kind == "step"]
    assert steps == ["node-image", "node-image-flannel"]
