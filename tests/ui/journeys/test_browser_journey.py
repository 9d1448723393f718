"""The feature browser as a person drives it: clicks on the header to sort, typing in the filter
box, clicks on rows, a double-click on a match. The highlighted row must always be the feature the
page shows, scrolled into view; the header's arrow must say which way the rows run; a row kept by
the filter for a word it does not show must say why."""

from __future__ import annotations

import numpy as np
import pytest
from journey_helpers import action, open_and_wait
from PySide6.QtCore import QPoint, Qt

from explorer.ui.feature_table import COL_ID, COL_LABEL, COL_RATE, FeatureBrowser
from explorer.ui.feature_table import COLUMNS as COLUMNS_


def _click_header(qtbot, browser, column):
    header = browser.table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2))


def _click_row(qtbot, browser, row, double=False):
    table = browser.table
    table.scrollTo(browser.model.index(row, COL_ID))  # as a person scrolls to it first
    pos = table.visualRect(browser.model.index(row, COL_ID)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def _highlighted(browser) -> list[int]:
    """The features of the rows drawn highlighted."""
    rows = browser.table.selectionModel().selectedRows()
    return [browser.model.feature_at(i.row()) for i in rows]


def _row_in_view(browser, feature) -> bool:
    row = browser.model.row_of(feature)
    rect = browser.table.visualRect(browser.model.index(row, COL_ID))
    return row >= 0 and browser.table.viewport().rect().contains(rect.center())


def _header_text(browser, column) -> str:
    return browser.model.headerData(column, Qt.Orientation.Horizontal)


def _shown_rates(browser, n=10) -> list[float]:
    m = browser.model
    return [float(m.data(m.index(r, COL_RATE)).rstrip("%")) for r in range(min(n, m.rowCount()))]


@pytest.mark.parametrize("size", [None, (1280, 800)], ids=["default-size", "1280x800"])
def test_the_highlight_follows_the_shown_feature_through_sorts_filters_and_matches(
        qtbot, window, tiny_workspace, size):
    if size is not None:
        window.resize(*size)
    open_and_wait(qtbot, window, tiny_workspace)
    browser, page = window.browser, window.feature_page
    # Default order: the highest rates on top, and the rate header says so (▼, not ▲).
    rates = _shown_rates(browser)
    assert rates == sorted(rates, reverse=True)
    assert _header_text(browser, COL_RATE).endswith("▼")
    assert not browser.table.horizontalHeader().isSortIndicatorShown()  # no contrary Qt arrow

    _click_row(qtbot, browser, 5)
    f = page.feature
    assert f == browser.model.feature_at(5) and _highlighted(browser) == [f]

    _click_header(qtbot, browser, COL_ID)  # sort by id: the row of f moves
    ids = [browser.model.feature_at(r) for r in range(browser.model.rowCount())]
    assert ids == sorted(ids) and _header_text(browser, COL_ID).endswith("▲")
    assert "▲" not in _header_text(browser, COL_RATE) and "▼" not in _header_text(browser, COL_RATE)
    assert page.feature == f and _highlighted(browser) == [f] and _row_in_view(browser, f)

    _click_header(qtbot, browser, COL_ID)  # again: descending
    assert _header_text(browser, COL_ID).endswith("▼")
    assert browser.model.feature_at(0) == browser.model.rowCount() - 1
    assert _highlighted(browser) == [f] and _row_in_view(browser, f)

    _click_header(qtbot, browser, COL_RATE)  # a new column: ascending first, arrow ▲
    rates = _shown_rates(browser)
    assert rates == sorted(rates) and _header_text(browser, COL_RATE).endswith("▲")
    assert _highlighted(browser) == [f] and _row_in_view(browser, f)

    # Filter to the feature's id: its row stays highlighted; a filter that hides it highlights
    # nothing (not whatever feature now sits in its old row); clearing it brings it back.
    browser.filter.setFocus()
    qtbot.keyClicks(browser.filter, str(f))
    assert _highlighted(browser) == [f] and _row_in_view(browser, f)
    browser.filter.clear()
    qtbot.keyClicks(browser.filter, "no feature is called this")
    assert browser.model.rowCount() == 0 and _highlighted(browser) == []
    browser.filter.clear()
    assert _highlighted(browser) == [f] and _row_in_view(browser, f) and page.feature == f

    # A match from the Matches tab opens in the other SAE: the browser follows it there.
    tabs = page.tabs
    bar = tabs.tabBar()
    i = next(i for i in range(bar.count()) if bar.tabText(i) == "Matches")
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(i).center())
    assert page.matches.count() > 0
    item = page.matches.item(0)
    sae_id, other = item.data(Qt.ItemDataRole.UserRole)
    rect = page.matches.visualItemRect(item)
    # A real double-click: press-release, then the double-click event (Qt needs the press).
    qtbot.mouseClick(page.matches.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(page.matches.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.entry.id == sae_id and page.feature == other
    assert _highlighted(browser) == [other] and _row_in_view(browser, other)



def _shown_browser(qtbot) -> FeatureBrowser:
    """A feature browser alone, 600×400, shown and exposed."""
    browser = FeatureBrowser()
    qtbot.addWidget(browser)
    browser.resize(600, 400)
    browser.show()
    qtbot.waitExposed(browser)
    return browser

def _features(n=20_000, s=25, seed=0):
    rng = np.random.default_rng(seed)
    rate = rng.random((n, s)).astype(np.float32) ** 4
    mean = rng.random((n, s)).astype(np.float32)
    return rate, mean, [1 - i / (s - 1) for i in range(s)]


def _label_cell(browser, feature, role=Qt.ItemDataRole.DisplayRole):
    m = browser.model
    return m.data(m.index(m.row_of(feature), COL_LABEL), role)


def test_the_filter_finds_tags_and_says_why_a_row_matched(qtbot):
    browser = FeatureBrowser()
    qtbot.addWidget(browser)
    browser.resize(600, 400)
    browser.show()
    rate, mean, t = _features()
    browser.model.set_features(
        rate, mean, t, labels={42: "sky", 7: "round things"},
        search_text={9: "blue square; red circle", 7: "circle"},
        auto_labels={11: "large red circle"}, tags={42: ("outdoor", "weather")})
    browser.filter.setFocus()
    qtbot.keyClicks(browser.filter, "outdoor")
    assert browser.model.order.tolist() == [42]
    assert "matched tag: outdoor" in _label_cell(browser, 42)
    assert "outdoor" in _label_cell(browser, 42, Qt.ItemDataRole.ToolTipRole)

    browser.filter.clear()
    qtbot.keyClicks(browser.filter, "circ")
    assert sorted(browser.model.order.tolist()) == [7, 9, 11]
    # 9 has no name: the dictionary word is the only sign of why it is there.
    assert _label_cell(browser, 9) == "[matched dictionary: circle]"
    assert _label_cell(browser, 11) == "large red circle"  # the name shows it: nothing added
    assert _label_cell(browser, 7).startswith("round things") and "dictionary: circle" in \
        _label_cell(browser, 7)
    browser.filter.clear()
    assert _label_cell(browser, 9) == "" and _label_cell(browser, 42) == "sky"

    # A tag typed on the feature page later is searchable at once.
    browser.model.set_label(5, "", tags=["striped"])
    qtbot.keyClicks(browser.filter, "striped")
    assert browser.model.order.tolist() == [5]


def test_the_numpy_filter_equals_the_obvious_loop(qtbot):
    browser = FeatureBrowser()
    qtbot.addWidget(browser)
    rng = np.random.default_rng(1)
    vocab = ["red", "blue", "circle", "square", "striped", "sky", "e", "12"]
    n = 3000
    rate, mean, t = _features(n)

    def words(k):
        return " ".join(rng.choice(vocab, size=k))

    labels = {int(i): words(2) for i in rng.choice(n, 300, replace=False)}
    auto = {int(i): words(3) for i in rng.choice(n, 600, replace=False)}
    dict_words = {int(i): words(4) for i in rng.choice(n, 900, replace=False)}
    tags = {int(i): tuple(words(2).split()) for i in rng.choice(n, 200, replace=False)}
    browser.model.set_features(rate, mean, t, labels, dict_words, auto, tags)

    def slow(text):
        keep = []
        for i in range(n):
            hay = " | ".join([str(i), labels.get(i, ""), auto.get(i, ""), " ".join(tags.get(i, ())),
                              dict_words.get(i, "")]).lower()
            keep.append(all(w in hay for w in text.lower().split()))
        return np.array(keep)

    for text in ["red", "Circle sky", "e", "12", "12 blue", "striped square red", "zzz", ""]:
        np.testing.assert_array_equal(browser.model.matching(text), slow(text), err_msg=text)


def test_sorting_and_filtering_keep_the_clicked_feature_highlighted(qtbot):
    browser = _shown_browser(qtbot)
    rate, mean, t = _features()
    browser.model.set_features(rate, mean, t, {123: "red square", 5: "red circle"})
    got = []
    browser.feature_selected.connect(got.append)
    _click_row(qtbot, browser, 3)
    f = got[-1]
    assert _highlighted(browser) == [f]
    _click_header(qtbot, browser, COL_ID)  # by id: the feature moves far down the table
    assert _highlighted(browser) == [f] and _row_in_view(browser, f)
    _click_header(qtbot, browser, COL_RATE)
    assert _highlighted(browser) == [f] and _row_in_view(browser, f)
    browser.filter.setFocus()
    qtbot.keyClicks(browser.filter, "red")  # hides f: nothing is highlighted in its place
    assert browser.model.rowCount() == 2 and _highlighted(browser) == []
    browser.filter.clear()
    assert _highlighted(browser) == [f] and _row_in_view(browser, f)
    # Opened from elsewhere (a patch, a match, the concept map): selected and scrolled to.
    browser.select_feature(123)
    assert _highlighted(browser) == [123] and _row_in_view(browser, 123) and got[-1] == 123
    assert got.count(f) == 1  # the re-selections after sorting did not re-open the feature


def test_sorting_20000_features_reads_only_the_rows_on_screen(qtbot, monkeypatch):
    """Instant at 20,000 features: a click on a header asks the model for the rows drawn, not
    for a thousand rows per column to size the columns (ResizeToContents did, every sort)."""
    from explorer.ui.feature_table import FeatureTableModel

    browser = _shown_browser(qtbot)
    rate, mean, t = _features()
    browser.model.set_features(rate, mean, t)
    calls = []
    real = FeatureTableModel.data
    monkeypatch.setattr(FeatureTableModel, "data", lambda self, *a: calls.append(1) or real(self, *a))
    _click_header(qtbot, browser, COL_ID)
    qtbot.wait(20)
    assert browser.model.feature_at(0) == 0
    rows_on_screen = browser.table.viewport().height() // browser.table.rowHeight(0) + 2
    # Every role of every cell on screen, twice over, is still far below a thousand rows.
    assert 0 < len(calls) < 2 * 12 * len(COLUMNS_) * rows_on_screen, len(calls)


@pytest.mark.parametrize("size", [(1600, 1000), (1280, 800), (1024, 700)])
def test_the_label_column_stays_readable_in_a_narrow_window(qtbot, window, tiny_workspace, size):
    """At 1280×800 the browser's dock is about 330 px: the label column was squeezed to "l…"
    behind a sideways scroll bar. Optional columns give way first; what is shown fits."""
    from explorer.ui.feature_table import COL_MEAN, COL_PEAK, COL_SPARK, LABEL_MIN_WIDTH

    window.resize(*size)
    open_and_wait(qtbot, window, tiny_workspace)
    browser = window.browser
    table, header = browser.table, browser.table.horizontalHeader()
    qtbot.waitUntil(lambda: header.sectionSize(COL_LABEL) >= LABEL_MIN_WIDTH - 2, timeout=5_000)
    shown = [c for c in range(len(COLUMNS_)) if not table.isColumnHidden(c)]
    assert {COL_ID, COL_LABEL, COL_RATE} <= set(shown)
    assert sum(header.sectionSize(c) for c in shown) <= table.viewport().width() + 1
    assert not table.horizontalScrollBar().isVisible()
    if size[0] >= 1600:  # the default window shows the curve over steps and the peak
        assert {COL_PEAK, COL_SPARK} <= set(shown), (size, shown)
    # A wide window and View → Reset layout (the browser's dock at 470 px): every column is
    # back, at its own width.
    window.resize(1900, 1000)
    qtbot.wait(400)  # the window re-shares its docks once a resize settles
    action(window, "View", "Reset layout").trigger()
    qtbot.waitUntil(lambda: not any(table.isColumnHidden(c) for c in (COL_MEAN, COL_PEAK, COL_SPARK)),
                    timeout=5_000)
    assert header.sectionSize(COL_SPARK) == browser._widths[COL_SPARK]
