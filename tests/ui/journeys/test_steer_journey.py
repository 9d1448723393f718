"""The Steer tab as a person drives it: clicks on the visible buttons, typing into the boxes,
keys on the drop-downs, drags on the picture; at the default window size and at 1280×800.

Each test asserts what the person would see (the pictures inside the window, the caption, the
message under the buttons) and the run the page starts (or does not start)."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from journey_helpers import drag, open_and_wait
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QLabel, QStyle, QStyleOptionSlider

import explorer.ui.steer_view as steer_mod

LEFT = Qt.MouseButton.LeftButton



def _four_times_larger(out: dict) -> dict:
    """A steering result with its pictures four times larger, as a bigger model's would be."""
    def grow(im):
        return np.repeat(np.repeat(im, 4, axis=0), 4, axis=1)

    return {**out, "original": grow(out["original"]), "steered": grow(out["steered"])}

@pytest.fixture
def window(window, qtbot):
    """The shared window (tests/ui/conftest.py); a test that holds its job back lets it go at
    the end, and no steering run outlives the test."""
    window.release = threading.Event()
    yield window
    window.release.set()
    window.steer_view.stop()
    qtbot.waitUntil(lambda: not window.service.busy, timeout=60_000)


def _open(qtbot, window, path, size=(1600, 1000)):
    """Open a workspace in a window of `size` (the issue's 1600 × 1000 screen by default)."""
    if size is not None:
        window.resize(*size)
    open_and_wait(qtbot, window, path)


def _click(qtbot, widget):
    """Click a widget a person can see: shown, enabled, not scrolled out of sight."""
    assert widget.isVisible() and widget.isEnabled(), widget
    assert not widget.visibleRegion().isEmpty(), widget
    qtbot.mouseClick(widget, LEFT)


def _steer_tab(qtbot, window):
    bar = window.tabs.tabBar()
    i = next(i for i in range(bar.count()) if bar.tabText(i) == "Steer")
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(i).center())
    assert window.tabs.currentIndex() == i
    return window.steer_view


def _type(qtbot, box, text):
    """Click into a text or number box, select what it holds and type over it."""
    qtbot.mouseClick(box, LEFT)
    qtbot.keyClick(box, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(box, text)


def _choose(qtbot, combo, data=None, text=None):
    """Pick an entry of a drop-down with the keyboard (Home, then Down to it)."""
    index = combo.findData(data) if data is not None else combo.findText(text)
    assert index >= 0, (data, text)
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    for _ in range(index):
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert combo.currentIndex() == index


def _wait_run(qtbot, window):
    steer = window.steer_view
    qtbot.waitUntil(lambda: steer.request is None and not window.service.busy, timeout=60_000)


def _idle(qtbot, window):
    """True when no run starts within well over the live pause."""
    qtbot.wait(steer_mod.LIVE_PAUSE_MS * 3)
    return window.steer_view.request is None and not window.service.busy


def _colours(widget) -> int:
    img = widget.grab().toImage()
    return len({img.pixel(x, y) for x in range(0, img.width(), 3) for y in range(0, img.height(), 3)})


def test_the_generate_button_steers_and_errors_show_on_the_page(qtbot, window, tiny_workspace,
                                                                monkeypatch):
    _open(qtbot, window, tiny_workspace)
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)  # no live runs: the button alone must do it
    assert not steer.live.isChecked()
    _click(qtbot, steer.add_feature)
    assert [r.feature for r in steer.rows] == [window.feature_page.feature]
    _click(qtbot, steer.go)
    assert steer.request is not None, steer.warnings.text()  # the button started a run
    _wait_run(qtbot, window)
    assert steer.last is not None
    assert steer.progress.format().startswith("done")
    assert "mean pixel change" in steer.summary.toPlainText()
    assert _colours(steer.steered) > 20  # the steered picture is there

    # A run that fails says why under the buttons and in the status bar, not only on stderr.
    def broken(*args, cancel, progress):
        raise RuntimeError("the model folder vanished")

    monkeypatch.setattr(steer_mod, "steer_job", broken)
    _click(qtbot, steer.go)
    _wait_run(qtbot, window)
    assert "the model folder vanished" in steer.warnings.text() and steer.warnings.isVisible()
    assert "the model folder vanished" in window.statusBar().currentMessage()
    assert "mean pixel change" not in steer.summary.toPlainText()  # no stale numbers


