"""``--vendor-info FILE``: who the report is for, as in Gateway API conformance reports.

The file is YAML::

    implementation: Example CNI        # required: the implementation under test
    version: "1.18.0"                  # required: its version (quote it: 1.10 is not 1.1)
    contact:                           # required: a string or a list of strings
      - conformance@example.com
    url: https://example.com/cni       # required: http(s) URL of the project
    notes: kube-proxy replacement on   # optional: free text shown under the header

Anything else is an error, so a typo never silently drops a field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reports.errors import ReportError

REQUIRED: tuple[str, ...] = ("implementation", "version", "contact", "url")
OPTIONAL: tuple[str, ...] = ("notes",)
MAX_LEN = 500
MAX_NOTES_LEN = 2000


@dataclass(frozen=True)
class VendorInfo:
    implementation: str
    version: str
    contact: tuple[str, ...]
    url: str
    notes: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "version": self.version,
            "contact": list(self.contact),
            "url": self.url,
            "notes": self.notes,
        }


def _text(path: Path, key: str, value: object, limit: int = MAX_LEN) -> str:
    if isinstance(value, bool) or not isinstance(value, str):
        hint = " (quote it in the YAML)" if isinstance(value, int | float) else ""
        raise ReportError(f"{path}: {key}: expected a string, got {value!r}{hint}")
    value = value.strip()
    if not value:
        raise ReportError(f"{path}: {key}: must not be empty")
    if len(value) > limit:
        raise ReportError(f"{path}: {key}: longer than {limit} characters")
    return value


def parse_vendor(doc: object, path: Path) -> VendorInfo:
    """Validate a decoded vendor file; :class:`ReportError` naming the file and the field."""
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a YAML mapping with keys {', '.join(REQUIRED)}")
    unknown = sorted(str(k) for k in doc if k not in REQUIRED + OPTIONAL)
    if unknown:
        raise ReportError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(REQUIRED + OPTIONAL)}"
        )
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise ReportError(f"{path}: missing required key(s) {', '.join(missing)}")
    raw_contact = doc["contact"]
    items = raw_contact if isinstance(raw_contact, list) else [raw_contact]
    contact = tuple(_text(path, "contact", c) for c in items)
    if not contact:
        raise ReportError(f"{path}: contact: must name at least one contact")
    url = _text(path, "url", doc["url"])
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in url:
        raise ReportError(f"{path}: url: {url!r} is not an http(s) URL")
    notes = doc.get("notes")
    return VendorInfo(
        implementation=_text(path, "implementation", doc["implementation"]),
        version=_text(path, "version", doc["version"]),
        contact=contact,
        url=url,
        notes=None if notes is None else _text(path, "notes", notes, MAX_NOTES_LEN),
    )


def load_vendor(path: Path) -> VendorInfo:
    """Read and validate ``path``; every problem is one :class:`ReportError` line."""
    import yaml  # only needed with --vendor-info

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: vendor info file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: unreadable: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ReportError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_vendor(doc, path)
