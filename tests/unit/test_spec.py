"""ClusterSpec: validation with the valid values in the error, cell and cluster names."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.errors import SvcconformError
from fixtures.spec import (
    CNIS,
    IP_FAMILIES,
    MAX_CLUSTER_NAME,
    MAX_NODES,
    MIN_NODES,
    PROXY_MODES,
    ClusterSpec,
    InvalidSpec,
    is_dns_label,
    namespace_name,
    new_run_id,
    spec_from_options,
)


def options(**given: object) -> dict[str, object]:
    base: dict[str, object] = {
        "proxy_mode": None, "cni": None, "nodes": None, "ip_family": None, "k8s_version": None,
        "node_image": None, "kubeconfig": None,
    }
    base.update(given)
    return base


def test_defaults_are_the_iptables_kindnet_cell_with_three_nodes_on_kind() -> None:
    spec = spec_from_options(**options())  # type: ignore[arg-type]
    assert (spec.proxy_mode, spec.cni, spec.nodes, spec.ip_family) == ("iptables", "kindnet", 3, "ipv4")
    assert spec.provider == "kind"
    assert spec.cell == "iptables-kindnet"
    assert spec.cluster_name == "svcc-iptables-kindnet"
    assert spec.workers == 2


@pytest.mark.parametrize(
    ("given", "option", "listed"),
    [
        ({"proxy_mode": "userspace"}, "--proxy-mode", "iptables, nftables, ipvs, none"),
        ({"proxy_mode": "none"}, "--proxy-mode", "cilium"),
        ({"cni": "weave"}, "--cni", "kindnet, calico, cilium, flannel"),
        ({"ip_family": "ipv5"}, "--ip-family", "ipv4, ipv6, dual"),
        ({"nodes": "1"}, "--nodes", f"{MIN_NODES}..{MAX_NODES}"),
        ({"nodes": "three"}, "--nodes", f"{MIN_NODES}..{MAX_NODES}"),
        ({"nodes": str(MAX_NODES + 1)}, "--nodes", f"{MIN_NODES}..{MAX_NODES}"),
    ],
)
def test_unknown_values_are_rejected_naming_the_option_and_the_valid_values(
    given: dict[str, str], option: str, listed: str
) -> None:
    with pytest.raises(InvalidSpec) as err:
        spec_from_options(**options(**given))  # type: ignore[arg-type]
    assert err.value.option == option
    assert str(err.value).startswith(f"{option}: ")
    assert listed in str(err.value)
    assert "\n" not in str(err.value)


def test_kind_cells_run_without_kube_proxy_only_with_cilium_and_existing_clusters_can(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="needs a CNI that replaces it: --cni=cilium, not kindnet"):
        ClusterSpec(proxy_mode="none")
    assert ClusterSpec(proxy_mode="none", cni="cilium").cluster_name == "svcc-none-cilium"
    with pytest.raises(InvalidSpec):
        ClusterSpec(cni="unknown")
    kubeconfig = tmp_path / "kubeconfig"
    spec = ClusterSpec(proxy_mode="none", cni="unknown", kubeconfig=kubeconfig)
    assert spec.provider == "existing"
    assert spec.cell == "none-unknown"


def test_kubeconfig_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match=r"--kubeconfig: .* does not exist"):
        spec_from_options(**options(kubeconfig=str(tmp_path / "missing")))  # type: ignore[arg-type]
    (tmp_path / "kc").write_text("{}")
    spec = spec_from_options(**options(kubeconfig=str(tmp_path / "kc")))  # type: ignore[arg-type]
    assert spec.provider == "existing"


@pytest.mark.parametrize(("given", "normal"), [("1.34.4", "v1.34.4"), ("v1.35.0-rc.1", "v1.35.0-rc.1")])
def test_k8s_version_is_normalised(given: str, normal: str) -> None:
    spec = spec_from_options(**options(k8s_version=given))  # type: ignore[arg-type]
    assert spec.k8s_version == normal


@pytest.mark.parametrize("bad", ["latest", "1.34", "v1.x.0"])
def test_bad_k8s_version_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidSpec, match="--k8s-version"):
        spec_from_options(**options(k8s_version=bad))  # type: ignore[arg-type]


def test_cluster_name_gets_suffixes_only_for_non_default_shapes() -> None:
    assert ClusterSpec(proxy_mode="nftables", cni="flannel").cluster_name == "svcc-nftables-flannel"
    assert ClusterSpec(nodes=4).cluster_name == "svcc-iptables-kindnet-n4"
    assert ClusterSpec(ip_family="dual").cluster_name == "svcc-iptables-kindnet-dual"
    assert ClusterSpec(k8s_version="v1.34.4").cluster_name == "svcc-iptables-kindnet-k1-34-4"


@given(
    mode=st.sampled_from(PROXY_MODES),
    cni=st.sampled_from(CNIS),
    nodes=st.integers(MIN_NODES, MAX_NODES),
    family=st.sampled_from(IP_FAMILIES),
    version=st.none()
    | st.from_regex(r"v[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-[a-z]{1,12}\.[0-9]{1,3})?", fullmatch=True),
)
def test_every_cluster_name_is_a_short_dns_label_and_distinct_shapes_get_distinct_names(
    mode: str, cni: str, nodes: int, family: str, version: str | None
) -> None:
    spec = ClusterSpec(proxy_mode=mode, cni=cni, nodes=nodes, ip_family=family, k8s_version=version)
    name = spec.cluster_name
    assert is_dns_label(name)
    assert len(name) <= MAX_CLUSTER_NAME
    other = ClusterSpec(proxy_mode=mode, cni=cni, nodes=nodes, ip_family=family, k8s_version=None)
    if version:
        assert other.cluster_name != name


def test_with_detected_replaces_mode_and_cni(tmp_path: Path) -> None:
    spec = ClusterSpec(kubeconfig=tmp_path / "kc").with_detected(proxy_mode="none", cni="cilium")
    assert spec.cell == "none-cilium"


def test_namespace_names_follow_the_convention_and_are_unique() -> None:
    run_id = new_run_id()
    assert len(run_id) == 6
    names = {namespace_name("selectorless", run_id) for _ in range(50)}
    assert len(names) > 45
    for name in names:
        prefix, family, rid, rand = name.split("-")
        assert (prefix, family, rid) == ("svcc", "selectorless", run_id)
        assert len(rand) == 4
        assert is_dns_label(name)


def test_run_id_override_is_validated() -> None:
    assert new_run_id("CI-1234") == "ci-1234"
    with pytest.raises(InvalidSpec, match="SVCCONFORM_RUN_ID"):
        new_run_id("has space")
    with pytest.raises(SvcconformError):
        namespace_name("Bad_Family", "abc123")


@pytest.mark.parametrize(("family", "cell"), [("ipv4", "nftables-flannel"), ("ipv6", "nftables-flannel-ipv6"),
                                              ("dual", "nftables-flannel-dual")])
def test_ipv6_and_dual_stack_cells_get_their_own_results_directory(family: str, cell: str) -> None:
    assert ClusterSpec(proxy_mode="nftables", cni="flannel", ip_family=family).cell == cell