@pytest.mark.parametrize("size", [(1600, 1000), (1560, 960), (1280, 800)])
def test_pictures_fit_the_window(qtbot, window, tiny_workspace, size):
    _open(qtbot, window, tiny_workspace, size)
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)
    _click(qtbot, steer.add_feature)
    _click(qtbot, steer.go)
    _wait_run(qtbot, window)
    qtbot.wait(100)
    assert window.width() == size[0] and window.height() == size[1]
    page = window.tabs.currentWidget()
    assert not page.horizontalScrollBar().isVisible()
    assert not page.verticalScrollBar().isVisible()
    viewport = page.viewport()
    visible = viewport.rect()
    for canvas in (steer.original, steer.steered, steer.diff):
        assert canvas.isVisible()
        top_left = canvas.mapTo(viewport, QPoint(0, 0))
        bottom_right = canvas.mapTo(viewport, QPoint(canvas.width() - 1, canvas.height() - 1))
        assert visible.contains(top_left) and visible.contains(bottom_right), (
            canvas.geometry(), top_left, bottom_right, visible)
        in_window = canvas.mapTo(window, QPoint(canvas.width() - 1, canvas.height() - 1))
        assert window.rect().contains(in_window)
        # Big enough to see, and the whole image shown inside it (not cropped by the view).
        assert min(canvas.width(), canvas.height()) >= 180, canvas.size()
        (x0, x1), (y0, y1) = canvas.view.viewRange()
        h, w = canvas.image.image.shape[:2]
        assert x0 <= 0.5 and x1 >= w - 0.5 and y0 <= 0.5 and y1 >= h - 0.5
    assert steer.diff_legend.isVisible()
    window.grab().save(f"/tmp/steer-{size[0]}x{size[1]}.png")


def test_switching_sae_or_workspace_keeps_the_settings_and_drops_the_features(
        qtbot, window, tiny_workspace, tmp_path):
    _open(qtbot, window, tiny_workspace)
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)
    _type(qtbot, steer.prompt, "a large blue cross on a white background")
    _choose(qtbot, steer.window, data="early")
    early = steer.range.values()
    assert early != (0, steer.n_steps - 1)
    _click(qtbot, steer.add_feature)
    assert len(steer.rows) == 1 and steer.table.rowCount() == 1

    # Another SAE of the same block: feature numbers mean other things there.
    combo = window.sae_combo
    block = window.entry.block
    other = next(i for i in range(combo.count())
                 if combo.itemData(i).startswith(block) and i != combo.currentIndex())
    _choose(qtbot, combo, data=combo.itemData(other))
    assert window.entry.id == combo.itemData(other)
    assert steer.rows == [] and steer.table.rowCount() == 0
    assert "cleared" in steer.warnings.text()
    assert steer.window.currentData() == "early" and steer.range.values() == early
    assert steer.range_label.text().startswith(f"steps {early[0] + 1}–{early[1] + 1}")
    assert steer.prompt.text() == "a large blue cross on a white background"

    # Another workspace (a copy elsewhere: same SAE ids, other SAE folders).
    _click(qtbot, steer.add_feature)
    assert len(steer.rows) == 1
    copy = tmp_path / "copy-ws"
    shutil.copytree(tiny_workspace, copy)
    _open(qtbot, window, copy, size=None)
    qtbot.waitUntil(lambda: str(window.workspace.root) == str(copy), timeout=10_000)
    assert steer.rows == [] and steer.table.rowCount() == 0
    assert steer.window.currentData() == "early" and steer.range.values() == early
    assert steer.prompt.text() == "a large blue cross on a white background"
    assert _idle(qtbot, window)  # and nothing of it started a run


