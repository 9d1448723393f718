"""The Feature page as a person sees it: the tabs clicked, the gallery's patches clicked, the
step slider pressed with the page open. What is asserted is what shows: axes, where the bars are
drawn, which patches the gallery holds, which sample and step open."""

from __future__ import annotations

import numpy as np
import pytest
from journey_helpers import open_and_wait
from PySide6.QtCore import QPoint, Qt

from explorer.ui.feature_table import COL_ID


def _click_tab(qtbot, tabs, title):
    bar = tabs.tabBar()
    i = next(i for i in range(bar.count()) if bar.tabText(i) == title)
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(i).center())
    assert tabs.currentIndex() == i


def _open_feature(qtbot, window, feature):
    """Type the feature's id in the browser's filter and click its row."""
    browser = window.browser
    browser.filter.clear()
    qtbot.keyClicks(browser.filter, str(feature))
    row = browser.model.row_of(feature)
    pos = browser.table.visualRect(browser.model.index(row, COL_ID)).center()
    qtbot.mouseClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert window.feature_page.feature == feature


def _axes_shown(plot) -> bool:
    item = plot.getPlotItem()
    return item.getAxis("left").isVisible() or item.getAxis("bottom").isVisible()


def test_without_a_feature_the_plots_say_so_instead_of_drawing_axes(qtbot, window):
    page = window.feature_page
    assert page.isVisible()
    for plot, tab in ((page.firing, "Across steps"), (page.hist, "Histogram")):
        _click_tab(qtbot, page.tabs, tab)
        qtbot.wait(50)
        assert plot.isVisible() and not _axes_shown(plot), tab
        assert plot.placeholder.isVisible() and "No feature" in plot.placeholder.textItem.toPlainText()


def _bar_columns(plot) -> float:
    """Share of the plot area's pixel columns where the histogram's blue bars are drawn."""
    vb = plot.getPlotItem().getViewBox()
    img = plot.grab().toImage()
    rect = vb.mapRectToScene(vb.boundingRect()).toRect()  # the data area in widget pixels
    cols = 0
    for x in range(rect.left() + 1, rect.right() - 1):
        for y in range(rect.top() + 1, rect.bottom() - 1, 2):
            c = img.pixelColor(x, y)
            if c.blue() - c.red() > 50:
                cols += 1
                break
    return cols / max(1, rect.width() - 2)


@pytest.mark.parametrize("size", [None, (1280, 800)], ids=["default-size", "1280x800"])
def test_histogram_and_firing_curve_read_as_a_person_expects(qtbot, window, tiny_workspace, size):
    if size is not None:
        window.resize(*size)
    open_and_wait(qtbot, window, tiny_workspace)
    page = window.feature_page
    idx = window.source.index
    # A feature that fires over more than one decade of activation (most do).
    f = next(f for f in range(idx.n_features)
             if (idx.histogram(f)[1] > 0).sum() >= 3 and idx.firing_rate[f].min() > 0)
    _open_feature(qtbot, window, f)

    _click_tab(qtbot, page.tabs, "Histogram")
    qtbot.wait(50)
    assert _axes_shown(page.hist) and not page.hist.placeholder.isVisible()
    assert page.hist.getAxis("bottom").logMode  # a log activation axis, as on Neuronpedia
    edges, counts = idx.histogram(f)
    full = np.flatnonzero(counts > 0)
    (x0, x1), _ = page.hist.viewRange()
    # The axis spans the bins with data (plus a bin either side), not 1e-4…1e4.
    assert np.log10(edges[full[0]]) - 0.11 <= x0 + 1e-6 and x1 - 1e-6 <= np.log10(edges[full[-1] + 1]) + 0.11
    # And the bars fill the plot instead of sitting in a sliver at one side.
    assert _bar_columns(page.hist) > 0.4

    _click_tab(qtbot, page.tabs, "Across steps")
    qtbot.wait(50)
    (_, _), (y0, y1) = page.firing.viewRange()
    assert y0 == 0 and y1 >= idx.firing_rate[f].max()  # the rate axis starts at 0


def _gallery_items(page):
    return [page.gallery.item(i) for i in range(page.gallery.count())]


def _patches(page):
    return [tuple(it.data(Qt.ItemDataRole.UserRole)) for it in _gallery_items(page)]


