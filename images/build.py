"""Build every image and tool the suite needs from package registries only: the order of steps.

The recipes say how each part is built (``images.core``: Kubernetes, the component images and
the node base; ``images.tools``; ``images.loadbalancer``; ``images.flannel``; ``images.cilium``)
and ``images.primitives`` how a step is keyed, stamped, timed and skipped when cached.  This
module only decides which recipes run, in which order, for a cell's CNI and image mode:
:func:`airgapped` builds everything here, :func:`official` only what the registry does not
serve, and :func:`main_build` picks the mode (:func:`choose_mode`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from images import catalog, cilium, core, flannel, loadbalancer, tools, versions
from images.primitives import MANIFESTS, OFFICIAL_DEBIAN_IMAGE, Builder, BuildError, log, pull, pull_error


def airgapped(b: Builder, cni: str) -> None:
    """Everything a ``cni`` cell needs, built here: the kindnet node image always, and the
    CNI's own images and node image for flannel and cilium."""
    builds = core.go_builds()
    kube_bin = b.go_build(builds["kubernetes"])
    tools.install(b, kube_bin)
    bins: dict[str, Path] = {c: kube_bin / c for c in (*core.KUBE_COMMANDS, "agnhost")}
    for name in ("etcd", "coredns", "pause", "kindnetd"):
        out = b.go_build(builds[name])
        bins[name] = out / builds[name].outputs[0]
    b.base_image()
    preload = core.component_images(b, cni, bins)
    core.node_base(b, kube_bin)
    b.node_image(preload, MANIFESTS / "kindnet.yaml")
    loadbalancer.build(b, airgapped=True)
    if cni == "flannel":
        # flannel's binaries, image and node image (kindnet's + flannel preloaded): only
        # this CNI's cells build them.
        flannel.build(b)
    if cni == "cilium":
        # Cilium's binaries, images, node image (kindnet's + Cilium's preloaded) and chart.
        cilium.build(b)


def official(b: Builder, cni: str = "kindnet") -> None:
    """A machine with registry access: the official node and agnhost images; only our
    client image (and for flannel cells flannel's image) is built, from official Debian."""
    # The registry first: when it does not answer, say so before building anything.
    for image in (versions.OFFICIAL_NODE_IMAGE, OFFICIAL_DEBIAN_IMAGE):
        why = pull_error(image)
        if why:
            raise BuildError(
                f"official images requested but {image} cannot be pulled ({why}); unset "
                "SVCCONFORM_IMAGES or set it to airgapped to build every image here")
    kubectl = b.go_build(core.kubectl_go_build())
    tools.install(b, kubectl)
    core.official_client(b)
    loadbalancer.build(b, airgapped=False)
    if cni == "flannel":
        flannel.build_image(b, base=OFFICIAL_DEBIAN_IMAGE, step="image-flannel-official")
    if cni == "cilium":
        cilium.official(b)


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
            official(b, cni)
            log(f"official images in use ({versions.OFFICIAL_NODE_IMAGE}); nothing else to build")
            return 0
        airgapped(b, cni)
    except BuildError as exc:
        print(f"images: build failed: {exc}", file=sys.stderr)
        return 1
    log(f"air-gapped images ready in {b.elapsed()}: {catalog.AIRGAPPED_NODE_IMAGE}")
    if b.timings:
        log("step timings (s): " + ", ".join(f"{k}={v}" for k, v in b.timings.items()))
    return 0