def _drag_slider(qtbot, slider, to_fraction):
    opt = QStyleOptionSlider()
    slider.initStyleOption(opt)
    handle = slider.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                           QStyle.SubControl.SC_SliderHandle, slider)
    start = handle.center()
    end = QPoint(int(slider.width() * to_fraction), start.y())
    qtbot.mousePress(slider, LEFT, pos=start)
    qtbot.mouseMove(slider, QPoint((start.x() + end.x()) // 2, start.y()))
    qtbot.mouseMove(slider, end)
    qtbot.mouseRelease(slider, LEFT, pos=end)


def _dictionary(n_features: int):
    """A concept dictionary over red, blue and green circles, squares and triangles at four
    places: feature 0 red squares, 1 red things, 2 squares, 3 triangles, 4 blue things at the
    bottom right; the others nothing."""
    from explorer.analysis.dictionary import DictionaryBuilder
    from explorer.analysis.truth import ObjectTruth, SampleTruth

    b = DictionaryBuilder(n_features)
    places = {"top left": (slice(0, 4), slice(0, 4)), "bottom right": (slice(4, 8), slice(4, 8)),
              "top right": (slice(0, 4), slice(4, 8)), "bottom left": (slice(4, 8), slice(0, 4))}
    for colour in ("red", "blue", "green"):
        for shape in ("circle", "square", "triangle"):
            for place, box in places.items():
                mask = np.zeros((8, 8), bool)
                mask[box] = True
                truth = SampleTruth([ObjectTruth(
                    [("colour", colour), ("shape", shape), ("place", place)], mask)],
                    None, 0, (8, 8))
                maps = np.zeros((n_features, 8, 8), np.float32)
                on = {0: colour == "red" and shape == "square", 1: colour == "red",
                      2: shape == "square", 3: shape == "triangle",
                      4: colour == "blue" and place == "bottom right"}
                for f, fires in on.items():
                    if fires:
                        maps[f][box] = 1.0
                b.add(np.arange(n_features), maps, truth)
    return b.build()


def test_runs_start_only_on_the_button_or_after_a_slider_pause(qtbot, window, tiny_workspace,
                                                               monkeypatch):
    from explorer.analysis.reader import FeatureIndex

    tables = {}

    def table(index):
        if index.n_features not in tables:
            tables[index.n_features] = _dictionary(index.n_features)
        return tables[index.n_features]

    monkeypatch.setattr(FeatureIndex, "dictionary_table", property(table))
    _open(qtbot, window, tiny_workspace)
    steer = _steer_tab(qtbot, window)
    assert steer.live.isChecked()  # live runs on, as a new user finds it

    # Add by words: the features of a red square, not every red thing and every square.
    _type(qtbot, steer.words, "a red square")
    _click(qtbot, steer.add_words)
    assert [r.feature for r in steer.rows] == [0], steer.warnings.text()
    assert _idle(qtbot, window)
    _type(qtbot, steer.words, "red hexagon")  # a word no concept carries: nothing added
    _click(qtbot, steer.add_words)
    assert [r.feature for r in steer.rows] == [0] and "hexagon" in steer.warnings.text()

    _click(qtbot, steer.add_feature)  # the browser's feature (once, even if listed already)
    assert {r.feature for r in steer.rows} == {0, window.feature_page.feature}
    assert _idle(qtbot, window)

    # Typing a strength and leaving the box (Tab) starts nothing; the slider follows the value.
    row = steer.rows[0]
    _type(qtbot, row.spin, "1.25")
    qtbot.keyClick(row.spin, Qt.Key.Key_Tab)
    assert row.strength == pytest.approx(1.25)
    assert row.slider.value() == round(1.25 / steer_mod.SLIDER_SPAN["spatial"] * 100)
    assert _idle(qtbot, window)

    # Choosing the region tool or the mode starts nothing either.
    _choose(qtbot, steer.region_tool, text="Rectangle")
    _choose(qtbot, steer.mode, data="add")
    assert _idle(qtbot, window)

    # Letting go of a strength slider does, after a short pause: one run for one drag.
    submitted = []
    real_submit = window.service.submit
    monkeypatch.setattr(window.service, "submit",
                        lambda *a, **k: submitted.append(k.get("kind")) or real_submit(*a, **k))
    _drag_slider(qtbot, row.slider, 0.8)
    assert row.strength > 1.25
    assert submitted == []  # not at once
    qtbot.waitUntil(lambda: submitted == ["steer"], timeout=5_000)
    _wait_run(qtbot, window)
    assert submitted == ["steer"] and steer.last is not None
    assert "add edit of #0" in steer.summary.toPlainText()


def test_difference_is_signed_and_blank_while_a_new_run_goes(qtbot, window, tiny_workspace,
                                                              monkeypatch):
    _open(qtbot, window, tiny_workspace)
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)
    _click(qtbot, steer.add_feature)
    _choose(qtbot, steer.mode, data="add")
    _type(qtbot, steer.rows[0].spin, "20")
    _click(qtbot, steer.go)
    _wait_run(qtbot, window)
    original, steered = steer.last["original"], steer.last["steered"]
    luma = np.array([0.299, 0.587, 0.114])
    delta = steered.astype(float) @ luma - original.astype(float) @ luma
    diff = np.asarray(steer.diff.image.image).astype(int)
    brighter, darker, same = delta > 16, delta < -16, np.abs(delta) < 0.5
    assert brighter.any() or darker.any(), "the edit changed nothing to look at"
    # Red where the edit brightened, blue where it darkened, white where nothing changed.
    assert (diff[brighter][:, 0] > diff[brighter][:, 2] + 40).all()
    assert (diff[darker][:, 2] > diff[darker][:, 0] + 40).all()
    assert (diff[same] >= 240).all()
    assert steer.diff_legend.isVisible()
    legend = " ".join(w.text() for w in steer.diff_legend.findChildren(QLabel))
    assert "darker" in legend and "brighter" in legend
    assert "red brighter, blue darker" in steer.summary.toPlainText()

    # A new run: until it ends, neither the difference nor the caption tell of the last one.
    real = steer_mod.steer_job

    def held(*args, **kwargs):
        window.release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(steer_mod, "steer_job", held)
    _type(qtbot, steer.rows[0].spin, "10")
    _click(qtbot, steer.go)
    qtbot.wait(200)
    assert steer.request is not None
    assert steer.diff.image.image is None and steer.last is None
    caption = steer.summary.toPlainText()
    assert "running" in caption and "× 10" in caption and "mean pixel change" not in caption
    window.release.set()
    _wait_run(qtbot, window)
    assert steer.diff.image.image is not None and "mean pixel change" in steer.summary.toPlainText()


def _to_viewport(canvas, x, y):
    """Where the image pixel (x, y) of a canvas lies in its viewport."""
    scene = canvas.view.mapViewToScene(QPointF(x, y))
    return canvas.mapFromScene(scene)


def test_region_is_kept_in_fractions_of_the_picture(qtbot, window, tiny_workspace, monkeypatch):
    """Painted on the placeholder before the first run, the rectangle means the same part of
    a picture of another size (the model's 256 px here) and the runs use that part."""
    regions = []
    real = steer_mod.steer_job

    def bigger(models, cache, entry, prompt, seed, steps, guidance, features, mode, region,
               *rest, **kwargs):
        regions.append(region)
        return _four_times_larger(real(models, cache, entry, prompt, seed, steps, guidance,
                                       features, mode, region, *rest, **kwargs))

    monkeypatch.setattr(steer_mod, "steer_job", bigger)
    _open(qtbot, window, tiny_workspace)
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)
    _click(qtbot, steer.add_feature)
    _choose(qtbot, steer.region_tool, text="Rectangle")
    canvas = steer.original
    h, w = canvas.image.image.shape[:2]  # the placeholder
    assert (h, w) == (steer_mod.PLACEHOLDER, steer_mod.PLACEHOLDER)
    vp = canvas.viewport()
    start, end = _to_viewport(canvas, 0.1 * w, 0.2 * h), _to_viewport(canvas, 0.6 * w, 0.7 * h)
    drag(qtbot, vp, start, end, LEFT)
    painted = steer.region()
    assert painted is not None
    tol = 2.0 / w  # a screen pixel or two of the small picture
    assert painted.x0 == pytest.approx(0.1, abs=tol) and painted.y0 == pytest.approx(0.2, abs=tol)
    assert painted.x1 == pytest.approx(0.6, abs=tol) and painted.y1 == pytest.approx(0.7, abs=tol)

    def drawn():
        """The rectangle on screen, in fractions of the picture on screen."""
        r, im = steer.roi.sceneBoundingRect(), canvas.image.sceneBoundingRect()
        return ((r.left() - im.left()) / im.width(), (r.top() - im.top()) / im.height(),
                (r.right() - im.left()) / im.width(), (r.bottom() - im.top()) / im.height())

    before = drawn()
    _click(qtbot, steer.go)
    _wait_run(qtbot, window)
    assert canvas.image.image.shape[:2] == (256, 256)  # a picture of another size arrived
    assert steer.region() == painted  # the same fractions
    assert np.allclose(drawn(), before, atol=0.02), (drawn(), before)
    x, y = steer.roi.pos()
    assert (x / 256, y / 256) == pytest.approx((painted.x0, painted.y0), abs=1e-6)
    window.grab().save("/tmp/steer-region.png")
    _click(qtbot, steer.go)  # the next run steers the same part of the image
    _wait_run(qtbot, window)
    assert regions == [painted, painted]


