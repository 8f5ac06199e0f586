"""ClusterSpec → kind config: mode, CNI, subnets, nodes, image, patches; YAML kind accepts."""

from __future__ import annotations

import pytest
import yaml

from fixtures.kindconfig import CGROUP_V1_KUBELET_PATCH, KUBE_PROXY_LOGGING_PATCH, render_kind_config, to_yaml
from fixtures.spec import CNIS, PROXY_MODES, ClusterSpec

COREDNS_PATCH = "kind: ClusterConfiguration\ndns:\n  imageTag: v1.14.7\n"


@pytest.mark.parametrize("mode", PROXY_MODES)
@pytest.mark.parametrize("cni", CNIS)
def test_proxy_mode_and_default_cni_switch(mode: str, cni: str) -> None:
    config = render_kind_config(ClusterSpec(proxy_mode=mode, cni=cni))
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["networking"]["kubeProxyMode"] == mode
    assert config["networking"].get("disableDefaultCNI", False) is (cni != "kindnet")
    assert config["networking"]["serviceSubnet"] == "10.96.0.0/16"
    assert config["name"] == f"svcc-{mode}-{cni}"


@pytest.mark.parametrize(
    ("cni", "pods"),
    [("kindnet", "10.244.0.0/16"), ("flannel", "10.244.0.0/16"), ("calico", "192.168.0.0/16"),
     ("cilium", "10.244.0.0/16")],
)
def test_pod_subnet_is_the_one_the_cni_expects(cni: str, pods: str) -> None:
    assert render_kind_config(ClusterSpec(cni=cni))["networking"]["podSubnet"] == pods


def test_ip_families_get_matching_subnets() -> None:
    v6 = render_kind_config(ClusterSpec(ip_family="ipv6"))["networking"]
    assert v6["ipFamily"] == "ipv6"
    assert ":" in v6["podSubnet"]
    assert ":" in v6["serviceSubnet"]
    dual = render_kind_config(ClusterSpec(ip_family="dual", cni="calico"))["networking"]
    assert dual["podSubnet"].split(",")[0] == "192.168.0.0/16"
    assert ":" in dual["podSubnet"].split(",")[1]
    assert len(dual["serviceSubnet"].split(",")) == 2


@pytest.mark.parametrize("nodes", [2, 3, 5])
def test_one_control_plane_and_the_rest_workers(nodes: int) -> None:
    roles = [n["role"] for n in render_kind_config(ClusterSpec(nodes=nodes))["nodes"]]
    assert roles == ["control-plane"] + ["worker"] * (nodes - 1)


def test_node_image_is_set_on_every_node_when_given() -> None:
    assert all("image" not in n for n in render_kind_config(ClusterSpec())["nodes"])
    config = render_kind_config(ClusterSpec(), node_image="svcconform/kind-node:v1.34.4")
    assert {n["image"] for n in config["nodes"]} == {"svcconform/kind-node:v1.34.4"}
    spec_image = render_kind_config(ClusterSpec(node_image="kindest/node:v1.33.1"))
    assert {n["image"] for n in spec_image["nodes"]} == {"kindest/node:v1.33.1"}


def test_cgroup_v1_adds_the_kubelet_patch_once_and_catalog_patches_are_kept() -> None:
    assert "kubeadmConfigPatches" not in render_kind_config(ClusterSpec(proxy_mode="none", cni="cilium"))
    config = render_kind_config(ClusterSpec(), [COREDNS_PATCH], cgroup_v1=True)
    assert config["kubeadmConfigPatches"] == [COREDNS_PATCH, KUBE_PROXY_LOGGING_PATCH, CGROUP_V1_KUBELET_PATCH]
    again = render_kind_config(ClusterSpec(), [CGROUP_V1_KUBELET_PATCH], cgroup_v1=True)
    assert again["kubeadmConfigPatches"] == [CGROUP_V1_KUBELET_PATCH, KUBE_PROXY_LOGGING_PATCH]
    patch = yaml.safe_load(CGROUP_V1_KUBELET_PATCH)
    assert patch == {"kind": "KubeletConfiguration", "failCgroupV1": False}


def test_kube_proxy_logs_at_verbosity_4_so_its_view_of_the_zone_shows() -> None:
    patch = yaml.safe_load(KUBE_PROXY_LOGGING_PATCH)
    assert patch == {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                     "logging": {"verbosity": 4}}
    assert KUBE_PROXY_LOGGING_PATCH in render_kind_config(ClusterSpec(proxy_mode="nftables"))["kubeadmConfigPatches"]


def test_render_is_pure() -> None:
    spec = ClusterSpec(proxy_mode="nftables", cni="flannel", nodes=4)
    assert render_kind_config(spec, [COREDNS_PATCH]) == render_kind_config(spec, [COREDNS_PATCH])


def test_yaml_round_trips_and_writes_patches_as_blocks() -> None:
    config = render_kind_config(ClusterSpec(proxy_mode="ipvs"), [COREDNS_PATCH], cgroup_v1=True)
    text = to_yaml(config)
    assert yaml.safe_load(text) == config
    assert "- |\n  kind: ClusterConfiguration" in text
    assert text.index("kind: Cluster") < text.index("networking:")  # readable key order


@pytest.mark.parametrize(
    ("nodes", "zones"),
    [(2, ["zone-a", "zone-b"]), (3, ["zone-a", "zone-a", "zone-b"]), (4, ["zone-a", "zone-a", "zone-b", "zone-b"])],
)
def test_nodes_are_labelled_with_two_zones_for_topology_routing(nodes, zones):
    config = render_kind_config(ClusterSpec(nodes=nodes))["nodes"]
    assert [n["labels"]["topology.kubernetes.io/zone"] for n in config] == zones
