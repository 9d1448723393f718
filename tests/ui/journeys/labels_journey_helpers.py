"""What the labels journeys share: a window opened as a person opens one (File → Open
Workspace…), menu actions by their text, and a clicker for the buttons of a modal message box."""

from __future__ import annotations

from journey_helpers import action
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox


def open_by_menu(qtbot, window, folder, monkeypatch) -> None:
    """File → Open Workspace…, choosing `folder` in the folder dialog."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    action(window, "File", "Open Workspace…").trigger()
    qtbot.waitUntil(lambda: window.source is not None and window.workspace is not None
                    and window.workspace.root.resolve() == folder.resolve(), timeout=60_000)
    qtbot.waitUntil(lambda: not window.pool.running(), timeout=60_000)


_CLICKERS: list[dict] = []


def stop_clickers() -> None:
    """End every clicker still waiting (call at a test's end: a clicker left waiting would
    answer the next test's dialog)."""
    for clicker in _CLICKERS:
        clicker["stopped"] = True
    _CLICKERS.clear()


def click_when_asked(qtbot, button_text: str, seen: list[str], tries: int = 12000) -> None:
    """When a modal message box shows, record its text in `seen` and click `button_text`."""
    me = {"stopped": False}
    _CLICKERS.append(me)

    def look(left: int = tries) -> None:
        if me["stopped"]:
            return
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            if left:
                QTimer.singleShot(10, lambda: look(left - 1))
            return
        seen.append(box.text())
        me["stopped"] = True  # one dialog each
        for button in box.buttons():
            if button.text().replace("&", "") == button_text:
                qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
                return
        raise AssertionError(f"no {button_text!r} in {[b.text() for b in box.buttons()]}")

    QTimer.singleShot(0, look)


def row_centre(table, row: int, column: int = 1):
    index = table.model().index(row, column)
    table.scrollTo(index)
    return table.visualRect(index).center()
