"""Text boxes whose right-click menu undoes through the app's history.

The label editor's boxes hand Ctrl+Z to the app (Edit → Undo: one edit at a time, the feature it
changes shown first). Their built-in context menu still offered the box's own Undo/Redo, which
took back keystrokes the app never saw as edits; here the menu keeps Cut, Copy, Paste and
Select All and puts the app's own Undo/Redo actions in their place, with the same text, state
and effect as in the Edit menu.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QAbstractScrollArea, QLineEdit, QMenu, QPlainTextEdit

# Qt's object names for the standard context menu's own undo and redo entries.
OWN_UNDO, OWN_REDO = "edit-undo", "edit-redo"


def app_undo_menu(box: QLineEdit | QPlainTextEdit, undo: QAction, redo: QAction) -> QMenu:
    """`box`'s standard context menu with its own Undo/Redo replaced by `undo` and `redo`."""
    menu = box.createStandardContextMenu()
    for name, app_action in ((OWN_UNDO, undo), (OWN_REDO, redo)):
        own = next((a for a in menu.actions() if a.objectName() == name), None)
        if own is None:  # another Qt's menu: add the app's entries rather than lose them
            menu.insertAction(menu.actions()[0] if menu.actions() else None, app_action)
            continue
        menu.insertAction(own, app_action)
        menu.removeAction(own)
    return menu


def use_app_undo(box: QLineEdit | QPlainTextEdit, undo: QAction, redo: QAction,
                 before: Callable[[], None] | None = None) -> None:
    """Give `box` the context menu of `app_undo_menu`. `before` runs as the menu opens (the
    label editor's: hand what was just typed to the history, so Undo takes it back as Ctrl+Z
    does)."""
    box.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    box.customContextMenuRequested.connect(
        lambda pos: _open(box, pos, undo, redo, before))


def _open(box, pos: QPoint, undo: QAction, redo: QAction, before) -> None:
    if before is not None:
        before()
    menu = app_undo_menu(box, undo, redo)
    menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    # A scroll area's (the notes box's) position is in its viewport's coordinates.
    origin = box.viewport() if isinstance(box, QAbstractScrollArea) else box
    menu.popup(origin.mapToGlobal(pos))
