"""Offline tests of the air-gapped build driver's pure parts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from images import build, catalog, core, docker, flannel, primitives, versions

UPSTREAM_GO_MOD = """module k8s.io/kubernetes

go 1.24.0

require (
\tgithub.com/blang/semver/v4 v4.0.0
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

require (
\tgithub.com/go-logr/logr v1.4.2 // indirect
\tk8s.io/kms v0.0.0 // indirect
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kms => ./staging/src/k8s.io/kms
)
"""


def test_wrapper_go_mod_requires_published_staging_modules_at_matching_version():
    mod = core.kube_wrapper_go_mod(UPSTREAM_GO_MOD, "v1.34.4")
    assert "\tk8s.io/kubernetes v1.34.4" in mod
    for staging in ("k8s.io/api", "k8s.io/client-go", "k8s.io/kms"):
        assert f"\t{staging} v0.34.4" in mod
    assert "\tgithub.com/blang/semver/v4 v4.0.0" in mod
    assert "\tgithub.com/go-logr/logr v1.4.2" in mod
    assert "replace" not in mod
    assert "./staging" not in mod
    assert "v0.0.0" not in mod


def test_wrapper_go_mod_rejects_an_unexpected_layout():
    with pytest.raises(primitives.BuildError, match="staging"):
        core.kube_wrapper_go_mod("module k8s.io/kubernetes\n", "v1.34.4")


def test_kube_ldflags_set_the_real_version_in_both_version_packages():
    flags = core.kube_ldflags("v1.34.4")
    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        assert f"-X {pkg}.gitVersion=v1.34.4" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=34" in flags
    with pytest.raises(primitives.BuildError):
        core.kube_ldflags("latest")


def test_image_tags_are_exactly_what_kubeadm_and_the_charts_ask_for():
    tags = {d.name: d.tag for d in core.image_defs()}
    assert tags["kube-apiserver"] == f"registry.k8s.io/kube-apiserver:{versions.KUBERNETES}"
    assert tags["kube-proxy"] == f"registry.k8s.io/kube-proxy:{versions.KUBERNETES}"
    assert tags["etcd"] == "registry.k8s.io/etcd:3.6.5-0"
    assert tags["pause"] == "registry.k8s.io/pause:3.10.1"
    assert tags["coredns"] == f"registry.k8s.io/coredns/coredns:{versions.COREDNS}"
    assert tags["agnhost"] == "registry.k8s.io/e2e-test-images/agnhost:2.56"
    # the containerd sandbox image in the node config must be the pause image we build
    config = (core.NODE_FILES / "etc/containerd/config.toml").read_text()
    assert f'sandbox_image = "{tags["pause"]}"' in config


def test_coredns_patch_points_kubeadm_at_the_coredns_we_build():
    assert f"imageTag: {versions.COREDNS}" in catalog.COREDNS_PATCH
    assert catalog.AIRGAPPED.kubeadm_patches == (catalog.COREDNS_PATCH,)


def test_dockerfile_rendering():
    d = primitives.ImageDef("x", "example/x:1", (("bin1", "/usr/local/bin/bin1"),),
                       packages=("iptables", "nftables"), entrypoint=("/usr/local/bin/bin1",))
    text = d.dockerfile()
    assert text.startswith(f"FROM {primitives.BASE_IMAGE}\n")
    assert "apt-get install" in text
    assert "iptables nftables" in text
    assert "COPY bin1 /usr/local/bin/bin1" in text
    assert 'ENTRYPOINT ["/usr/local/bin/bin1"]' in text
    scratch = primitives.ImageDef("p", "p:1", (("pause", "/pause"),), base="scratch").dockerfile()
    assert scratch.startswith("FROM scratch\n")
    assert "apt-get" not in scratch
    assert "ENV PATH" not in scratch


def test_kube_proxy_image_carries_every_rule_tool_it_needs():
    proxy = next(d for d in core.image_defs() if d.name == "kube-proxy")
    for pkg in ("iptables", "nftables", "conntrack"):
        assert pkg in proxy.packages


def test_cache_keys_change_with_inputs(tmp_path: Path):
    (tmp_path / "a").write_text("one")
    before = primitives.tree_hash(tmp_path)
    assert primitives.tree_hash(tmp_path) == before
    (tmp_path / "a").write_text("two")
    assert primitives.tree_hash(tmp_path) != before
    assert primitives.sha("x", versions.KUBERNETES) == primitives.sha("x", versions.KUBERNETES)
    assert primitives.sha("x", "v1.34.4") != primitives.sha("x", "v1.34.3")


def test_go_build_key_tracks_local_sources(tmp_path: Path):
    (tmp_path / "main.go").write_text("package main\n")
    gb = primitives.GoBuild("t", "1", (".",), ("t",), local_module=tmp_path)
    k1 = gb.key()
    (tmp_path / "main.go").write_text("package main\n// changed\n")
    assert gb.key() != k1


def test_step_is_skipped_when_stamp_matches(tmp_path: Path):
    b = primitives.Builder(cache=tmp_path)
    calls = []
    assert b.step("s", "k1", lambda: calls.append(1)) is True
    assert b.step("s", "k1", lambda: calls.append(1)) is False
    assert b.step("s", "k2", lambda: calls.append(1)) is True
    assert b.step("s", "k2", lambda: calls.append(1), outputs_ok=lambda: False) is True
    assert len(calls) == 3
    times = [json.loads(line) for line in (tmp_path / "build-times.jsonl").read_text().splitlines()]
    assert [t["step"] for t in times] == ["s", "s", "s"]


# What local_docker_images() lists for kind's node image pulled by digest (docker shows its
# tag as <none>, so only the repo@digest form is there).
OFFICIAL_PULLED = {"kindest/node@" + versions.OFFICIAL_NODE_IMAGE.split("@")[1]}


def test_official_node_image_is_pinned_by_digest():
    name, _, digest = versions.OFFICIAL_NODE_IMAGE.partition("@")
    assert name == "kindest/node:v1.34.0"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)


def test_is_present_matches_digest_pinned_refs_by_digest_only():
    ref = versions.OFFICIAL_NODE_IMAGE
    assert catalog.is_present(ref, OFFICIAL_PULLED)
    # the same tag from another build is not the pinned image
    assert not catalog.is_present(ref, {"kindest/node:v1.34.0", "kindest/node@sha256:" + "0" * 64})
    assert catalog.is_present("svcconform/client:1", {"svcconform/client:1"})
    assert not catalog.is_present("svcconform/client:1", {"svcconform/client:2"})
    local = "localhost:5000/kindest/node:v1@sha256:" + "a" * 64
    assert catalog.is_present(local, {"localhost:5000/kindest/node@sha256:" + "a" * 64})


def test_official_flannel_cells_load_flannel_image_built_on_official_debian():
    assert catalog.OFFICIAL.load_images_for("kindnet") == (catalog.CLIENT_IMAGE,)
    assert catalog.OFFICIAL.load_images_for("flannel") == (catalog.CLIENT_IMAGE, catalog.FLANNEL_IMAGE)
    # air-gapped flannel nodes have it preloaded instead
    assert catalog.AIRGAPPED.load_images_for("flannel") == ()
    assert flannel.image_def(primitives.OFFICIAL_DEBIAN_IMAGE).dockerfile().startswith(
        f"FROM {primitives.OFFICIAL_DEBIAN_IMAGE}\n")
    assert flannel.image_def().dockerfile().startswith(f"FROM {primitives.BASE_IMAGE}\n")


def test_catalog_prefers_airgapped_then_official_then_explains():
    assert catalog.resolve({catalog.AIRGAPPED_NODE_IMAGE, *OFFICIAL_PULLED}) is catalog.AIRGAPPED
    assert catalog.resolve(OFFICIAL_PULLED) is catalog.OFFICIAL
    with pytest.raises(catalog.ImagesMissing, match="tox -e images"):
        catalog.resolve({"kindest/node:v1.34.0"}, mode="auto")
    with pytest.raises(catalog.ImagesMissing, match="tox -e images"):
        catalog.resolve(set(), mode="auto")
    assert catalog.resolve(set(), mode="official") is catalog.OFFICIAL
    with pytest.raises(catalog.ImagesMissing, match="not one of"):
        catalog.resolve(set(), mode="bogus")


def test_airgapped_cni_support_reasons():
    assert catalog.AIRGAPPED.cni_unsupported_reason("kindnet") is None
    assert catalog.AIRGAPPED.cni_unsupported_reason("flannel") is None
    reason = catalog.AIRGAPPED.cni_unsupported_reason("calico")
    assert reason
    assert "no container registry" in reason
    assert catalog.OFFICIAL.cni_unsupported_reason("cilium") is None


def test_cap_wrapper_needed_only_without_cap_sys_resource():
    full = "CapBnd:\t000001ffffffffff\n"
    lacking = "CapBnd:\t000001fffeffffff\n"
    assert docker.needs_cap_wrapper(full) is False
    assert docker.needs_cap_wrapper(lacking) is True


def _run_wrapper(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    fake_runc = tmp_path / "runc"
    fake_runc.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/argv\"\n")
    fake_runc.chmod(0o755)
    env = {**os.environ, "SVCCONFORM_REAL_RUNC": str(fake_runc)}
    return subprocess.run([sys.executable, str(docker.WRAPPER_SRC), *args], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def _caps(with_resource: bool) -> dict:
    caps = ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"] + (["CAP_SYS_RESOURCE"] if with_resource else [])
    return {k: list(caps) for k in ("bounding", "effective", "permitted")}


@pytest.mark.skipif(not docker.needs_cap_wrapper(), reason="host has CAP_SYS_RESOURCE: nothing to drop")
def test_wrapper_drops_missing_caps_from_bundle_and_exec_process(tmp_path: Path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"capabilities": _caps(True)}}))
    p = _run_wrapper(tmp_path, ["--root", "/r", "create", "--bundle", str(bundle), "cid"])
    assert p.returncode == 0, p.stderr
    spec = json.loads((bundle / "config.json").read_text())
    for values in spec["process"]["capabilities"].values():
        assert "CAP_SYS_RESOURCE" not in values
        assert "CAP_SYS_ADMIN" in values
    assert (tmp_path / "argv").read_text().split() == ["--root", "/r", "create", "--bundle", str(bundle), "cid"]

    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"capabilities": _caps(True)}))
    p = _run_wrapper(tmp_path, ["exec", "--process", str(proc), "cid"])
    assert p.returncode == 0, p.stderr
    assert all("CAP_SYS_RESOURCE" not in v for v in json.loads(proc.read_text())["capabilities"].values())


def test_wrapper_passes_other_commands_through_untouched(tmp_path: Path):
    p = _run_wrapper(tmp_path, ["state", "cid"])
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "argv").read_text().split() == ["state", "cid"]


def test_ensure_mode_is_a_fallback_not_a_fork():
    never = lambda image: False  # noqa: E731
    always = lambda image: True  # noqa: E731
    assert build.choose_mode("auto", {catalog.AIRGAPPED_NODE_IMAGE}, always) == "airgapped"
    assert build.choose_mode("auto", set(), always) == "official"
    assert build.choose_mode("auto", set(), never) == "airgapped"
    assert build.choose_mode("official", set(), never) == "official"
    with pytest.raises(primitives.BuildError):
        build.choose_mode("sometimes", set(), never)


def test_kind_network_guard_rejects_only_traffic_leaving_the_bridge():
    rule = docker.guard_rule("br-0123456789ab")
    assert rule[:4] == ["-i", "br-0123456789ab", "!", "-o"]
    assert rule[4] == "br-0123456789ab"
    assert rule[-4:] == ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]


def test_the_ipv6_guard_rejects_the_same_traffic_with_an_icmpv6_answer():
    rule = docker.guard_rule_v6("br-0123456789ab")
    assert rule[:5] == docker.guard_rule("br-0123456789ab")[:5]
    assert rule[-4:] == ["-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"]


def test_official_mode_without_a_registry_fails_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(build, "pull_error", lambda image: f"Error response from daemon: Get \"https://{image}\": no such host")

    def no_build(*_a, **_k):
        raise AssertionError("nothing may be built when the registry does not answer")

    monkeypatch.setattr(primitives.Builder, "go_build", no_build)
    monkeypatch.setattr(primitives.Builder, "docker_build", no_build)
    with pytest.raises(primitives.BuildError, match=r"kindest/node:v1\.34\.0@sha256:\w+ cannot be pulled .*no such host.*SVCCONFORM_IMAGES"):
        build.official(primitives.Builder(cache=tmp_path), "flannel")


def test_long_steps_keep_reporting_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch):
    b = primitives.Builder(cache=tmp_path, heartbeat_s=0.05)
    gate = threading.Event()
    # the step returns once the heartbeat has spoken twice (bounded: a broken heartbeat fails)
    beats = []
    original = primitives.log

    def counting_log(msg: str) -> None:
        original(msg)
        if "still building" in msg:
            beats.append(msg)
            if len(beats) >= 2:
                gate.set()

    monkeypatch.setattr(primitives, "log", counting_log)
    b.step("slow", "k", lambda: None if gate.wait(10) else pytest.fail("no heartbeat in 10 s"))
    out = capsys.readouterr().out
    assert "[images] slow: building ..." in out
    assert "[images] slow: still building, 0s in (total elapsed 0m00s)" in out
    assert "[images] slow: done in 0s" in out
