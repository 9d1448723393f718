"""Journeys through the Sample view, by keyboard and mouse: a picture at every step without
stored previews, the overlay's colour bar and value under the pointer, the word lists, and the
layout at a small and a large window."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from journey_helpers import open_and_wait, point_at_cell
from PySide6.QtCore import QPoint, QRect, Qt

from explorer.store import Store
from explorer.store.preview import psnr


def _choose(qtbot, combo, data) -> None:
    """Click the combo box open and pick the item with the arrow keys and Return (stepping the
    closed box with arrows would switch the overlay at every item on the way)."""
    qtbot.mouseClick(combo, Qt.MouseButton.LeftButton)
    popup = combo.view()
    qtbot.waitUntil(popup.isVisible, timeout=2_000)
    qtbot.keyClick(popup, Qt.Key.Key_Home)
    for _ in range(combo.findData(data)):
        qtbot.keyClick(popup, Qt.Key.Key_Down)
    qtbot.keyClick(popup, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not popup.isVisible(), timeout=2_000)
    assert combo.currentData() == data


def _go(qtbot, view, sample: int, step: int) -> None:
    """Type the sample number, then walk the slider with Home and → as a person does."""
    view.sample.setFocus()
    qtbot.keyClick(view.sample, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(view.sample, str(sample))
    qtbot.keyClick(view.sample, Qt.Key.Key_Return)
    view.slider.setFocus()
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    for _ in range(step):
        qtbot.keyClick(view.slider, Qt.Key.Key_Right)
    assert (view.sample.value(), view.step) == (sample, step)


def _feature_map_at_first_step(qtbot, window, workspace):
    """Open the workspace, choose the feature map, and go to the shown feature's strongest
    sample at its first step: (view, feature, that top patch)."""
    open_and_wait(qtbot, window, workspace)
    view = window.sample_view
    _choose(qtbot, view.mode, "feature")
    f = window.feature_page.feature
    top = window.source.index.top_patches(f)[0]
    _go(qtbot, view, top.sample, 0)
    return view, f, top


def _global_rect(widget) -> QRect:
    return QRect(widget.mapToGlobal(QPoint(0, 0)), widget.size())


def test_a_store_without_previews_shows_each_steps_picture(qtbot, window, tiny_workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    (ws / "latent_preview.json").unlink(missing_ok=True)
    with h5py.File(ws / "store.h5", "a") as f:
        del f["previews"]  # as `explorer collect` writes it without --previews
    open_and_wait(qtbot, window, ws)
    assert not window.source.has_previews
    view = window.sample_view
    _choose(qtbot, view.mode, "none")
    _go(qtbot, view, 1, 0)
    first = view.canvas.image.image.copy()
    qtbot.keyClick(view.slider, Qt.Key.Key_End)
    assert view.step == window.source.n_steps - 1
    last = view.canvas.image.image.copy()
    final = window.source.image(1)
    assert first.shape == last.shape == final.shape
    assert not np.array_equal(first, last), "the same picture at the first and the last step"
    assert not np.array_equal(first, final)
    assert "quick preview" in view.step_label.toolTip()
    # Resting on the step, the model thread refines it with the real VAE: the picture a store
    # collected with --previews holds for it (the copy's source kept them).
    qtbot.waitUntil(lambda: "VAE decode" in view.step_label.toolTip(), timeout=60_000)
    with Store.open(tiny_workspace / "store.h5") as original:
        vae = original.preview(1, view.step)
    refined = view.canvas.image.image
    assert psnr(refined, vae) > 35 and psnr(last, vae) < psnr(refined, vae)
    # Back at step 0 it shows the quick preview at once, then its VAE picture in turn.
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    np.testing.assert_array_equal(view.canvas.image.image, first)
    qtbot.waitUntil(lambda: "VAE decode" in view.step_label.toolTip(), timeout=60_000)
    qtbot.keyClick(view.slider, Qt.Key.Key_End)
    np.testing.assert_array_equal(view.canvas.image.image, refined)  # kept, not decoded again
    last = view.canvas.image.image.copy()
    # The map was fitted once and kept in the workspace for the next opening.
    assert (ws / "latent_preview.json").is_file()
    # "final image" shows the stored image at every step.
    qtbot.mouseClick(view.show_final, Qt.MouseButton.LeftButton,
                     pos=QPoint(8, view.show_final.height() // 2))
    assert view.show_final.isChecked()
    np.testing.assert_array_equal(view.canvas.image.image, final)
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    np.testing.assert_array_equal(view.canvas.image.image, final)


def test_feature_overlay_has_a_colour_bar_and_the_value_under_the_pointer(
        qtbot, window, tiny_workspace):
    window.resize(1280, 800)
    open_and_wait(qtbot, window, tiny_workspace)
    view = window.sample_view
    _choose(qtbot, view.mode, "feature")
    f = window.feature_page.feature
    top = window.source.index.top_patches(f)[0]
    _go(qtbot, view, top.sample, top.step)
    grid = window.source.feature_map(top.sample, top.step, f)
    assert view.canvas.overlay.isVisible()
    bar = view.canvas.colorbar
    assert bar is not None and bar.isVisible()
    lo, hi = bar.levels()
    assert hi == pytest.approx(float(grid.max()), rel=1e-5)
    assert lo == pytest.approx(float(grid.max()) * view.threshold.value() / 100, rel=1e-5)
    # The pointer over the strongest cell reads its value; over a silent one, 0.
    gy, gx = np.unravel_index(int(np.argmax(grid)), grid.shape)
    point_at_cell(qtbot, view.canvas, gy, gx)
    qtbot.waitUntil(lambda: f"({gy}, {gx})" in view.value_label.text(), timeout=10_000)
    assert f"#{f}" in view.value_label.text()
    assert view.value_label.text().endswith(f"{float(grid[gy, gx]):.3g}")
    zy, zx = np.argwhere(grid == 0)[0]
    point_at_cell(qtbot, view.canvas, zy, zx)
    qtbot.waitUntil(lambda: f"({zy}, {zx})" in view.value_label.text(), timeout=10_000)
    assert view.value_label.text().endswith(": 0")
    # The concept map is categorical: no colour bar, the top feature under the pointer.
    _choose(qtbot, view.mode, "concepts")
    assert not bar.isVisible()
    point_at_cell(qtbot, view.canvas, gy, gx)
    qtbot.waitUntil(lambda: "top feature" in view.value_label.text()
                    or "no feature" in view.value_label.text(), timeout=10_000)



def test_scrubbing_keeps_the_colour_bar_up_and_its_levels_on_each_steps_map(
        qtbot, window, tiny_workspace):
    """Each Right-arrow step sets the bar to the new map's levels without hiding it in between:
    hiding and showing it relays out the canvas, which made every step of a scrub slower."""
    view, f, top = _feature_map_at_first_step(qtbot, window, tiny_workspace)
    bar = view.canvas.colorbar
    toggles = []
    bar.visibleChanged.connect(lambda: toggles.append(bar.isVisible()))
    regenerated = []
    original = bar.axis.generateDrawSpecs
    bar.axis.generateDrawSpecs = lambda *a: regenerated.append(1) or original(*a)
    for s in range(1, window.source.n_steps):
        qtbot.keyClick(view.slider, Qt.Key.Key_Right)
        assert view.step == s
        grid = window.source.feature_map(top.sample, s, f)
        if grid.max() > 0:
            assert bar.isVisible()
            lo, hi = bar.levels()
            assert hi == pytest.approx(float(grid.max()), rel=1e-5)
            assert lo == pytest.approx(float(grid.max()) * view.threshold.value() / 100, rel=1e-5)
        else:
            assert not bar.isVisible()
    silent = sum(window.source.feature_map(top.sample, s, f).max() <= 0
                 for s in range(window.source.n_steps))
    # Shown or hidden only where the map itself appears or vanishes.
    assert len(toggles) <= 2 * silent, toggles
    # A change that keeps the levels (the opacity) redraws the map but not the bar's axis.
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    view.grab()
    levels, before = bar.levels(), len(regenerated)
    opacity = view.canvas.overlay.opacity()
    qtbot.keyClick(view.opacity, Qt.Key.Key_Left)  # the arrow moves the opacity, not the step
    view.grab()
    assert view.step == 0 and view.canvas.overlay.opacity() < opacity
    assert bar.levels() == levels and len(regenerated) == before


def test_one_colour_scale_over_all_steps_shows_the_map_grow(qtbot, window, tiny_workspace):
    """With the "all steps" scale the bar stays at the map's peak over the sample's steps while
    scrubbing, and the threshold hides what is under its share of that peak."""
    view, f, top = _feature_map_at_first_step(qtbot, window, tiny_workspace)
    _choose(qtbot, view.scale, "sample")
    n = window.source.n_steps
    maps = [window.source.feature_map(top.sample, s, f) for s in range(n)]  # the slow path
    peak = max(float(m.max()) for m in maps)
    bar = view.canvas.colorbar
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    seen_levels = set()
    for s in range(n):
        if s:
            qtbot.keyClick(view.slider, Qt.Key.Key_Right)
        assert view.step == s
        if maps[s].max() <= 0:
            assert not view.canvas.overlay.isVisible()
            continue
        lo, hi = bar.levels()
        assert hi == pytest.approx(peak, rel=1e-5)
        assert lo == pytest.approx(peak * view.threshold.value() / 100, rel=1e-5)
        assert view.canvas.overlay.levels[1] == pytest.approx(peak, rel=1e-5)
        seen_levels.add((lo, hi))
    assert len(seen_levels) == 1
    # Back to each step's own maximum.
    _choose(qtbot, view.scale, "step")
    s = int(np.argmin([m.max() if m.max() > 0 else np.inf for m in maps]))
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    for _ in range(s):
        qtbot.keyClick(view.slider, Qt.Key.Key_Right)
    assert bar.levels()[1] == pytest.approx(float(maps[s].max()), rel=1e-5)


def test_word_maps_take_the_all_steps_scale_too(qtbot, window, tiny_workspace):
    """Word attention and the word probe under "all steps": the bar's top is the word's peak
    over the sample's steps, read here step by step the slow way."""
    open_and_wait(qtbot, window, tiny_workspace)
    view = window.sample_view
    _go(qtbot, view, 1, 1)
    _choose(qtbot, view.scale, "sample")
    bar = view.canvas.colorbar
    _choose(qtbot, view.mode, "attention")
    qtbot.waitUntil(lambda: view._attention is not None, timeout=60_000)
    maps, tokens = view._attention[1]["maps"], view.word.currentData()
    slow = max(float(maps[t][..., tokens].astype(np.float32).sum(-1).max())
               for t in range(len(maps)))
    assert bar.isVisible() and bar.levels()[1] == pytest.approx(slow, rel=1e-5)
    _choose(qtbot, view.mode, "probe")
    k, source = view.word.currentData(), window.source
    slow = max(float(np.clip(source.probe_scores(1, t)[..., k], 0, None).max())
               for t in range(source.n_steps))
    assert bar.isVisible() and bar.levels()[1] == pytest.approx(slow, rel=1e-5)
    qtbot.keyClick(view.slider, Qt.Key.Key_Right)  # another step, the same scale
    assert bar.levels()[1] == pytest.approx(slow, rel=1e-5)
    _choose(qtbot, view.scale, "step")


