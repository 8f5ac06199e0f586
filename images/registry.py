"""A container registry for vendor mode, and pushing the suite's pod images into one.

* ``svcconform/registry:<REGISTRY_VERSION>``: the CNCF Distribution registry
  (``github.com/distribution/distribution/v3``, upstream's ``registry`` command with only the
  filesystem and in-memory storage drivers linked in) built static from the Go module proxy
  and imported from scratch: the binary, its config (plain HTTP on :5000, blobs in
  ``/var/lib/registry``, deletes allowed) and nothing else.  It stands in for the registry a
  user names when the suite runs against a cluster it can reach only through the API server
  (``tests/integration/test_vendor_mode.py``).  ``python -m images registry-image`` builds it;
  ``ensure`` never does.
* ``python -m images push REGISTRY [--role ROLE ...]``: tags the local images of
  ``catalog.SUITE_IMAGES`` as ``catalog.relocate(ref, REGISTRY)``, pushes them, prints each
  pushed digest and the suite option that uses them (``--image-registry REGISTRY``).

The planning, argv building and output parsing are pure functions; :func:`push` takes the
command runner as an argument so it is tested offline.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from images import catalog
from images.primitives import Builder, GoBuild, file_digest, run, sha

REGISTRY_MODULE = "github.com/distribution/distribution/v3"
#: v3.0.0: the first v3 release, built with any Go >= 1.23.7 (v3.1.x asks for Go 1.26).
#: ``go mod download -json github.com/distribution/distribution/v3@v3.0.0`` is served by the proxy.
REGISTRY_VERSION = "v3.0.0"
REGISTRY_IMAGE = f"svcconform/registry:{REGISTRY_VERSION}"
#: The port the registry listens on inside its container.
REGISTRY_PORT = 5000
REGISTRY_BINARY = "registry"
CONFIG_PATH = "/etc/distribution/config.yml"

#: upstream's cmd/registry/main.go with only the storage drivers a local registry uses: the
#: cloud drivers (azure, gcs, s3) would triple the dependencies to download and compile.
MAIN_GO = f"""\
// svcconform's build of {REGISTRY_MODULE}/cmd/registry: filesystem and in-memory storage only.
package main

import (
\t"os"

\t"{REGISTRY_MODULE}/registry"
\t_ "{REGISTRY_MODULE}/registry/storage/driver/filesystem"
\t_ "{REGISTRY_MODULE}/registry/storage/driver/inmemory"
)

func main() {{
\tif err := registry.RootCmd.Execute(); err != nil {{
\t\tos.Exit(1)
\t}}
}}
"""

CONFIG_YML = f"""\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :{REGISTRY_PORT}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

#: ``docker import --change`` instructions of the image.  OTEL_TRACES_EXPORTER=none: v3 sets up
#: OpenTelemetry with the OTLP exporter by default (upstream's image sets the same).
IMAGE_CHANGES: tuple[str, ...] = (
    f'ENTRYPOINT ["/bin/{REGISTRY_BINARY}"]',
    f'CMD ["serve", "{CONFIG_PATH}"]',
    f"EXPOSE {REGISTRY_PORT}",
    "ENV OTEL_TRACES_EXPORTER=none",
)


# ---------------------------------------------------------------- the registry image

def go_build() -> GoBuild:
    """The registry command, from a wrapper module around :data:`MAIN_GO` (static: the
    builder sets CGO_ENABLED=0)."""
    ldflags = ("-s -w"
               f" -X {REGISTRY_MODULE}/version.version={REGISTRY_VERSION}"
               # the wrapper's digest stands for upstream's git revision, and keys the step
               f" -X {REGISTRY_MODULE}/version.revision=svcconform-{sha(MAIN_GO)[:12]}")
    return GoBuild(
        REGISTRY_BINARY, REGISTRY_VERSION, (".",), (REGISTRY_BINARY,),
        go_mod=lambda _b: f"module svcconform.local/{REGISTRY_BINARY}\n\ngo 1.23.7\n",
        require=(f"{REGISTRY_MODULE}@{REGISTRY_VERSION}",),
        files=lambda _b: {"main.go": MAIN_GO},
        ldflags=ldflags,
    )


def rootfs_tar(binary: bytes, config: str = CONFIG_YML) -> bytes:
    """The image's whole filesystem as a tar: ``/bin/registry``, its config, an empty storage
    root and ``/tmp``.  Deterministic (fixed owners and mtimes), so equal inputs give equal layers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, mode: int, data: bytes | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid = mode, 0, 0, 0
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "etc/distribution", "var", "var/lib", "var/lib/registry"):
            add(d, 0o755)
        add("tmp", 0o1777)
        add(f"bin/{REGISTRY_BINARY}", 0o755, binary)
        add(CONFIG_PATH.lstrip("/"), 0o644, config.encode())
    return buf.getvalue()


def import_argv(tar_path: Path, tag: str, key: str) -> list[str]:
    """``docker import`` of the rootfs tar with :data:`IMAGE_CHANGES` and the step's key label."""
    argv = ["docker", "import"]
    for change in (*IMAGE_CHANGES, f"LABEL svcconform.key={key}"):
        argv += ["--change", change]
    return [*argv, str(tar_path), tag]


