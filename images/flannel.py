"""flannel, built air-gapped: the ``flanneld`` daemon, its CNI plugin and the image holding both.

Only ``python -m images ensure --cni flannel`` builds these (see ``images.build.airgapped``), so a
kindnet cell never pays for them.  The result is a second node image,
``catalog.AIRGAPPED_FLANNEL_NODE_IMAGE``: the kindnet node image plus ``catalog.FLANNEL_IMAGE``
preloaded into containerd, so creating a flannel cluster pulls nothing.

* ``flanneld`` (``github.com/flannel-io/flannel`` at ``versions.FLANNEL``; its go.mod has no
  replace directives).  Its ``main`` package blank-imports every backend; two of them cannot
  be built here: ``tencentvpc`` needs ``tencentcloud-sdk-go`` modules the proxy refuses (403),
  and ``udp`` needs cgo (its C proxy).  We compile upstream's own ``main.go`` in a wrapper
  module with those two imports removed (:func:`patched_main`); the vxlan backend the suite
  uses, and host-gw/ipip/ipsec/wireguard/extension, are untouched.  The version variable is
  set with ``-X .../pkg/version.Version`` as upstream's Makefile does.
* the ``flannel`` CNI plugin: ``github.com/flannel-io/cni-plugin`` is not on the module proxy,
  but ``github.com/containernetworking/plugins@versions.FLANNEL_CNI_PLUGINS`` still carries
  ``plugins/meta/flannel`` (the same plugin before it moved).  It delegates to the node
  image's Debian ``bridge``/``host-local``/``portmap`` plugins; it speaks CNI spec up to 0.4.0,
  hence ``cniVersion: 0.3.1`` in ``manifests/flannel.yaml``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from images import catalog, versions
from images.primitives import BASE_IMAGE, MANIFESTS, Builder, BuildError, GoBuild, ImageDef, run

FLANNEL_MODULE = "github.com/flannel-io/flannel"
CNI_PLUGINS_MODULE = "github.com/containernetworking/plugins"
#: Backends dropped from flanneld's ``main.go`` (see the module docstring for why).
DROPPED_BACKENDS = ("tencentvpc", "udp")
#: Where the image keeps the binaries (the manifest's init container copies the plugin).
FLANNELD_PATH = "/opt/bin/flanneld"
CNI_PLUGIN_PATH = "/opt/bin/flannel-cni"
MANIFEST = Path(__file__).resolve().parent / "manifests" / "flannel.yaml"


def patched_main(upstream_main: str, dropped: tuple[str, ...] = DROPPED_BACKENDS) -> str:
    """Upstream ``main.go`` without the blank imports of the ``dropped`` backends.

    Raises ValueError when an import to drop is not there (upstream changed its layout: look
    again rather than silently building something else).
    """
    out = upstream_main
    for backend in dropped:
        pattern = re.compile(
            rf'^\s*_\s+"{re.escape(FLANNEL_MODULE)}/pkg/backend/{re.escape(backend)}"\s*\n', re.M
        )
        out, n = pattern.subn("", out)
        if n != 1:
            raise ValueError(f"flannel main.go has {n} blank imports of backend {backend!r}, expected 1")
    return out


def wrapper_go_mod(version: str = versions.FLANNEL) -> str:
    """go.mod of the module that compiles the patched ``main.go`` against flannel ``version``.

    Its path ends in ``flanneld`` so ``go build .`` names the binary that.

    No ``go get``: resolving the upstream root package would fetch the refused tencentcloud
    modules.  ``go build -mod=mod`` completes the requirements from flannel's go.mod for the
    packages actually imported.
    """
    return (
        "module svcconform.local/flanneld\n\n"
        "go 1.26.0\n\n"
        f"require {FLANNEL_MODULE} {version}\n"
    )


def version_ldflags(version: str = versions.FLANNEL) -> str:
    return f"-s -w -X {FLANNEL_MODULE}/pkg/version.Version={version}"


def go_builds() -> dict[str, GoBuild]:
    return {
        "flanneld": GoBuild(
            "flanneld", versions.FLANNEL, (".",), ("flanneld",),
            go_mod=lambda b: wrapper_go_mod(),
            files=lambda b: {"main.go": patched_main(upstream_main(b))},
            ldflags=version_ldflags(),
        ),
        "flannel-cni": GoBuild(
            "flannel-cni", versions.FLANNEL_CNI_PLUGINS,
            (f"{CNI_PLUGINS_MODULE}/plugins/meta/flannel",), ("flannel",),
            require=(f"{CNI_PLUGINS_MODULE}@{versions.FLANNEL_CNI_PLUGINS}",),
        ),
    }


def upstream_main(builder: Builder) -> str:
    """flannel's ``main.go`` at the pinned version, from the Go module cache."""
    info = json.loads(run(["go", "mod", "download", "-json", f"{FLANNEL_MODULE}@{versions.FLANNEL}"],
                          cwd=builder.cache, env={"GOFLAGS": "-mod=mod"}, capture=True))
    if "Dir" not in info:
        raise BuildError(f"go mod download {FLANNEL_MODULE}@{versions.FLANNEL}: {info.get('Error', info)}")
    return (Path(info["Dir"]) / "main.go").read_text()


def image_def(base: str | None = None) -> ImageDef:
    """``svcconform/flannel:<FLANNEL>``: Debian with the userland flanneld calls (iptables and
    nftables for masquerading and forwarding rules, iproute2), ``flanneld`` and the plugin.
    ``base``: the Debian image to start from (default: our debootstrapped one)."""
    return ImageDef(
        "flannel", catalog.FLANNEL_IMAGE,
        (("flanneld", FLANNELD_PATH), ("flannel-cni", CNI_PLUGIN_PATH)),
        packages=("iptables", "nftables", "iproute2", "ca-certificates"),
        entrypoint=(FLANNELD_PATH,),
        base=base or BASE_IMAGE,
    )


def build_image(builder: Builder, base: str | None = None, step: str = "image-flannel") -> str:
    """Build flannel's binaries and ``catalog.FLANNEL_IMAGE`` on ``base``; returns its tag."""
    builds = go_builds()
    daemon = builder.go_build(builds["flanneld"]) / "flanneld"
    plugin = builder.go_build(builds["flannel-cni"]) / "flannel"
    d = image_def(base)
    builder.docker_build(step, d.tag, d.dockerfile(), {"flanneld": daemon, "flannel-cni": plugin})
    return d.tag


def build(builder: Builder) -> str:
    """Build flannel's binaries and image, then the flannel node image; returns its tag."""
    tag = build_image(builder)
    builder.node_image([tag], MANIFESTS / "kindnet.yaml", base=catalog.AIRGAPPED_NODE_IMAGE,
                       target=catalog.AIRGAPPED_FLANNEL_NODE_IMAGE, step="node-image-flannel")
    return catalog.AIRGAPPED_FLANNEL_NODE_IMAGE
