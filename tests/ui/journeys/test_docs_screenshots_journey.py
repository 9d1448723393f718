"""The pictures in docs/screenshots/, taken by driving the app as a person does (issue 17).

Each journey opens a workspace from File → Open, then clicks, types and drags its way to each
view the README and docs show, asserts what the person sees there, and saves the window (or a
panel) at that moment. At the default size (1600 × 1000) and at a laptop's 1280 × 800.

    QT_QPA_PLATFORM=offscreen python -m pytest tests/ui/journeys/test_docs_screenshots_journey.py \
        --screenshots docs/screenshots [--screenshot-workspace WORKSPACE]

writes the 1600 × 1000 pictures into docs/screenshots/ and the 1280 × 800 ones into
docs/screenshots/1280x800/, from the demo workspace the app builds at first launch (or
WORKSPACE). Without --screenshots the same journeys run on the tests' tiny workspace and write
into a temporary folder, so the pictures and the tests cannot drift apart.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
from journey_helpers import action, drag
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QStyle, QStyleOptionComboBox

from explorer.ui.feature_table import COL_LABEL
from explorer.ui.main_window import MainWindow

LEFT = Qt.MouseButton.LeftButton
SIZES = [(1600, 1000), (1280, 800)]
# What the journeys look for, as the README's captions describe them.
FEATURE_WORD = "small orange circle"  # the feature shown: the first row the filter keeps
SAMPLE_WORDS = "orange circle"  # the sample shown: the first whose prompt names these
ATTENTION_WORD = "circle"  # the word of the word-attention and word-probe pictures
MOVE_PROMPT = "a large red square on a white background"  # no place named
MOVE_WORDS = "red square"
MOVE_RECT = (0.5, 0.5, 0.95, 0.95)  # x0, y0, x1, y1: the square moved to the bottom right


# --- the workspace and where the pictures go ------------------------------------------------

@pytest.fixture
def workspace(request):
    """The workspace the pictures show: --screenshot-workspace, else with --screenshots the demo
    workspace of the data folder (the one the first launch builds), else the tiny one."""
    given = request.config.getoption("screenshot_workspace", default=None)
    if given:
        return Path(given).expanduser()
    if request.config.getoption("screenshots", default=None):
        from explorer.analysis.demo import default_workspace_dir

        demo = default_workspace_dir()
        if not (demo / "workspace.json").is_file():
            pytest.fail(f"{demo}: no demo workspace; launch the app once (or run `explorer demo "
                        "--small`) to build it, or pass --screenshot-workspace")
        return demo
    return request.getfixturevalue("tiny_workspace")


class Shots:
    """Saves a widget as the person sees it, under the size's folder, and checks the file."""

    def __init__(self, qtbot, folder: Path):
        self.qtbot, self.folder, self.written = qtbot, folder, []
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, widget) -> Path:
        self.qtbot.wait(300)  # the repaints the last click queued land first
        pixmap = widget.grab()
        path = self.folder / f"{name}.png"
        assert pixmap.save(str(path)), path
        from PySide6.QtGui import QImage

        back = QImage(str(path))
        ratio = pixmap.devicePixelRatio()
        assert (back.width(), back.height()) == (round(widget.width() * ratio),
                                                 round(widget.height() * ratio)), path
        self.written.append(path)
        return path


