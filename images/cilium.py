"""Cilium, built air-gapped: the agent image, the operator image, the node image and the chart.

Only ``python -m images ensure --cni cilium`` builds these, for the ``<mode>-cilium`` cells and
``cilium-kpr`` (no kube-proxy: Cilium's kube-proxy replacement).

* Source: the ``github.com/cilium/cilium`` module at :data:`versions.CILIUM` (v1.19.7: its
  documentation lists Kubernetes 1.31-1.34 and its go.mod needs go 1.25; v1.20.2 needs
  gobgp/v4 and mcs-api zips the proxy refuses, v1.19.8's .mod is refused, v1.18.x stops at
  Kubernetes 1.33).  Upstream builds with ``-mod=vendor``; the module zip carries no vendor
  tree, so a wrapper module requires every module of upstream's go.mod at upstream's version
  and keeps upstream's ``replace`` lines (:func:`wrapper_go_mod`): the dependency graph is the
  one upstream ships.
* One ``go build`` (packages compile once) of what upstream's ``build-container`` and
  ``build-container-operator-generic`` targets build: ``cilium-agent`` (``daemon``),
  ``cilium-dbg``, ``cilium-cni``, ``cilium-health`` and its responder, ``cilium-mount``,
  ``cilium-sysctlfix`` and the generic operator, with upstream's flags: ``CGO_ENABLED=0``,
  tags ``osusergo`` and ``ipam_provider_operator`` (which only selects files in
  ``operator/cmd``), and ``-X pkg/version.ciliumVersion``.
* ``catalog.CILIUM_IMAGE`` (tagged as the chart asks, ``quay.io/cilium/cilium:<version>``):
  upstream's runtime image rebuilt on our Debian base.  The agent compiles its BPF programs at
  run time with ``clang``/``llc``: Debian bookworm's clang-19/llvm-19 (19.1.7, the LLVM of
  upstream's runtime image) on PATH under those names; the ``bpf/`` sources at
  ``/var/lib/cilium/bpf`` filtered as upstream's ``install-bpf`` does; the init scripts the
  chart calls (``/init-container.sh``, ``/install-plugin.sh``, ``/cni-uninstall.sh``); the
  runtime packages of upstream's ``install-runtime-deps.sh``.  Not built: cilium-envoy (the
  cells run with ``l7Proxy=false`` and no envoy DaemonSet), hubble, bugtool.
* ``catalog.CILIUM_OPERATOR_IMAGE`` (``quay.io/cilium/operator-generic:<version>``).
* ``catalog.AIRGAPPED_CILIUM_NODE_IMAGE``: the kindnet node image plus both images preloaded.
* The Helm chart ``install/kubernetes/cilium`` from the same module, copied to
  :func:`chart_dir` for the installer (``fixtures.cni``), with registry access too.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from images import catalog, paths, versions
from images.primitives import BASE_IMAGE, MANIFESTS, Builder, BuildError, GoBuild, run, sha, tree_hash

CILIUM_MODULE = "github.com/cilium/cilium"
#: Binaries of the one ``go build``: (package below the module, binary go writes, path in the image).
AGENT_BINARIES: tuple[tuple[str, str, str], ...] = (
    ("daemon", "daemon", "/usr/bin/cilium-agent"),
    ("cilium-dbg", "cilium-dbg", "/usr/bin/cilium-dbg"),
    ("cilium-health", "cilium-health", "/usr/bin/cilium-health"),
    ("cilium-health/responder", "responder", "/usr/bin/cilium-health-responder"),
    ("tools/mount", "mount", "/usr/bin/cilium-mount"),
    ("tools/sysctlfix", "sysctlfix", "/usr/bin/cilium-sysctlfix"),
    ("plugins/cilium-cni", "cilium-cni", "/opt/cni/bin/cilium-cni"),
)
OPERATOR_BINARY: tuple[str, str, str] = ("operator", "operator", "/usr/bin/cilium-operator-generic")
BUILD_TAGS = ("osusergo", "ipam_provider_operator")
#: The scripts upstream's image carries at / (the chart's init containers and preStop hook run them).
SCRIPTS = (
    ("images/cilium/init-container.sh", "init-container.sh"),
    ("plugins/cilium-cni/install-plugin.sh", "install-plugin.sh"),
    ("plugins/cilium-cni/cni-uninstall.sh", "cni-uninstall.sh"),
)
#: Parts of bpf/ that upstream's ``install-bpf`` leaves out (Makefile.defs BPF_SRCFILES_IGNORE).
BPF_IGNORED = re.compile(
    r"^(\.gitignore|tests/|complexity-tests/|custom/|Makefile(\.bpf)?$|.*\.[is]$|\.rebuild_all$)")
#: Upstream's install-runtime-deps.sh, plus Debian's LLVM 19 and what the chart's shell
#: snippets call (nsenter, mount, grep).
AGENT_PACKAGES = (
    "clang-19", "llvm-19", "iproute2", "iptables", "ipset", "kmod", "ca-certificates",
    "util-linux", "mount", "grep", "procps",
)
CHART_SUBDIR = "install/kubernetes/cilium"


def version_ldflags(version: str = versions.CILIUM) -> str:
    """Upstream sets ``ciliumVersion`` to "<VERSION> <git hash> <git author time>" and parses
    it back by those three fields (``cilium-dbg status`` shows "v-" for fewer).  A module
    build has no git: the revision is the tag, the time the epoch (as for Kubernetes)."""
    value = f"{version.lstrip('v')} {version} 1970-01-01T00:00:00Z"
    return f"-s -w -X '{CILIUM_MODULE}/pkg/version.ciliumVersion={value}'"


def wrapper_go_mod(upstream_go_mod: str, version: str = versions.CILIUM) -> str:
    """go.mod of the module that builds Cilium's commands at ``version``.

    Every requirement of upstream's go.mod at upstream's version (so ``-mod=mod`` resolves
    the graph upstream vendors) and upstream's ``replace`` lines (its gobgp fork among them).
    Raises ValueError when upstream's go.mod has no require block (layout changed: look again).
    """
    go = re.search(r"^go (\S+)$", upstream_go_mod, re.M)
    blocks = re.findall(r"^require \((.*?)^\)", upstream_go_mod, re.M | re.S)
    if not blocks or not go:
        raise ValueError("upstream go.mod has no go line or no require block: unexpected layout")
    lines = ["module svcconform.local/ciliumbuild", "", f"go {go[1]}", "", "require (",
             f"\t{CILIUM_MODULE} {version}"]
    for block in blocks:
        for raw in block.splitlines():
            line = raw.split("//")[0].strip()
            if line:
                lines.append(f"\t{line}")
    lines += [")", ""]
    replaces = [r.strip() for r in re.findall(r"^replace (.+)$", upstream_go_mod, re.M)]
    for block in re.findall(r"^replace \((.*?)^\)", upstream_go_mod, re.M | re.S):
        replaces += [r.split("//")[0].strip() for r in block.splitlines() if r.split("//")[0].strip()]
    lines += [f"replace {r}" for r in replaces]
    return "\n".join(lines) + "\n"


def go_build() -> GoBuild:
    binaries = (*AGENT_BINARIES, OPERATOR_BINARY)
    return GoBuild(
        "cilium", versions.CILIUM,
        tuple(f"{CILIUM_MODULE}/{pkg}" for pkg, _, _ in binaries),
        tuple(out for _, out, _ in binaries),
        go_mod=lambda b: wrapper_go_mod(b.upstream_go_mod(CILIUM_MODULE, versions.CILIUM)),
        ldflags=version_ldflags(),
        tags=BUILD_TAGS,
    )


def module_dir(builder: Builder) -> Path:
    """The module's source tree in the Go module cache (downloaded when missing)."""
    info = json.loads(run(["go", "mod", "download", "-json", f"{CILIUM_MODULE}@{versions.CILIUM}"],
                          cwd=builder.cache, env={"GOFLAGS": "-mod=mod"}, capture=True))
    if "Dir" not in info:
        raise BuildError(f"go mod download {CILIUM_MODULE}@{versions.CILIUM}: {info.get('Error', info)}")
    return Path(info["Dir"])


