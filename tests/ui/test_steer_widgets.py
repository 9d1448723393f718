import numpy as np

from explorer.ui.range_slider import RangeSlider


def test_range_slider_paints_and_keeps_its_order(qtbot):
    slider = RangeSlider(0, 24)
    qtbot.addWidget(slider)
    slider.resize(240, 24)
    slider.show()
    got = []
    slider.rangeChanged.connect(lambda lo, hi: got.append((lo, hi)))
    slider.setValues(5, 3)  # high below low is clamped up to low
    assert slider.values() == (5, 5)
    slider.setValues(-4, 99)
    assert slider.values() == (0, 24) and got[-1] == (0, 24)
    # A real paint: an exception in paintEvent once left a painter active and crashed Qt.
    image = slider.grab().toImage()
    colours = {image.pixel(x, 12) for x in range(0, 240, 4)}
    assert len(colours) > 2
    slider.repaint()
    assert np.isfinite(slider._x(12))


def test_the_width_the_pictures_need_is_the_least_that_gives_them_their_size(qtbot):
    """TileGrid.width_for (the steering page's controls take the rest) against the obvious
    search: the narrowest grid whose pictures are at least that large."""
    from PySide6.QtWidgets import QLabel, QWidget

    from explorer.ui.steer_pictures import Cell, TileGrid

    cells = [Cell("Original", QWidget()), Cell("Steered", QWidget()),
             Cell("Difference", QWidget(), QLabel("darker  brighter"))]
    grid = TileGrid(cells)
    qtbot.addWidget(grid)
    for h in (300, 555, 715, 915, 1400):
        for side in (41, 120, 183, 250, 400):
            fast = grid.width_for(side, h)
            slow = next((w for w in range(1, 4000) if grid.picture_side(w, h) >= side), None)
            if slow is None:  # too tall for this height at any width: as wide as all three
                assert grid.picture_side(fast, h) < side
            else:
                assert fast == slow, (h, side, fast, slow)
