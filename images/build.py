"""Build every image and tool the suite needs from package registries only.

Steps run in order; each has a cache key computed from its pinned versions and input
files, and a stamp under ``<cache>/stamps``.  A step whose key matches its stamp (and
whose outputs still exist) is skipped, so a warm rebuild is a no-op in seconds.  Every
step prints its name and elapsed time; timings are appended to ``<cache>/build-times.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from images import catalog, docker, paths, versions

HERE = Path(__file__).resolve().parent
NODE_FILES = HERE / "node" / "files"
SRC = HERE / "src"
MANIFESTS = HERE / "manifests"

KUBE_COMMANDS = (
    "kubeadm", "kubelet", "kubectl", "kube-apiserver",
    "kube-controller-manager", "kube-scheduler", "kube-proxy",
)
DEBIAN_MIRROR = os.environ.get("SVCCONFORM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_IMAGE = f"svcconform/debian-base:{versions.DEBIAN_SUITE}"
NODE_BASE_IMAGE = "svcconform/kind-node-base:1"
OFFICIAL_DEBIAN_IMAGE = f"debian:{versions.DEBIAN_SUITE}-slim"
#: PATH of every image built on the Debian base (Alpine's and Debian's default)
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KUBE_MODULE = "k8s.io/kubernetes"

# Packages of the node image: systemd as PID 1, the container runtime, CNI plugins and
# the userland kubelet, kubeadm and kube-proxy call on a node (rule dumps included).
NODE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "containerd", "runc", "containernetworking-plugins",
    "iptables", "nftables", "conntrack", "ipset", "ipvsadm", "ethtool", "socat", "util-linux",
    "mount", "kmod", "iproute2", "procps", "ca-certificates", "curl", "libseccomp2", "bash",
    "e2fsprogs", "findutils", "tcpdump",
)


def log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


class heartbeat:
    """While the block runs, log ``message()`` every ``every`` seconds (long steps such as the
    Kubernetes build stay visibly alive; ``every <= 0`` disables it)."""

    def __init__(self, message: Callable[[], str], every: float) -> None:
        self.message, self.every = message, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.every):
            log(self.message())

    def __enter__(self) -> heartbeat:
        if self.every > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def sha(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def tree_hash(root: Path) -> str:
    """Content hash of every file below ``root`` (names, modes and bytes)."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(oct(f.stat().st_mode & 0o777).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        stdin: bytes | None = None, capture: bool = False, timeout: float = 3600) -> str:
    """Run a build command; on failure raise with the command and its last output lines."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        argv, cwd=cwd, env=full_env, input=stdin, capture_output=True, timeout=timeout,
        check=False,
    )
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join((out + err).strip().splitlines()[-25:])
        raise BuildError(f"{' '.join(argv[:6])}{' ...' if len(argv) > 6 else ''} failed "
                         f"(exit {proc.returncode}):\n{tail}")
    return out if capture else ""


class BuildError(Exception):
    pass


# ---------------------------------------------------------------- image definitions

@dataclass(frozen=True)
class ImageDef:
    """One image: a Dockerfile rendered from a base, packages, binaries and an entrypoint."""

    name: str
    tag: str
    binaries: tuple[tuple[str, str], ...]  # (binary in the build outputs, path in the image)
    base: str = BASE_IMAGE
    packages: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    #: (path inside the k8s.io/kubernetes module at ``versions.KUBERNETES``, path in the image):
    #: files upstream's image Dockerfiles ADD from the Kubernetes tree (e.g. agnhost's porter certs)
    kube_files: tuple[tuple[str, str], ...] = ()
    #: shell commands run (one RUN, joined with ``&&``) after the packages are installed
    commands: tuple[str, ...] = ()
    #: ports the image declares (``EXPOSE``; metadata only)
    expose: tuple[int, ...] = ()

    # Every optional part renders only when set, so the Dockerfile text (the image's cache key)
    # of an image that does not use it stays what it was.
    def dockerfile(self) -> str:
        lines = [f"FROM {self.base}" if self.base != "scratch" else "FROM scratch"]
        if self.packages:
            lines.append(
                "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                f"--no-install-recommends {' '.join(self.packages)} >/dev/null "
                "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb"
            )
        if self.base != "scratch":
            lines.append(f"ENV PATH={IMAGE_PATH}")
        if self.commands:
            lines.append("RUN " + " \\\n && ".join(self.commands))
        for src, dest in self.binaries:
            lines.append(f"COPY {src} {dest}")
        for src, dest in self.kube_files:
            lines.append(f"COPY {kube_context_name(src)} {dest}")
        if self.expose:
            lines.append("EXPOSE " + " ".join(str(p) for p in self.expose))
        if self.entrypoint:
            lines.append(f"ENTRYPOINT {json.dumps(list(self.entrypoint))}")
        if self.cmd:
            lines.append(f"CMD {json.dumps(list(self.cmd))}")
        return "\n".join(lines) + "\n"


def kube_context_name(module_path: str) -> str:
    """Where a file of the Kubernetes module sits in an image's build context."""
    return f"kubernetes/{module_path}"


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


