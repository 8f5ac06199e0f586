"""find_tool and run: pinned tools first, clear errors, bounded commands that never raise."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from fixtures.errors import ToolMissing
from fixtures.observations import ExecResult
from fixtures.tools import RC_NOT_FOUND, RC_TIMED_OUT, error_summary, find_tool, run


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SVCCONFORM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_pinned_tool_wins_over_path(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = executable(cache / "tools" / "bin" / "kind")
    executable(tmp_path / "onpath" / "kind")
    monkeypatch.setenv("PATH", f"{tmp_path / 'onpath'}{os.pathsep}{os.environ['PATH']}")
    assert find_tool("kind") == pinned


def test_path_is_the_fallback_unless_pinned_only(cache: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = executable(tmp_path / "onpath" / "helm")
    monkeypatch.setenv("PATH", str(tmp_path / "onpath"))
    assert find_tool("helm") == on_path
    with pytest.raises(ToolMissing) as err:
        find_tool("helm", pinned_only=True)
    assert "run 'tox -e images'" in str(err.value)
    assert str(cache / "tools" / "bin") in str(err.value)


def test_missing_tool_error_is_one_line(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing, match=r"^kubectl not found in .* or on PATH: run 'tox -e images'$"):
        find_tool("kubectl")


def test_run_captures_output_and_exit_status() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = run([sys.executable, "-c", code], timeout=30)
    assert (result.returncode, result.stdout, result.stderr, result.where) == (3, "out\n", "err\n", "host")
    assert not result.ok


def test_run_timeout_is_a_result_not_an_exception() -> None:
    result = run([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
                 timeout=0.5)
    assert result.returncode == RC_TIMED_OUT
    assert "timed out after 0.5s" in result.stderr


def test_run_missing_binary_is_127() -> None:
    result = run(["/nonexistent/binary", "x"], timeout=5)
    assert result.returncode == RC_NOT_FOUND
    assert "nonexistent" in result.stderr


def test_error_summary_prefers_kinds_error_line() -> None:
    kind_output = (
        "Creating cluster \"x\" ...\n ✗ Preparing nodes\nERROR: failed to create cluster: "
        "failed to pull image \"kindest/node:v1.34.0\"\nCommand Output: Error response from daemon\n"
        "Stack Trace:\ngoroutine 1\n"
    )
    result = ExecResult(("kind",), 1, "", kind_output)
    assert error_summary(result) == (
        'ERROR: failed to create cluster: failed to pull image "kindest/node:v1.34.0"'
    )
    assert error_summary(ExecResult(("x",), 2, "", "")) == "exit status 2"
    assert error_summary(ExecResult(("x",), 1, "", "just this\n")) == "just this"
