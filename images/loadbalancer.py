"""LoadBalancer Services for kind: cloud-provider-kind and the proxy image it runs per Service.

* ``cloud-provider-kind`` (``sigs.k8s.io/cloud-provider-kind`` at
  ``versions.CLOUD_PROVIDER_KIND``), built from ``images/src/cloud-provider-kind``: upstream's
  command unchanged except that ``SVCCONFORM_LB_PROXY_IMAGE`` may name the proxy image (upstream
  only lets the registry of ``envoyproxy/envoy:v1.33.2`` change).  Installed next to kind and
  helm in the tools directory; the suite starts it on this machine for the LoadBalancer checks
  (``fixtures/loadbalancer.py``).
* ``catalog.LB_PROXY_IMAGE``: Debian with Python, PyYAML, bash and ``images/lbproxy/envoy_subset.py``
  installed as ``envoy``.  Envoy cannot be built from PyPI, Debian or the Go module proxy and no
  registry serves its image; the program implements the part of envoy's file-based xDS that
  cloud-provider-kind writes (its docstring lists it).  With registry access (official images)
  upstream's envoy image is used instead and this image is not built.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from images import catalog, paths, versions
from images.primitives import BASE_IMAGE, SRC, Builder, GoBuild, file_digest, log

HERE = Path(__file__).resolve().parent
PROXY_SOURCE = HERE / "lbproxy" / "envoy_subset.py"
CCM_NAME = "cloud-provider-kind"


def go_build() -> GoBuild:
    return GoBuild(CCM_NAME, versions.CLOUD_PROVIDER_KIND, (".",), (CCM_NAME,),
                   local_module=SRC / CCM_NAME)


def proxy_dockerfile(base: str) -> str:
    """The proxy image: what cloud-provider-kind's container command needs (bash, cp, chmod,
    mv, a writable /home/envoy) and ``envoy`` = our program."""
    return (
        f"FROM {base}\n"
        "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends python3 python3-yaml bash coreutils >/dev/null "
        "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb && mkdir -p /home/envoy\n"
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "COPY envoy_subset.py /usr/local/bin/envoy\n"
        "RUN chmod 0755 /usr/local/bin/envoy && envoy --version\n"
        "WORKDIR /home/envoy\n"
    )


def install_ccm(builder: Builder) -> Path:
    """Build cloud-provider-kind and copy it into the tools directory; returns its path."""
    out = builder.go_build(go_build()) / CCM_NAME
    dest = paths.tools_bin() / CCM_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or file_digest(dest) != file_digest(out):
        shutil.copy2(out, dest)
        log(f"tool-{CCM_NAME}: installed {versions.CLOUD_PROVIDER_KIND}")
    return dest


def build(builder: Builder, airgapped: bool, base: str | None = None) -> None:
    """cloud-provider-kind always; the proxy image only for air-gapped image sets."""
    install_ccm(builder)
    if airgapped:
        builder.docker_build("image-lb-proxy", catalog.LB_PROXY_IMAGE, proxy_dockerfile(base or BASE_IMAGE),
                             {"envoy_subset.py": PROXY_SOURCE})