# ---------------------------------------------------------------- go builds

@dataclass(frozen=True)
class GoBuild:
    """Commands built from Go modules in one ``go build`` (packages compile once)."""

    name: str
    version: str
    packages: tuple[str, ...]
    outputs: tuple[str, ...]  # binary names `go build` writes (after the package's last element)
    go_mod: Callable[[Builder], str] | None = None  # renders go.mod of a wrapper module
    require: tuple[str, ...] = ()  # module@version resolved with `go get`
    local_module: Path | None = None  # build from a module in this repo instead
    files: Callable[[Builder], dict[str, str]] | None = None  # extra wrapper-module files
    ldflags: str = "-s -w"
    tags: tuple[str, ...] = ()  # build tags (``go build -tags``)

    def key(self) -> str:
        local = tree_hash(self.local_module) if self.local_module else ""
        extra = (self.tags,) if self.tags else ()  # keeps the keys of tag-less builds as they were
        return sha(self.name, self.version, self.packages, self.require, self.ldflags, local,
                   "go", go_version(), *extra)


def go_version() -> str:
    try:
        return run(["go", "env", "GOVERSION"], capture=True).strip()
    except (BuildError, OSError):
        return "missing"


def helm_ldflags(version: str = versions.HELM, client_go_minor: str = versions.HELM_CLIENT_GO_MINOR) -> str:
    """Upstream's release flags: the version, and the Kubernetes version ``helm template`` and
    ``helm lint`` assume offline (its Makefile derives 1.<minor> from the client-go it builds
    with; left unset it is 1.20, which charts asking for a newer kubeVersion refuse)."""
    flags = [f"-X helm.sh/helm/v3/internal/version.version={version}"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={client_go_minor}"]
    return "-s -w " + " ".join(flags)


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


# ---------------------------------------------------------------- the builder

@dataclass
class Builder:
    cache: Path = field(default_factory=paths.cache_dir)
    force: bool = False
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)
    #: how often a running step says it is still building (seconds; 0: never)
    heartbeat_s: float = 60.0

    # -- bookkeeping
    def stamp_path(self, step: str) -> Path:
        return self.cache / "stamps" / f"{step}.json"

    def fresh(self, step: str, key: str) -> bool:
        p = self.stamp_path(step)
        if self.force or not p.exists():
            return False
        try:
            return json.loads(p.read_text()).get("key") == key
        except ValueError:
            return False

    def step(self, step: str, key: str, fn: Callable[[], None],
             outputs_ok: Callable[[], bool] = lambda: True) -> bool:
        """Run ``fn`` unless the stamp for ``step`` has ``key`` and the outputs exist."""
        if self.fresh(step, key) and outputs_ok():
            log(f"{step}: cached ({key})")
            return False
        log(f"{step}: building ... (total elapsed {self.elapsed()})")
        t0 = time.monotonic()
        with heartbeat(lambda: f"{step}: still building, {time.monotonic() - t0:.0f}s in "
                               f"(total elapsed {self.elapsed()})", self.heartbeat_s):
            fn()
        took = time.monotonic() - t0
        self.timings[step] = round(took, 1)
        p = self.stamp_path(step)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"key": key, "seconds": round(took, 1), "finished": time.time()}))
        with (self.cache / "build-times.jsonl").open("a") as fh:
            fh.write(json.dumps({"step": step, "key": key, "seconds": round(took, 1),
                                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
        log(f"{step}: done in {took:.0f}s (total elapsed {self.elapsed()})")
        return True

    def elapsed(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60}m{s % 60:02d}s"

    # -- go
    def go_env(self) -> dict[str, str]:
        return {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -trimpath", "GOTOOLCHAIN": "local"}

    def go_out(self, build: GoBuild) -> Path:
        return self.cache / "bin" / f"{build.name}-{build.version}"

    def go_build(self, build: GoBuild) -> Path:
        out = self.go_out(build)
        binaries = build.outputs

        def do() -> None:
            if shutil.which("go") is None:
                raise BuildError(
                    "go is not installed: the air-gapped build compiles from the Go module proxy")
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if build.local_module:
                moddir = build.local_module
            else:
                moddir = self.cache / "go" / f"{build.name}-{build.version}"
                moddir.mkdir(parents=True, exist_ok=True)
                if build.go_mod is not None:
                    (moddir / "go.mod").write_text(build.go_mod(self))
                elif not (moddir / "go.mod").exists():
                    (moddir / "go.mod").write_text(
                        f"module svcconform.local/{build.name}build\n\ngo 1.24.0\n")
                for fname, text in (build.files(self) if build.files else {}).items():
                    (moddir / fname).write_text(text)
                for req in build.require:
                    run(["go", "get", req], cwd=moddir, env=self.go_env())
            tags = ["-tags", ",".join(build.tags)] if build.tags else []
            run(["nice", "go", "build", *tags, "-ldflags", build.ldflags, "-o", str(tmp) + "/",
                 *build.packages], cwd=moddir, env=self.go_env())
            for b in binaries:
                if not (tmp / b).exists():
                    raise BuildError(f"go build produced no {b} in {tmp}")
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)

        self.step(f"go-{build.name}", build.key(), do,
                  lambda: all((out / b).exists() for b in binaries))
        return out

    def module_download(self, module: str, version: str, want: str) -> Path:
        """``want`` (``GoMod`` or ``Dir``) of ``module@version`` from ``go mod download``."""
        info = json.loads(run(["go", "mod", "download", "-json", f"{module}@{version}"],
                              cwd=self.cache, env={"GOFLAGS": "-mod=mod"}, capture=True))
        if want not in info:
            raise BuildError(f"go mod download {module}@{version}: {info.get('Error', info)}")
        return Path(info[want])

    def upstream_go_mod(self, module: str, version: str) -> str:
        return self.module_download(module, version, "GoMod").read_text()

    def go_builds(self, cni: str) -> dict[str, GoBuild]:
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

    # -- docker
    def docker_image_label(self, tag: str, label: str = "svcconform.key") -> str | None:
        try:
            out = run(["docker", "image", "inspect", "--format",
                       f'{{{{index .Config.Labels "{label}"}}}}', tag], capture=True)
        except BuildError:
            return None
        return out.strip()

    def docker_image_id(self, tag: str) -> str:
        return run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture=True).strip()

    def base_image(self) -> None:
        key = sha("debian-base", versions.DEBIAN_SUITE, DEBIAN_MIRROR)

        def do() -> None:
            if shutil.which("debootstrap") is None:
                log("debian-base: installing Debian's debootstrap")
                try:
                    docker.apt_install("debootstrap")
                except docker.DockerUnavailable as exc:
                    raise BuildError(str(exc)) from None
            root = self.cache / "rootfs" / f"base-{versions.DEBIAN_SUITE}"
            shutil.rmtree(root, ignore_errors=True)
            root.parent.mkdir(parents=True, exist_ok=True)
            run(["debootstrap", "--variant=minbase", versions.DEBIAN_SUITE, str(root), DEBIAN_MIRROR])
            (root / "etc/apt/sources.list").write_text(
                f"deb {DEBIAN_MIRROR} {versions.DEBIAN_SUITE} main\n"
                f"deb {DEBIAN_MIRROR} {versions.DEBIAN_SUITE}-updates main\n")
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for f in (root / junk).glob("*"):
                    if f.is_file():
                        f.unlink()
            tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            try:
                subprocess.run(["docker", "import", "--change", f"LABEL svcconform.key={key}",
                                "-", BASE_IMAGE], stdin=tar.stdout, check=True,
                               capture_output=True, timeout=900)
            finally:
                if tar.stdout:
                    tar.stdout.close()
                tar.wait()
            shutil.rmtree(root, ignore_errors=True)

        self.step("debian-base", key, do, lambda: self.docker_image_label(BASE_IMAGE) == key)

    def docker_build(self, step: str, tag: str, dockerfile: str, files: dict[str, Path],
                     key_extra: Iterable[object] = ()) -> str:
        """Build ``tag`` from ``dockerfile`` with ``files`` (name in context → source)."""
        base_id = ""
        m = re.match(r"FROM (\S+)", dockerfile)
        if m and m[1] != "scratch":
            base_id = self.docker_image_id(m[1])
        key = sha(step, tag, dockerfile, base_id, *(file_digest(p) for p in files.values()),
                  *key_extra)

        def do() -> None:
            with tempfile.TemporaryDirectory(prefix=f"svcc-{step}-") as ctx:
                for name, src in files.items():
                    dest = Path(ctx) / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if src.is_dir():
                        shutil.copytree(src, dest, symlinks=True)
                    else:
                        shutil.copy2(src, dest)
                (Path(ctx) / "Dockerfile").write_text(dockerfile)
                run(["docker", "build", "-q", "--label", f"svcconform.key={key}", "-t", tag, ctx])

        self.step(step, key, do, lambda: self.docker_image_label(tag) == key)
        return key

    def component_images(self, cni: str, bins: dict[str, Path]) -> list[str]:
        tags = []
        kube_src: Path | None = None
        for d in image_defs(cni):
            files = {src: bins[src] for src, _ in d.binaries}
            if d.kube_files:
                kube_src = kube_src or self.module_download(KUBE_MODULE, versions.KUBERNETES, "Dir")
                files.update({kube_context_name(src): kube_src / src for src, _ in d.kube_files})
            self.docker_build(f"image-{d.name}", d.tag, d.dockerfile(), files)
            tags.append(d.tag)
        return tags

    def node_base(self, kube_bin: Path) -> None:
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
        self.docker_build("node-base", NODE_BASE_IMAGE, dockerfile, files,
                          key_extra=(tree_hash(NODE_FILES),))

    def node_image(self, preload: list[str], cni_manifest: Path, *, base: str = NODE_BASE_IMAGE,
                   target: str = catalog.AIRGAPPED_NODE_IMAGE, step: str = "node-image") -> None:
        """Commit ``target``: ``base`` with ``preload`` imported into its containerd."""
        ids = [self.docker_image_id(t) for t in preload]
        key = sha("node", self.docker_image_id(base), preload, ids,
                  file_digest(cni_manifest), versions.KUBERNETES)

        def do() -> None:
            name = f"svcc-node-build-{os.getpid()}"
            if self._exists(name):
                run(["docker", "rm", "-f", name], timeout=120)
            run(["docker", "run", "-d", "--name", name, "--privileged", "--tmpfs", "/run",
                 "--tmpfs", "/tmp", "--entrypoint", "containerd", base])
            try:
                self._wait_in(name, ["ctr", "version"], what="containerd in the build container")
                run(["docker", "exec", "-i", name, "cp", "/dev/stdin", "/kind/manifests/default-cni.yaml"],
                    stdin=cni_manifest.read_bytes())
                run(["docker", "exec", "-i", name, "sh", "-c",
                     f"echo {versions.KUBERNETES} > /kind/version"])
                save = subprocess.Popen(["docker", "save", *preload], stdout=subprocess.PIPE)
                try:
                    imp = subprocess.run(
                        ["docker", "exec", "-i", name, "ctr", "--namespace=k8s.io", "images", "import",
                         "--all-platforms", "--no-unpack", "--digests", "-"],
                        stdin=save.stdout, capture_output=True, timeout=1800, check=False)
                finally:
                    if save.stdout:
                        save.stdout.close()
                    save.wait()
                if imp.returncode != 0 or save.returncode != 0:
                    raise BuildError(f"preloading images failed: {imp.stderr.decode()[-2000:]}")
                listed = run(["docker", "exec", name, "ctr", "--namespace=k8s.io", "images", "list", "-q"],
                             capture=True).split()
                missing = [t for t in preload if t not in listed and f"docker.io/{t}" not in listed]
                if missing:
                    raise BuildError(f"preloaded images missing from containerd: {missing}")
                run(["docker", "stop", "-t", "30", name])
                run(["docker", "commit",
                     "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                     "--change", "CMD []",
                     "--change", f"LABEL svcconform.key={key}",
                     name, target])
            finally:
                subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)

        self.step(step, key, do, lambda: self.docker_image_label(target) == key)

    def _exists(self, container: str) -> bool:
        probe = subprocess.run(["docker", "inspect", container], capture_output=True, check=False)
        return probe.returncode == 0

    def _wait_in(self, container: str, argv: list[str], *, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            p = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True,
                               check=False)
            if p.returncode == 0:
                return
            last = (p.stderr or p.stdout).strip()
            time.sleep(0.5)
        raise BuildError(f"timed out after {timeout:.0f}s waiting for {what}: {last}")

    # -- tools
    def tools(self, kube_bin: Path | None) -> None:
        bin_dir = paths.tools_bin()
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, module, ver, ldflags in (
            ("kind", "sigs.k8s.io/kind", versions.KIND, "-s -w"),
            ("helm", "helm.sh/helm/v3/cmd/helm", versions.HELM, helm_ldflags()),
            ("actionlint", "github.com/rhysd/actionlint/cmd/actionlint", versions.ACTIONLINT,
             f"-s -w -X github.com/rhysd/actionlint.version={versions.ACTIONLINT}"),
        ):
            key = sha(name, module, ver, ldflags, go_version())

            def install(module: str = module, ver: str = ver, ldflags: str = ldflags) -> None:
                run(["nice", "go", "install", "-ldflags", ldflags, f"{module}@{ver}"],
                    env={**self.go_env(), "GOBIN": str(bin_dir), "GOFLAGS": "-trimpath"})

            def installed(name: str = name) -> bool:
                return (bin_dir / name).exists()

            self.step(f"tool-{name}", key, install, installed)
        if kube_bin is not None:
            src = kube_bin / "kubectl"
            dest = bin_dir / "kubectl"
            if not dest.exists() or file_digest(dest) != file_digest(src):
                shutil.copy2(src, dest)
                log(f"tool-kubectl: installed {versions.KUBERNETES}")

    # -- the whole thing
    def airgapped(self, cni: str) -> None:
        builds = self.go_builds(cni)
        kube_bin = self.go_build(builds["kubernetes"])
        self.tools(kube_bin)
        bins: dict[str, Path] = {c: kube_bin / c for c in (*KUBE_COMMANDS, "agnhost")}
        for name in ("etcd", "coredns", "pause", "kindnetd"):
            out = self.go_build(builds[name])
            bins[name] = out / builds[name].outputs[0]
        self.base_image()
        preload = self.component_images(cni, bins)
        self.node_base(kube_bin)
        self.node_image(preload, MANIFESTS / "kindnet.yaml")
        from images import loadbalancer

        loadbalancer.build(self, airgapped=True)
        if cni == "flannel":
            # flannel's binaries, image and node image (kindnet's + flannel preloaded): only
            # this CNI's cells build them.
            from images import flannel

            flannel.build(self)
        if cni == "cilium":
            # Cilium's binaries, images, node image (kindnet's + Cilium's preloaded) and chart.
            from images import cilium

            cilium.build(self)


    def official(self, cni: str = "kindnet") -> None:
        """A machine with registry access: the official node and agnhost images; only our
        client image (and for flannel cells flannel's image) is built, from official Debian."""
        # The registry first: when it does not answer, say so before building anything.
        for image in (versions.OFFICIAL_NODE_IMAGE, OFFICIAL_DEBIAN_IMAGE):
            why = pull_error(image)
            if why:
                raise BuildError(
                    f"official images requested but {image} cannot be pulled ({why}); unset "
                    "SVCCONFORM_IMAGES or set it to airgapped to build every image here")
        k = versions.KUBERNETES
        kubectl = self.go_build(GoBuild(
            "kubectl", k, ("k8s.io/kubernetes/cmd/kubectl",), ("kubectl",),
            go_mod=lambda b: kube_wrapper_go_mod(b.upstream_go_mod(KUBE_MODULE, k), k),
            ldflags=kube_ldflags(k)))
        self.tools(kubectl)
        client = next(d for d in image_defs() if d.name == "client")
        client = ImageDef(client.name, client.tag, (), base=OFFICIAL_DEBIAN_IMAGE,
                          packages=client.packages, cmd=client.cmd)
        self.docker_build("image-client-official", client.tag, client.dockerfile(), {})
        from images import loadbalancer

        loadbalancer.build(self, airgapped=False)
        if cni == "flannel":
            from images import flannel

            flannel.build_image(self, base=OFFICIAL_DEBIAN_IMAGE, step="image-flannel-official")
        if cni == "cilium":
            from images import cilium

            cilium.official(self)


def pull_error(image: str, timeout: float = 900) -> str | None:
    """None when ``image`` is local or was pulled; else why not (docker's last line)."""
    local = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    if local.returncode == 0:
        return None
    try:
        p = subprocess.run(["docker", "pull", "-q", image], capture_output=True, text=True,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"docker pull {image} timed out after {timeout:.0f}s"
    if p.returncode == 0:
        return None
    lines = (p.stderr or p.stdout).strip().splitlines()
    return lines[-1] if lines else f"docker pull {image} exited {p.returncode}"


def pull(image: str, timeout: float = 900) -> bool:
    """True when ``image`` is local or could be pulled (i.e. a registry is reachable)."""
    return pull_error(image, timeout) is None


def file_digest(p: Path) -> str:
    if p.is_dir():
        return tree_hash(p)
    h = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def choose_mode(mode: str, local: set[str], can_pull: Callable[[str], bool]) -> str:
    """``airgapped`` or ``official`` for ``ensure``: the air-gapped path is a fallback.

    ``auto`` keeps an air-gapped node image already built here (refreshing it is cached
    and fast), else uses the official images when the registry answers, else builds.
    """
    if mode in ("airgapped", "official"):
        return mode
    if mode != "auto":
        raise BuildError(f"SVCCONFORM_IMAGES={mode!r} is not one of auto, airgapped, official")
    if catalog.AIRGAPPED_NODE_IMAGE in local:
        return "airgapped"
    if can_pull(versions.OFFICIAL_NODE_IMAGE):
        return "official"
    return "airgapped"


def main_build(cni: str, force: bool = False) -> int:
    b = Builder(force=force)
    try:
        mode = choose_mode(os.environ.get("SVCCONFORM_IMAGES", "auto"),
                           catalog.local_docker_images(), pull)
        log(f"mode: {mode}")
        if mode == "official":
            b.official(cni)
            log(f"official images in use ({versions.OFFICIAL_NODE_IMAGE}); nothing else to build")
            return 0
        b.airgapped(cni)
    except BuildError as exc:
        print(f"images: build failed: {exc}", file=sys.stderr)
        return 1
    log(f"air-gapped images ready in {b.elapsed()}: {catalog.AIRGAPPED_NODE_IMAGE}")
    if b.timings:
        log("step timings (s): " + ", ".join(f"{k}={v}" for k, v in b.timings.items()))
    return 0
