"""Host facts from fake /proc, /sys, /boot trees: ip_vs, cgroup version, capabilities."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from images.hostenv import HostEnv, KernelFeature, ip_vs_feature, ipvs_unsupported_reason

RELEASE = "6.18.0-test"


def tree(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return tmp_path


def config_gz(text: str) -> bytes:
    return gzip.compress(text.encode())


def test_this_kind_of_host_lacks_ip_vs_with_the_exact_reason(tmp_path: Path) -> None:
    # The development machine: no module support, ip_vs not configured, config in /proc.
    config = config_gz("# CONFIG_MODULES is not set\n# CONFIG_IP_VS is not set\n")
    root = tree(tmp_path, {"proc/config.gz": config})
    feature = ip_vs_feature(root, RELEASE)
    assert feature == KernelFeature("ip_vs", False, "CONFIG_IP_VS not set")
    host = HostEnv(kernel=RELEASE, ip_vs=feature, cgroup_version=1, cap_bounding_set=None)
    assert ipvs_unsupported_reason(host) == (
        "kernel lacks ip_vs (CONFIG_IP_VS not set) — kube-proxy ipvs mode cannot run"
    )


@pytest.mark.parametrize(
    ("files", "available"),
    [
        ({"proc/net/ip_vs": ""}, True),
        ({"sys/module/ip_vs/refcnt": "0"}, True),
        ({"proc/modules": "nf_nat 1 0 - Live\nip_vs 2 0 - Live 0x0\n"}, True),
        ({"proc/modules": "", f"boot/config-{RELEASE}": "CONFIG_MODULES=y\nCONFIG_IP_VS=y\n"}, True),
        ({"proc/modules": "", f"boot/config-{RELEASE}": "CONFIG_MODULES=y\nCONFIG_IP_VS=m\n",
          f"lib/modules/{RELEASE}/modules.dep": "kernel/net/netfilter/ipvs/ip_vs.ko.xz: k/x.ko\n"}, True),
        ({"proc/modules": "", f"boot/config-{RELEASE}": "CONFIG_MODULES=y\nCONFIG_IP_VS=m\n"}, False),
        ({"proc/modules": "", f"boot/config-{RELEASE}": "# CONFIG_IP_VS is not set\n"}, False),
        ({}, False),  # no module support, nothing in /proc: cannot be built in
        ({"proc/modules": ""}, None),  # modules possible, no config: cannot tell
    ],
)
def test_ip_vs_detection(tmp_path: Path, files: dict[str, str], available: bool | None) -> None:
    feature = ip_vs_feature(tree(tmp_path, files), RELEASE)
    assert feature.available is available, feature.evidence
    assert feature.evidence


def test_unknown_ip_vs_is_not_declared_unsupported() -> None:
    host = HostEnv(RELEASE, KernelFeature("ip_vs", None, "cannot tell"), 2, None)
    assert ipvs_unsupported_reason(host) is None


@pytest.mark.parametrize(
    ("mounts", "version"),
    [
        ("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n", 2),
        ("tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n", 1),
    ],
)
def test_cgroup_version_from_mounts(tmp_path: Path, mounts: str, version: int) -> None:
    host = HostEnv.detect(tree(tmp_path, {"proc/mounts": mounts}), release=RELEASE)
    assert host.cgroup_version == version
    assert host.cgroup_v1 is (version == 1)


def test_cap_sys_resource_from_the_bounding_set(tmp_path: Path) -> None:
    without = HostEnv.detect(tree(tmp_path, {"proc/self/status": "Name:\tx\nCapBnd:\t000001fffeffffff\n"}))
    assert without.has_cap_sys_resource is False
    with_cap = HostEnv(RELEASE, without.ip_vs, 2, 0x000001FFFFFFFFFF)
    assert with_cap.has_cap_sys_resource is True
    assert HostEnv(RELEASE, without.ip_vs, 2, None).has_cap_sys_resource is None


def test_detect_on_this_machine_does_not_fail() -> None:
    host = HostEnv.detect()
    assert host.kernel
    assert host.cgroup_version in (1, 2)
