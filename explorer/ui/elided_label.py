"""A one-line label that ends in "…" when its text does not fit, and gives the whole text back.

A plain QLabel cuts a long line off mid-letter with nothing to say it goes on. This one shows
`QFontMetrics.elidedText` of its text for the width it has (again on every resize), keeps the
whole text in its tooltip, and when selectable, copies the whole text: a selection that reaches
the "…" copies to the end of the hidden part, not the "…" itself.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QLabel, QMenu, QSizePolicy

ELLIPSIS = "…"


class ElidedLabel(QLabel):
    """One line, elided on the right. `text()` is what is shown, `full_text()` the whole."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self._full = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(False)
        # Any width: the layout decides, the label elides to what it gets.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.set_full_text(text)

    def full_text(self) -> str:
        return self._full

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()
        self.updateGeometry()

    def setText(self, text: str) -> None:  # Qt's name: a drop-in for QLabel
        self.set_full_text(text)

    def is_elided(self) -> bool:
        return self.text() != self._full

    # --- size ------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        """The whole text's width: a layout with room to spare shows all of it."""
        m = self.contentsMargins()
        width = self.fontMetrics().horizontalAdvance(self._full) + 2 * self.margin() + 2
        height = self.fontMetrics().height() + 2 * self.margin()
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSizeHint(self) -> QSize:
        hint = self.sizeHint()
        return QSize(min(hint.width(), self.fontMetrics().horizontalAdvance("M" + ELLIPSIS)),
                     hint.height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width() - 2 * self.margin()
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                              max(width, 0))
        if shown != super().text():
            super().setText(shown)

    # --- copy ------------------------------------------------------------------------------
    def copied_text(self) -> str:
        """What a copy gives: the selection, carried on to the end of the whole text when it
        reaches the "…" (the selection is of the shown text, the person means the whole)."""
        if not self.hasSelectedText():
            return ""
        start, selected = self.selectionStart(), self.selectedText()
        if self.is_elided() and start + len(selected) >= len(self.text()):
            return self._full[start:]
        return selected

    def keyPressEvent(self, event) -> None:
        if event.matches(QKeySequence.StandardKey.Copy) and self.hasSelectedText():
            QGuiApplication.clipboard().setText(self.copied_text())
            event.accept()
            return
        super().keyPressEvent(event)

    def contextMenuEvent(self, event) -> None:
        """Copy (the selection, as above) and Copy all: the standard menu's Copy would give
        the shown text, "…" and all."""
        if not self.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse:
            super().contextMenuEvent(event)
            return
        menu = QMenu(self)
        copy = menu.addAction("Copy")
        copy.setEnabled(self.hasSelectedText())
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(self.copied_text()))
        whole = menu.addAction("Copy all")
        whole.triggered.connect(lambda: QGuiApplication.clipboard().setText(self._full))
        menu.exec(event.globalPos())
