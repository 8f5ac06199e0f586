"""Offline tests of our agnhost image definition: what upstream's e2e specs rely on.

Upstream's image (test/images/agnhost/Dockerfile in k8s.io/kubernetes, on Alpine) has an
entrypoint ``/agnhost`` with default command ``pause``, ``/coredns``, ``/uploads``, porter's
certificates in ``/``, busybox tools (``wget``) and curl, nc, dig, ip, bash.  Our image is
built from Debian packages; these tests pin the definition to the same contract.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from images import catalog, core, primitives, versions

AGNHOST = core.agnhost_image_def()
DOCKERFILE = AGNHOST.dockerfile()

#: tool e2e calls in an agnhost container → the Debian package that provides it
TOOL_PACKAGES = {
    # service.go: `wget -q -O - -T 1`, `wget -T 5 -qO-`.  GNU wget, not the busybox applet
    # of upstream's Alpine base: bookworm's busybox lacks wget's -T and segfaults on it.
    "wget": "wget",
    "nslookup": "dnsutils",  # jig.go: nslookup <service>
    "ps": "busybox",  # busybox applets on PATH, as on Alpine
    "ping": "busybox",
    "curl": "curl",
    "nc": "netcat-openbsd",
    "dig": "dnsutils",
    "host": "dnsutils",
    "ip": "iproute2",
    "ss": "iproute2",
    "bash": "bash",
    "iperf": "iperf",
}


def test_agnhost_is_the_image_the_suite_and_upstream_e2e_ask_for():
    assert AGNHOST.tag == catalog.AGNHOST_IMAGE == "registry.k8s.io/e2e-test-images/agnhost:2.56"
    assert [d for d in core.image_defs() if d.name == "agnhost"] == [AGNHOST]
    for cni in ("kindnet", "flannel", "cilium"):
        assert AGNHOST in core.image_defs(cni)


def test_entrypoint_and_default_command_are_upstreams():
    # a pod started without command or args (e2e's server-envvars) runs `agnhost pause`
    assert AGNHOST.entrypoint == ("/agnhost",)
    assert AGNHOST.cmd == ("pause",)
    assert 'ENTRYPOINT ["/agnhost"]\n' in DOCKERFILE
    assert DOCKERFILE.endswith('CMD ["pause"]\n')
    assert AGNHOST.base == primitives.BASE_IMAGE


def test_paths_are_upstreams():
    dests = {dest: src for src, dest in AGNHOST.binaries}
    assert dests["/agnhost"] == "agnhost"
    # a DNS spec runs /coredns from the agnhost image: the CoreDNS the cluster runs
    assert dests["/coredns"] == "coredns"
    assert core.go_builds()["coredns"].outputs == ("coredns",)
    certs = {dest: src for src, dest in AGNHOST.kube_files}
    # porter reads localhost.crt/.key relative to the working directory, "/"
    assert certs == {"/localhost.crt": "test/images/agnhost/porter/localhost.crt",
                     "/localhost.key": "test/images/agnhost/porter/localhost.key"}
    assert "WORKDIR" not in DOCKERFILE
    for src, dest in AGNHOST.kube_files:
        assert f"COPY {primitives.kube_context_name(src)} {dest}\n" in DOCKERFILE
    assert "mkdir /uploads" in AGNHOST.commands  # netexec's /upload handler writes there
    assert "ln -s agnhost /agnhost-2" in AGNHOST.commands  # entrypoint-tester specs
    assert "EXPOSE 80 8080 8081 9376 5000\n" in DOCKERFILE


def test_user_and_group_defined_in_image():
    run = " && ".join(AGNHOST.commands)
    assert "useradd -u 1000 -U -m user-defined-in-image" in run
    assert "groupadd -g 50000 group-defined-in-image" in run
    assert "usermod -a -G group-defined-in-image user-defined-in-image" in run


@pytest.mark.parametrize(("tool", "package"), sorted(TOOL_PACKAGES.items()))
def test_tools_e2e_calls_are_installed(tool: str, package: str):
    assert package in AGNHOST.packages, f"{tool} needs Debian's {package}"
    assert f" {package}" in DOCKERFILE.split("\n")[1]


def test_busybox_applets_are_linked_on_path_without_shadowing_real_tools():
    assert core.busybox_links() in AGNHOST.commands
    # every PATH directory of the image is checked before an applet is linked
    assert core.busybox_links() == core.busybox_links(path=primitives.IMAGE_PATH)
    assert f"ENV PATH={primitives.IMAGE_PATH}\n" in DOCKERFILE
    # the links are made after the packages (whose tools they must not shadow) are in
    lines = DOCKERFILE.splitlines()
    apt = next(i for i, line in enumerate(lines) if "apt-get install" in line)
    links = next(i for i, line in enumerate(lines) if "--list" in line)
    assert apt < links


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_busybox_links_script_links_only_missing_names(tmp_path: Path):
    usr_sbin, usr_bin, bin_dir = (tmp_path / d for d in ("usr/sbin", "usr/bin", "bin"))
    for d in (usr_sbin, usr_bin, bin_dir):
        d.mkdir(parents=True)
    busybox = bin_dir / "busybox"
    busybox.write_text("#!/bin/sh\nprintf '%s\\n' wget nslookup ps nc ip sh bash '['\n")
    busybox.chmod(0o755)
    real = {"nc": usr_bin, "sh": bin_dir, "bash": bin_dir, "[": usr_bin, "ip": usr_sbin,
            "nslookup": usr_bin}
    for name, d in real.items():
        (d / name).write_text("real\n")
    script = core.busybox_links(link_dir=str(bin_dir), busybox=str(busybox),
                                 path=f"{usr_sbin}:{usr_bin}:{bin_dir}")
    subprocess.run(["sh", "-c", script], check=True)
    for name in ("wget", "ps"):
        assert os.readlink(bin_dir / name) == str(busybox)
    for name, d in real.items():
        assert (d / name).read_text() == "real\n", name
        assert not (bin_dir / name).is_symlink(), name


def test_component_images_copy_the_porter_certs_from_the_kubernetes_module(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    module = tmp_path / "mod"
    for src, _ in AGNHOST.kube_files:
        (module / src).parent.mkdir(parents=True, exist_ok=True)
        (module / src).write_text(src)
    b = primitives.Builder(cache=tmp_path)
    asked: list[tuple[str, str, str]] = []
    monkeypatch.setattr(b, "module_download",
                        lambda m, v, want: asked.append((m, v, want)) or module)
    built: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(b, "docker_build", lambda step, tag, dockerfile, files: built.setdefault(
        step, {"dockerfile": dockerfile, "files": files}))
    bins = {name: tmp_path / "bin" / name for name in (*core.KUBE_COMMANDS, "agnhost", "etcd",
                                                         "coredns", "pause", "kindnetd")}
    core.component_images(b, "kindnet", bins)
    assert asked == [(core.KUBE_MODULE, versions.KUBERNETES, "Dir")]
    agnhost = built["image-agnhost"]
    assert agnhost["dockerfile"] == DOCKERFILE
    assert agnhost["files"]["agnhost"] == bins["agnhost"]
    assert agnhost["files"]["coredns"] == bins["coredns"]
    for src, _ in AGNHOST.kube_files:
        assert agnhost["files"][primitives.kube_context_name(src)] == module / src
    # every COPY source of every image is in its build context
    for step, got in built.items():
        for src in re.findall(r"^COPY (\S+) ", got["dockerfile"], re.M):
            assert src in got["files"], (step, src)


def test_images_without_the_new_parts_render_as_before():
    # the Dockerfile text is an image's cache key: the optional parts add nothing when unset
    coredns = next(d for d in core.image_defs() if d.name == "coredns")
    assert coredns.dockerfile() == (
        f"FROM {primitives.BASE_IMAGE}\n"
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "COPY coredns /coredns\n"
        'ENTRYPOINT ["/coredns"]\n'
    )
    client = next(d for d in core.image_defs() if d.name == "client")
    assert "EXPOSE" not in client.dockerfile()
    assert client.dockerfile().count("RUN ") == 1


def upstream_dockerfile() -> str | None:
    """Upstream's agnhost Dockerfile from the Go module cache, when the build fetched it."""
    roots = [os.environ.get("GOMODCACHE", "")]
    if shutil.which("go"):
        out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                             check=False)
        roots.append(out.stdout.strip())
    roots.append(str(Path.home() / "go" / "pkg" / "mod"))
    for root in filter(None, roots):
        f = Path(root) / f"k8s.io/kubernetes@{versions.KUBERNETES}/test/images/agnhost/Dockerfile"
        if f.is_file():
            return f.read_text()
    return None