def test_cancel_and_the_newest_run_wins(qtbot, window, tiny_workspace, monkeypatch):
    real = steer_mod.steer_job
    gates = []

    def held(*args, **kwargs):
        gate = threading.Event()
        gates.append(gate)
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(steer_mod, "steer_job", held)
    _open(qtbot, window, tiny_workspace)
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)
    _click(qtbot, steer.add_feature)
    _click(qtbot, steer.go)
    qtbot.waitUntil(lambda: len(gates) == 1, timeout=10_000)
    _click(qtbot, steer.cancel)
    gates[0].set()
    _wait_run(qtbot, window)
    assert steer.last is None and steer.progress.format() == "cancelled"
    assert steer.summary.toPlainText().startswith("cancelled")
    assert not steer.cancel.isEnabled()

    # Two runs asked one after the other: the second replaces the first, whose result never
    # shows.
    _type(qtbot, steer.rows[0].spin, "1")
    _click(qtbot, steer.go)
    qtbot.waitUntil(lambda: len(gates) == 2, timeout=10_000)
    _type(qtbot, steer.rows[0].spin, "3")
    _click(qtbot, steer.go)
    gates[1].set()
    qtbot.waitUntil(lambda: len(gates) == 3, timeout=10_000)
    gates[2].set()
    _wait_run(qtbot, window)
    assert steer.last is not None
    caption = steer.summary.toPlainText()
    assert "× 3" in caption and "× 1" not in caption and "mean pixel change" in caption


