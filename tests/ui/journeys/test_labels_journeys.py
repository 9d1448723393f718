"""Labelling as a person does it: typing into the label, tags and notes boxes, Ctrl+Z and
Ctrl+Shift+Z in them, Edit → Undo/Redo, clicks in the feature browser, and relaunching the app
on the same workspace (issue 17, Why-6)."""

from __future__ import annotations

import json
import shutil

import pytest
from labels_journey_helpers import action, open_by_menu, row_centre
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from explorer.ui.main_window import MainWindow


@pytest.fixture
def ws(tiny_workspace, tmp_path):
    return shutil.copytree(tiny_workspace, tmp_path / "ws")


@pytest.fixture
def make_window(qtbot, monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: shown.append(a[2]))
    windows = []

    def make():
        w = MainWindow(device="cpu")
        w.messages = shown
        qtbot.addWidget(w)
        w.show()
        w.activateWindow()
        qtbot.waitUntil(w.isActiveWindow, timeout=5_000)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()


def ctrl(qtbot, widget, key, shift=False):
    mods = Qt.KeyboardModifier.ControlModifier
    if shift:
        mods |= Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(widget, key, mods)


def click_into(qtbot, widget):
    target = widget.viewport() if hasattr(widget, "viewport") else widget
    qtbot.mouseClick(target, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(widget.hasFocus, timeout=2_000)


def saved_labels(ws) -> dict[tuple[str, int], dict]:
    path = ws / "labels.json"
    if not path.exists():
        return {}
    return {(x["sae_id"], x["feature"]): x for x in json.loads(path.read_text())["labels"]}


@pytest.mark.parametrize("size", [None, (1280, 800)], ids=["default-size", "1280x800"])
def test_undo_takes_back_a_whole_note_and_ctrl_z_in_notes_is_the_apps_undo(
    qtbot, make_window, ws, monkeypatch, size
):
    window = make_window()
    if size is not None:
        window.resize(*size)
    open_by_menu(qtbot, window, ws, monkeypatch)
    page, sae, f = window.feature_page, window.entry.id, window.feature_page.feature
    for box in (page.label, page.tags, page.notes):  # where a person can click them
        top_left = box.mapTo(window, box.rect().topLeft())
        assert box.isVisible() and window.rect().contains(top_left), (box, top_left)

    click_into(qtbot, page.notes)
    qtbot.keyClicks(page.notes, "round and red")
    click_into(qtbot, page.label)  # leaving the notes box ends the edit
    assert window.labels.get(sae, f).notes == "round and red"
    qtbot.waitUntil(lambda: window.undo_action.text() == f"&Undo Edit label {sae} #{f}")

    click_into(qtbot, page.notes)
    page.notes.moveCursor(page.notes.textCursor().MoveOperation.End)
    qtbot.keyClicks(page.notes, ", small")
    ctrl(qtbot, page.notes, Qt.Key.Key_Z)  # typed, not yet left: that edit is what goes
    assert page.notes.toPlainText() == "round and red"
    assert window.labels.get(sae, f).notes == "round and red"

    ctrl(qtbot, page.notes, Qt.Key.Key_Z)  # the whole first note, not one character
    assert page.notes.toPlainText() == ""
    assert window.labels.get(sae, f) is None
    ctrl(qtbot, page.notes, Qt.Key.Key_Z, shift=True)  # redo
    assert page.notes.toPlainText() == "round and red"
    ctrl(qtbot, page.notes, Qt.Key.Key_Z, shift=True)
    assert page.notes.toPlainText() == "round and red, small"

    window.autosaver.flush()
    assert saved_labels(ws)[(sae, f)]["notes"] == "round and red, small"


def test_typing_pauses_and_enter_each_end_one_undoable_edit(qtbot, make_window, ws, monkeypatch):
    window = make_window()
    open_by_menu(qtbot, window, ws, monkeypatch)
    page, sae, f = window.feature_page, window.entry.id, window.feature_page.feature
    click_into(qtbot, page.label)
    qtbot.keyClicks(page.label, "red")
    qtbot.keyClick(page.label, Qt.Key.Key_Return)
    click_into(qtbot, page.tags)
    qtbot.keyClicks(page.tags, "colour, shape")
    qtbot.keyClick(page.tags, Qt.Key.Key_Return)
    click_into(qtbot, page.notes)
    qtbot.keyClicks(page.notes, "seen at step 3")
    # No click elsewhere: a pause in typing also ends the edit (and autosave writes it).
    qtbot.waitUntil(lambda: window.labels.get(sae, f).notes == "seen at step 3", timeout=5_000)
    qtbot.waitUntil(lambda: (sae, f) in saved_labels(ws)
                    and saved_labels(ws)[(sae, f)]["notes"] == "seen at step 3", timeout=5_000)
    assert window.labels.get(sae, f).content == ("red", "seen at step 3", ("colour", "shape"))
    undo = action(window, "Edit", "Undo")
    undo.trigger()
    assert window.labels.get(sae, f).content == ("red", "", ("colour", "shape"))
    undo.trigger()
    assert window.labels.get(sae, f).content == ("red", "", ())
    assert page.tags.text() == "" and page.label.text() == "red"
    undo.trigger()
    assert window.labels.get(sae, f) is None and page.label.text() == ""
    assert not undo.isEnabled()


def test_undo_and_redo_first_go_to_the_feature_they_change(qtbot, make_window, ws, monkeypatch):
    window = make_window()
    open_by_menu(qtbot, window, ws, monkeypatch)
    page, table = window.feature_page, window.browser.table
    first_sae, first = window.entry.id, page.feature
    click_into(qtbot, page.label)
    qtbot.keyClicks(page.label, "a circle")
    qtbot.keyClick(page.label, Qt.Key.Key_Return)

    # Elsewhere: another feature of the same SAE, chosen in the browser.
    row = next(r for r in range(window.browser.model.rowCount())
               if window.browser.model.feature_at(r) != first)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=row_centre(table, row))
    other = window.browser.model.feature_at(row)
    assert page.feature == other
    undo = action(window, "Edit", "Undo")
    assert undo.isEnabled() and undo.text() == f"&Undo Edit label {first_sae} #{first}"
    undo.trigger()
    assert page.feature == first and page.label.text() == ""  # shown, then changed
    assert window.browser.model.feature_at(table.currentIndex().row()) == first
    assert window.labels.get(first_sae, first) is None

    # Another SAE (the combo, by keyboard), then Redo: back to the first SAE and feature.
    combo = window.sae_combo
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert window.entry.id != first_sae
    redo = action(window, "Edit", "Redo")
    qtbot.waitUntil(redo.isEnabled)
    redo.trigger()
    assert window.entry.id == first_sae and combo.currentData() == first_sae
    assert page.feature == first and page.label.text() == "a circle"
    assert window.labels.get(first_sae, first).label == "a circle"


