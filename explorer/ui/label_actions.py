"""The main window's label actions: Edit → Undo/Redo (shown on the feature they change), File →
Export/Import Labels and Save Labels As…, Edit → Label Author…, and what the window shows when
the workspace's labels.json cannot be written (status bar, a red indicator, the question before
closing or leaving the workspace).

The decisions (what is unsaved, what an edit changes, the author's name) are Qt-free, in
`explorer.session`; this controller holds the dialogs, the undo/redo actions and the indicator,
and moves the window's views to the feature an undo or redo changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QLabel, QMessageBox

from explorer.errors import UserError
from explorer.ui.undo_menu import use_app_undo

if TYPE_CHECKING:
    from explorer.ui.main_window import MainWindow


class LabelActions(QObject):
    """Owned by the main window, which puts `undo_action`, `redo_action` and `state` (the
    "labels not saved" indicator) in its Edit menu and status bar and wires its File and Edit
    menu entries to the methods here."""

    # From the autosave timer's thread to the UI thread (queued: this object lives in the UI
    # thread): a failed or a successful save.
    save_failed = Signal(str)
    saved = Signal()

    def __init__(self, window: MainWindow, app_name: str):
        super().__init__(window)
        self._w = window
        self._app_name = app_name
        self.undo_action = QAction("&Undo", window)
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.undo_action.triggered.connect(self.undo)
        self.redo_action = QAction("&Redo", window)
        self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)
        self.redo_action.triggered.connect(self.redo)
        # Shown for as long as the labels on screen are not in the workspace's labels.json.
        self.state = QLabel()
        self.state.setStyleSheet("color: #c62828; font-weight: 600;")
        self.state.hide()

        events = window.session.events
        events.labels_save_failed.connect(self.save_failed.emit)
        events.labels_saved.connect(self.saved.emit)
        self.save_failed.connect(self.show_save_failed)
        self.saved.connect(self.show_saved)
        events.labels_changed.connect(lambda keys: QTimer.singleShot(0, self, self.update_undo))
        page = window.feature_page
        page.label_edited.connect(self._on_label_edited)
        page.undo_requested.connect(self.undo)
        page.redo_requested.connect(self.redo)
        # Right-click Undo/Redo in the label boxes is Edit → Undo/Redo too, not the box's own.
        for box in (page.label, page.tags, page.notes):
            use_app_undo(box, self.undo_action, self.redo_action, page.commit_pending)
        self.update_undo()

    @property
    def _session(self):
        return self._w.session

    def _status(self, message: str, timeout: int = 0) -> None:
        self._w.statusBar().showMessage(message, timeout)

    def _workspace_open(self) -> bool:
        if self._session.labels is None:
            QMessageBox.information(self._w, self._app_name, "Open a workspace first.")
            return False
        return True

    # --- edits, undo and redo -----------------------------------------------------------------
    def _on_label_edited(self, feature: int, label: str, notes: str, tags: list) -> None:
        if not self._session.set_label(feature, label, notes, tags):
            return
        self._w.browser.model.set_label(feature, label, tags)
        self._w.show_labels(self._session.user_labels())
        self.update_undo()  # now: Edit → Undo may be the very next thing the person does

    def undo(self) -> None:
        """Edit → Undo (also Ctrl+Z in the label boxes): the last label edit, shown first."""
        self._step_history(redo=False)

    def redo(self) -> None:
        self._step_history(redo=True)

    def _step_history(self, redo: bool) -> None:
        self._w.feature_page.commit_pending()  # what was just typed is the edit to undo
        labels = self._session.labels
        if labels is None or not (labels.can_redo if redo else labels.can_undo):
            return
        self._go_to_label(labels.redo_keys if redo else labels.undo_keys)
        if labels.redo() if redo else labels.undo():
            self.after_label_history()

    def _go_to_label(self, keys) -> None:
        """Show the feature an undo/redo is about to change, so the change happens in view."""
        w, entry = self._w, self._session.entry
        if not keys or entry is None:
            return
        if (entry.id, w.feature_page.feature) in keys:
            return
        sae_id, feature = keys[0]
        if sae_id != entry.id and not w.choose_sae(sae_id):
            return  # an imported label of an SAE this workspace lacks: nothing to show
        w.feature_dock.show()
        if w.feature_page.feature != feature:
            w.select_and_show(feature)

    def after_label_history(self) -> None:
        """Every view on the labels after an undo, a redo or an import."""
        w = self._w
        labels = self._session.user_labels()
        w.browser.model.labels = labels
        w.browser.model.layoutChanged.emit()
        w.show_labels(labels)
        if w.feature_page.feature is not None:
            w.select_feature(w.feature_page.feature)
        self.update_undo()

    def update_undo(self) -> None:
        doc = self._session.labels
        # `is not None`: a document with no labels is falsy (len 0) yet may have a redo.
        can_undo = doc is not None and doc.can_undo
        can_redo = doc is not None and doc.can_redo
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.undo_action.setText(f"&Undo {doc.undo_text}" if can_undo else "&Undo")
        self.redo_action.setText(f"&Redo {doc.redo_text}" if can_redo else "&Redo")

    # --- label files ------------------------------------------------------------------------------
    def export_labels(self, fmt: str) -> None:
        if not self._workspace_open():
            return
        default = str(self._session.workspace.root / f"labels.{fmt}")
        path, _ = QFileDialog.getSaveFileName(self._w, "Export labels", default)
        if not path:
            return
        try:
            n = self._session.export_labels(path, fmt)
        except UserError as e:
            QMessageBox.warning(self._w, self._app_name, str(e))
            return
        self._status(f"exported {n} labels to {path}", 8000)

    def import_labels(self) -> None:
        if not self._workspace_open():
            return
        path, _ = QFileDialog.getOpenFileName(self._w, "Import labels",
                                              str(self._session.workspace.root),
                                              "Labels (*.json *.csv *.jsonl)")
        if not path:
            return
        try:
            report = self._session.import_labels(path)
        except UserError as e:
            QMessageBox.warning(self._w, self._app_name, str(e))
            return
        self.after_label_history()
        QMessageBox.information(self._w, self._app_name, report.summary())

    def author(self) -> str:
        """Edit → Label Author: recorded with each label edit and written into exports (default:
        the OS user name)."""
        return self._session.author()

    def choose_author(self) -> None:
        name, ok = QInputDialog.getText(self._w, self._app_name, "Author of your labels:",
                                        text=self.author())
        if ok:
            self._session.set_author(name)

    # --- labels that cannot be saved -------------------------------------------------------------
    def show_save_failed(self, message: str) -> None:
        if not self._session.save_failing:
            return  # an old failure, already saved since (or another workspace's)
        self._status(f"Labels NOT saved: {message}. Your edits are kept in the app; "
                     "File → Save Labels As… writes them elsewhere.")
        self.state.setText("⚠ labels not saved")
        self.state.setToolTip(f"{message}\nFile → Save Labels As… writes them elsewhere")
        self.state.show()

    def show_saved(self) -> None:
        if self._session.save_failing:
            return
        self.state.hide()

    def save_labels_as(self) -> bool:
        """File → Save Labels As…: the labels with every unsaved edit, as a labels.json document
        (what File → Import Labels and `explorer labels import` read). True when written."""
        if not self._workspace_open():
            return False
        default = str(Path.home() / f"{self._session.workspace.name}-labels.json")
        path, _ = QFileDialog.getSaveFileName(self._w, "Save labels as", default,
                                              "Labels (*.json)")
        if not path:
            return False
        try:
            n = self._session.save_labels_copy(path)
        except (UserError, OSError) as e:
            self._status(f"Labels NOT saved: {e}")
            QMessageBox.warning(self._w, self._app_name, str(e))
            return False
        self._status(f"saved {n} labels to {path}", 10_000)
        if self.state.isVisible():
            self.state.setText(f"⚠ labels not saved in the workspace (copy: {path})")
        return True

    def safe_to_leave(self) -> bool:
        """Before closing the window or the workspace: save the labels; when that fails, ask
        (Save Labels As… / Discard / Cancel). True when nothing unsaved is dropped unasked."""
        autosaver = self._session.autosaver
        if autosaver is None:
            return True
        self._w.feature_page.commit_pending()
        try:
            autosaver.flush()
        except (UserError, OSError) as e:
            error = str(e)
        else:
            self.show_saved()
            return True
        self.show_save_failed(error)
        if self._session.copy_holds_every_edit():
            return True  # every edit is in the copy the person saved
        while True:
            box = QMessageBox(QMessageBox.Icon.Warning, self._app_name,
                              f"Your label edits could not be saved: {error}", parent=self._w)
            box.setInformativeText("Save them to another file, or discard them?")
            save_as = box.addButton("Save Labels As…", QMessageBox.ButtonRole.AcceptRole)
            discard = box.addButton(QMessageBox.StandardButton.Discard)
            box.addButton(QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(save_as)
            box.exec()
            clicked = box.clickedButton()
            if clicked is save_as:
                if self.save_labels_as():
                    return True
                continue  # no file chosen, or that one failed too: ask again
            return clicked is discard
