"""The one-line label that ends in "…": what it shows, and what a copy gives."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication

from explorer.ui.elided_label import ElidedLabel

TEXT = ("a large purple cross at the bottom and a large red cross at the top left and a small "
        "blue square at the left on a white background")
LEFT = Qt.MouseButton.LeftButton


def _label(qtbot, width=220):
    label = ElidedLabel(TEXT)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    qtbot.addWidget(label)
    label.resize(width, 24)
    label.show()
    qtbot.waitExposed(label)
    return label


def _select(qtbot, label, x0, x1):
    y = label.height() // 2
    qtbot.mousePress(label, LEFT, pos=QPoint(x0, y))
    qtbot.mouseMove(label, QPoint((x0 + x1) // 2, y))
    qtbot.mouseMove(label, QPoint(x1, y))
    qtbot.mouseRelease(label, LEFT, pos=QPoint(x1, y))


def _copy(qtbot, label) -> str:
    QApplication.clipboard().clear()
    qtbot.keyClick(label, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    return QApplication.clipboard().text()


def test_shown_text_ends_in_an_ellipsis_and_fits(qtbot):
    label = _label(qtbot)
    shown = label.text()
    assert shown.endswith("…") and TEXT.startswith(shown[:-1])
    assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.toolTip() == TEXT and label.full_text() == TEXT
    label.resize(2000, 24)
    qtbot.waitUntil(lambda: label.text() == TEXT, timeout=2_000)
    label.setText("short")
    assert label.text() == "short" and label.toolTip() == "short"


def test_a_copy_gives_what_the_selection_means(qtbot):
    label = _label(qtbot)
    # Up to the "…": the whole rest of the text.
    _select(qtbot, label, 1, label.width() - 1)
    assert label.selectedText().endswith("…")
    assert _copy(qtbot, label) == TEXT
    # A part that stops short of the "…": that part, as selected. (Another label: a press in
    # the selection would start dragging it, not a new selection.)
    label = _label(qtbot)
    _select(qtbot, label, 1, label.width() // 3)
    part = label.selectedText()
    assert part and not part.endswith("…")
    assert _copy(qtbot, label) == part == TEXT[:len(part)]


def test_the_context_menu_copies_all(qtbot):
    label = _label(qtbot)
    chosen = []

    def choose():
        menu = QApplication.activePopupWidget()
        action = next(a for a in menu.actions() if a.text() == "Copy all")
        chosen.append(action.text())
        action.trigger()
        menu.close()

    QTimer.singleShot(200, choose)
    QApplication.clipboard().clear()
    # A right-click, as the window system hands it to the widget (QTest's click goes to the
    # widget directly, past the window that turns a right press into a context-menu event).
    centre = label.rect().center()
    QApplication.sendEvent(label, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, centre,
                                                    label.mapToGlobal(centre)))
    assert chosen == ["Copy all"] and QApplication.clipboard().text() == TEXT