def test_the_last_sae_feature_sample_and_step_come_back_on_relaunch(
    qtbot, make_window, ws, monkeypatch
):
    window = make_window()
    open_by_menu(qtbot, window, ws, monkeypatch)
    combo, table, view = window.sae_combo, window.browser.table, window.sample_view
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    sae = combo.currentData()
    assert sae == window.entry.id and combo.currentIndex() == 2
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=row_centre(table, 3))
    feature = window.browser.model.feature_at(3)
    assert window.feature_page.feature == feature
    view.sample.setFocus()
    qtbot.keyClick(view.sample, Qt.Key.Key_Up)
    qtbot.keyClick(view.sample, Qt.Key.Key_Up)
    view.slider.setFocus()
    qtbot.keyClick(view.slider, Qt.Key.Key_Right)
    qtbot.keyClick(view.slider, Qt.Key.Key_Right)
    sample, step = view.sample.value(), view.step
    assert (sample, step) == (2, 2)
    window.close()
    assert not window.isVisible()

    again = make_window()
    open_by_menu(qtbot, again, ws, monkeypatch)
    assert again.entry.id == sae and again.sae_combo.currentData() == sae
    assert again.feature_page.feature == feature
    assert again.browser.model.feature_at(again.browser.table.currentIndex().row()) == feature
    assert again.sample_view.sample.value() == sample and again.sample_view.step == step
    assert f"step {step + 1}/" in again.sample_view.step_label.text()



