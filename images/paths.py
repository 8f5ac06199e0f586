"""Where the toolchain keeps its outputs: outside the clone, so CI and later sessions reuse them."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of every cached build output (``$SVCCONFORM_CACHE``, default ``~/.cache/svcconform``)."""
    env = os.environ.get("SVCCONFORM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "svcconform"


def tools_bin() -> Path:
    """Directory holding the pinned ``kind``, ``helm`` and ``kubectl`` binaries."""
    return cache_dir() / "tools" / "bin"


def tool(name: str) -> Path:
    """Path of a pinned tool; does not check that it exists (see ``images.catalog.require_tool``)."""
    return tools_bin() / name
