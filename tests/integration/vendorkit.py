"""The vendor-mode harness: a managed cluster simulated on this machine.

On a managed cluster the machine running the suite reaches the API server and nothing else:
no node address, no Docker engine holding the nodes, no preloaded test images; the suite's
pod images come from a registry the user names.  Each piece here takes one of those away
from a local kind cluster, or supplies the registry:

* :func:`start_registry` / :func:`stop_registry`: ``svcconform/registry`` (``python -m images
  registry-image``) on the kind network, published on ``127.0.0.1:<port>`` only;
* :func:`configure_nodes_for_registry`: a containerd ``hosts.toml`` in every node so that
  ``localhost:<port>/...`` is pulled from that container over plain HTTP (kind's documented
  local-registry pattern; the node image's containerd reads ``/etc/containerd/certs.d``);
* :func:`remove_preloaded_suite_images`: ``catalog.SUITE_IMAGES`` removed from every node's
  containerd (``ctr images rm`` of every reference: the node image has no crictl), so every
  suite pod has to pull;
* :class:`ExternalLoadBalancer`: a LoadBalancer implementation outside the suite, as a cloud
  controller runs: cloud-provider-kind on this machine (it serves every kind cluster here);
* :class:`ApiOnlyRunner`: a network namespace with only a loopback interface, where
  ``127.0.0.1:<apiport>`` is forwarded (``apiforward.py``, through a unix socket on the
  filesystem) to the kind API server published on the host's ``127.0.0.1:<apiport>`` —
  the kubeconfig stays valid unchanged — and where ``DOCKER_HOST`` points nowhere.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import yaml

from fixtures.poll import wait_until
from images import catalog, paths
from images.registry import REGISTRY_IMAGE, REGISTRY_PORT

ROOT = Path(__file__).resolve().parents[2]
FORWARDER = Path(__file__).resolve().parent / "apiforward.py"
KIND_NETWORK = "kind"
REGISTRY_NAME = "svcc-registry"
CERTS_D = "/etc/containerd/certs.d"
#: The containerd namespace the kubelet's images live in (the CRI plugin's).
CRI_NAMESPACE = "k8s.io"
#: What the runner's Docker client is pointed at: no engine, so no node container is visible.
NO_DOCKER_HOST = "unix:///nonexistent/docker.sock"
CREATED_BY = "app.kubernetes.io/created-by=svcconform"

#: docker run/rm/exec, crictl and ip commands answer within seconds; a loaded 2-core
#: machine (a Kubernetes build beside) has been seen taking ~20 s for a `docker run`.
DOCKER_TIMEOUT_S = 120
#: The registry answers /v2/ within a second of its container starting.
REGISTRY_READY_TIMEOUT_S = 30
#: A forwarder prints "ready" as soon as it listens (python start-up, ~0.1 s; 10 s when loaded).
FORWARDER_READY_TIMEOUT_S = 10
#: A TCP connect from the namespace: refused or unreachable at once, or never (then this).
CONNECT_TIMEOUT_S = 3


#: `python -m images registry-image` (a cold Go build of the registry: ~1 min on 2 cores,
#: 10 min leaves room for the module download on a slow link) and `python -m images push`
#: (two images to a registry on loopback: seconds).
IMAGES_CMD_TIMEOUT_S = 600


class HarnessError(Exception):
    """A harness step failed; the message names the command and its output."""


def sh(argv: Sequence[str], *, timeout: float = DOCKER_TIMEOUT_S, check: bool = True,
       stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a host command, capturing its output; ``check`` raises :class:`HarnessError` on failure."""
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def images_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m images ARGS`` from the repository; a failure fails the calling test with its output."""
    proc = subprocess.run([sys.executable, "-m", "images", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=IMAGES_CMD_TIMEOUT_S, check=False)
    assert proc.returncode == 0, (f"python -m images {' '.join(args)} failed:\n"
                                  f"{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return proc


def free_loopback_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Registry:
    name: str
    host_port: int
    network: str

    @property
    def host(self) -> str:
        """How this machine's Docker and the nodes' containerd name it (``--image-registry``)."""
        return f"localhost:{self.host_port}"

    @property
    def server(self) -> str:
        """Where the nodes really fetch from: the container, by name, on the kind network."""
        return f"http://{self.name}:{REGISTRY_PORT}"


def registry_answers(port: int) -> tuple[bool, str]:
    """``GET /v2/`` on ``127.0.0.1:port`` (the Distribution API's version check)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5) as resp:
            return resp.status == 200, f"/v2/ answered {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"/v2/ answered {exc.code}"
    except OSError as exc:
        return False, f"/v2/: {exc}"


def start_registry(network: str = KIND_NETWORK, name: str = REGISTRY_NAME, host_port: int | None = None,
                   image: str = REGISTRY_IMAGE) -> Registry:
    """Run ``image`` as container ``name`` on ``network``, published on ``127.0.0.1:host_port``
    only (a free port when None); wait until it answers.  A container of that name is
    replaced.  The image is built by ``python -m images registry-image``."""
    if sh(["docker", "image", "inspect", image], check=False).returncode != 0:
        raise HarnessError(f"{image} is not built: run 'python -m images registry-image'")
    port = host_port or free_loopback_port()
    stop_registry(name)
    sh(["docker", "run", "-d", "--name", name, "--network", network, "--label", CREATED_BY,
        "-p", f"127.0.0.1:{port}:{REGISTRY_PORT}", image])
    wait_until(lambda: registry_answers(port), timeout=REGISTRY_READY_TIMEOUT_S, interval=0.5,
               what=f"registry {name} to answer on 127.0.0.1:{port}")
    return Registry(name, port, network)


def stop_registry(name: str = REGISTRY_NAME) -> None:
    """Remove the registry container and its storage (absent is fine)."""
    sh(["docker", "rm", "-f", "-v", name], check=False)


# ---------------------------------------------------------------- the nodes

def hosts_toml(server: str) -> str:
    """containerd's per-registry hosts file: fetch from ``server`` (plain HTTP allowed when its
    scheme is http), for pulls only."""
    return (f'server = "{server}"\n\n'
            f'[host."{server}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


def configure_nodes_for_registry(nodes: Iterable[str], registry_host: str,
                                 server: str = f"http://{REGISTRY_NAME}:{REGISTRY_PORT}") -> None:
    """Write ``/etc/containerd/certs.d/<registry_host>/hosts.toml`` in every node container, so
    images named ``<registry_host>/...`` are pulled from ``server``.  containerd reads the file
    at each pull: no restart."""
    directory = f"{CERTS_D}/{registry_host}"
    for node in nodes:
        sh(["docker", "exec", "-i", node, "sh", "-c",
            f"mkdir -p '{directory}' && cat > '{directory}/hosts.toml'"], stdin=hosts_toml(server))


def normalize_ref(ref: str) -> str:
    """``ref`` as containerd lists it: Docker Hub names get ``docker.io/`` (and ``library/``)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if sep else f"docker.io/library/{ref}"


def ctr(node: str, *args: str, timeout: float = DOCKER_TIMEOUT_S, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """``ctr`` in the kubelet's containerd namespace of ``node`` (the node image has no crictl)."""
    return sh(["docker", "exec", node, "ctr", "--namespace", CRI_NAMESPACE, *args], timeout=timeout, check=check)


def parse_ctr_images(text: str) -> dict[str, str]:
    """``ctr images ls`` → ref → manifest digest (pure).  The CRI plugin lists each image under
    its tag, its ``repo@digest`` and its ID (``sha256:<config>``), all with the same digest."""
    refs = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[2].startswith("sha256:"):
            refs[fields[0]] = fields[2]
    return refs


def node_images(node: str) -> dict[str, str]:
    """Every image reference the node's kubelet can use → its manifest digest."""
    return parse_ctr_images(ctr(node, "images", "ls").stdout)


def refs_to_remove(images: Mapping[str, str], wanted: Iterable[str]) -> list[str]:
    """Every reference of the images ``wanted`` names (tag, digest and ID refs), pure."""
    digests = {images[ref] for ref in wanted if ref in images}
    return sorted(ref for ref, digest in images.items() if digest in digests)


def remove_preloaded_suite_images(nodes: Iterable[str],
                                  images: Iterable[str] = tuple(catalog.SUITE_IMAGES.values())
                                  ) -> dict[str, list[str]]:
    """Remove ``images`` (every reference to them: tag, digest, ID) from every node's
    containerd, as ``crictl rmi`` would; node → references removed.  Raises when one is
    still there afterwards."""
    wanted = [normalize_ref(ref) for ref in images]
    removed: dict[str, list[str]] = {}
    for node in nodes:
        refs = refs_to_remove(node_images(node), wanted)
        if refs:
            ctr(node, "images", "rm", *refs)
        left = [ref for ref in wanted if ref in node_images(node)]
        if left:
            raise HarnessError(f"node {node} still holds {', '.join(left)} after ctr images rm")
        removed[node] = refs
    return removed


def node_pull(node: str, ref: str) -> subprocess.CompletedProcess[str]:
    """Pull ``ref`` in ``node`` through the same hosts files the kubelet's pulls use; never raises."""
    return ctr(node, "images", "pull", "--hosts-dir", CERTS_D, ref, timeout=300, check=False)


# ---------------------------------------------------------------- a load balancer outside the suite

#: cloud-provider-kind stays up once its flags and Docker were accepted (it exits at once otherwise).
LB_STARTUP_GRACE_S = 2
#: It stops (and removes its proxy containers) within seconds of SIGTERM.
LB_STOP_TIMEOUT_S = 60


class ExternalLoadBalancer:
    """cloud-provider-kind run by the harness, not by the suite: to the suite under test it is
    the cluster's own LoadBalancer implementation (it writes ``status.loadBalancer.ingress``),
    reachable only through the cluster.  Its log goes to ``log_path``."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.binary = paths.tools_bin() / "cloud-provider-kind"
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="svcc-lb-")) / "cloud-provider-kind.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ExternalLoadBalancer:
        if not self.binary.exists():
            raise HarnessError(f"{self.binary} is not built: run 'python -m images ensure'")
        env = dict(os.environ)
        proxy = catalog.resolve().lb_proxy_image
        if proxy:
            env["SVCCONFORM_LB_PROXY_IMAGE"] = proxy
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--gateway-channel", "disabled", "--enable-default-ingress=false", "-v", "2"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = self.proc.wait(timeout=LB_STARTUP_GRACE_S)
        except subprocess.TimeoutExpired:
            return self
        raise HarnessError(f"cloud-provider-kind exited with {code} at start: "
                           f"{self.log_path.read_text(errors='replace')[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=LB_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


# ---------------------------------------------------------------- the API-only runner

def api_server_address(kubeconfig: Path) -> tuple[str, int]:
    """``(host, port)`` of the current context's API server (kind: ``127.0.0.1:<random>``)."""
    config = yaml.safe_load(kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
    current = config.get("current-context") or next(iter(contexts), "")
    if current not in contexts:
        raise HarnessError(f"{kubeconfig}: no current context")
    url = urlsplit(clusters[contexts[current]["cluster"]]["server"])
    if not url.hostname or not url.port:
        raise HarnessError(f"{kubeconfig}: server {url.geturl()} has no host:port")
    return url.hostname, url.port


def _wait_ready(proc: subprocess.Popen[str], what: str) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], FORWARDER_READY_TIMEOUT_S)
    line = proc.stdout.readline().strip() if ready else ""
    if line != "ready":
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise HarnessError(f"{what} did not start within {FORWARDER_READY_TIMEOUT_S}s "
                           f"(said {line!r}): {err.strip()[-1000:]}")


class ApiOnlyRunner:
    """A network namespace from which only the API server of ``kubeconfig`` is reachable.

    Use as a context manager (or :meth:`start` / :meth:`close`).  The API server must be
    published on this machine's loopback (kind's default); inside the namespace the same
    ``127.0.0.1:<port>`` reaches it, so the kubeconfig is used unchanged.
    """

    def __init__(self, kubeconfig: Path, name: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.name = name or f"svcc-runner-{secrets.token_hex(3)}"
        self.api_host, self.api_port = api_server_address(kubeconfig)
        if self.api_host not in ("127.0.0.1", "localhost"):
            raise HarnessError(f"{kubeconfig}: API server {self.api_host} is not on this machine's loopback")
        self.socket_dir: Path | None = None
        self.procs: list[subprocess.Popen[str]] = []
        self.netns_created = False

    @property
    def socket_path(self) -> Path:
        assert self.socket_dir is not None
        return self.socket_dir / "api.sock"

    def start(self) -> ApiOnlyRunner:
        sh(["ip", "netns", "add", self.name])
        self.netns_created = True
        try:
            sh(["ip", "-n", self.name, "link", "set", "lo", "up"])
            self.socket_dir = Path(tempfile.mkdtemp(prefix="svcc-runner-"))
            api = f"127.0.0.1:{self.api_port}"
            self._spawn([sys.executable, str(FORWARDER), "unix-to-tcp", str(self.socket_path), api],
                        f"host forwarder {self.socket_path} -> {api}")
            self._spawn(["ip", "netns", "exec", self.name, sys.executable, str(FORWARDER), "tcp-to-unix",
                         api, str(self.socket_path)],
                        f"forwarder in {self.name}: {api} -> {self.socket_path}")
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, argv: list[str], what: str) -> None:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        _wait_ready(proc, what)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment, plus ``extra``, with Docker out of reach."""
        return {**os.environ, **(extra or {}), "DOCKER_HOST": NO_DOCKER_HOST}

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, *, timeout: float,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the namespace (from ``cwd``), output captured; never raises on failure."""
        if not self.netns_created:
            raise HarnessError("ApiOnlyRunner.run before start()")
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], cwd=cwd, env=self.env(env),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def connect_error(self, host: str, port: int) -> str | None:
        """None when a TCP connect from inside the namespace to ``host:port`` succeeds, else
        the error (``[Errno 101] Network is unreachable`` for any address but loopback)."""
        probe = ("import socket, sys\n"
                 "try:\n"
                 f"    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout={CONNECT_TIMEOUT_S}).close()\n"
                 "except OSError as exc:\n"
                 "    print(exc)\n")
        proc = self.run([sys.executable, "-c", probe, host, str(port)], timeout=CONNECT_TIMEOUT_S + 30)
        if proc.returncode != 0:
            return f"probe failed: {proc.stderr.strip()}"
        return proc.stdout.strip() or None

    def close(self) -> None:
        """Stop both forwarders, delete the namespace and the socket directory (idempotent)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.procs = []
        if self.netns_created:
            sh(["ip", "netns", "delete", self.name], check=False)
            self.netns_created = False
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def __enter__(self) -> ApiOnlyRunner:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def copy_kubeconfig(source: Path, dest_dir: Path) -> Path:
    """A private copy of ``source`` (the runner's kubeconfig must not change under it)."""
    dest = dest_dir / "kubeconfig"
    shutil.copyfile(source, dest)
    dest.chmod(0o600)
    return dest

