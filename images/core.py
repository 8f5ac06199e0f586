"""The images and binaries every cell needs, built air-gapped.

* One ``go build`` of Kubernetes' commands and agnhost (``k8s.io/kubernetes`` at
  ``versions.KUBERNETES``, through a wrapper module: :func:`kube_wrapper_go_mod`), plus etcd,
  CoreDNS, pause and kindnetd (:func:`go_builds`).
* The component images kubeadm and the suite run, on the Debian base (:func:`image_defs`,
  :func:`component_images`), among them agnhost as upstream makes it (:func:`agnhost_image_def`).
* The node base image: systemd, containerd, the CNI plugins and the userland kubelet and
  kube-proxy call, with kubeadm, kubelet and kubectl (:func:`node_base`).  ``images.build``
  then commits the kindnet node image from it with the component images preloaded.
* With registry access (official images): kubectl (:func:`kubectl_go_build`) and our client
  image on the official Debian image (:func:`official_client`).
"""

from __future__ import annotations

import re
from pathlib import Path

from images import catalog, versions
from images.primitives import (
    BASE_IMAGE,
    IMAGE_PATH,
    NODE_BASE_IMAGE,
    OFFICIAL_DEBIAN_IMAGE,
    SRC,
    Builder,
    BuildError,
    GoBuild,
    ImageDef,
    kube_context_name,
    tree_hash,
)

NODE_FILES = Path(__file__).resolve().parent / "node" / "files"

KUBE_COMMANDS = (
    "kubeadm", "kubelet", "kubectl", "kube-apiserver",
    "kube-controller-manager", "kube-scheduler", "kube-proxy",
)
KUBE_MODULE = "k8s.io/kubernetes"

# Packages of the node image: systemd as PID 1, the container runtime, CNI plugins and
# the userland kubelet, kubeadm and kube-proxy call on a node (rule dumps included).
NODE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "containerd", "runc", "containernetworking-plugins",
    "iptables", "nftables", "conntrack", "ipset", "ipvsadm", "ethtool", "socat", "util-linux",
    "mount", "kmod", "iproute2", "procps", "ca-certificates", "curl", "libseccomp2", "bash",
    "e2fsprogs", "findutils", "tcpdump",
)


def busybox_links(link_dir: str = "/bin", busybox: str = "/bin/busybox",
                  path: str = IMAGE_PATH) -> str:
    """Shell loop linking every applet of ``busybox`` into ``link_dir``, except names some
    directory of ``path`` already has: upstream's Alpine base has the applets on PATH (``ps``,
    ``ping``, ``netstat`` ...), but a real tool (bash, curl, wget, dig, nslookup, nc, ip, the
    coreutils) must never be shadowed by its busybox namesake."""
    dirs = " ".join(path.split(":"))
    return (f'for a in $({busybox} --list); do for d in {dirs}; do [ -e "$d/$a" ] && continue 2; '
            f'done; ln -s {busybox} "{link_dir}/$a" || exit 1; done')


#: Files upstream's agnhost image ADDs from test/images/agnhost (porter's TLS pair, read from
#: the working directory ``/`` when CERT_FILE/KEY_FILE are unset).
AGNHOST_PORTER_CERTS = (
    ("test/images/agnhost/porter/localhost.crt", "/localhost.crt"),
    ("test/images/agnhost/porter/localhost.key", "/localhost.key"),
)


def agnhost_image_def() -> ImageDef:
    """``registry.k8s.io/e2e-test-images/agnhost`` as upstream's test/images/agnhost/Dockerfile
    makes it (Alpine there, our Debian base here):

    * apk ``bind-tools curl netcat-openbsd iproute2 iperf bash`` → Debian ``dnsutils`` (dig,
      nslookup, host), ``curl``, ``netcat-openbsd``, ``iproute2``, ``iperf``, ``bash``, plus
      ``/usr/local/bin/iperf``; Alpine's busybox applets → Debian's ``busybox``, linked only
      where no real tool has the name (:func:`busybox_links`).  ``wget`` is GNU wget: e2e
      calls ``wget -T <s>``, and bookworm's busybox is built without wget's timeout option,
      so its ``wget -T`` segfaults;
    * ``/coredns`` (upstream ADDs a CoreDNS release; ours is the CoreDNS the cluster runs);
    * ``EXPOSE 80 8080 8081 9376 5000``, ``/uploads`` (netexec), ``/localhost.crt`` and
      ``/localhost.key`` (porter), ``/agnhost`` and ``/agnhost-2 -> agnhost``;
    * user ``user-defined-in-image`` (uid 1000) in group ``group-defined-in-image`` (gid 50000);
    * ``ENTRYPOINT ["/agnhost"]``, ``CMD ["pause"]``.
    """
    return ImageDef(
        "agnhost", catalog.AGNHOST_IMAGE,
        (("agnhost", "/agnhost"), ("coredns", "/coredns")),
        packages=("dnsutils", "curl", "netcat-openbsd", "iproute2", "iperf", "bash", "wget",
                  "busybox"),
        commands=(
            busybox_links(),
            "ln -s /usr/bin/iperf /usr/local/bin/iperf",
            "mkdir /uploads",
            "ln -s agnhost /agnhost-2",
            "useradd -u 1000 -U -m user-defined-in-image",
            "groupadd -g 50000 group-defined-in-image",
            "usermod -a -G group-defined-in-image user-defined-in-image",
        ),
        kube_files=AGNHOST_PORTER_CERTS,
        expose=(80, 8080, 8081, 9376, 5000),
        entrypoint=("/agnhost",),
        cmd=("pause",),
    )


