import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer


def _open(qtbot, window, path):
    worker = window.open_workspace(path)
    # Not waitSignal(worker.finished): a job that fails at once (not a workspace) can finish before
    # the spy connects, and the signal is then never seen (a CI flake). The pool lets go of a
    # worker only after its finished signal reached the UI thread, so wait for that instead.
    qtbot.waitUntil(lambda: not window.pool.holds(worker), timeout=60_000)
    qtbot.waitUntil(lambda: window.source is not None or bool(window.messages), timeout=10_000)


def _distinct_colours(widget) -> int:
    img = widget.grab().toImage()
    return len({img.pixel(x, y) for x in range(0, img.width(), 5) for y in range(0, img.height(), 5)})


def test_opens_a_workspace_and_shows_real_content(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    assert window.source is not None and window.source.has_index
    assert window.sae_combo.count() == 4  # two blocks × two timesteps
    assert window.browser.model.rowCount() > 0
    assert "samples" in window.ws_label.text() and "index ✓" in window.ws_label.text()
    # The sample canvas shows an image, not an empty view.
    assert _distinct_colours(window.sample_view.canvas) > 30
    # A feature is selected and the feature page shows it.
    assert window.feature_page.feature is not None
    assert window.feature_page.title.text().startswith("Feature #")


def test_scrubbing_changes_the_picture_and_the_step(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    view = window.sample_view
    view.mode.setCurrentIndex(view.mode.findData("none"))
    view.slider.setValue(0)
    first = view.canvas.image.image.copy()
    view.slider.setValue(view.slider.maximum())
    last = view.canvas.image.image.copy()
    assert not np.array_equal(first, last), "predicted x0 at the first and last step are the same"
    assert f"step {view.slider.maximum() + 1}/" in view.step_label.text()
    assert window.feature_page.step == view.slider.maximum()


def test_concept_map_and_click_lists_features(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    view = window.sample_view
    view.mode.setCurrentIndex(view.mode.findData("concepts"))
    assert view.canvas.overlay.isVisible()
    assert view.side.count() > 0 and "position" in view.side.item(0).toolTip()
    # The legend counts each feature's positions: together, every position with a top feature.
    _, top_v = window.source.concept_map(view.sample.value(), view.step)
    counts = [int(view.side.item(r).text().rsplit("(", 1)[1].rstrip(")"))
              for r in range(view.side.count())]
    assert sum(counts) == int((top_v > 0).sum())
    idx, val = window.source.index.codes(view.sample.value(), view.step)
    view._on_click(0, 0)
    expected = int((val[0, 0] > 0).sum())
    assert view.side.count() == expected
    if expected:
        top = int(idx[0, 0][np.argmax(val[0, 0])])
        assert view.side.item(0).text().startswith(f"#{top} ")


def test_feature_overlay_matches_the_index_map(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    view = window.sample_view
    view.mode.setCurrentIndex(view.mode.findData("feature"))
    f = window.feature_page.feature
    # Where the feature fires most: the overlay is its map.
    top = window.source.index.top_patches(f)[0]
    view.goto(top.sample, top.step)
    grid = window.source.feature_map(top.sample, top.step, f)
    assert grid.max() > 0 and view.canvas.overlay.isVisible()
    np.testing.assert_array_equal(view.canvas.overlay.image, grid)
    # Where it does not fire at all: no overlay.
    store = window.source.store
    silent = next((i, s) for i in range(store.n_samples) for s in range(store.n_steps)
                  if window.source.feature_map(i, s, f).max() == 0)
    view.goto(*silent)
    assert not view.canvas.overlay.isVisible()


def test_gallery_click_opens_that_sample_at_that_step(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    page = window.feature_page
    page.scope.setCurrentIndex(page.scope.findData("all"))
    assert page.gallery.count() > 0
    item = page.gallery.item(page.gallery.count() - 1)
    sample, step = item.data(256)
    page._on_patch(item)
    assert window.sample_view.sample.value() == sample and window.sample_view.step == step


def test_label_edit_autosaves_and_undoes(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    f = window.feature_page.feature
    window.feature_page.label.setText("red things")
    window.feature_page._emit_label()
    assert window.browser.model.labels[f] == "red things"
    window.autosaver.flush()
    saved = json.loads((tiny_workspace / "labels.json").read_text())
    assert any(x["label"] == "red things" and x["feature"] == f for x in saved["labels"])
    window.undo()
    assert f not in window.browser.model.labels
    window.redo()
    assert window.browser.model.labels[f] == "red things"
    window.labels.set(window.entry.id, f, label="", notes="", tags=())
    window.autosaver.flush()


def test_a_workspace_opens_on_its_first_named_feature(qtbot, window, tiny_workspace, tmp_path):
    import shutil

    from explorer.labels import LabelDocument

    _open(qtbot, window, tiny_workspace)
    # Random weights label nothing: the first row.
    assert window.feature_page.feature == window.browser.model.feature_at(0)
    named = window.browser.model.feature_at(2)
    # Another folder (this one's last view would be restored): the same workspace with a label.
    other = shutil.copytree(tiny_workspace, tmp_path / "named")
    doc = LabelDocument()
    doc.set(window.entry.id, named, label="a concept")
    doc.save(other / "labels.json")
    _open(qtbot, window, other)
    assert window.feature_page.feature == named


def test_not_a_workspace_is_a_message_and_the_app_stays_open(qtbot, window, tmp_path):
    _open(qtbot, window, tmp_path)
    assert window.messages and "not a workspace" in window.messages[-1]
    assert window.isVisible() and window.source is None


def test_missing_index_is_reported_not_fatal(qtbot, window, tiny_workspace, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    for index in ws.glob("saes/*/*/index.h5"):
        index.write_bytes(b"not hdf5")  # corrupt every index
    _open(qtbot, window, ws)
    assert window.source is not None and not window.source.has_index
    assert window.source.index_error
    assert window.isVisible()


def test_steer_with_zero_strength_equals_the_original(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    steer = window.steer_view
    steer.live.setChecked(False)
    steer.steps.setValue(3)
    steer.set_prompt("a large red circle at the left on a white background", 3)
    row = steer.add(window.feature_page.feature, strength=0.0)
    rid = steer.start()
    qtbot.waitUntil(lambda: steer.request is None, timeout=60_000)
    assert steer.last is not None
    assert np.array_equal(steer.last["original"], steer.last["steered"])
    row.spin.setValue(4.0)
    steer.mode.setCurrentIndex(steer.mode.findData("add"))
    rid2 = steer.start()
    assert rid2 != rid
    qtbot.waitUntil(lambda: steer.request is None, timeout=60_000)
    assert not np.array_equal(steer.last["original"], steer.last["steered"])
    # The caption says what was edited and how much the image changed.
    change = np.abs(steer.last["steered"].astype(int) - steer.last["original"]).mean() / 255
    caption = steer.summary.toPlainText()
    assert f"add edit of #{window.feature_page.feature}" in caption and "× 4" in caption
    assert f"mean pixel change {change:.3f}" in caption and "seed 3" in caption


def test_steering_starts_from_the_stored_sample(qtbot, window, tiny_workspace):
    """The steering page takes the workspace's steps and guidance, so its unedited image is the
    very sample the store holds (not one made with the page's own defaults)."""
    _open(qtbot, window, tiny_workspace)
    steer, store = window.steer_view, window.source.store
    assert steer.guidance.value() == store.meta["guidance"]
    steer.live.setChecked(False)
    steer.set_prompt(store.prompts[0], int(store.seeds[0]))
    steer.add(window.feature_page.feature, strength=0.0)
    steer.start()
    qtbot.waitUntil(lambda: steer.request is None, timeout=60_000)
    # The same sample up to float rounding: collect ran a batch, this runs one image, and the
    # thread count changes the order of float sums (a grey level here and there). Other
    # settings or another sample differ everywhere.
    diff = np.abs(steer.last["original"].astype(int) - store.image(0).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_ui_stays_responsive_while_generating(qtbot, window, tiny_workspace):
    _open(qtbot, window, tiny_workspace)
    gen = window.generate_view
    gen.steps.setValue(12)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    t0 = time.perf_counter()
    gen.start()
    qtbot.waitUntil(lambda: gen.request is None, timeout=120_000)
    elapsed = time.perf_counter() - t0
    timer.stop()
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([elapsed])
    # The event loop kept turning: ticks throughout, no gap near the whole generation.
    assert len(ticks) >= max(3, 0.3 * elapsed / 0.02), (len(ticks), elapsed)
    assert gaps.max() < max(0.5, 0.5 * elapsed), gaps.max()


CRASH_CHILD = textwrap.dedent(
    """
    import os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication
    from explorer.ui.jobs import open_workspace_job
    from explorer.ui.main_window import MainWindow
    app = QApplication([])
    w = MainWindow(device="cpu")
    loaded = open_workspace_job(sys.argv[1], cancel=lambda: False, progress=lambda v: None)
    w._on_workspace_loaded(loaded)
    f = w.feature_page.feature
    w.feature_page.label.setText("survives a crash")
    w.feature_page._emit_label()
    import time
    deadline = time.time() + 20
    # The timer clears `pending` before it writes; the save is done when the doc is clean.
    while (w.autosaver.pending or w.labels.dirty) and time.time() < deadline:
        time.sleep(0.05)
    print("edited", f, flush=True)
    time.sleep(60)  # killed here
    """
)


def test_label_autosave_survives_a_kill(tiny_workspace, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, str(ws)], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        line = child.stdout.readline()
        assert line.startswith("edited"), line
        feature = int(line.split()[1])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    from explorer.labels import LabelDocument

    doc = LabelDocument.load(ws / "labels.json")
    assert any(lab.feature == feature and lab.label == "survives a crash" for lab in doc.items())


def test_a_workspace_built_from_other_weights_opens_with_a_notice(
    qtbot, window, tiny_workspace, monkeypatch
):
    import explorer.engine.loading as loading

    _open(qtbot, window, tiny_workspace)
    assert window._notice is None  # built from the weights it holds
    monkeypatch.setattr(loading, "folder_fingerprint", lambda folder: "0123456789abcdef")
    _open(qtbot, window, tiny_workspace)
    assert window.source is not None  # it still opens
    assert "other weights" in window._notice.text()
    window._notice.close()


def test_a_notice_does_not_block_the_window(qtbot, window):
    window.notice("the demo workspace was built with other weights")
    box = window._notice
    assert box.isVisible() and not box.isModal()
    assert "other weights" in box.text()
    box.close()


def test_the_window_fits_a_1600_by_1000_screen_and_tabs_can_be_shown(qtbot, window):
    # The pages scroll instead of imposing their minimum sizes on the window.
    hint = window.minimumSizeHint()
    assert hint.width() <= 1600 and hint.height() <= 1000, hint
    window.show_tab(window.steer_view)
    assert window.tabs.currentWidget().widget() is window.steer_view
    window.show_tab(window.sample_view)
    assert window.tabs.currentWidget().widget() is window.sample_view


def test_every_feature_browser_column_is_visible_at_the_default_size(qtbot, window, tiny_workspace):
    window.resize(1860, 960)  # the default window on a screen of 1920 px or more
    window.features_dock.setFloating(True)  # and View → Reset layout brings it back
    window.reset_docks()
    _open(qtbot, window, tiny_workspace)
    assert not window.features_dock.isFloating()
    table = window.browser.table
    header = table.horizontalHeader()
    qtbot.waitUntil(lambda: header.length() <= table.viewport().width(), timeout=5_000)
    # The sparkline (firing across steps) is the last column: no horizontal scrolling to see it,
    # and labels keep room for a phrase like "large purple cross".
    assert header.sectionViewportPosition(header.count() - 1) + header.sectionSize(
        header.count() - 1
    ) <= table.viewport().width()
    assert header.sectionSize(1) >= 120, [header.sectionSize(i) for i in range(header.count())]


def test_add_by_words_adds_the_dictionary_features_of_those_words(
    qtbot, window, tiny_workspace, monkeypatch
):
    import explorer.steering.features as features_mod

    _open(qtbot, window, tiny_workspace)
    steer = window.steer_view
    steer.live.setChecked(False)
    # Random weights draw no shapes, so the tiny workspace's dictionary labels nothing as red.
    steer.words.setText("red")
    assert steer.add_by_words() == [] and "red" in steer.warnings.text()
    assert steer.rows == []
    seen = []

    def lookup(table, words, limit=8):
        seen.append(list(words))
        return [2, 5], []

    monkeypatch.setattr(features_mod, "features_for_all_words", lookup)
    monkeypatch.setattr(features_mod, "words_evidence",
                        lambda table, feats, words, truth: {2: "square (1 dictionary match)"})
    # A name from prompt words alone gives way to the dictionary evidence; a real name stays.
    steer.labels = {2: "≈ yellow", 5: "large red circle"}
    steer.words.setText("Red, square")
    steer.add_words.click()
    assert seen == [["red", "square"]]
    assert [r.feature for r in steer.rows] == [2, 5] and steer.warnings.text() == ""
    assert [r.name.text() for r in steer.rows] == ["#2 square (1 dictionary match)",
                                                  "#5 large red circle"]
    steer.add_words.click()  # the same words again add nothing twice
    assert [r.feature for r in steer.rows] == [2, 5]
    for row in list(steer.rows):
        steer._remove(row)
    qtbot.waitUntil(lambda: steer.request is None, timeout=60_000)


def test_an_unreadable_sae_folder_is_named_in_the_status_bar(qtbot, window, tiny_workspace, tmp_path):
    import shutil

    ws = shutil.copytree(tiny_workspace, tmp_path / "ws")
    cfgs = sorted((ws / "saes").glob("*/*/cfg.json"))
    cfgs[0].write_text("{ not json")
    _open(qtbot, window, ws)
    sae_id = f"{cfgs[0].parent.parent.name}/{cfgs[0].parent.name}"
    ids = [window.sae_combo.itemData(i) for i in range(window.sae_combo.count())]
    assert sae_id not in ids and len(ids) == len(cfgs) - 1
    message = window.statusBar().currentMessage()
    assert f"skipped SAE saes/{sae_id}: cfg.json cannot be read" in message, message


def test_a_collected_store_alone_opens_and_says_what_to_do(qtbot, window, tiny_workspace, tmp_path):
    # What `explorer collect --out W/store.h5` leaves: no workspace.json, no SAEs yet.
    folder = tmp_path / "W"
    folder.mkdir()
    (folder / "store.h5").write_bytes((tiny_workspace / "store.h5").read_bytes())
    _open(qtbot, window, folder)
    assert window.source is not None and (folder / "workspace.json").is_file()
    assert window.feature_page.title.text() == "No SAE: train one with `explorer train`"
    assert "no SAEs yet" in window.statusBar().currentMessage()
    assert _distinct_colours(window.sample_view.canvas) > 30  # the samples are there to scrub


def test_word_attention_overlay_is_the_words_cross_attention_at_the_step(qtbot, window, tiny_workspace):
    from explorer.engine import generate

    _open(qtbot, window, tiny_workspace)
    view = window.sample_view
    view.goto(1, 2)
    view.mode.setCurrentIndex(view.mode.findData("attention"))
    assert "Regenerating sample 1" in view.side_title.text()
    qtbot.waitUntil(lambda: view._attention is not None, timeout=60_000)
    assert window.statusBar().currentMessage() == "cross-attention maps of sample 1 ready"
    window._attention_request = (-7, 1, "b")  # a request's progress reaches the status bar
    window._attention_progressed(-7, {"stage": "step", "step": 3, "n_steps": 25})
    assert window.statusBar().currentMessage().endswith("b's cross-attention: step 4/25")
    window._attention_request = None
    prompt = window.source.prompt(1)
    from explorer.ui.sample_view import prompt_words

    # Each content word once (no "a", "at", "on", no second "a").
    assert view.word.isVisible() and [view.word.itemText(k) for k in range(view.word.count())] == prompt_words(prompt)
    assert view.word.currentText().lower() not in ("a", "an", "the")
    # The overlay equals the map of a direct regeneration with the same settings.
    settings = window.source.generation(1)
    block = window.source.block
    maps = {}
    generate(window.models.get(), [prompt], [settings["seed"]], settings["steps"], settings["guidance"],
             cross_attention=[block], on_step=lambda info: maps.setdefault(info.step, info.attention))
    step = settings["step_index"][2]
    for k in (view.word.currentIndex(), 0):
        view.word.setCurrentIndex(k)
        tokens = view.word.currentData()
        expected = maps[step][block]["cond"][0][..., tokens].sum(-1).numpy()
        assert view.canvas.overlay.isVisible()
        np.testing.assert_allclose(view.canvas.overlay.image, expected, rtol=2e-3, atol=1e-4)
        assert f"“{view.word.currentText()}”" in view.side_title.text()
    # The list beside it ranks the words; double-clicking one shows its map.
    peaks = [float(item.text().rsplit("peak ", 1)[1]) for item in
             (view.side.item(r) for r in range(view.side.count()))]
    assert len(peaks) == view.word.count() and peaks == sorted(peaks, reverse=True)
    weakest = view.side.item(view.side.count() - 1)
    word, k = weakest.text().split()[0], weakest.data(Qt.ItemDataRole.UserRole)[1]
    view._on_side_item(weakest)
    assert view.word.currentIndex() == k and view.word.currentText() == word
    assert f"“{word}”" in view.side_title.text()
    # Another sample asks again; the feature map needs no model.
    view.sample.setValue(2)
    assert not view.canvas.overlay.isVisible() and "Regenerating sample 2" in view.side_title.text()
    qtbot.waitUntil(lambda: view._attention is not None and view._attention[0][0] == 2, timeout=60_000)
    view.mode.setCurrentIndex(view.mode.findData("feature"))
    assert not view.word.isVisible()


def test_word_probe_overlay_reads_the_stores_delta_through_the_saved_probe(qtbot, window, tiny_workspace,
                                                                          monkeypatch):
    from explorer.analysis.linear_probe import ProbeWeights

    _open(qtbot, window, tiny_workspace)
    view = window.sample_view
    view.goto(1, 2)
    view.mode.setCurrentIndex(view.mode.findData("probe"))
    block = window.source.block
    probe = ProbeWeights.load(window.workspace.probe_path(block))
    assert view.word.isVisible() and view.word.isEnabled()
    assert [view.word.itemText(k) for k in range(view.word.count())] == probe.words
    assert "Regenerating" not in view.side_title.text()  # read from the store: no model
    delta = window.source.store.activation(block, "cond", 1, 2)
    shown = 0
    for k in range(min(3, view.word.count())):
        view.word.setCurrentIndex(k)
        expected = np.clip(probe.scores(delta, 2)[..., k], 0.0, None)
        if expected.max() > 0:
            shown += 1
            assert view.canvas.overlay.isVisible()
            np.testing.assert_allclose(view.canvas.overlay.image, expected, rtol=1e-5, atol=1e-6)
        assert f"“{probe.words[k]}”" in view.side_title.text()
    assert shown > 0
    # Every word the probe knows, ranked by its peak at this step; a double-click shows its map.
    peaks = [float(view.side.item(r).text().rsplit("peak ", 1)[1]) for r in range(view.side.count())]
    assert len(peaks) == len(probe.words) and peaks == sorted(peaks, reverse=True)
    last = view.side.item(view.side.count() - 1)
    word = last.text().split("  peak")[0]
    view._on_side_item(last)  # the list is rebuilt: `last` is gone after this
    assert view.word.currentText() == word and f"“{word}”" in view.side_title.text()
    # Scrubbing reads the next step's Δ.
    view.slider.setValue(3)
    assert f"step 4/{window.source.n_steps}" in view.step_label.text()
    # Without a saved probe (never evaluated): it says so, and what fits one.
    monkeypatch.setattr(type(window.workspace), "probe_path", lambda self, b: self.root / "nowhere.safetensors")
    view.refresh_overlay()
    assert not view.canvas.overlay.isVisible() and not view.word.isEnabled()
    assert "No word probe" in view.side_title.text() and "Evaluate" in view.side_title.text()


def _click_tab(qtbot, window, title):
    bar = window.tabs.tabBar()
    i = next(i for i in range(bar.count()) if bar.tabText(i) == title)
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(i).center())
    assert window.tabs.currentIndex() == i


def test_shrinking_the_window_gives_the_steer_and_explore_centre_its_share(
        qtbot, window, tiny_workspace):
    """1600×1000 shrunk to 1280×800 on the Steer and the Explore tab: the docks give up width
    as they do in a window first shown at 1280×800 (NARROW_WINDOW), so the centre keeps at
    least 45 % of the window and the steering pictures are not squeezed to slivers."""
    window.resize(1600, 1000)
    _open(qtbot, window, tiny_workspace)
    for title in ("Steer", "Explore"):
        window.resize(1600, 1000)
        _click_tab(qtbot, window, title)
        # Settled at 1600: the docks have their share of it (as the sample-view journey says).
        qtbot.waitUntil(lambda: window.width() == 1600 and window.features_dock.width() >= 400
                        and window.feature_dock.width() >= 320, timeout=5_000)
        wide_docks = (window.features_dock.width(), window.feature_dock.width())
        window.resize(1280, 800)
        seen = {}

        def shared(seen=seen, wide_docks=wide_docks):
            page = window.tabs.currentWidget()
            seen.update(centre=window.tabs.width(), viewport=page.viewport().width(),
                        docks=(window.features_dock.width(), window.feature_dock.width()))
            return (window.width() == 1280 and seen["centre"] >= 0.45 * 1280
                    and seen["viewport"] >= 0.45 * 1280
                    and all(d < w for d, w in zip(seen["docks"], wide_docks, strict=True))
                    and not page.horizontalScrollBar().isVisible())

        try:
            qtbot.waitUntil(shared, timeout=5_000)  # after the re-share timer (80 ms)
        except Exception:
            raise AssertionError((title, wide_docks, seen)) from None
        if title == "Steer":
            # The pictures, not the space around them: the controls may take the width square
            # pictures in a short window cannot use.
            steer = window.steer_view
            for canvas in (steer.original, steer.steered, steer.diff):
                assert min(canvas.width(), canvas.height()) >= 180, canvas.size()
