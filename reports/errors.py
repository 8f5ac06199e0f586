"""The report's user-facing error: one line, naming the file that is wrong."""

from __future__ import annotations


def one_line(text: str) -> str:
    """Collapse ``text`` to a single line (newlines and runs of blanks become one space)."""
    return " ".join(str(text).split())


class ReportError(Exception):
    """Bad input the report cannot work around (no results dir, a bad vendor file, ...).

    The CLI prints it as one line and exits 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