def image_defs(cni: str = "kindnet") -> list[ImageDef]:
    """Every image the node preloads, for a cell with ``cni``."""
    k = versions.KUBERNETES
    return [
        ImageDef("kube-apiserver", f"registry.k8s.io/kube-apiserver:{k}",
                 (("kube-apiserver", "/usr/local/bin/kube-apiserver"),)),
        ImageDef("kube-controller-manager", f"registry.k8s.io/kube-controller-manager:{k}",
                 (("kube-controller-manager", "/usr/local/bin/kube-controller-manager"),)),
        ImageDef("kube-scheduler", f"registry.k8s.io/kube-scheduler:{k}",
                 (("kube-scheduler", "/usr/local/bin/kube-scheduler"),)),
        # kube-proxy programs iptables / nftables / ipvs and clears conntrack entries.
        ImageDef("kube-proxy", f"registry.k8s.io/kube-proxy:{k}",
                 (("kube-proxy", "/usr/local/bin/kube-proxy"),),
                 packages=("iptables", "nftables", "conntrack", "ipset", "ipvsadm", "kmod", "iproute2")),
        ImageDef("etcd", f"registry.k8s.io/etcd:{versions.ETCD.lstrip('v')}-0",
                 (("etcd", "/usr/local/bin/etcd"),)),
        ImageDef("coredns", f"registry.k8s.io/coredns/coredns:{versions.COREDNS}",
                 (("coredns", "/coredns"),), entrypoint=("/coredns",)),
        ImageDef("pause", f"registry.k8s.io/pause:{versions.PAUSE}",
                 (("pause", "/pause"),), base="scratch", entrypoint=("/pause",)),
        agnhost_image_def(),
        ImageDef("client", catalog.CLIENT_IMAGE, (),
                 packages=("dnsutils", "curl", "netcat-openbsd", "iproute2", "procps",
                           "ca-certificates", "libc-bin"),
                 cmd=("sleep", "infinity")),
        ImageDef("kindnetd", catalog.KINDNETD_IMAGE, (("kindnetd", "/usr/local/bin/kindnetd"),),
                 packages=("iproute2", "iptables"), entrypoint=("/usr/local/bin/kindnetd",)),
    ]


def kube_ldflags(version: str) -> str:
    m = re.match(r"v(\d+)\.(\d+)", version)
    if not m:
        raise BuildError(f"not a Kubernetes version: {version}")
    flags = []
    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        flags += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={m[1]}",
                  f"-X {pkg}.gitMinor={m[2]}", f"-X {pkg}.gitTreeState=clean",
                  f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return "-s -w " + " ".join(flags)


def kube_wrapper_go_mod(upstream_go_mod: str, version: str) -> str:
    """go.mod of a module that builds k8s.io/kubernetes commands at ``version``.

    ``go install k8s.io/kubernetes/cmd/...@v`` is refused because upstream's go.mod
    replaces its staging modules with local directories (absent from the module zip).
    Each staging module is published on its own as ``v0.<minor>.<patch>``: require those.
    """
    staging = set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging", upstream_go_mod, re.M))
    if not staging:
        raise BuildError("upstream go.mod has no staging replaces: unexpected layout")
    staging_version = "v0" + version[version.index("."):]
    lines = ["module svcconform.local/k8sbuild", "", "go 1.24.0", "", "require (",
             f"\tk8s.io/kubernetes {version}"]
    for block in re.findall(r"^require \((.*?)^\)", upstream_go_mod, re.M | re.S):
        for raw in block.splitlines():
            line = raw.split("//")[0].strip()
            if not line:
                continue
            name = line.split()[0]
            lines.append(f"\t{name} {staging_version}" if name in staging else f"\t{line}")
    lines += [")", ""]
    return "\n".join(lines)