def bpf_files(bpf_root: Path) -> list[str]:
    """The bpf/ files the agent image carries (relative paths), as upstream's install-bpf picks them."""
    return sorted(
        rel for rel in (p.relative_to(bpf_root).as_posix() for p in bpf_root.rglob("*") if p.is_file())
        if not BPF_IGNORED.match(rel)
    )


def stage_sources(builder: Builder, src: Path) -> Path:
    """bpf/ and the scripts, copied out of the read-only module cache with upstream's modes
    (once per version: a module version's files never change)."""
    stage = builder.cache / "cilium-src" / versions.CILIUM

    def do() -> None:
        shutil.rmtree(stage, ignore_errors=True)
        for rel in bpf_files(src / "bpf"):
            dest = stage / "bpf" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "bpf" / rel, dest)
            dest.chmod(0o644)
        for rel, name in SCRIPTS:
            shutil.copyfile(src / rel, stage / name)
            (stage / name).chmod(0o755)

    builder.step("cilium-sources", sha("cilium-sources", versions.CILIUM, BPF_IGNORED.pattern, SCRIPTS), do,
                 lambda: all((stage / name).is_file() for _, name in SCRIPTS) and (stage / "bpf").is_dir())
    return stage


def agent_dockerfile(base: str) -> str:
    copies = [f"COPY bin/{out} {dest}" for _, out, dest in AGENT_BINARIES]
    return "\n".join([
        f"FROM {base}",
        "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        f"--no-install-recommends {' '.join(AGENT_PACKAGES)} >/dev/null "
        "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb "
        # the agent runs `clang` and `llc` by those names
        "&& ln -s /usr/bin/clang-19 /usr/local/bin/clang && ln -s /usr/bin/llc-19 /usr/local/bin/llc",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV INITSYSTEM=SYSTEMD",
        *copies,
        # upstream's cilium-dbg install also links the old name
        "RUN ln -s cilium-dbg /usr/bin/cilium && mkdir -p /var/lib/cilium /home/cilium",
        "COPY src/bpf /var/lib/cilium/bpf",
        *(f"COPY src/{name} /{name}" for _, name in SCRIPTS),
        "WORKDIR /home/cilium",
        'CMD ["/usr/bin/cilium-dbg"]',
    ]) + "\n"


