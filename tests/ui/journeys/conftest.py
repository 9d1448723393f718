"""The journeys' main window: shown and exposed, with its own settings folder, and message boxes
recorded instead of shown (a modal box would wait for a click no test makes)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

from explorer.ui.main_window import MainWindow


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: shown.append(a[2]))
    w = MainWindow(device="cpu")
    w.messages = shown
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
