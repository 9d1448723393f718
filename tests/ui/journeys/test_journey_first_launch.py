"""First launch: the demo build dialog as a person sees it (stages, time, a sign of life during
a long stage), Cancel, and the next step after it. The build itself is replaced by a job that
reports the real build's stages and then sits in the linear probe until cancelled."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QFileDialog, QMessageBox

import explorer.ui.build_dialog as build_dialog
from explorer.errors import Cancelled
from explorer.ui.build_dialog import STAGE_NAMES, BuildDialog
from explorer.ui.main_window import MainWindow

UPDATES = [("collect", 0.0, "loading the model"), ("collect", 0.3, "generating batch 1/2"),
           ("train", 0.6, "training mid_block.attentions.0"), ("index", 0.8, "indexing"),
           ("evaluate", 0.92, "metrics"), ("evaluate", 0.98, "linear probe up_blocks.1.attentions.0")]


def slow_probe_build(folder, small, *, cancel, progress):
    for stage, fraction, message in UPDATES:
        progress({"stage": stage, "fraction": fraction, "message": message})
        time.sleep(0.02)
    while not cancel():  # the probe's long fit: no update for minutes
        time.sleep(0.02)
    raise Cancelled()


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    monkeypatch.setattr(build_dialog, "build_demo_job", slow_probe_build)
    monkeypatch.setattr(build_dialog, "QUIET_S", 0.5)
    w = MainWindow(device="cpu")
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def _menu_action(window, text):
    for menu in window.menuBar().actions():
        for action in menu.menu().actions():
            if action.text().replace("&", "") == text:
                return action
    raise AssertionError(f"no menu item {text!r}")


def _visible_text(dialog) -> str:
    from PySide6.QtWidgets import QLabel

    return "\n".join(lb.text() for lb in dialog.findChildren(QLabel) if lb.isVisible())


def test_build_dialog_names_every_stage_keeps_moving_and_cancels_to_a_next_step(
        qtbot, window, monkeypatch):
    _menu_action(window, "Build Demo Workspace…").trigger()
    dialog = window.findChild(BuildDialog)
    assert dialog is not None and dialog.isVisible()
    # Every stage is named before it runs, the evaluation and the probe included.
    text = _visible_text(dialog)
    for _, name in STAGE_NAMES:
        assert name in text
    assert "Evaluate" in text and "linear probe" in text
    qtbot.waitUntil(lambda: "linear probe" in dialog.stage.text(), timeout=5_000)
    rows = {key: dialog.rows[key].text() for key, _ in STAGE_NAMES}
    assert rows["probe"].startswith("▶") and all(rows[k].startswith("✓") for k in
                                                 ("collect", "train", "index", "evaluate"))
    assert dialog.bar.value() == 980
    # Time spent and an estimate; while the probe sends nothing, the dialog still moves.
    qtbot.waitUntil(lambda: "still working" in dialog.clock.text(), timeout=5_000)
    first = dialog.clock.text()
    assert first.startswith("Elapsed ") and "left" in first
    assert dialog.busy.isVisible() and dialog.busy.maximum() == 0  # an animated busy bar
    qtbot.waitUntil(lambda: dialog.clock.text() != first, timeout=3_000)
    # Cancel: a clear message and the next steps, then Close without an error in a slot.
    cancel = dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel)
    qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.stage.text().startswith("Cancelled"), timeout=5_000)
    qtbot.waitUntil(lambda: not window.pool.running(), timeout=5_000)
    qtbot.wait(50)  # the pool deletes the finished worker
    assert dialog.again.isVisible() and dialog.again.text() == "Build demo again"
    assert dialog.open_button.isVisible() and dialog.open_button.text() == "Open workspace…"
    assert not dialog.busy.isVisible()
    # Build again restarts; Escape cancels it again.
    qtbot.mouseClick(dialog.again, Qt.MouseButton.LeftButton)
    assert not dialog.again.isVisible()
    qtbot.waitUntil(lambda: "linear probe" in dialog.stage.text(), timeout=5_000)
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: dialog.stage.text().startswith("Cancelled"), timeout=5_000)
    qtbot.waitUntil(lambda: not window.pool.running(), timeout=5_000)
    qtbot.wait(50)
    # Open workspace… asks for a folder (the person cancels the file dialog here).
    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda *a, **k: asked.append(a) or "")
    qtbot.mouseClick(dialog.open_button, Qt.MouseButton.LeftButton)
    assert asked and not dialog.isVisible()
    # The empty window's firing plot spans t 1 → 0 and rates 0–1, not a range around nothing.
    (x0, x1), (y0, y1) = window.feature_page.firing.getViewBox().viewRange()
    assert -0.1 <= x0 <= 0.0 and 1.0 <= x1 <= 1.1 and -0.1 <= y0 <= 0.0 and 1.0 <= y1 <= 1.1


def test_close_after_cancel_raises_nothing(qtbot, window):
    _menu_action(window, "Build Demo Workspace…").trigger()
    dialog = window.findChild(BuildDialog)
    qtbot.waitUntil(lambda: "linear probe" in dialog.stage.text(), timeout=5_000)
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel),
                     Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.pool.running(), timeout=5_000)
    qtbot.wait(50)  # the worker is deleted now: the old dialog asked it isRunning() here
    close = dialog.buttons.button(QDialogButtonBox.StandardButton.Close)
    assert close is not None
    qtbot.mouseClick(close, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
