"""Which images a cell uses: the air-gapped ones built here, or the official ones.

The suite never forks on this: both sets have the same shape, the air-gapped images are
tagged with the very names their consumers ask for (kubeadm's image list, our charts),
and only what differs is carried in :class:`ImageSet` (node image, kubeadm patches,
images to side-load into kind).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from images import versions

AGNHOST_IMAGE = f"registry.k8s.io/e2e-test-images/agnhost:{versions.AGNHOST}"
CLIENT_IMAGE = "svcconform/client:1"
KINDNETD_IMAGE = "svcconform/kindnetd:0.1.0"
AIRGAPPED_NODE_IMAGE = f"svcconform/kind-node:{versions.KUBERNETES}"
FLANNEL_IMAGE = f"svcconform/flannel:{versions.FLANNEL}"
#: The kindnet node image plus FLANNEL_IMAGE preloaded (``python -m images ensure --cni flannel``).
AIRGAPPED_FLANNEL_NODE_IMAGE = f"{AIRGAPPED_NODE_IMAGE}-flannel"
#: Cilium's agent and generic operator, tagged as its chart asks (images/cilium.py builds them
#: air-gapped; with registry access the nodes pull the official ones).
CILIUM_IMAGE = f"quay.io/cilium/cilium:{versions.CILIUM}"
CILIUM_OPERATOR_IMAGE = f"quay.io/cilium/operator-generic:{versions.CILIUM}"
#: The kindnet node image plus both Cilium images preloaded (``python -m images ensure --cni cilium``).
AIRGAPPED_CILIUM_NODE_IMAGE = f"{AIRGAPPED_NODE_IMAGE}-cilium"
#: The per-Service load-balancer container cloud-provider-kind runs, air-gapped: our
#: envoy-config-compatible proxy (images/loadbalancer.py).  Official sets use upstream's envoy.
LB_PROXY_IMAGE = "svcconform/lb-proxy:1"

#: The images the suite's own pods run, by chart value (``images.<role>`` in both charts).
SUITE_IMAGES: dict[str, str] = {"agnhost": AGNHOST_IMAGE, "client": CLIENT_IMAGE}


def relocate(ref: str, registry: str) -> str:
    """``ref`` moved under ``registry`` (a host, optionally with a path): its own registry
    host is replaced, Docker Hub's implicit one included.

    ``relocate("registry.k8s.io/e2e-test-images/agnhost:2.56", "localhost:5000")`` is
    ``localhost:5000/e2e-test-images/agnhost:2.56``; ``svcconform/client:1`` becomes
    ``localhost:5000/svcconform/client:1``.
    """
    registry = registry.strip().rstrip("/")
    if not registry:
        raise ValueError("an empty registry name")
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        ref = rest
    return f"{registry}/{ref}"


def suite_images(registry: str | None = None, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Role → image for the suite's pods: the defaults, moved under ``registry`` when given,
    then exact ``overrides`` (role → image) on top.  Unknown roles raise ``ValueError``."""
    images = {role: relocate(ref, registry) if registry else ref for role, ref in SUITE_IMAGES.items()}
    for role, ref in (overrides or {}).items():
        if role not in SUITE_IMAGES:
            raise ValueError(f"unknown image role {role!r}; roles: {', '.join(SUITE_IMAGES)}")
        images[role] = ref
    return images


# kubeadm v1.34 defaults to CoreDNS v1.12.1, which cannot be built here; the node image
# carries the CoreDNS we built, and kubeadm is told to use that tag.
COREDNS_PATCH = f"kind: ClusterConfiguration\ndns:\n  imageTag: {versions.COREDNS}\n"

#: CNIs whose images the air-gapped toolchain can build (kindnet: our own daemon).
AIRGAPPED_CNIS = ("kindnet", "flannel", "cilium")


#: Why a CNI's images cannot be built here, for the ``unsupported`` reason (measured with the
#: commands quoted; re-check when the module proxy changes).
UNBUILDABLE_CNIS: dict[str, str] = {
    "calico": (
        "Calico cannot be built from the Go module proxy: its release versions are refused "
        "('go mod download github.com/projectcalico/calico@v3.30.0' -> 403 Forbidden, likewise "
        "v3.29.3 and v3.31.0), and the one version it serves (@latest = "
        "v1.11.0-cni-plugin.0.20250813170300-a0db560f0520, a v3.28 branch) replaces "
        "github.com/projectcalico/api with ./api, a nested module missing from the zip, while "
        "github.com/projectcalico/api itself is refused (403)"
    ),
}


class ImagesMissing(Exception):
    """No usable node image: neither built locally nor available from a registry."""