def test_the_overlays_settings_come_back_on_relaunch(qtbot, make_window, ws, monkeypatch):
    """Concept map, colormap, opacity, threshold and the all-steps scale, chosen by keys, are
    what the next launch shows; a word mode is not restored (it would regenerate a sample)."""
    window = make_window()
    open_by_menu(qtbot, window, ws, monkeypatch)
    view = window.sample_view
    defaults = view.overlay_settings()
    # The map's settings while the feature map shows (the concept map disables them), then it.
    view.cmap.setFocus()
    qtbot.keyClick(view.cmap, Qt.Key.Key_End)
    for slider in (view.opacity, view.threshold):
        slider.setFocus()
        for _ in range(3):
            qtbot.keyClick(slider, Qt.Key.Key_PageUp)
    for combo, data in ((view.scale, "sample"), (view.mode, "concepts")):
        combo.setFocus()
        qtbot.keyClick(combo, Qt.Key.Key_Home)
        for _ in range(combo.findData(data)):
            qtbot.keyClick(combo, Qt.Key.Key_Down)
    chosen = view.overlay_settings()
    assert all(chosen[k] != defaults[k] for k in defaults), (chosen, defaults)
    window.close()

    again = make_window()
    assert again.sample_view.overlay_settings() == chosen
    open_by_menu(qtbot, again, ws, monkeypatch)
    assert again.sample_view.overlay_settings() == chosen
    assert again.sample_view.canvas.overlay.isVisible()  # the concept map, drawn

    # A word mode is left as it was chosen for this launch only.
    view = again.sample_view
    view.mode.setFocus()
    qtbot.keyClick(view.mode, Qt.Key.Key_Home)
    for _ in range(view.mode.findData("attention")):
        qtbot.keyClick(view.mode, Qt.Key.Key_Down)
    assert view.mode.currentData() == "attention"
    again.close()
    third = make_window()
    assert third.sample_view.overlay_settings()["mode"] == defaults["mode"]

def test_export_from_the_menu_names_sae_model_and_author_and_every_format_imports_back(
    qtbot, make_window, ws, tiny_workspace, tmp_path, monkeypatch
):
    from explorer.store.reader import Store

    window = make_window()
    open_by_menu(qtbot, window, ws, monkeypatch)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ana Lyst", True))
    action(window, "Edit", "Label Author…").trigger()
    page = window.feature_page
    sae, f = window.entry.id, page.feature
    click_into(qtbot, page.label)
    qtbot.keyClicks(page.label, "red circle")
    qtbot.keyClick(page.label, Qt.Key.Key_Return)

    files = {}
    for fmt, name in (("json", "JSON…"), ("csv", "CSV…"), ("jsonl", "Neuronpedia-style JSONL…")):
        out = files[fmt] = tmp_path / f"export.{fmt}"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, o=out, **k: (str(o), ""))
        action(window, "File", name).trigger()
        assert out.is_file(), fmt
        assert window.statusBar().currentMessage() == f"exported 1 labels to {out}"
    rec = json.loads(files["jsonl"].read_text())
    with Store.open(ws / "store.h5") as store:
        meta = store.meta
    assert rec["layer"] == rec["saeId"] == sae and "/t" in sae  # block and timestep
    assert rec["modelId"] == f"{meta['model_name']}@{meta['model_hash']}"
    assert rec["authorName"] == "Ana Lyst" and rec["description"] == "red circle"

    # Another copy of the workspace reads each file back: added once, then unchanged.
    other = shutil.copytree(tiny_workspace, tmp_path / "other")
    open_by_menu(qtbot, window, other, monkeypatch)
    assert window.labels.get(sae, f) is None
    for fmt, path in files.items():
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, p=path, **k: (str(p), ""))
        action(window, "File", "Import Labels…").trigger()
        expected = "1 added, 0 unchanged" if fmt == "json" else "0 added, 1 unchanged"
        assert window.messages[-1] == f"{path.name}: {expected}, 0 conflicts", fmt
        lab = window.labels.get(sae, f)
        assert (lab.label, lab.author) == ("red circle", "Ana Lyst")
    assert page.feature == f and page.label.text() == "red circle"