@pytest.fixture(params=SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def size(request):
    return request.param


@pytest.fixture
def shots(request, qtbot, tmp_path, size):
    out = request.config.getoption("screenshots", default=None)
    folder = Path(out) if out else tmp_path / "shots"
    if size != SIZES[0]:
        folder = folder / f"{size[0]}x{size[1]}"
    return Shots(qtbot, folder)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, workspace, size):
    """The main window at `size`, its workspace opened from File → Open (the folder dialog
    answered with `workspace`); message boxes recorded, not shown."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: shown.append(a[2]))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(workspace))
    w = MainWindow(device="cpu")
    w.messages = shown
    w.release = threading.Event()
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    action(w, "File", "Open Workspace…").trigger()
    qtbot.waitUntil(lambda: (w.source is not None and w.workspace is not None
                             and w.workspace.root.resolve() == Path(workspace).resolve())
                    or bool(shown), timeout=120_000)
    assert w.source is not None, shown
    qtbot.wait(200)
    assert (w.width(), w.height()) == size
    yield w
    w.steer_view.stop()
    qtbot.waitUntil(lambda: not w.service.busy, timeout=120_000)
    w.close()


# --- what a person does ---------------------------------------------------------------------


def _visible(widget) -> bool:
    """Shown and not cut off: the whole widget lies inside the window's visible part."""
    target = getattr(widget, "viewport", lambda: widget)()  # a scroll area's children cover it
    if not widget.isVisible():
        return False
    return target.visibleRegion().boundingRect().size() == target.rect().size()


def _click(qtbot, widget, pos=None):
    assert widget.isVisible() and widget.isEnabled(), widget
    assert not widget.visibleRegion().isEmpty(), widget
    if pos is None:
        qtbot.mouseClick(widget, LEFT)
    else:
        qtbot.mouseClick(widget, LEFT, pos=pos)


def _tab(qtbot, window, title):
    bar = window.tabs.tabBar()
    i = next(i for i in range(bar.count()) if bar.tabText(i) == title)
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(i).center())
    assert window.tabs.currentIndex() == i
    return window.tabs.currentWidget().widget()


def _type(qtbot, box, text):
    """Click into a box, select what it holds and type over it."""
    qtbot.mouseClick(box, LEFT)
    qtbot.keyClick(box, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    if text:
        qtbot.keyClicks(box, text)
    else:
        qtbot.keyClick(box, Qt.Key.Key_Delete)


def _choose(qtbot, combo, data=None, text=None):
    """Click the drop-down open and pick the entry with the arrow keys and Return."""
    index = combo.findData(data) if data is not None else combo.findText(text)
    assert index >= 0, (data, text)
    if combo.currentIndex() == index:
        return
    _click(qtbot, combo)
    popup = combo.view()
    qtbot.waitUntil(popup.isVisible, timeout=2_000)
    qtbot.keyClick(popup, Qt.Key.Key_Home)
    for _ in range(index):
        qtbot.keyClick(popup, Qt.Key.Key_Down)
    qtbot.keyClick(popup, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not popup.isVisible(), timeout=2_000)
    assert combo.currentIndex() == index


def _sae(window, block_prefix, pick):
    """The id of one SAE of the block (`pick` chooses among its per-step SAEs, sorted by t),
    or None when the workspace has no such block."""
    combo = window.sae_combo
    ids = [combo.itemData(i) for i in range(combo.count())]
    mine = [i for i in ids if i.startswith(block_prefix) and re.fullmatch(r".*/t\d\.\d+", i)]
    return pick(sorted(mine, key=lambda i: float(i.split("/t")[-1]))) if mine else None


def _go_to_step(qtbot, slider, step):
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_Home)
    for _ in range(step):
        qtbot.keyClick(slider, Qt.Key.Key_Right)
    assert slider.value() == step


def _colours(widget) -> int:
    img = widget.grab().toImage()
    return len({img.pixel(x, y) for x in range(0, img.width(), 3)
                for y in range(0, img.height(), 3)})


def _in_window(window, widget) -> bool:
    """The widget is shown whole, inside the window and not scrolled out of sight."""
    if not _visible(widget):
        widget.window().grab().save("/tmp/shots-debug.png")
        return False
    bottom_right = widget.mapTo(window, QPoint(widget.width() - 1, widget.height() - 1))
    return window.rect().contains(bottom_right)


def _click_cell(qtbot, canvas, gy, gx):
    """Click the centre of overlay cell (gy, gx) of the picture, as a mouse would."""
    h, w = canvas._shape
    gh, gw = canvas._grid
    scene = canvas.view.mapViewToScene(QPointF((gx + 0.5) * w / gw, (gy + 0.5) * h / gh))
    qtbot.mouseClick(canvas.viewport(), LEFT, pos=canvas.mapFromScene(scene))