def operator_dockerfile(base: str) -> str:
    _, out, dest = OPERATOR_BINARY
    return "\n".join([
        f"FROM {base}",
        "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends ca-certificates >/dev/null "
        "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb",
        f"COPY bin/{out} {dest}",
        f'ENTRYPOINT ["{dest}"]',
    ]) + "\n"


def chart_dir() -> Path:
    """Where ``ensure --cni cilium`` puts Cilium's Helm chart (read by ``fixtures.cni``)."""
    return paths.cache_dir() / "charts" / f"cilium-{versions.CILIUM}"


def install_chart(builder: Builder, src: Path) -> Path:
    """Copy the module's chart to :func:`chart_dir` (writable, so helm may read it freely)."""
    source = src / CHART_SUBDIR
    dest = chart_dir()
    key = tree_hash(source)

    def do() -> None:
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        for p in tmp.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)

    builder.step("cilium-chart", key, do, (dest / "Chart.yaml").is_file)
    return dest


def build_images(builder: Builder, base: str | None = None) -> list[str]:
    """Build the binaries and both images; returns their tags."""
    base = base or BASE_IMAGE
    bins = builder.go_build(go_build())
    src = module_dir(builder)
    stage = stage_sources(builder, src)
    agent_files = {f"bin/{out}": bins / out for _, out, _ in AGENT_BINARIES}
    agent_files["src"] = stage
    builder.docker_build("image-cilium", catalog.CILIUM_IMAGE, agent_dockerfile(base), agent_files)
    _, out, _ = OPERATOR_BINARY
    builder.docker_build("image-cilium-operator", catalog.CILIUM_OPERATOR_IMAGE,
                         operator_dockerfile(base), {f"bin/{out}": bins / out})
    install_chart(builder, src)
    return [catalog.CILIUM_IMAGE, catalog.CILIUM_OPERATOR_IMAGE]


def build(builder: Builder) -> str:
    """Everything a Cilium cell needs, air-gapped; returns the node image's tag."""
    tags = build_images(builder)
    builder.node_image(tags, MANIFESTS / "kindnet.yaml", base=catalog.AIRGAPPED_NODE_IMAGE,
                       target=catalog.AIRGAPPED_CILIUM_NODE_IMAGE, step="node-image-cilium")
    return catalog.AIRGAPPED_CILIUM_NODE_IMAGE


def official(builder: Builder) -> None:
    """With registry access the nodes pull Cilium's own images; only the chart is needed."""
    install_chart(builder, module_dir(builder))