def test_brush_strokes_keep_their_place_on_a_bigger_picture(qtbot, window, tiny_workspace,
                                                            monkeypatch):
    real = steer_mod.steer_job

    def bigger(*args, **kwargs):
        return _four_times_larger(real(*args, **kwargs))

    monkeypatch.setattr(steer_mod, "steer_job", bigger)
    _open(qtbot, window, tiny_workspace)
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)
    _click(qtbot, steer.add_feature)
    _choose(qtbot, steer.region_tool, text="Brush")
    canvas = steer.original
    vp = canvas.viewport()
    start, end = _to_viewport(canvas, 10, 16), _to_viewport(canvas, 30, 16)  # a stroke at y 1/4
    drag(qtbot, vp, start, end, LEFT)
    mask = steer.region()
    assert mask is not None and mask.shape == (64, 64)
    ys, xs = np.nonzero(mask)
    assert abs(ys.mean() - 16) < 2 and xs.min() < 14 and xs.max() > 26
    _click(qtbot, steer.go)
    _wait_run(qtbot, window)
    big = steer.region()
    assert big.shape == (256, 256)
    ys, xs = np.nonzero(big)
    assert abs(ys.mean() / 256 - 16 / 64) < 0.03 and abs(big.mean() - mask.mean()) < 0.01


