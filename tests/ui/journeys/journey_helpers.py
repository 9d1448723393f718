"""Steps that many journeys share."""

from __future__ import annotations


def open_and_wait(qtbot, window, path) -> None:
    """Open a workspace and wait until it is shown (or a message says why not)."""
    worker = window.open_workspace(path)
    qtbot.waitUntil(lambda: not window.pool.holds(worker), timeout=60_000)
    qtbot.waitUntil(lambda: window.source is not None or bool(window.messages), timeout=10_000)
    assert window.source is not None, window.messages
