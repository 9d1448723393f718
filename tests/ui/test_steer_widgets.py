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