def _pick_feature(qtbot, window) -> int:
    """A feature found by words: typed into the browser's filter, the first row the words
    label clicked (else the first row kept; the SAE's first named feature where none is), the
    filter cleared again."""
    browser, page = window.browser, window.feature_page
    _type(qtbot, browser.filter, FEATURE_WORD)
    model = browser.table.model()
    labels = [str(model.index(r, COL_LABEL).data() or "") for r in range(model.rowCount())]
    named = [r for r, text in enumerate(labels) if FEATURE_WORD in text]
    if labels:
        index = model.index(named[0] if named else 0, 0)
        browser.table.scrollTo(index)
        _click(qtbot, browser.table.viewport(), browser.table.visualRect(index).center())
    _type(qtbot, browser.filter, "")
    feature = page.feature
    assert feature is not None
    assert f"#{feature} " in page.title.text()
    return feature


def _reads_whole(combo) -> bool:
    """The drop-down shows its whole current entry, not "Feature ma"."""
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                         QStyle.SubControl.SC_ComboBoxEditField, combo)
    return combo.fontMetrics().horizontalAdvance(combo.currentText()) <= field.width()


def _list_reads_whole(lst) -> bool:
    """Every line of the list lies inside its width (wrapped if need be), none cut off."""
    width = lst.viewport().width()
    return not lst.horizontalScrollBar().isVisible() and all(
        lst.visualItemRect(lst.item(r)).right() <= width for r in range(lst.count()))


def _word(combo, wanted):
    """The wanted word if the list offers it, else its first word."""
    return wanted if combo.findText(wanted) >= 0 else combo.itemText(0)


# --- the journeys ---------------------------------------------------------------------------