LONG_NAME = "small orange circle at the left of a large blue square"


def _click_browser_row(qtbot, window, row):
    """Click a row of the Features dock's table, as a person picks a feature there."""
    from explorer.ui.feature_table import COL_ID

    browser = window.browser
    index = browser.model.index(row, COL_ID)
    browser.table.scrollTo(index)
    qtbot.mouseClick(browser.table.viewport(), LEFT, pos=browser.table.visualRect(index).center())
    return browser.model.feature_at(row)


def _name_feature(qtbot, window, name):
    """Type a name into the Feature dock's Label box and press Return."""
    box = window.feature_page.label
    _type(qtbot, box, name)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def _inside(widget, viewport) -> bool:
    """The whole widget lies inside the scroll area's visible viewport."""
    top_left = widget.mapTo(viewport, QPoint(0, 0))
    bottom_right = widget.mapTo(viewport, QPoint(widget.width() - 1, widget.height() - 1))
    return viewport.rect().contains(top_left) and viewport.rect().contains(bottom_right)


@pytest.mark.parametrize("size", [(1280, 800), (1600, 1000)])
def test_the_whole_column_and_the_feature_names_show_without_scrolling(
        qtbot, window, tiny_workspace, size, tmp_path):
    """Four features in the list (the most it shows before scrolling in itself), one with a
    long name: every control and the "This edit" caption fit the column with no scroll bar,
    and each name is shown whole or ends in "…" with the whole name in its tooltip."""
    # A copy: the names typed here are saved into the workspace, which other tests share.
    workspace = shutil.copytree(tiny_workspace, tmp_path / "ws")
    _open(qtbot, window, workspace, size)
    first = _click_browser_row(qtbot, window, 0)
    _name_feature(qtbot, window, LONG_NAME)
    second = _click_browser_row(qtbot, window, 1)
    _name_feature(qtbot, window, "red")
    steer = _steer_tab(qtbot, window)
    _click(qtbot, steer.live)
    where = steer.add_feature.mapTo(window, QPoint(0, 0))
    for row in (1, 0, 2, 3):
        _click_browser_row(qtbot, window, row)
        _click(qtbot, steer.add_feature)
        # The button stays under the pointer: the list does not push it down as it fills.
        assert steer.add_feature.mapTo(window, QPoint(0, 0)) == where
    assert len(steer.rows) == steer_mod.TABLE_ROWS
    _click(qtbot, steer.go)
    _wait_run(qtbot, window)
    qtbot.wait(100)
    assert steer.last is not None, steer.warnings.text()

    # The column: no vertical scroll bar, every control and the caption in sight.
    column = steer.controls
    viewport = column.viewport()
    assert not column.verticalScrollBar().isVisible(), (column.widget().sizeHint(),
                                                        viewport.size())
    controls = [steer.prompt, steer.seed, steer.steps, steer.guidance, steer.sae_label,
                steer.table, steer.add_feature, steer.words, steer.add_words, steer.mode,
                steer.branches, steer.window, steer.range, steer.range_label, steer.region_tool,
                steer.brush_size, steer.clear_region, steer.live, steer.go, steer.cancel,
                steer.icon, steer.progress, steer.summary_title]
    for widget in controls:
        assert widget.isVisible() and _inside(widget, viewport), (widget, widget.geometry())
    assert steer.summary_title.text() == "<b>This edit</b>"
    # The caption's box is in sight and tall enough to read its first lines.
    assert _inside(steer.summary, viewport)
    assert steer.summary.height() >= 4 * steer.summary.fontMetrics().lineSpacing()
    # Every row of the list in sight inside the table (no scrolling there either).
    table = steer.table
    assert not table.verticalScrollBar().isVisible()
    for r in range(table.rowCount()):
        assert table.viewport().rect().contains(table.visualRect(table.model().index(r, 0)))

    # The names: shown whole when they fit, else cut at a letter with "…" and the whole name
    # in the tooltip; the long one keeps far more than "a few letters".
    names = {row.feature: row.name for row in steer.rows}
    for feature, label in names.items():
        full = label.toolTip()
        assert full.startswith(f"#{feature}")
        shown = label.text()
        assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width(), (
            shown, label.contentsRect().width())
        assert shown == full or (shown.endswith("…") and full.startswith(shown[:-1])), shown
    assert names[second].text() == f"#{second} red"
    long_shown = names[first].text()
    assert len(long_shown.rstrip("…")) >= 20, long_shown
    assert names[first].toolTip() == f"#{first} {LONG_NAME}"


