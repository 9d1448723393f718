import numpy as np
from PySide6.QtCore import Qt

from explorer.ui.feature_table import COL_ID, COL_LABEL, COL_RATE, FeatureBrowser


def _features(n=20_000, s=25, seed=0):
    rng = np.random.default_rng(seed)
    rate = rng.random((n, s)).astype(np.float32) ** 4
    mean = rng.random((n, s)).astype(np.float32)
    return rate, mean, [1 - i / (s - 1) for i in range(s)]


def test_sort_matches_numpy_and_filter_matches_labels(qtbot):
    browser = FeatureBrowser()
    qtbot.addWidget(browser)
    rate, mean, t = _features()
    labels = {5: "red circle", 17: "striped background", 123: "red square"}
    browser.model.set_features(rate, mean, t, labels, {9: "blue dictionary-word"})
    m = browser.model
    assert m.rowCount() == 20_000
    m.sort(COL_RATE, Qt.SortOrder.DescendingOrder)
    expect = np.argsort(rate.mean(axis=1), kind="stable")[::-1]
    np.testing.assert_array_equal(m.order, expect)
    m.sort(COL_ID, Qt.SortOrder.AscendingOrder)
    np.testing.assert_array_equal(m.order[:5], np.arange(5))
    m.sort(COL_LABEL, Qt.SortOrder.AscendingOrder)
    assert [m.feature_at(i) for i in range(3)] == [5, 123, 17]
    browser.filter.setText("red")
    assert sorted(m.order.tolist()) == [5, 123]
    browser.filter.setText("dictionary-word")
    assert m.order.tolist() == [9]
    browser.filter.setText("")
    assert m.rowCount() == 20_000


def test_selecting_a_row_emits_its_feature_and_keys_move(qtbot):
    browser = FeatureBrowser()
    qtbot.addWidget(browser)
    rate, mean, t = _features(200)
    browser.model.set_features(rate, mean, t)
    got = []
    browser.feature_selected.connect(got.append)
    browser.table.selectRow(3)
    assert got[-1] == browser.model.feature_at(3)
    browser.table.setFocus()
    qtbot.keyClick(browser.table, Qt.Key.Key_Down)
    assert got[-1] == browser.model.feature_at(4)


def test_provisional_names_show_grey_and_yield_to_user_labels(qtbot):
    browser = FeatureBrowser()
    qtbot.addWidget(browser)
    rate, mean, t = _features(50)
    auto = {3: "large red circle", 4: "≈ dog", 7: "striped background"}
    browser.model.set_features(rate, mean, t, {7: "my stripes"}, {}, auto)
    m = browser.model

    def cell(f, role=Qt.ItemDataRole.DisplayRole):
        return m.data(m.index(m.row_of(f), COL_LABEL), role)

    assert cell(3) == "large red circle" and cell(4) == "≈ dog"
    assert cell(7) == "my stripes"  # the user's label wins
    assert cell(3, Qt.ItemDataRole.FontRole).italic()
    assert cell(7, Qt.ItemDataRole.FontRole) is None and cell(0) == ""
    # Tooltips: the whole name (the column may cut it), and for a provisional one why it is grey.
    tip = Qt.ItemDataRole.ToolTipRole
    assert cell(7, tip) == "my stripes" and cell(0, tip) is None
    assert cell(3, tip).startswith("large red circle\n") and "provisional" in cell(3, tip)
    m.sort(COL_LABEL, Qt.SortOrder.AscendingOrder)  # user labels, then provisional, then none
    assert [m.feature_at(i) for i in range(3)] == [7, 3, 4]
    browser.filter.setText("circle")
    assert m.order.tolist() == [3]
    m.set_label(3, "mine")  # naming it replaces the provisional name
    browser.filter.setText("")
    assert cell(3) == "mine" and cell(3, Qt.ItemDataRole.FontRole) is None


def test_the_sparkline_of_the_selected_row_stays_visible(qtbot):
    from explorer.ui.feature_table import COL_SPARK

    browser = FeatureBrowser()
    qtbot.addWidget(browser)
    browser.resize(700, 300)
    browser.show()
    rate, mean, t = _features(20)
    browser.model.set_features(rate, mean, t)
    browser.table.setFocus()
    browser.table.selectRow(1)
    qtbot.waitExposed(browser)
    palette = browser.table.palette()
    image = browser.table.viewport().grab().toImage()

    def colours(row):
        rect = browser.table.visualRect(browser.model.index(row, COL_SPARK)).adjusted(4, 4, -4, -4)
        return {image.pixelColor(x, y).name() for x in range(rect.left(), rect.right())
                for y in range(rect.top(), rect.bottom())}

    # Drawn in the highlight colour on a plain row; on the selected row (whose background is
    # that colour) in the highlighted-text colour, or the line would vanish.
    # (Either colour group: whether the offscreen window counts as active is up to the platform.)
    groups = (palette.ColorGroup.Active, palette.ColorGroup.Inactive)
    line = {palette.color(g, palette.ColorRole.Highlight).name() for g in groups}
    text = {palette.color(g, palette.ColorRole.HighlightedText).name() for g in groups}
    assert line & colours(0) and text & colours(1)