def test_sample_view_feature_page_browser_and_evaluation(qtbot, window, shots):
    """The README's sample-view pictures, the feature page and browser, and the Evaluation
    page: a feature found by a word in the browser, its strongest patch clicked open, each
    overlay chosen from the drop-down, the step walked with the keyboard."""
    view, page, browser = window.sample_view, window.feature_page, window.browser
    # The mid block's middle per-step SAE, as the README's pictures (the first one elsewhere).
    sae = _sae(window, "mid_block", lambda ids: ids[len(ids) // 2])
    if sae is not None:
        _choose(qtbot, window.sae_combo, data=sae)
        assert window.entry.id == sae
    feature = _pick_feature(qtbot, window)

    # Its strongest patch over all steps, clicked: that sample at that step in the Sample tab.
    _choose(qtbot, page.scope, data="all")
    assert page.gallery.count() > 0
    item = page.gallery.item(0)
    sample, step = item.data(Qt.ItemDataRole.UserRole)
    page.gallery.scrollToItem(item)
    _click(qtbot, page.gallery.viewport(), page.gallery.visualItemRect(item).center())
    assert window.tabs.currentWidget().widget() is view
    assert (view.sample.value(), view.step) == (sample, step)
    # Then the first sample whose prompt names the object and where the feature fires at the
    # middle step (the picture has its shapes there), its number typed in, the slider walked
    # there (on another image a feature of a colour can fire on a shape of another colour).
    middle = window.source.n_steps // 2
    shown = next((i for i in range(window.source.n_samples)
                  if SAMPLE_WORDS in window.source.prompt(i)
                  and window.source.feature_map(i, middle, feature).max() > 0), None)
    if shown is not None:
        _type(qtbot, view.sample, str(shown))
        qtbot.keyClick(view.sample, Qt.Key.Key_Return)
        assert view.sample.value() == shown
        sample = shown
    if window.source.feature_map(sample, middle, feature).max() > 0:
        _go_to_step(qtbot, view.slider, middle)
        step = middle

    # The feature's map over the picture, with its colour bar, the scrubber on screen; a click
    # on its brightest cell lists the features active there, the shown one among them.
    _choose(qtbot, view.mode, data="feature")
    assert _reads_whole(view.mode) and _reads_whole(view.cmap), view.mode.width()
    assert view.canvas.overlay.isVisible() and view.canvas.colorbar.isVisible()
    assert _in_window(window, view.canvas) and _in_window(window, view.slider)
    assert _colours(view.canvas) > 20, "an empty picture"
    assert view.step_label.text().startswith(f"step {step + 1}/")
    grid = window.source.feature_map(sample, step, feature)
    gy, gx = np.unravel_index(int(np.argmax(grid)), grid.shape)
    _click_cell(qtbot, view.canvas, gy, gx)
    assert view.side_title.text().startswith(f"Features active at ({gy}, {gx})")
    assert any(view.side.item(r).text().startswith(f"#{feature} ")
               for r in range(view.side.count()))
    shots.save("explorer-feature-overlay", window)

    # The concept map at the same step, its legend beside it; then the first step.
    _choose(qtbot, view.mode, data="concepts")
    assert _reads_whole(view.mode)
    assert view.side.count() > 0 and _in_window(window, view.side)
    assert _list_reads_whole(view.side)  # each legend line with its count, not clipped
    assert not view.canvas.colorbar.isVisible()  # categorical: no colour bar
    shots.save("explorer-concept-map", window)
    _go_to_step(qtbot, view.slider, 0)
    assert view.step == 0
    shots.save("explorer-concept-map-first-step", window)

    # Word attention (the sample regenerated once on the model thread): a word of the prompt,
    # at the first step, then the middle one.
    _choose(qtbot, view.mode, data="attention")
    qtbot.waitUntil(lambda: view._attention is not None, timeout=300_000)
    word = _word(view.word, ATTENTION_WORD)
    _choose(qtbot, view.word, text=word)
    assert _reads_whole(view.word)
    assert word in window.source.prompt(sample).lower()
    assert f"“{word}”" in view.side_title.text() or word in view.side_title.text()
    _go_to_step(qtbot, view.slider, 0)
    shots.save("explorer-word-attention-first-step", window)
    _go_to_step(qtbot, view.slider, window.source.n_steps // 2)
    assert view.side.count() > 0  # every word ranked beside it
    shots.save("explorer-word-attention", window)

    # The word probe at the first step: where Δ says the word's object will be.
    _choose(qtbot, view.mode, data="probe")
    word = _word(view.word, ATTENTION_WORD)
    _choose(qtbot, view.word, text=word)
    _go_to_step(qtbot, view.slider, 0)
    assert f"“{word}”" in view.side_title.text()
    assert view.canvas.overlay.isVisible()
    shots.save("explorer-word-probe-first-step", window)

    # The feature page and the browser, as panels.
    _choose(qtbot, view.mode, data="concepts")
    assert page.tabs.currentIndex() == 0
    assert page.gallery.count() > 0
    shots.save("feature-page", window.feature_dock)
    assert browser.table.model().rowCount() > 0
    shots.save("feature-browser", window.features_dock)

    # The Evaluation page.
    report = _tab(qtbot, window, "Evaluation")
    assert report is window.report_view
    qtbot.wait(300)
    assert _colours(window.tabs.currentWidget().viewport()) > 20
    shots.save("evaluation", window)
    for path in shots.written:
        assert path.stat().st_size > 1000, path


def test_steering_by_button_and_the_layout_edit(qtbot, window, shots):
    """The Steer tab's two pictures: an additive edit of the browser's feature, then the
    paper's layout edit — Add by words on the mid block's t = 1.0 SAE, spatial mode, a
    rectangle dragged on the original, the early window — each started by Generate."""
    steer = _tab(qtbot, window, "Steer")
    assert steer is window.steer_view
    if steer.live.isChecked():
        _click(qtbot, steer.live, QPoint(8, steer.live.height() // 2))
    assert not steer.live.isChecked()
    feature = _pick_feature(qtbot, window)
    _click(qtbot, steer.add_feature)
    assert [r.feature for r in steer.rows] == [feature]
    _choose(qtbot, steer.mode, data="add")
    _click(qtbot, steer.go)
    qtbot.waitUntil(lambda: steer.request is None and not window.service.busy, timeout=300_000)
    assert steer.last is not None, steer.warnings.text()
    assert "mean pixel change" in steer.summary.toPlainText()
    for canvas in (steer.original, steer.steered, steer.diff):
        assert _in_window(window, canvas) and _colours(canvas) > 2
    shots.save("steering", window)

    # The layout edit, on the mid block's earliest-noise SAE (t = 1.0).
    sae = _sae(window, "mid_block", lambda ids: ids[-1])
    if sae is not None:
        _choose(qtbot, window.sae_combo, data=sae)
        assert window.entry.id == sae
    steer = _tab(qtbot, window, "Steer")
    assert steer.rows == []  # another SAE: the feature list was cleared
    _type(qtbot, steer.prompt, MOVE_PROMPT)
    qtbot.keyClick(steer.prompt, Qt.Key.Key_Home)  # back to its start, to read it
    _type(qtbot, steer.words, MOVE_WORDS)
    _click(qtbot, steer.add_words)
    if not steer.rows:  # a workspace whose dictionary knows no red square (the tiny one)
        _click(qtbot, steer.add_feature)
    assert steer.rows
    _choose(qtbot, steer.mode, data="spatial")
    for row in steer.rows:
        _type(qtbot, row.spin, "1")
        qtbot.keyClick(row.spin, Qt.Key.Key_Return)
        assert row.strength == pytest.approx(1.0)
    assert steer.request is None  # typing a strength started nothing
    _choose(qtbot, steer.window, data="early")
    _choose(qtbot, steer.region_tool, text="Rectangle")
    canvas = steer.original
    h, w = canvas.image.image.shape[:2]
    x0, y0, x1, y1 = MOVE_RECT

    def at(fx, fy):
        return canvas.mapFromScene(canvas.view.mapViewToScene(QPointF(fx * w, fy * h)))

    vp = canvas.viewport()
    # From the far corner back: a press inside the rectangle already shown would move it.
    start, end = at(x1, y1), at(x0, y0)
    drag(qtbot, vp, start, end, LEFT)
    region = steer.region()
    assert region is not None
    tol = 3.0 / w
    assert (region.x0, region.y0, region.x1, region.y1) == pytest.approx(MOVE_RECT, abs=tol)
    _click(qtbot, steer.go)
    qtbot.waitUntil(lambda: steer.request is None and not window.service.busy, timeout=300_000)
    assert steer.last is not None, steer.warnings.text()
    caption = steer.summary.toPlainText()
    assert "spatial" in caption and "mean pixel change" in caption
    assert MOVE_PROMPT in caption
    changed = np.abs(steer.last["steered"].astype(int) - steer.last["original"].astype(int))
    assert changed.max() > 0, "the edit changed nothing"
    shots.save("steering-move", window)


def test_the_screenshots_option_writes_the_pictures(tmp_path, tiny_workspace):
    """`pytest --screenshots DIR` (the README's command) runs a journey and leaves its pictures
    in DIR: the default size's at the top, the laptop size's in DIR/1280x800."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    out = tmp_path / "shots"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(root)}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(Path(__file__)),
         "-k", "test_sample_view_feature_page_browser_and_evaluation and 1280x800",
         "--screenshots", str(out), "--screenshot-workspace", str(tiny_workspace),
         "--basetemp", str(tmp_path / "base")],
        cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    from PySide6.QtGui import QImage

    assert not list(out.glob("*.png"))  # only the 1280 × 800 journey ran
    image = QImage(str(out / "1280x800" / "explorer-feature-overlay.png"))
    assert (image.width(), image.height()) == (1280, 800)
    assert (out / "1280x800" / "explorer-feature-overlay.png").stat().st_size > 10_000
    colours = {image.pixel(x, y) for x in range(0, 1280, 7) for y in range(0, 800, 7)}
    assert len(colours) > 50, "a blank picture"
