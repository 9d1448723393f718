"""The Qt binding must not leak or drop references to None or the bools on plain calls.

PySide6-Essentials 6.12.0 drops a reference to None on every void call (processEvents, setText,
repaint, …): on Python < 3.12 None is an ordinary object, so scrubbing a few thousand steps (or
this suite) ended in "Fatal Python error: none_dealloc". pyproject.toml keeps that release out."""

from __future__ import annotations

import gc
import sys

from PySide6.QtWidgets import QApplication, QLabel


def _counts() -> tuple[int, int, int]:
    gc.collect()
    return sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)


def test_void_calls_keep_none_and_the_bools_alive(qtbot):
    label = QLabel("x")
    qtbot.addWidget(label)
    label.show()
    app = QApplication.instance()
    app.processEvents()
    before = _counts()
    for k in range(2000):
        label.setText(str(k))
        label.repaint()
        label.isVisible()
        app.processEvents()
    after = _counts()
    # A few references may come and go with caches; a drain loses one per call (8000 here).
    assert all(abs(a - b) < 200 for a, b in zip(after, before)), (before, after)