def test_save_keeps_the_pictures_and_the_settings_that_made_them(qtbot, window, tiny_workspace,
                                                                tmp_path, monkeypatch):
    """Save… beside "This edit": the three pictures as shown and a JSON that redoes the edit;
    nothing to save before a run or while a new one goes."""
    import json

    from PIL import Image
    from PySide6.QtWidgets import QFileDialog

    _open(qtbot, window, tiny_workspace, (1280, 800))
    steer = _steer_tab(qtbot, window)
    assert steer.save.isVisible() and not steer.save.isEnabled()
    _click(qtbot, steer.live)
    _click(qtbot, steer.add_feature)
    feature = steer.rows[0].feature
    _type(qtbot, steer.rows[0].spin, "3.5")
    qtbot.keyClick(steer.rows[0].spin, Qt.Key.Key_Tab)
    _choose(qtbot, steer.region_tool, text="Rectangle")
    _click(qtbot, steer.go)
    assert not steer.save.isEnabled()  # running: the old result is gone from the page
    _wait_run(qtbot, window)
    asked = []

    def choose(parent, title, name, filters):
        asked.append(name)
        return str(tmp_path / "fig3.png"), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", choose)
    _click(qtbot, steer.save)
    assert asked and asked[0].startswith(f"steer-{feature}x3.5")
    record = json.loads((tmp_path / "fig3.json").read_text())
    settings = record["settings"]
    assert settings["prompt"] == steer.prompt.text() and settings["seed"] == steer.seed.value()
    assert settings["features"] == [{"feature": feature, "strength": 3.5,
                                     "label": steer.rows[0].label}]
    assert settings["mode"] == steer.mode.currentData()
    assert settings["sae"] == window.entry.id and settings["block"] == window.entry.block
    r = steer.region()
    assert settings["region"]["rect"] == pytest.approx([r.x0, r.y0, r.x1, r.y1])
    shown = {"original": steer.original, "steered": steer.steered, "difference": steer.diff}
    for role, canvas in shown.items():
        saved = np.asarray(Image.open(tmp_path / record["files"][role]))
        np.testing.assert_array_equal(saved, canvas.image.image)
    original, steered = steer.last["original"], steer.last["steered"]
    slow = np.mean([abs(int(a) - int(b)) for a, b in zip(original.ravel(), steered.ravel())])
    assert record["mean_pixel_change"] == pytest.approx(slow / 255, abs=1e-6)
    assert f"{record['mean_pixel_change']:.3f}" in steer.summary.toPlainText()
    assert "saved 4 files" in window.statusBar().currentMessage()