@dataclass(frozen=True)
class ImageSet:
    node_image: str
    agnhost_image: str
    client_image: str
    kubeadm_patches: tuple[str, ...]
    airgapped: bool
    #: images that exist only in the local Docker engine and must be loaded into kind nodes
    load_images: tuple[str, ...] = ()
    #: (cni, node image) for CNIs whose cells boot from their own node image
    cni_node_images: tuple[tuple[str, str], ...] = ()
    #: (cni, images) that cells with that CNI also load into their nodes
    cni_load_images: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: the image cloud-provider-kind runs per LoadBalancer Service; None: its default (envoy)
    lb_proxy_image: str | None = None

    def node_image_for(self, cni: str) -> str:
        """The node image a cell with ``cni`` boots from."""
        return dict(self.cni_node_images).get(cni, self.node_image)

    def load_images_for(self, cni: str) -> tuple[str, ...]:
        """Local Docker images a cell with ``cni`` loads into its kind nodes."""
        return self.load_images + dict(self.cni_load_images).get(cni, ())

    def cni_unsupported_reason(self, cni: str) -> str | None:
        """Why ``cni`` cannot run with this image set, or None when it can."""
        if self.airgapped and cni not in AIRGAPPED_CNIS:
            why = UNBUILDABLE_CNIS.get(cni)
            return (
                f"{cni} images are unavailable: no container registry is reachable and the "
                f"air-gapped toolchain builds only {', '.join(AIRGAPPED_CNIS)}" + (f"; {why}" if why else "")
            )
        return None


AIRGAPPED = ImageSet(
    node_image=AIRGAPPED_NODE_IMAGE,
    agnhost_image=AGNHOST_IMAGE,
    client_image=CLIENT_IMAGE,
    kubeadm_patches=(COREDNS_PATCH,),
    airgapped=True,
    cni_node_images=(("flannel", AIRGAPPED_FLANNEL_NODE_IMAGE), ("cilium", AIRGAPPED_CILIUM_NODE_IMAGE)),
    lb_proxy_image=LB_PROXY_IMAGE,
)

# With registry access the official node image is used; our client image (and flannel's, for
# flannel cells) are still built here, from the official Debian image, and side-loaded.
OFFICIAL = ImageSet(
    node_image=versions.OFFICIAL_NODE_IMAGE,
    agnhost_image=AGNHOST_IMAGE,
    client_image=CLIENT_IMAGE,
    kubeadm_patches=(),
    airgapped=False,
    load_images=(CLIENT_IMAGE,),
    cni_load_images=(("flannel", (FLANNEL_IMAGE,)),),
)


def local_docker_images() -> set[str]:
    """Every image in the local Docker engine as ``repo:tag`` and, when it came from a
    registry, ``repo@digest`` (empty if Docker is absent)."""
    docker = shutil.which("docker")
    if not docker:
        return set()
    try:
        out = subprocess.run(
            [docker, "image", "ls", "--digests", "--format",
             "{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {ref for ref in out.split() if not ref.endswith((":<none>", "@<none>"))}


def is_present(ref: str, local_images: set[str]) -> bool:
    """Whether image ``ref`` is among ``local_images`` (see :func:`local_docker_images`).

    A digest-pinned ``repo:tag@sha256:…`` is present only at that digest: a local tag
    pointing at another build does not count.
    """
    name, _, digest = ref.partition("@")
    if digest:
        repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        return f"{repo}@{digest}" in local_images
    return ref in local_images


def resolve(local_images: set[str] | None = None, mode: str | None = None) -> ImageSet:
    """The image set to use.

    ``mode`` (default ``$SVCCONFORM_IMAGES`` or ``auto``): ``airgapped`` or ``official``
    force a set; ``auto`` prefers the air-gapped node image when it was built here, then
    an official node image already pulled.  Raises :class:`ImagesMissing` when neither is
    present (run ``tox -e images``).
    """
    mode = mode or os.environ.get("SVCCONFORM_IMAGES", "auto")
    if mode not in ("auto", "airgapped", "official"):
        raise ImagesMissing(f"SVCCONFORM_IMAGES={mode!r} is not one of auto, airgapped, official")
    if mode == "airgapped":
        return AIRGAPPED
    if mode == "official":
        return OFFICIAL
    images = local_docker_images() if local_images is None else local_images
    if AIRGAPPED.node_image in images:
        return AIRGAPPED
    if is_present(OFFICIAL.node_image, images):
        return OFFICIAL
    raise ImagesMissing(
        f"no kind node image: neither {AIRGAPPED.node_image} nor {OFFICIAL.node_image} is in "
        "the local Docker engine; run 'tox -e images'"
    )