def test_word_lists_hold_the_prompts_content_words_once(qtbot, window, tiny_workspace):
    from explorer.analysis.cross_attention import FUNCTION_WORDS

    open_and_wait(qtbot, window, tiny_workspace)
    view = window.sample_view
    prompts = window.source.store.prompts
    # A sample whose prompt repeats a word and holds function words ("a … at … on a …").
    sample = next(i for i, p in enumerate(prompts)
                  if len(p.split()) > len(set(p.split())) and set(p.split()) & FUNCTION_WORDS)
    words = [w.strip(",.").lower() for w in prompts[sample].split()]
    content = list(dict.fromkeys(w for w in words if w not in FUNCTION_WORDS))
    _go(qtbot, view, sample, 1)
    _choose(qtbot, view.mode, "attention")
    qtbot.waitUntil(lambda: view._attention is not None, timeout=60_000)
    listed = [view.word.itemText(k) for k in range(view.word.count())]
    assert listed == content
    assert view.word.currentText() in content
    # The probe opens on a word of this sample's prompt, not the first word it knows.
    _choose(qtbot, view.mode, "probe")
    assert view.word.isEnabled()
    assert view.word.currentText() in content, (view.word.currentText(), content)
    assert f"“{view.word.currentText()}”" in view.side_title.text()
    # Another sample whose prompt lacks the shown word: the probe moves to one of its words.
    shown = view.word.currentText()
    other = next(i for i, p in enumerate(prompts) if shown not in p.lower().split())
    _go(qtbot, view, other, 1)
    other_words = [w.strip(",.").lower() for w in prompts[other].split()]
    assert view.word.currentText() in other_words
    # Back to the feature map: the probe's text and list go with it.
    _choose(qtbot, view.mode, "feature")
    assert "probe" not in view.side_title.text().lower()
    assert all("peak" not in view.side.item(r).text() for r in range(view.side.count()))
    assert not view.word.isVisible()