#: Alpine packages upstream installs → their Debian counterpart here
APK_TO_DEB = {"bind-tools": "dnsutils", "curl": "curl", "netcat-openbsd": "netcat-openbsd",
              "iproute2": "iproute2", "iperf": "iperf", "bash": "bash"}


def test_matches_upstreams_dockerfile_when_the_module_is_cached():
    text = upstream_dockerfile()
    if text is None:
        pytest.skip(f"k8s.io/kubernetes@{versions.KUBERNETES} is not in the Go module cache")
    assert re.search(r"^ENTRYPOINT (.+)$", text, re.M)[1] == '["/agnhost"]'  # type: ignore[index]
    assert re.search(r"^CMD (.+)$", text, re.M)[1] == '["pause"]'  # type: ignore[index]
    expose = re.search(r"^EXPOSE (.+)$", text, re.M)[1].split()  # type: ignore[index]
    assert [str(p) for p in AGNHOST.expose] == expose
    apk = re.search(r"apk --update add ([\w\s.-]+?) &&", text)[1].split()  # type: ignore[index]
    assert sorted(apk) == sorted(APK_TO_DEB)
    for pkg in apk:
        assert APK_TO_DEB[pkg] in AGNHOST.packages
    assert "RUN mkdir /uploads" in text
    assert "ln -s agnhost agnhost-2" in text
    assert "coredns" in text  # upstream ADDs a CoreDNS release as /coredns
    adds = dict(re.findall(r"^ADD (porter/\S+) (\S+)$", text, re.M))
    assert {f"test/images/agnhost/{src}": f"/{dest}" for src, dest in adds.items()} == dict(
        AGNHOST.kube_files)
    for user_or_group in ("-u 1000", "user-defined-in-image", "-g 50000", "group-defined-in-image"):
        assert user_or_group in text
