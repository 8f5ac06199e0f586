"""The tools the suite runs on this machine, in ``paths.tools_bin()``: kind, helm and actionlint
(``go install`` of their pinned modules) and kubectl (the one the Kubernetes build made)."""

from __future__ import annotations

import shutil
from pathlib import Path

from images import paths, versions
from images.primitives import Builder, file_digest, go_version, log, run, sha


def helm_ldflags(version: str = versions.HELM, client_go_minor: str = versions.HELM_CLIENT_GO_MINOR) -> str:
    """Upstream's release flags: the version, and the Kubernetes version ``helm template`` and
    ``helm lint`` assume offline (its Makefile derives 1.<minor> from the client-go it builds
    with; left unset it is 1.20, which charts asking for a newer kubeVersion refuse)."""
    flags = [f"-X helm.sh/helm/v3/internal/version.version={version}"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={client_go_minor}"]
    return "-s -w " + " ".join(flags)


def install(builder: Builder, kube_bin: Path | None) -> None:
    """Install kind, helm and actionlint (one keyed step each) and, when ``kube_bin`` is given,
    copy its kubectl (when it differs from the one installed)."""
    bin_dir = paths.tools_bin()
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module, ver, ldflags in (
        ("kind", "sigs.k8s.io/kind", versions.KIND, "-s -w"),
        ("helm", "helm.sh/helm/v3/cmd/helm", versions.HELM, helm_ldflags()),
        ("actionlint", "github.com/rhysd/actionlint/cmd/actionlint", versions.ACTIONLINT,
         f"-s -w -X github.com/rhysd/actionlint.version={versions.ACTIONLINT}"),
    ):
        key = sha(name, module, ver, ldflags, go_version())

        def go_install(module: str = module, ver: str = ver, ldflags: str = ldflags) -> None:
            run(["nice", "go", "install", "-ldflags", ldflags, f"{module}@{ver}"],
                env={**builder.go_env(), "GOBIN": str(bin_dir), "GOFLAGS": "-trimpath"})

        def installed(name: str = name) -> bool:
            return (bin_dir / name).exists()

        builder.step(f"tool-{name}", key, go_install, installed)
    if kube_bin is not None:
        src = kube_bin / "kubectl"
        dest = bin_dir / "kubectl"
        if not dest.exists() or file_digest(dest) != file_digest(src):
            shutil.copy2(src, dest)
            log(f"tool-kubectl: installed {versions.KUBERNETES}")
