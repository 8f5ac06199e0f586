"""The build machinery every recipe shares: keyed, stamped, timed steps and their helpers.

A step has a cache key computed from its pinned versions and input files, and a stamp under
``<cache>/stamps``.  A step whose key matches its stamp (and whose outputs still exist) is
skipped, so a warm rebuild is a no-op in seconds.  Every step prints its name and elapsed
time; timings are appended to ``<cache>/build-times.jsonl``.

Here: :class:`Builder` (stamps, ``go build`` of a :class:`GoBuild`, ``docker build`` of a
Dockerfile, the Debian base image, node images with preloaded images), :class:`ImageDef`, the
hashing helpers the keys are made of (:func:`sha`, :func:`tree_hash`, :func:`file_digest`),
:func:`run` and :func:`log`.  The recipes (``images.core``, ``images.tools``,
``images.loadbalancer``, ``images.flannel``, ``images.cilium``, ``images.registry``) import this
module; ``images.build`` orders the recipes.  Nothing here imports a recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from images import catalog, docker, paths, versions

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
MANIFESTS = HERE / "manifests"

DEBIAN_MIRROR = os.environ.get("SVCCONFORM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_IMAGE = f"svcconform/debian-base:{versions.DEBIAN_SUITE}"
NODE_BASE_IMAGE = "svcconform/kind-node-base:1"
OFFICIAL_DEBIAN_IMAGE = f"debian:{versions.DEBIAN_SUITE}-slim"
#: PATH of every image built on the Debian base (Alpine's and Debian's default)
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    """A build command or check failed; the message says which and why."""


def file_digest(p: Path) -> str:
    if p.is_dir():
        return tree_hash(p)
    h = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


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


# ---------------------------------------------------------------- the builder

@dataclass
class Builder:
    """Runs keyed steps (:meth:`step`) under ``cache``; ``force`` rebuilds every step."""

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

