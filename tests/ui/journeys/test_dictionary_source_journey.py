"""Where the browser's names come from, as a person reads it (issue 18): on a store with masks the
concept dictionary names its ground truth; on a store without masks the browser first says to run
Evaluate, and after a click on Evaluate it names features from the cross-attention pseudo-masks
and says so, in the browser and on the feature page."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from journey_helpers import open_and_wait
from PySide6.QtCore import Qt

from explorer.analysis.evaluate import workspace_index_settings
from explorer.analysis.index import build_index, fired_maps
from explorer.analysis.masks import DAAM_THRESHOLD, threshold_maps
from explorer.analysis.pseudo_masks import LAST_STEPS, PSEUDO_FILE, VERSION
from explorer.analysis.truth import EXACT, PSEUDO, PSEUDO_SCHEMA
from explorer.ui.feature_table import COL_ID, COL_LABEL
from explorer.workspace import Workspace

WORD = "zebra"  # in no prompt: only the pseudo-masks can name a feature so


def _click_tab(qtbot, tabs, title):
    bar = tabs.tabBar()
    i = next(i for i in range(bar.count()) if bar.tabText(i) == title)
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(i).center())
    assert tabs.currentIndex() == i


def _click_row_of(qtbot, browser, feature):
    row = browser.model.row_of(feature)
    assert row >= 0, feature
    browser.table.scrollTo(browser.model.index(row, COL_ID))
    pos = browser.table.visualRect(browser.model.index(row, COL_ID)).center()
    qtbot.mouseClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def _dictionary_lines(page) -> list[str]:
    return [page.dictionary.item(i).text() for i in range(page.dictionary.count())]


@pytest.fixture
def maskfree(tiny_workspace, tmp_path):
    """A copy of the tiny workspace as a real model's would be: no masks in the store, indexes
    built without any ground truth (so no dictionary), no report."""
    folder = tmp_path / "maskfree"
    shutil.copytree(tiny_workspace, folder)
    (folder / "report.json").unlink(missing_ok=True)
    with h5py.File(folder / "store.h5", "a") as f:
        for name in ("masks", "objects"):
            if name in f:
                del f[name]
    ws = Workspace.open(folder)
    with ws.store() as store:
        assert not store.has_masks
        for entry in ws.saes():
            build_index(store, entry.path, workspace_index_settings(ws), force=True)
    return ws


def _write_pseudo_masks(ws, index, feature) -> int:
    """Cross-attention pseudo-masks in the file Evaluate reads (pseudo_masks.py's layout and
    attributes), crafted so that WORD's mask is `feature`'s thresholded map in every sample
    where it fires: random weights draw nothing a real word mask would overlap. Returns in how
    many samples the feature got the word."""
    n_hit = 0
    with ws.store() as store, h5py.File(ws.root / PSEUDO_FILE, "w") as f:
        samples = f.create_group("samples")
        for i in range(store.n_samples):
            image_shape = store.image(i).shape[:2]
            g = samples.create_group(str(i))
            g.attrs["shape"] = np.asarray(image_shape, np.int64)
            indices, values = index.codes(i, index.label_step)
            h, w, k = indices.shape
            features, maps = fired_maps(indices.reshape(h * w, k), values.reshape(h * w, k), h, w)
            if feature not in features:
                continue
            grid = threshold_maps(maps[list(features).index(feature)])
            mask = np.kron(grid, np.ones((image_shape[0] // h, image_shape[1] // w), bool))
            ds = g.create_dataset(f"{WORD}#1", data=mask)
            ds.attrs["kind"] = "word"
            ds.attrs["position"] = 1
            n_hit += 1
        attrs = {"schema": PSEUDO_SCHEMA, "version": VERSION, "complete": True,
                 "model_fingerprint": str(store.meta.get("model_hash") or ""),
                 "store_fingerprint": store.fingerprint, "threshold": DAAM_THRESHOLD,
                 "last_steps_share": LAST_STEPS, "n_samples": store.n_samples,
                 "summed_steps": np.asarray([1], np.int64), "sampling_steps": 2, "n_words": n_hit}
        for key, value in attrs.items():
            f.attrs[key] = value
    return n_hit


def test_a_mask_free_store_says_run_evaluate_then_names_features_from_pseudo_masks(
        qtbot, window, maskfree):
    open_and_wait(qtbot, window, maskfree.root)
    browser, page = window.browser, window.feature_page
    # Before any evaluation: no dictionary, and the browser says what makes one.
    assert browser.source_note.isVisible()
    assert "No concept dictionary yet: run Evaluate to name features" in browser.source_note.text()
    _click_row_of(qtbot, browser, browser.model.feature_at(0))
    _click_tab(qtbot, page.tabs, "Dictionary")
    assert page.dictionary_source.isVisible()
    assert "run Evaluate to name features" in page.dictionary_source.text()
    assert any("run Evaluate" in line for line in _dictionary_lines(page))

    # The feature that fires on the most labelling samples gets WORD's pseudo-mask.
    idx = window.source.index
    feature = int(np.argmax(idx.firing_rate[:, idx.label_step]))
    assert _write_pseudo_masks(maskfree, idx, feature) >= 2
    browser.filter.setFocus()
    qtbot.keyClicks(browser.filter, WORD)
    assert browser.model.rowCount() == 0  # nothing is called so yet

    # Evaluate, as a person starts it: the Evaluation tab, then its button.
    _click_tab(qtbot, window.tabs, "Evaluation")
    button = window.report_view.evaluate_button
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: button.isEnabled() and window.report_view.report is not None,
                    timeout=180_000)
    assert not window.messages, window.messages
    assert window.report_view.report.ground_truth_kind == PSEUDO

    # The browser now names features from the pseudo-masks, and says that is where they are from.
    assert f"concept dictionary from {PSEUDO}" in browser.source_note.text()
    browser.filter.clear()
    qtbot.keyClicks(browser.filter, WORD)
    assert feature in browser.model.order.tolist()
    m = browser.model
    cell = m.index(m.row_of(feature), COL_LABEL)
    assert m.data(cell) == WORD
    assert f"against {PSEUDO}" in m.data(cell, Qt.ItemDataRole.ToolTipRole)
    assert m.data(cell, Qt.ItemDataRole.FontRole).italic()  # provisional: grey and italic

    _click_row_of(qtbot, browser, feature)
    assert page.feature == feature
    _click_tab(qtbot, page.tabs, "Dictionary")
    assert f"from {PSEUDO}" in page.dictionary_source.text()
    lines = _dictionary_lines(page)
    assert lines and lines[0].startswith(f"{WORD}  (word) · IoU 1.00")
    assert f"provisional: {WORD}" in page.label.placeholderText()

    # Steering by words finds it too: the Steer tab, the word typed, Add by words clicked.
    _click_tab(qtbot, window.tabs, "Steer")
    steer = window.steer_view
    if steer.live.isChecked():
        qtbot.mouseClick(steer.live, Qt.MouseButton.LeftButton)
    steer.words.setFocus()
    qtbot.keyClicks(steer.words, WORD)
    qtbot.mouseClick(steer.add_words, Qt.MouseButton.LeftButton)
    assert feature in [r.feature for r in steer.rows], steer.warnings.text()
    # ...and says which ground truth the words were matched against.
    assert f"labelled {WORD} against {PSEUDO}" in window.statusBar().currentMessage()


def test_a_store_with_masks_names_them_as_the_dictionary_source(qtbot, window, tiny_workspace):
    open_and_wait(qtbot, window, tiny_workspace)
    browser, page = window.browser, window.feature_page
    assert f"concept dictionary from {EXACT}" in browser.source_note.text()
    assert EXACT in browser.model.headerData(COL_LABEL, Qt.Orientation.Horizontal,
                                             Qt.ItemDataRole.ToolTipRole)
    _click_row_of(qtbot, browser, browser.model.feature_at(0))
    _click_tab(qtbot, page.tabs, "Dictionary")
    assert f"from {EXACT}" in page.dictionary_source.text()
    assert "run Evaluate" not in page.dictionary_source.text()
