"""Bring up a Docker engine that can run kind's privileged node containers.

Idempotent: a host whose Docker already works is left alone.  Only on hosts whose
capability bounding set lacks CAP_SYS_RESOURCE (privileged `runc` then fails with
"unable to apply caps: operation not permitted") is dockerd started with the
capability-filtering runtime wrapper as its default runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from images import paths

CAP_SYS_RESOURCE = 24
WRAPPER_SRC = Path(__file__).resolve().parent / "docker" / "runc-capfilter"
RUNTIME_NAME = "capfilter"
# dockerd on these machines answers `docker info` within ~2 s of starting; 60 s covers
# a first start that also initialises /var/lib/docker.
DOCKERD_START_TIMEOUT_S = 60.0


class DockerUnavailable(Exception):
    pass


def bounding_set(status: str | None = None) -> int:
    """The capability bounding set of this process (from /proc/self/status)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise DockerUnavailable("no CapBnd line in /proc/self/status")


def needs_cap_wrapper(status: str | None = None) -> bool:
    return not bounding_set(status) & (1 << CAP_SYS_RESOURCE)


def docker_info() -> dict[str, str] | None:
    """`docker info` fields we use, or None when no engine answers."""
    if shutil.which("docker") is None:
        return None
    p = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}|{{.DefaultRuntime}}"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if p.returncode != 0 or "|" not in p.stdout:
        return None
    version, runtime = p.stdout.strip().split("|", 1)
    return {"version": version, "default_runtime": runtime}


def install_wrapper() -> Path:
    """Copy the wrapper outside the clone (dockerd outlives any one checkout)."""
    dest = paths.cache_dir() / "runtime" / "runc-capfilter"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.read_bytes() != WRAPPER_SRC.read_bytes():
        tmp = dest.with_suffix(".tmp")
        shutil.copy2(WRAPPER_SRC, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    return dest


def apt_install(*packages: str) -> None:
    """Install Debian packages (the only outside source besides PyPI and the Go proxy)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DockerUnavailable(f"{', '.join(packages)} missing and cannot be installed here "
                                f"(needs root and apt-get): install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        if p.returncode != 0:
            raise DockerUnavailable(f"{' '.join(argv)} failed: {p.stderr.strip().splitlines()[-1:]}")


def install_engine() -> None:
    apt_install("docker.io")


def ensure_docker(log: Callable[[str], object] = print) -> dict[str, str]:
    """Make sure a Docker engine answers and can run privileged containers here."""
    info = docker_info()
    wrapper_needed = needs_cap_wrapper()
    if info is not None:
        if wrapper_needed and info["default_runtime"] != RUNTIME_NAME:
            raise DockerUnavailable(
                "Docker is running, but this host's capability bounding set lacks CAP_SYS_RESOURCE "
                f"and dockerd's default runtime is {info['default_runtime']!r}: privileged kind nodes "
                "will fail. Stop dockerd and run 'python -m images docker-up' to restart it with the "
                "capability-filtering runtime"
            )
        log(f"docker: engine {info['version']} running (default runtime {info['default_runtime']})")
        return info
    if shutil.which("dockerd") is None:
        log("docker: no engine installed; installing Debian's docker.io")
        install_engine()
    argv = ["dockerd"]
    if wrapper_needed:
        wrapper = install_wrapper()
        argv += ["--add-runtime", f"{RUNTIME_NAME}={wrapper}", "--default-runtime", RUNTIME_NAME]
        log(f"docker: CAP_SYS_RESOURCE missing from the bounding set; default runtime -> {wrapper}")
    log_path = paths.cache_dir() / "dockerd.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as fh:
        subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = docker_info()
        if info is not None:
            log(f"docker: dockerd {info['version']} started (log: {log_path})")
            return info
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    raise DockerUnavailable(
        f"dockerd did not answer within {DOCKERD_START_TIMEOUT_S:.0f}s: {' | '.join(tail)}")


KIND_NETWORK = "kind"
GUARD_COMMENT = "svcconform: kind nodes talk only to this machine"


def kind_bridge(network: str = KIND_NETWORK) -> str | None:
    """The Linux bridge behind a Docker network (``br-<id12>`` unless named), or None."""
    p = subprocess.run(
        ["docker", "network", "inspect", network, "--format",
         '{{.Id}} {{index .Options "com.docker.network.bridge.name"}}'],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if p.returncode != 0 or not p.stdout.strip():
        return None
    net_id, _, name = p.stdout.strip().partition(" ")
    return name if name and name != "<no value>" else f"br-{net_id[:12]}"


def guard_rule(bridge: str) -> list[str]:
    """DOCKER-USER rule: nothing from the kind network is forwarded off this machine.

    Node-to-node traffic stays on the bridge and traffic to this host goes to INPUT, so
    neither is affected; what it stops is a packet the cluster failed to translate (e.g.
    to a ClusterIP while kube-proxy's rules are gone) leaving by the host's default route.
    """
    return ["-i", bridge, "!", "-o", bridge, "-m", "comment", "--comment", GUARD_COMMENT,
            "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]


def guard_kind_network(log: Callable[[str], object] = print) -> bool:
    """Install the guard for the kind network (idempotent). False when not possible here."""
    bridge = kind_bridge()
    if bridge is None or shutil.which("iptables") is None:
        return False
    guard_kind_network_v6(bridge, log)
    return _insert_rule("iptables", "DOCKER-USER", guard_rule(bridge), log,
                        failed=f"docker: could not guard {bridge}",
                        done=f"docker: traffic from the kind network ({bridge}) is not forwarded off "
                             "this machine")


def _insert_rule(tool: str, chain: str, rule: list[str], log: Callable[[str], object], *,
                 failed: str, done: str) -> bool:
    """Insert ``rule`` first in ``chain`` unless ``tool -C`` finds it there already."""
    if subprocess.run([tool, "-C", chain, *rule], capture_output=True, check=False).returncode == 0:
        return True
    add = subprocess.run([tool, "-I", chain, "1", *rule], capture_output=True, text=True, check=False)
    if add.returncode != 0:
        log(f"{failed}: {add.stderr.strip()}")
        return False
    log(done)
    return True


def guard_rule_v6(bridge: str) -> list[str]:
    """The IPv6 twin of :func:`guard_rule`, in ip6tables' FORWARD chain: Docker may set up no
    IPv6 filtering at all (no DOCKER-USER), while the kind network has an IPv6 subnet, the
    host forwards IPv6 and may have an IPv6 default route (ipv6 and dual cells use it)."""
    return ["-i", bridge, "!", "-o", bridge, "-m", "comment", "--comment", GUARD_COMMENT,
            "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"]


def guard_kind_network_v6(bridge: str, log: Callable[[str], object] = print) -> bool:
    """Install the IPv6 guard (idempotent); False when ip6tables is missing or refuses."""
    if shutil.which("ip6tables") is None:
        return False
    return _insert_rule("ip6tables", "FORWARD", guard_rule_v6(bridge), log,
                        failed=f"docker: could not guard {bridge} for IPv6",
                        done=f"docker: IPv6 traffic from the kind network ({bridge}) is not forwarded off "
                             "this machine")
