"""Cilium, offline: the air-gapped build definitions, the chart values, the installer and the node
image choice.  The real build and clusters are exercised by ``python -m images ensure --cni cilium``,
``tox -e iptables-cilium`` and ``tox -e cilium-kpr``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures import charts, cni
from fixtures.errors import SvcconformError
from fixtures.providers.base import Node
from fixtures.spec import ClusterSpec
from images import catalog, cilium, paths, versions
from images.primitives import GoBuild

UPSTREAM_GO_MOD = """module github.com/cilium/cilium

go 1.25.0

require (
\tgithub.com/osrg/gobgp/v3 v3.37.0
\tk8s.io/api v0.34.3 // indirect-ish comment
)

require (
\tgithub.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc // indirect
)

replace sigs.k8s.io/controller-tools => github.com/cilium/controller-tools v0.16.5-1

// Using private fork of gobgp.
replace github.com/osrg/gobgp/v3 => github.com/cilium/gobgp/v3 v3.0.0-20260130142103-27e5da2a39e6
"""

#: The capability lists of Cilium v1.19.7's values.yaml (securityContext.capabilities).
CHART_DEFAULTS: dict[str, Any] = {"securityContext": {"capabilities": {
    "ciliumAgent": ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_MODULE", "SYS_ADMIN",
                    "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "SYSLOG"],
    "mountCgroup": ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"],
    "applySysctlOverwrites": ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"],
    "cleanCiliumState": ["NET_ADMIN", "SYS_MODULE", "SYS_ADMIN", "SYS_RESOURCE"],
}}}
ALL_CAPS = (1 << 41) - 1
NO_SYS_RESOURCE = ALL_CAPS & ~(1 << 24)


# --- build definitions ---------------------------------------------------------------


def test_wrapper_go_mod_requires_upstream_graph_and_keeps_its_replaces() -> None:
    out = cilium.wrapper_go_mod(UPSTREAM_GO_MOD)
    assert out.startswith("module svcconform.local/ciliumbuild\n\ngo 1.25.0\n")
    assert f"\tgithub.com/cilium/cilium {versions.CILIUM}\n" in out
    assert "\tk8s.io/api v0.34.3\n" in out  # comments dropped, versions kept
    assert "\tgithub.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc\n" in out
    assert ("replace github.com/osrg/gobgp/v3 => github.com/cilium/gobgp/v3 "
            "v3.0.0-20260130142103-27e5da2a39e6") in out
    assert "replace sigs.k8s.io/controller-tools => github.com/cilium/controller-tools v0.16.5-1" in out


def test_wrapper_go_mod_refuses_an_unexpected_layout() -> None:
    with pytest.raises(ValueError, match="no require block"):
        cilium.wrapper_go_mod("module github.com/cilium/cilium\n\ngo 1.25.0\n")


def test_one_go_build_makes_every_binary_with_upstreams_flags() -> None:
    build = cilium.go_build()
    assert build.version == versions.CILIUM
    assert build.tags == ("osusergo", "ipam_provider_operator")
    # three fields, as upstream's FULL_BUILD_VERSION (quoted: the value has spaces)
    assert (f"-X 'github.com/cilium/cilium/pkg/version.ciliumVersion={versions.CILIUM.lstrip('v')} "
            f"{versions.CILIUM} 1970-01-01T00:00:00Z'") in build.ldflags
    assert "github.com/cilium/cilium/daemon" in build.packages
    assert "github.com/cilium/cilium/operator" in build.packages
    assert len(build.packages) == len(build.outputs) == len(set(build.outputs))
    # go build names each binary after its package's last element
    for pkg, out in zip(build.packages, build.outputs, strict=True):
        assert pkg.rsplit("/", 1)[-1] == out


def test_tags_change_the_build_key_but_tagless_keys_stay() -> None:
    plain = GoBuild("x", "v1", ("a",), ("a",))
    tagged = GoBuild("x", "v1", ("a",), ("a",), tags=("t",))
    assert plain.key() != tagged.key()


def test_bpf_files_filtered_as_upstreams_install_bpf(tmp_path: Path) -> None:
    for rel in ("bpf_lxc.c", "include/bpf/ctx.h", "lib/nat.h", "Makefile", "Makefile.bpf", ".gitignore",
                "tests/foo.c", "complexity-tests/x.txt", "custom/y.c", "bpf_lxc.i", "node_config.h"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert cilium.bpf_files(tmp_path) == ["bpf_lxc.c", "include/bpf/ctx.h", "lib/nat.h", "node_config.h"]


def test_agent_image_has_llvm_scripts_and_binaries_where_the_chart_calls_them() -> None:
    dockerfile = cilium.agent_dockerfile("svcconform/debian-base:bookworm")
    assert dockerfile.startswith("FROM svcconform/debian-base:bookworm\n")
    assert "clang-19" in dockerfile
    assert "llvm-19" in dockerfile
    assert "ln -s /usr/bin/clang-19 /usr/local/bin/clang" in dockerfile
    assert "ln -s /usr/bin/llc-19 /usr/local/bin/llc" in dockerfile
    for dest in ("/usr/bin/cilium-agent", "/usr/bin/cilium-dbg", "/usr/bin/cilium-mount",
                 "/usr/bin/cilium-sysctlfix", "/usr/bin/cilium-health-responder", "/opt/cni/bin/cilium-cni"):
        assert f" {dest}\n" in dockerfile
    for script in ("/init-container.sh", "/install-plugin.sh", "/cni-uninstall.sh"):
        assert f"COPY src{script} {script}\n" in dockerfile
    assert "COPY src/bpf /var/lib/cilium/bpf\n" in dockerfile
    assert "util-linux" in dockerfile  # nsenter, which the chart's init containers call
    operator = cilium.operator_dockerfile("b")
    assert "COPY bin/operator /usr/bin/cilium-operator-generic\n" in operator


def test_cilium_images_and_node_image_are_chosen_per_cni() -> None:
    assert f"quay.io/cilium/cilium:{versions.CILIUM}" == catalog.CILIUM_IMAGE
    assert f"quay.io/cilium/operator-generic:{versions.CILIUM}" == catalog.CILIUM_OPERATOR_IMAGE
    assert "cilium" in catalog.AIRGAPPED_CNIS
    assert catalog.AIRGAPPED.node_image_for("cilium") == catalog.AIRGAPPED_CILIUM_NODE_IMAGE
    assert catalog.AIRGAPPED.cni_unsupported_reason("cilium") is None
    assert catalog.OFFICIAL.node_image_for("cilium") == catalog.OFFICIAL.node_image
    assert catalog.OFFICIAL.load_images_for("cilium") == catalog.OFFICIAL.load_images  # nodes pull quay.io


def test_chart_lives_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SVCCONFORM_CACHE", str(tmp_path))
    assert cilium.chart_dir() == tmp_path / "charts" / f"cilium-{versions.CILIUM}"
    assert paths.cache_dir() == tmp_path


# --- values ----------------------------------------------------------------------------


def test_values_with_kube_proxy_leave_services_to_it() -> None:
    values = cni.cilium_values(ClusterSpec(proxy_mode="iptables", cni="cilium"), CHART_DEFAULTS,
                               api_server=None)
    assert values["kubeProxyReplacement"] is False
    assert "k8sServiceHost" not in values
    assert "kubeProxyReplacementHealthzBindAddr" not in values  # kube-proxy serves it
    assert values["image"] == {"repository": "quay.io/cilium/cilium", "tag": versions.CILIUM,
                               "useDigest": False, "pullPolicy": "IfNotPresent"}
    assert values["operator"]["image"]["repository"] == "quay.io/cilium/operator"  # chart adds -generic
    assert values["operator"]["replicas"] == 1
    assert values["ipam"] == {"mode": "kubernetes"}
    assert (values["routingMode"], values["tunnelProtocol"]) == ("tunnel", "vxlan")
    assert values["l7Proxy"] is False
    assert values["envoy"] == {"enabled": False}
    assert values["hubble"]["enabled"] is False
    assert (values["ipv4"], values["ipv6"]) == ({"enabled": True}, {"enabled": False})
    # nothing missing from the bounding set: the chart's lists as they are
    assert values["securityContext"]["capabilities"] == CHART_DEFAULTS["securityContext"]["capabilities"]


def test_values_without_kube_proxy_replace_it_and_reach_the_api_server_directly() -> None:
    values = cni.cilium_values(ClusterSpec(proxy_mode="none", cni="cilium"), CHART_DEFAULTS,
                               api_server="172.18.0.3")
    assert values["kubeProxyReplacement"] is True
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("172.18.0.3", 6443)
    assert values["kubeProxyReplacementHealthzBindAddr"] == "0.0.0.0:10256"  # LBs probe kube-proxy's /healthz
    with pytest.raises(SvcconformError, match="needs the API server"):
        cni.cilium_values(ClusterSpec(proxy_mode="none", cni="cilium"), CHART_DEFAULTS, api_server=None)


@pytest.mark.parametrize(("family", "v4", "v6"), [("ipv4", True, False), ("ipv6", False, True),
                                                   ("dual", True, True)])
def test_values_follow_the_ip_family(family: str, v4: bool, v6: bool) -> None:
    values = cni.cilium_values(ClusterSpec(cni="cilium", ip_family=family), CHART_DEFAULTS, api_server=None)
    assert (values["ipv4"]["enabled"], values["ipv6"]["enabled"]) == (v4, v6)


def test_capabilities_the_bounding_set_lacks_are_not_asked_for() -> None:
    missing = cni.missing_capabilities(NO_SYS_RESOURCE)
    assert missing == frozenset({"SYS_RESOURCE"})
    assert cni.missing_capabilities(ALL_CAPS) == frozenset()
    assert cni.missing_capabilities(None) == frozenset()
    values = cni.cilium_values(ClusterSpec(cni="cilium"), CHART_DEFAULTS, api_server=None,
                               missing_capabilities=missing)
    caps = values["securityContext"]["capabilities"]
    assert "SYS_RESOURCE" not in caps["ciliumAgent"]
    assert "SYS_RESOURCE" not in caps["cleanCiliumState"]
    assert len(caps["ciliumAgent"]) == len(CHART_DEFAULTS["securityContext"]["capabilities"]["ciliumAgent"]) - 1
    assert caps["mountCgroup"] == ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"]


# --- installer -------------------------------------------------------------------------


@dataclass
class FakeHost:
    cap_bounding_set: int | None = NO_SYS_RESOURCE


@dataclass
class FakeProvider:
    spec: ClusterSpec
    host: FakeHost = field(default_factory=FakeHost)

    def nodes(self) -> tuple[Node, ...]:
        return (Node("c-control-plane", "172.18.0.3", "control-plane"), Node("c-worker", "172.18.0.2", "worker"))


def test_installer_without_a_chart_says_how_to_build_it(tmp_path: Path) -> None:
    inst = cni.CiliumInstaller(chart=lambda: tmp_path / "nope")
    with pytest.raises(SvcconformError, match=r"ensure --cni cilium"):
        inst(FakeProvider(ClusterSpec(cni="cilium")))  # type: ignore[arg-type]


def test_installer_is_wired_for_cilium() -> None:
    assert isinstance(cni.INSTALLERS["cilium"], cni.CiliumInstaller)
    assert cni.INSTALLERS["cilium"].daemonset == "cilium"


# --- the real chart, when ``ensure --cni cilium`` has put it in the cache ---------------


def rendered(spec: ClusterSpec) -> dict[tuple[str, str], dict[str, Any]]:
    chart = cilium.chart_dir()
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    values = cni.cilium_values(spec, defaults, api_server="172.18.0.3",
                               missing_capabilities=cni.missing_capabilities(NO_SYS_RESOURCE))
    docs = charts.template(chart, values, release="cilium", namespace="kube-system")
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


needs_chart = pytest.mark.skipif(
    not (cilium.chart_dir() / "Chart.yaml").is_file()
    or (shutil.which("helm") is None and not paths.tool("helm").exists()),
    reason="Cilium's chart is not in the cache: run 'python -m images ensure --cni cilium'",
)


@needs_chart
@pytest.mark.parametrize("proxy_mode", ["iptables", "none"])
def test_the_chart_renders_our_images_and_no_missing_capability(proxy_mode: str) -> None:
    objs = rendered(ClusterSpec(proxy_mode=proxy_mode, cni="cilium"))
    ds = objs[("DaemonSet", "cilium")]["spec"]["template"]["spec"]
    images = {c["image"] for c in ds["containers"] + ds["initContainers"]}
    assert images == {catalog.CILIUM_IMAGE}
    operator = objs[("Deployment", "cilium-operator")]["spec"]["template"]["spec"]["containers"][0]
    assert operator["image"] == catalog.CILIUM_OPERATOR_IMAGE
    assert operator["command"] == ["cilium-operator-generic"]
    for c in ds["containers"] + ds["initContainers"]:
        added = ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
        assert "SYS_RESOURCE" not in added, c["name"]
    assert ("DaemonSet", "cilium-envoy") not in objs
    config = objs[("ConfigMap", "cilium-config")]["data"]
    assert config["kube-proxy-replacement"] == ("true" if proxy_mode == "none" else "false")
    assert config["ipam"] == "kubernetes"
    assert config["tunnel-protocol"] == "vxlan"