def _scrubber_visible(window) -> bool:
    view = window.sample_view
    page = window.tabs.currentWidget()  # the scroll area the sample view sits in
    slider = _global_rect(view.slider)
    return (_global_rect(page.viewport()).contains(slider)
            and _global_rect(window).contains(slider) and slider.width() > 100)


def test_the_centre_takes_the_spare_width_and_the_scrubber_stays_on_screen(
        qtbot, window, tiny_workspace):
    open_and_wait(qtbot, window, tiny_workspace)
    window.show_tab(window.sample_view)
    widths = {}
    for size in ((1024, 700), (2560, 1400), (1024, 700), (1600, 1000)):
        window.resize(*size)

        def settled(size=size):
            centre = window.tabs.width()
            docks = [d.width() for d in (window.features_dock, window.feature_dock)]
            widths[size] = (centre, docks)
            return ((window.width(), window.height()) == size and _scrubber_visible(window)
                    and centre >= 0.45 * window.width() and centre > max(docks)
                    # the docks get their share back when enlarged, not stuck at minimum
                    and docks[0] >= min(450, 0.25 * size[0])
                    and docks[1] >= min(370, 0.2 * size[0]))

        # The docks are re-shared once the resize settles (a timer; slower on a loaded machine).
        try:
            qtbot.waitUntil(settled, timeout=5_000)
        except Exception:
            raise AssertionError((size, widths.get(size), _global_rect(window.sample_view.slider),
                                  _global_rect(window.tabs.currentWidget().viewport()))) from None