def test_gallery_shows_one_patch_per_image_and_a_click_opens_it(qtbot, window, tiny_workspace):
    open_and_wait(qtbot, window, tiny_workspace)
    page, view = window.feature_page, window.sample_view
    idx = window.source.index
    step = view.step
    # A feature whose top patches at this step repeat an image (the index keeps positions).
    f = next(f for f in range(idx.n_features)
             if len({p.sample for p in idx.top_patches(f, step=step)})
             < len(idx.top_patches(f, step=step)))
    _open_feature(qtbot, window, f)
    shown = _patches(page)
    assert shown and len(set(shown)) == len(shown), "one image repeated in the gallery"
    # The one kept per image is its strongest patch.
    best = {}
    for p in idx.top_patches(f, step=step):
        best.setdefault(p.sample, p.value)
    values = [float(it.text().split(" ·")[0]) for it in _gallery_items(page)]
    assert values == pytest.approx([best[s] for s, _ in shown], rel=1e-2)

    # Unticking "one per image" shows every patch the index holds.
    box = page.distinct
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert not box.isChecked()
    assert page.gallery.count() == len(idx.top_patches(f, step=step)) > len(shown)
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))

    # Over all steps: still at most one patch per image and step.
    page.scope.setFocus()
    qtbot.keyClick(page.scope, Qt.Key.Key_Down)
    assert page.scope.currentData() == "all"
    shown = _patches(page)
    assert shown and len(set(shown)) == len(shown)

    # Clicking a patch opens that sample at that step in the Sample tab.
    item = _gallery_items(page)[-1]
    sample, at = item.data(Qt.ItemDataRole.UserRole)
    page.gallery.scrollToItem(item)
    qtbot.mouseClick(page.gallery.viewport(), Qt.MouseButton.LeftButton,
                     pos=page.gallery.visualItemRect(item).center())
    assert view.sample.value() == sample and view.step == at
    assert window.tabs.currentWidget().widget() is view


def _match_lines(page) -> list[str]:
    return [page.matches.item(i).text() for i in range(page.matches.count())]



@pytest.mark.parametrize("size", [None, (1280, 800)], ids=["default-size", "1280x800"])
def test_gallery_choices_show_their_whole_text(qtbot, window, tiny_workspace, size):
    """The gallery's scope box and "one per image" box read in full in the dock (they were cut
    to "at the cu" and "one per i" at 1280 × 800), and stay inside the page."""
    if size is not None:
        window.resize(*size)
    open_and_wait(qtbot, window, tiny_workspace)
    page = window.feature_page
    for widget in (page.scope, page.distinct):
        assert widget.isVisible()
        assert widget.width() >= widget.sizeHint().width(), widget
        right = widget.mapTo(page, QPoint(widget.width(), 0)).x()
        assert right <= page.width()
    fm = page.scope.fontMetrics()
    assert fm.horizontalAdvance(page.scope.currentText()) < page.scope.width() - 20

def test_matches_show_their_cosine_beside_the_baseline(qtbot, window, tiny_workspace, tmp_path):
    """A decoder cosine alone says little (two unrelated dictionaries of one block match well):
    each match reads "cosine 0.62 (baseline 0.18)", and an index matched before baselines were
    stored says it has none rather than showing a bare cosine."""
    import shutil

    import h5py

    open_and_wait(qtbot, window, tiny_workspace)
    page = window.feature_page
    idx = window.source.index
    baselines = idx.match_baselines()
    f = next(f for f in range(idx.n_features) if idx.matches(f))
    _open_feature(qtbot, window, f)
    _click_tab(qtbot, page.tabs, "Matches")
    lines = _match_lines(page)
    assert len(lines) == len(idx.matches(f)) > 0
    for line, (sae_id, other, cos) in zip(lines, idx.matches(f), strict=True):
        short = sae_id.split("/")[-1]  # the block is the shown SAE's: "t1.00  #27  · …"
        assert line.startswith(f"{short}  #{other}  · cosine {cos:.2f} "
                               f"(baseline {baselines[sae_id]:.2f}"), line
    # Whole in the dock: the cosine and its baseline are not cut off at the default width.
    item = page.matches.item(0)
    assert page.matches.visualItemRect(item).right() <= page.matches.viewport().width()
    assert page.matches.horizontalScrollBar().maximum() == 0

    old = shutil.copytree(tiny_workspace, tmp_path / "old-index")
    for path in old.rglob("index.h5"):
        with h5py.File(path, "a") as h:
            if "matches" in h:
                del h["matches"].attrs["baseline_mean_cosine"]
    open_and_wait(qtbot, window, old)
    assert window.source.workspace.root == old
    _open_feature(qtbot, window, f)
    _click_tab(qtbot, page.tabs, "Matches")
    lines = _match_lines(page)
    assert lines and all("no baseline in this index: run Evaluate again" in x for x in lines)