def go_builds() -> dict[str, GoBuild]:
    """The Go builds of the air-gapped path: ``kubernetes`` (every command of
    :data:`KUBE_COMMANDS` and agnhost), ``etcd``, ``coredns``, ``pause``, ``kindnetd``."""
    k = versions.KUBERNETES
    kube = GoBuild(
        "kubernetes", k,
        (*(f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS),
         "k8s.io/kubernetes/test/images/agnhost"),
        (*KUBE_COMMANDS, "agnhost"),
        go_mod=lambda b: kube_wrapper_go_mod(b.upstream_go_mod(KUBE_MODULE, k), k),
        ldflags=kube_ldflags(k),
    )
    return {
        "kubernetes": kube,
        "etcd": GoBuild("etcd", versions.ETCD, ("go.etcd.io/etcd/server/v3",), ("server",),
                        require=(f"go.etcd.io/etcd/server/v3@{versions.ETCD}",)),
        "coredns": GoBuild("coredns", versions.COREDNS, ("github.com/coredns/coredns",), ("coredns",),
                           require=(f"github.com/coredns/coredns@{versions.COREDNS}",)),
        "pause": GoBuild("pause", versions.PAUSE, (".",), ("pause",),
                         local_module=SRC / "pause"),
        "kindnetd": GoBuild("kindnetd", "0.1.0", ("./cmd/kindnetd",), ("kindnetd",),
                            local_module=SRC / "kindnetd"),
    }


def kubectl_go_build() -> GoBuild:
    """kubectl alone, for the official path (the rest of Kubernetes comes from the registry)."""
    k = versions.KUBERNETES
    return GoBuild(
        "kubectl", k, ("k8s.io/kubernetes/cmd/kubectl",), ("kubectl",),
        go_mod=lambda b: kube_wrapper_go_mod(b.upstream_go_mod(KUBE_MODULE, k), k),
        ldflags=kube_ldflags(k))


def component_images(builder: Builder, cni: str, bins: dict[str, Path]) -> list[str]:
    """Build every image of :func:`image_defs` from the binaries ``bins``; returns their tags."""
    tags = []
    kube_src: Path | None = None
    for d in image_defs(cni):
        files = {src: bins[src] for src, _ in d.binaries}
        if d.kube_files:
            kube_src = kube_src or builder.module_download(KUBE_MODULE, versions.KUBERNETES, "Dir")
            files.update({kube_context_name(src): kube_src / src for src, _ in d.kube_files})
        builder.docker_build(f"image-{d.name}", d.tag, d.dockerfile(), files)
        tags.append(d.tag)
    return tags


def node_base(builder: Builder, kube_bin: Path) -> None:
    """Build ``primitives.NODE_BASE_IMAGE`` (the node image without preloaded images)."""
    pkgs = " ".join(NODE_PACKAGES)
    dockerfile = f"""FROM {BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {pkgs} >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && mkdir -p /opt/cni/bin /etc/cni/net.d /kind/manifests /var/lib/kubelet /etc/kubernetes/manifests \\
 && cp -a /usr/lib/cni/. /opt/cni/bin/ \\
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
          /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
          /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
 && systemctl mask getty@tty1.service console-getty.service systemd-udevd.service \\
      systemd-udev-trigger.service systemd-modules-load.service sys-kernel-config.mount \\
      sys-kernel-debug.mount sys-kernel-tracing.mount systemd-remount-fs.service \\
      apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
COPY files/ /
RUN chmod 0755 /usr/local/bin/entrypoint \\
 && systemctl enable containerd.service kubelet.service >/dev/null 2>&1 \\
 && echo 'ReadKMsg=no' >> /etc/systemd/journald.conf
COPY bin/ /usr/bin/
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
"""  # noqa: E501 (the Dockerfile text is a cache key: keep it stable)
    files: dict[str, Path] = {"files": NODE_FILES}
    for c in ("kubeadm", "kubelet", "kubectl"):
        files[f"bin/{c}"] = kube_bin / c
    builder.docker_build("node-base", NODE_BASE_IMAGE, dockerfile, files,
                         key_extra=(tree_hash(NODE_FILES),))


def official_client(builder: Builder) -> str:
    """Our client image on the official Debian image (official sets); returns its tag."""
    client = next(d for d in image_defs() if d.name == "client")
    client = ImageDef(client.name, client.tag, (), base=OFFICIAL_DEBIAN_IMAGE,
                      packages=client.packages, cmd=client.cmd)
    builder.docker_build("image-client-official", client.tag, client.dockerfile(), {})
    return client.tag
