"""Offline tests of ``python -m images push`` and the registry image's pure parts (no Docker)."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest

from images import __main__ as cli
from images import catalog, registry

AGNHOST = catalog.SUITE_IMAGES["agnhost"]
CLIENT = catalog.SUITE_IMAGES["client"]
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64

PUSH_OUTPUT = f"""The push refers to repository [localhost:5001/svcconform/client]
5f70bf18a086: Pushed
d2b7e3f1c2aa: Pushed
1: digest: {DIGEST_A} size: 739
"""


class FakeDocker:
    """Records every argv; answers each with the first matching scripted reply."""

    def __init__(self, replies: dict[str, subprocess.CompletedProcess[str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.replies = replies or {}

    def __call__(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        assert timeout > 0
        for prefix, reply in self.replies.items():
            if " ".join(argv).startswith(prefix):
                return reply
        if argv[:2] == ["docker", "push"]:
            tag = argv[2].rsplit(":", 1)[-1]
            digest = DIGEST_A if "agnhost" in argv[2] else DIGEST_B
            return subprocess.CompletedProcess(argv, 0, f"{tag}: digest: {digest} size: 1234\n", "")
        return subprocess.CompletedProcess(argv, 0, "", "")


def ok(stdout: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], 0, stdout, "")


def failed(stderr: str, code: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], code, "", stderr)


# ---------------------------------------------------------------- plan and argv

def test_plan_moves_every_suite_image_under_the_registry():
    items = registry.plan("localhost:5001")
    assert [i.role for i in items] == list(catalog.SUITE_IMAGES)
    assert {i.role: i.target for i in items} == catalog.suite_images("localhost:5001")
    assert {i.role: i.source for i in items} == catalog.SUITE_IMAGES
    assert registry.plan("localhost:5001")[0].target == "localhost:5001/e2e-test-images/agnhost:2.56"


def test_plan_with_roles_keeps_only_those_in_catalogue_order():
    assert [i.role for i in registry.plan("r.example:5000", ["client"])] == ["client"]
    assert [i.role for i in registry.plan("r.example:5000", ["client", "agnhost"])] == ["agnhost", "client"]


def test_plan_rejects_an_unknown_role_naming_the_valid_ones():
    with pytest.raises(registry.PushError, match=r"unknown image role 'coredns'; roles: agnhost, client"):
        registry.plan("localhost:5001", ["coredns"])


def test_plan_rejects_an_empty_registry():
    with pytest.raises(registry.PushError, match="empty registry"):
        registry.plan("  /")


def test_argv_tags_the_local_image_as_its_relocated_name_then_pushes_that():
    item = registry.plan("localhost:5001", ["client"])[0]
    assert registry.tag_argv(item) == ["docker", "tag", CLIENT, "localhost:5001/svcconform/client:1"]
    assert registry.push_argv(item) == ["docker", "push", "localhost:5001/svcconform/client:1"]


def test_missing_images_are_those_absent_from_the_local_engine():
    items = registry.plan("localhost:5001")
    assert registry.missing_images(items, {AGNHOST, CLIENT}) == []
    assert registry.missing_images(items, {CLIENT}) == [AGNHOST]


# ---------------------------------------------------------------- docker output parsing

def test_digest_is_read_from_docker_push_output():
    assert registry.parse_push_digest(PUSH_OUTPUT) == DIGEST_A


def test_last_digest_wins_and_none_without_one():
    two = f"a: digest: {DIGEST_A} size: 1\nb: digest: {DIGEST_B} size: 2\n"
    assert registry.parse_push_digest(two) == DIGEST_B
    assert registry.parse_push_digest("5f70bf18a086: Pushed\n") is None
    assert registry.parse_push_digest("digest: sha256:abc size: 3") is None


def test_failure_reason_is_dockers_last_line_stderr_first():
    proc = subprocess.CompletedProcess([], 1, "The push refers to repository [x]\n",
                                       "Get \"http://localhost:1/v2/\": dial tcp 127.0.0.1:1: "
                                       "connect: connection refused\n\n")
    assert registry.failure_reason(proc) == (
        'Get "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused')
    assert registry.failure_reason(subprocess.CompletedProcess([], 1, "only stdout\n", "")) == "only stdout"
    assert registry.failure_reason(subprocess.CompletedProcess([], 3, "", "")) == "exit status 3"


def test_suite_option_names_the_registry_as_given():
    assert registry.suite_option("localhost:5001/") == "--image-registry localhost:5001"


# ---------------------------------------------------------------- push with a fake docker

def test_push_tags_and_pushes_each_image_and_reports_its_digest():
    fake, lines = FakeDocker(), []
    pushed = registry.push("localhost:5001", local_images={AGNHOST, CLIENT}, runner=fake, out=lines.append)
    assert fake.calls == [
        ["docker", "tag", AGNHOST, "localhost:5001/e2e-test-images/agnhost:2.56"],
        ["docker", "push", "localhost:5001/e2e-test-images/agnhost:2.56"],
        ["docker", "tag", CLIENT, "localhost:5001/svcconform/client:1"],
        ["docker", "push", "localhost:5001/svcconform/client:1"],
    ]
    assert [(i.role, d) for i, d in pushed] == [("agnhost", DIGEST_A), ("client", DIGEST_B)]
    assert len(lines) == 2
    assert lines[0].startswith(f"pushed agnhost: localhost:5001/e2e-test-images/agnhost:2.56@{DIGEST_A} (")


def test_a_missing_local_image_is_one_line_naming_tox_images_and_nothing_runs():
    fake = FakeDocker()
    with pytest.raises(registry.PushError) as exc:
        registry.push("localhost:5001", local_images={CLIENT}, runner=fake)
    assert "\n" not in str(exc.value)
    assert AGNHOST in str(exc.value)
    assert "tox -e images" in str(exc.value)
    assert fake.calls == []


def test_a_push_failure_carries_dockers_reason_and_stops():
    fake = FakeDocker({"docker push localhost:1/e2e-test-images": failed(
        "The push refers to repository [localhost:1/e2e-test-images/agnhost]\n"
        'Get "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused\n')})
    with pytest.raises(registry.PushError) as exc:
        registry.push("localhost:1", local_images={AGNHOST, CLIENT}, runner=fake)
    assert str(exc.value) == (
        "docker push localhost:1/e2e-test-images/agnhost:2.56 failed: "
        'Get "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused')
    assert len(fake.calls) == 2  # the client image is never tried


def test_a_tag_failure_is_reported_with_dockers_reason():
    fake = FakeDocker({"docker tag": failed("Error parsing reference: invalid reference format")})
    with pytest.raises(registry.PushError, match=r"docker tag .* failed: Error parsing reference"):
        registry.push("localhost:5001", ["client"], local_images={CLIENT}, runner=fake)


def test_a_push_without_a_digest_is_an_error():
    fake = FakeDocker({"docker push": ok("5f70bf18a086: Pushed\n")})
    with pytest.raises(registry.PushError, match="reported no digest"):
        registry.push("localhost:5001", ["client"], local_images={CLIENT}, runner=fake)


def test_run_docker_turns_a_missing_binary_and_a_timeout_into_results():
    missing = registry.run_docker(["/nonexistent/docker", "push", "x"], 5)
    assert missing.returncode == 127
    assert "/nonexistent/docker" in missing.stderr
    slow = registry.run_docker(["sleep", "5"], 0.2)
    assert slow.returncode == 124
    assert "timed out" in slow.stderr


# ---------------------------------------------------------------- the CLI

def test_cli_push_prints_digests_then_the_suite_option(monkeypatch, capsys):
    monkeypatch.setattr(cli.docker, "docker_info", lambda: {"version": "x", "default_runtime": "runc"})
    monkeypatch.setattr(cli.catalog, "local_docker_images", lambda: {AGNHOST, CLIENT})
    monkeypatch.setattr(registry, "run_docker", FakeDocker())
    assert cli.main(["push", "localhost:5001"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "give the suite: --image-registry localhost:5001"
    assert [ln.split(":", 1)[0] for ln in out[:-1]] == ["pushed agnhost", "pushed client"]


def test_cli_push_errors_are_one_line_and_non_zero(monkeypatch, capsys):
    monkeypatch.setattr(cli.docker, "docker_info", lambda: {"version": "x", "default_runtime": "runc"})
    monkeypatch.setattr(cli.catalog, "local_docker_images", set)
    assert cli.main(["push", "localhost:5001", "--role", "client"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("images: push: not in the local Docker engine: svcconform/client:1; run 'tox -e images'")


def test_cli_push_without_docker_says_so(monkeypatch, capsys):
    monkeypatch.setattr(cli.docker, "docker_info", lambda: None)
    assert cli.main(["push", "localhost:5001"]) == 1
    assert "no Docker engine answers" in capsys.readouterr().err


def test_cli_push_rejects_an_unknown_role(monkeypatch, capsys):
    monkeypatch.setattr(cli.docker, "docker_info", lambda: {"version": "x", "default_runtime": "runc"})
    monkeypatch.setattr(cli.catalog, "local_docker_images", lambda: {AGNHOST, CLIENT})
    assert cli.main(["push", "localhost:5001", "--role", "dns"]) == 1
    assert "unknown image role 'dns'" in capsys.readouterr().err


# ---------------------------------------------------------------- the registry image

def test_rootfs_holds_the_binary_its_config_and_writable_dirs_deterministically():
    data = registry.rootfs_tar(b"\x7fELF-binary")
    assert data == registry.rootfs_tar(b"\x7fELF-binary")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        binary = tar.extractfile(members["bin/registry"])
        config = tar.extractfile(members["etc/distribution/config.yml"])
        assert binary is not None
        assert config is not None
        assert binary.read() == b"\x7fELF-binary"
        assert config.read().decode() == registry.CONFIG_YML
    assert members["bin/registry"].mode == 0o755
    assert members["tmp"].isdir()
    assert members["tmp"].mode == 0o1777
    assert members["var/lib/registry"].isdir()
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


def test_config_serves_plain_http_on_the_registry_port_from_the_storage_root():
    import yaml

    config = yaml.safe_load(registry.CONFIG_YML)
    assert config["http"]["addr"] == f":{registry.REGISTRY_PORT}"
    assert "tls" not in config["http"]
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
    assert "auth" not in config


def test_import_argv_sets_entrypoint_config_and_key_label(tmp_path):
    argv = registry.import_argv(tmp_path / "rootfs.tar", registry.REGISTRY_IMAGE, "k123")
    assert argv[:2] == ["docker", "import"]
    assert argv[-2:] == [str(tmp_path / "rootfs.tar"), registry.REGISTRY_IMAGE]
    changes = [argv[i + 1] for i, a in enumerate(argv) if a == "--change"]
    assert 'ENTRYPOINT ["/bin/registry"]' in changes
    assert 'CMD ["serve", "/etc/distribution/config.yml"]' in changes
    assert "ENV OTEL_TRACES_EXPORTER=none" in changes
    assert "LABEL svcconform.key=k123" in changes


def test_registry_build_is_static_pinned_and_keyed_on_the_wrapper():
    b = registry.go_build()
    assert b.require == (f"github.com/distribution/distribution/v3@{registry.REGISTRY_VERSION}",)
    assert b.outputs == ("registry",)
    assert f"version.version={registry.REGISTRY_VERSION}" in b.ldflags
    assert b.files is not None
    assert b.go_mod is not None
    main_go = b.files(None)["main.go"]  # type: ignore[arg-type]
    assert "registry/storage/driver/filesystem" in main_go
    assert "driver/s3-aws" not in main_go
    assert "module svcconform.local/registry" in b.go_mod(None)  # type: ignore[arg-type]
    assert registry.image_key("d1") != registry.image_key("d2")
