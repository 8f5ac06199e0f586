"""`python -m images ensure|docker-up|status|registry-image|push` — the air-gapped toolchain's one
entry point."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from images import build, catalog, core, docker, paths, registry
from images.hostenv import HostEnv, ipvs_unsupported_reason
from images.primitives import Builder, BuildError, log

CNIS = ("kindnet", "calico", "cilium", "flannel")
PROXY_MODES = ("iptables", "nftables", "ipvs", "none")


def unsupported_reason(proxy_mode: str) -> str | None:
    """Why this host cannot run ``proxy_mode`` (the suite reports the same reason: the kind
    provider asks :func:`images.hostenv.ipvs_unsupported_reason` too)."""
    if proxy_mode != "ipvs":
        return None
    return ipvs_unsupported_reason(HostEnv.detect())


def image_sizes() -> dict[str, str]:
    """``repo:tag`` → Docker's human size for every local image (empty without Docker)."""
    try:
        out = subprocess.run(
            ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def cmd_status() -> int:
    sizes = image_sizes()

    def state(ref: str) -> str:
        return f"present ({sizes[ref]})" if ref in sizes else "missing"

    print(f"cache: {paths.cache_dir()}")
    for tool in ("kind", "helm", "kubectl"):
        print(f"tool {tool}: {'present' if paths.tool(tool).exists() else 'missing'} ({paths.tool(tool)})")
    for d in core.image_defs():
        print(f"image {d.tag}: {state(d.tag)}")
    for node in (catalog.AIRGAPPED_NODE_IMAGE, catalog.AIRGAPPED_FLANNEL_NODE_IMAGE,
                 catalog.AIRGAPPED_CILIUM_NODE_IMAGE):
        print(f"node image {node}: {state(node)}")
    times = paths.cache_dir() / "build-times.jsonl"
    if times.exists():
        last: dict[str, dict] = {}
        for line in times.read_text().splitlines():
            rec = json.loads(line)
            last[rec["step"]] = rec
        print("last build time per step (s): "
              + ", ".join(f"{k}={v['seconds']}" for k, v in last.items()))
    return 0


def cmd_registry_image(force: bool = False) -> int:
    docker.ensure_docker(log=log)
    b = Builder(force=force)
    try:
        tag = registry.build_image(b)
    except BuildError as exc:
        print(f"images: registry-image failed: {exc}", file=sys.stderr)
        return 1
    log(f"{tag} ready in {b.elapsed()}")
    return 0


def cmd_push(target: str, roles: list[str]) -> int:
    if docker.docker_info() is None:
        print("images: push: no Docker engine answers ('docker info' failed); run "
              "'python -m images docker-up'", file=sys.stderr)
        return 1
    try:
        registry.push(target, roles, local_images=catalog.local_docker_images())
    except registry.PushError as exc:
        print(f"images: push: {exc}", file=sys.stderr)
        return 1
    print(f"give the suite: {registry.suite_option(target)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m images", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ensure", help="build whatever the cell needs and is missing (cached)")
    e.add_argument("--cni", default="kindnet", help=f"one of {', '.join(CNIS)}")
    e.add_argument("--force", action="store_true", help="rebuild every step")
    e.add_argument("--proxy-mode", default="iptables",
                   help="the cell's kube-proxy mode: nothing is built for a mode this host cannot run")
    sub.add_parser("docker-up", help="start a Docker engine able to run kind nodes")
    sub.add_parser("status", help="what is built and how long the steps took")
    r = sub.add_parser("registry-image",
                       help=f"build {registry.REGISTRY_IMAGE}, a local registry for vendor-mode tests")
    r.add_argument("--force", action="store_true", help="rebuild every step")
    p = sub.add_parser("push", help="push the suite's pod images to REGISTRY, for --image-registry")
    p.add_argument("registry", metavar="REGISTRY", help="registry host[:port][/path], e.g. localhost:5001")
    p.add_argument("--role", action="append", default=[], metavar="ROLE",
                   help=f"push only this role's image (repeatable): {', '.join(catalog.SUITE_IMAGES)}")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "docker-up":
            docker.ensure_docker(log=log)
            return 0
        if args.cmd == "status":
            return cmd_status()
        if args.cmd == "registry-image":
            return cmd_registry_image(force=args.force)
        if args.cmd == "push":
            return cmd_push(args.registry, args.role)
        if args.cni not in CNIS:
            print(f"images: unknown CNI {args.cni!r}; valid: {', '.join(CNIS)}", file=sys.stderr)
            return 2
        if args.proxy_mode not in PROXY_MODES:
            print(f"images: unknown proxy mode {args.proxy_mode!r}; valid: {', '.join(PROXY_MODES)}",
                  file=sys.stderr)
            return 2
        unsupported = unsupported_reason(args.proxy_mode)
        if unsupported:
            log(f"{args.proxy_mode}: nothing to build, the cell cannot run on this host: {unsupported}")
            return 0
        docker.ensure_docker(log=log)
        if args.cni not in catalog.AIRGAPPED_CNIS:
            log(f"{args.cni}: no air-gapped build exists; building the common images only "
                "(the cell reports it as unsupported without a registry)")
        cni = args.cni if args.cni in catalog.AIRGAPPED_CNIS else "kindnet"
        return build.main_build(cni, force=args.force)
    except docker.DockerUnavailable as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