def test_a_window_first_shown_small_gives_the_centre_the_space(qtbot, tiny_workspace, monkeypatch,
                                                               tmp_path):
    """A window that opens at 1280×800 (a laptop screen) shares the width out at once: the
    centre is not left at ~400 px between the docks' default widths."""
    from PySide6.QtWidgets import QMessageBox

    from explorer.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    w = MainWindow(device="cpu")
    w.messages = []
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    try:
        open_and_wait(qtbot, w, tiny_workspace)
        centre = w.centralWidget()
        qtbot.waitUntil(lambda: centre.width() >= 0.45 * w.width(), timeout=5_000)
        slider = w.sample_view.slider
        top_left = slider.mapTo(w, slider.rect().topLeft())
        assert top_left.x() + slider.width() <= w.width() and top_left.y() <= w.height()
    finally:
        w.close()


def test_a_long_prompt_ends_in_an_ellipsis_and_copies_whole(qtbot, window, tiny_workspace):
    """At 1280×800 the prompt bar is narrower than the demo's long prompts: the shown line ends
    in "…" (not cut mid-letter), the tooltip and a copy give the whole prompt, a wider window
    shows more of it, and a prompt that fits is shown as it is."""
    from PySide6.QtWidgets import QApplication

    window.resize(1280, 800)
    open_and_wait(qtbot, window, tiny_workspace)
    view = window.sample_view
    label = view.prompt
    prompts = window.source.store.prompts
    width = label.fontMetrics().horizontalAdvance
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    _go(qtbot, view, longest, 0)
    full = prompts[longest]
    qtbot.waitUntil(lambda: label.width() > 100, timeout=5_000)
    assert width(full) > label.width(), "the prompt fits: this test shows nothing"
    shown = label.text()
    assert shown.endswith("…") and full.startswith(shown[:-1]), (shown, full)
    assert width(shown) <= label.width()
    assert label.toolTip() == full
    assert _global_rect(window).contains(_global_rect(label))

    # Select the line with the mouse, from its first letter to past the "…", and copy.
    y = label.height() // 2
    qtbot.mousePress(label, Qt.MouseButton.LeftButton, pos=QPoint(1, y))
    qtbot.mouseMove(label, QPoint(label.width() // 2, y))
    qtbot.mouseMove(label, QPoint(label.width() - 1, y))
    qtbot.mouseRelease(label, Qt.MouseButton.LeftButton, pos=QPoint(label.width() - 1, y))
    QApplication.clipboard().clear()
    qtbot.keyClick(label, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text() == full

    # A wider window shows more of the prompt, elided again to the new width.
    window.resize(2560, 1400)
    qtbot.waitUntil(lambda: len(label.text()) > len(shown), timeout=5_000)
    assert label.text() == full or (label.text().endswith("…")
                                    and width(label.text()) <= label.width())

    # A prompt that fits is shown whole, with no "…".
    window.resize(1280, 800)
    shortest = min(range(len(prompts)), key=lambda i: len(prompts[i]))
    _go(qtbot, view, shortest, 0)
    qtbot.waitUntil(lambda: label.width() < 1000, timeout=5_000)
    assert width(prompts[shortest]) <= label.width(), (prompts[shortest], label.width())
    assert label.text() == prompts[shortest] and label.toolTip() == prompts[shortest]