def image_key(binary_digest: str) -> str:
    return sha("registry-image", REGISTRY_IMAGE, binary_digest, CONFIG_YML, IMAGE_CHANGES)


def build_image(builder: Builder) -> str:
    """Build (cached by key) the registry binary and :data:`REGISTRY_IMAGE`; returns the tag."""
    binary = builder.go_build(go_build()) / REGISTRY_BINARY
    key = image_key(file_digest(binary))

    def do() -> None:
        with tempfile.TemporaryDirectory(prefix="svcc-registry-") as tmp:
            tar_path = Path(tmp) / "rootfs.tar"
            tar_path.write_bytes(rootfs_tar(binary.read_bytes()))
            run(import_argv(tar_path, REGISTRY_IMAGE, key), timeout=300)

    builder.step("image-registry", key, do, lambda: builder.docker_image_label(REGISTRY_IMAGE) == key)
    return REGISTRY_IMAGE


# ---------------------------------------------------------------- pushing the suite's images

#: One ``docker push`` of an image of a few hundred MB to a registry on this machine takes
#: seconds; 15 min leaves room for a remote registry on a slow uplink.
PUSH_TIMEOUT_S = 900.0
#: ``docker tag`` / ``docker image ls`` answer at once.
DOCKER_QUICK_TIMEOUT_S = 60.0

DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")

Runner = Callable[[list[str], float], "subprocess.CompletedProcess[str]"]


class PushError(Exception):
    """One-line reason the push cannot go on."""


@dataclass(frozen=True)
class PushItem:
    role: str
    source: str  # the local image, as the suite names it by default
    target: str  # the same image under the registry


def plan(registry: str, roles: Sequence[str] = ()) -> list[PushItem]:
    """What to push: every role of ``catalog.SUITE_IMAGES`` (or only ``roles``, in
    catalogue order) with its name under ``registry``.  Raises :class:`PushError` for an
    unknown role or an empty registry name."""
    unknown = [r for r in roles if r not in catalog.SUITE_IMAGES]
    if unknown:
        raise PushError(f"unknown image role {', '.join(map(repr, unknown))}; "
                        f"roles: {', '.join(catalog.SUITE_IMAGES)}")
    try:
        return [PushItem(role, ref, catalog.relocate(ref, registry))
                for role, ref in catalog.SUITE_IMAGES.items() if not roles or role in roles]
    except ValueError as exc:
        raise PushError(str(exc)) from None


def missing_images(items: Iterable[PushItem], local_images: set[str]) -> list[str]:
    """Sources of ``items`` that are not in ``local_images`` (see ``catalog.local_docker_images``)."""
    return [i.source for i in items if not catalog.is_present(i.source, local_images)]


def tag_argv(item: PushItem) -> list[str]:
    return ["docker", "tag", item.source, item.target]


def push_argv(item: PushItem) -> list[str]:
    return ["docker", "push", item.target]


def parse_push_digest(output: str) -> str | None:
    """The manifest digest ``docker push`` reports (``<tag>: digest: sha256:… size: N``;
    the last one when there are several), or None."""
    found = DIGEST_RE.findall(output)
    return found[-1] if found else None


def failure_reason(proc: subprocess.CompletedProcess[str]) -> str:
    """Docker's own last line of a failed command (stderr first), else its exit status."""
    for stream in (proc.stderr, proc.stdout):
        lines = [ln.strip() for ln in (stream or "").splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return f"exit status {proc.returncode}"


def suite_option(registry: str) -> str:
    return f"--image-registry {registry.strip().rstrip('/')}"


def run_docker(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The real runner: ``argv`` with output captured; never raises on a non-zero exit."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{' '.join(argv)} timed out after {timeout:.0f}s")
    except OSError as exc:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: {exc}")


def push(registry: str, roles: Sequence[str] = (), *, local_images: set[str],
         runner: Runner | None = None, out: Callable[[str], object] = print,
         clock: Callable[[], float] = time.monotonic) -> list[tuple[PushItem, str]]:
    """Tag and push the suite's images to ``registry``; ``(item, digest)`` per image pushed.

    Raises :class:`PushError` (one line) when a role is unknown, an image is not in
    ``local_images``, or docker fails (with docker's reason).  ``runner`` defaults to
    :func:`run_docker`.
    """
    runner = runner or run_docker
    items = plan(registry, roles)
    missing = missing_images(items, local_images)
    if missing:
        raise PushError(f"not in the local Docker engine: {', '.join(missing)}; run 'tox -e images' "
                        "(or 'python -m images ensure') to build them")
    pushed = []
    for item in items:
        proc = runner(tag_argv(item), DOCKER_QUICK_TIMEOUT_S)
        if proc.returncode != 0:
            raise PushError(f"docker tag {item.source} {item.target} failed: {failure_reason(proc)}")
        t0 = clock()
        proc = runner(push_argv(item), PUSH_TIMEOUT_S)
        if proc.returncode != 0:
            raise PushError(f"docker push {item.target} failed: {failure_reason(proc)}")
        digest = parse_push_digest(proc.stdout)
        if digest is None:
            raise PushError(f"docker push {item.target} reported no digest: {failure_reason(proc)}")
        out(f"pushed {item.role}: {item.target}@{digest} ({clock() - t0:.1f}s)")
        pushed.append((item, digest))
    return pushed
