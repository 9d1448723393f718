"""The one error type of the labels package."""

from __future__ import annotations

from explorer.errors import UserError


class LabelsError(UserError):
    """A labels file that cannot be read, parsed or written; the message names the file."""


def one_line(text: object) -> str:
    """Collapse an exception text to one line: UserError messages must be exactly one."""
    return " ".join(str(text).split())
