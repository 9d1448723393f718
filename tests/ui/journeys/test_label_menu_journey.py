"""Right-click Undo/Redo in the label editor's boxes, as a person uses them: the context menu's
Undo is Edit → Undo (the app's history, one edit at a time), not the text box's own, which took
back keystrokes the app never saw as an edit (issue 17, Why-6)."""

from __future__ import annotations

import shutil

import pytest
from labels_journey_helpers import open_by_menu
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMenu


@pytest.fixture
def window(window, qtbot, tiny_workspace, tmp_path, monkeypatch):
    """The shared window (tests/ui/conftest.py), active, the workspace opened by File → Open."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    open_by_menu(qtbot, window, shutil.copytree(tiny_workspace, tmp_path / "ws"), monkeypatch)
    return window


def _click_into(qtbot, box):
    target = box.viewport() if hasattr(box, "viewport") else box
    qtbot.mouseClick(target, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(box.hasFocus, timeout=2_000)


def _choose_from_context_menu(qtbot, box, text: str) -> None:
    """Right-click `box`, and click the entry of its context menu that starts with `text`.
    (Two right-clicks in a row on one spot read as a double-click, which opens no menu: a
    journey right-clicks another box next.)"""
    target = box.viewport() if hasattr(box, "viewport") else box
    # On the window, as the platform delivers a real click: Qt makes the context-menu event
    # from it there (a click sent to the widget itself opens no menu).
    top = target.window()
    qtbot.mouseClick(top.windowHandle(), Qt.MouseButton.RightButton,
                     pos=target.mapTo(top, target.rect().center()))
    qtbot.waitUntil(lambda: isinstance(QApplication.activePopupWidget(), QMenu), timeout=2_000)
    menu = QApplication.activePopupWidget()
    entries = {a.text().replace("&", "").split("\t")[0]: a for a in menu.actions() if a.text()}
    assert sum(name.startswith("Undo") for name in entries) == 1, list(entries)
    assert sum(name.startswith("Redo") for name in entries) == 1, list(entries)
    assert any(name.startswith("Copy") for name in entries), list(entries)  # the rest stays
    chosen = [a for name, a in entries.items() if name.startswith(text)]
    assert len(chosen) == 1, (text, list(entries))
    assert chosen[0].isEnabled(), f"{text} is greyed out in {list(entries)}"
    qtbot.mouseClick(menu, Qt.MouseButton.LeftButton,
                     pos=menu.actionGeometry(chosen[0]).center())
    qtbot.waitUntil(lambda: QApplication.activePopupWidget() is None, timeout=2_000)


def test_right_click_undo_and_redo_in_the_label_boxes_are_the_apps(qtbot, window):
    page, sae, f = window.feature_page, window.entry.id, window.feature_page.feature
    labels = window.labels
    _click_into(qtbot, page.label)
    qtbot.keyClicks(page.label, "red")
    qtbot.keyClick(page.label, Qt.Key.Key_Return)  # one edit
    assert labels.get(sae, f).label == "red"

    # Typed in the notes and not yet left: the menu's Undo takes that edit back, as Ctrl+Z and
    # Edit → Undo do; the name stays.
    _click_into(qtbot, page.notes)
    qtbot.keyClicks(page.notes, "round")
    _choose_from_context_menu(qtbot, page.notes, "Undo")
    assert page.notes.toPlainText() == "" and page.label.text() == "red"
    assert labels.get(sae, f).label == "red" and labels.get(sae, f).notes == ""

    # In the name box the menu's Undo takes back the whole name, an edit, not a keystroke: the
    # box's own undo would have left "re" or the typed text.
    _choose_from_context_menu(qtbot, page.label, "Undo")
    assert page.label.text() == "" and labels.get(sae, f) is None
    assert not window.undo_action.isEnabled()

    # Redo from the menus brings the edits back one at a time, in the boxes too.
    _choose_from_context_menu(qtbot, page.tags, "Redo")
    assert page.label.text() == "red" and labels.get(sae, f).label == "red"
    _choose_from_context_menu(qtbot, page.notes, "Redo")
    assert page.notes.toPlainText() == "round" and labels.get(sae, f).notes == "round"
    assert window.undo_action.isEnabled() and not window.redo_action.isEnabled()
