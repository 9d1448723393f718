"""Scrubbing with the Feature page open, as a person does it: Right-arrow presses on the step
slider. Each step must update what is cheap at once (picture, map, the firing curve's step line)
and must not refill the per-step patch gallery (tens of ms: the 62 ms per step of issue 17); the
gallery greys out and catches up once the slider rests."""

from __future__ import annotations

import pytest
from journey_helpers import open_and_wait
from PySide6.QtCore import Qt


def test_scrubbing_defers_the_gallery_until_the_slider_rests(qtbot, window, tiny_workspace,
                                                             monkeypatch):
    open_and_wait(qtbot, window, tiny_workspace)
    view, page = window.sample_view, window.feature_page
    assert page.isVisible() and page.scope.currentData() == "step"
    assert page.gallery.count() > 0 and page.gallery.isEnabled()
    view.slider.setFocus()  # as a person tabs to it
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    qtbot.waitUntil(page.gallery.isEnabled, timeout=5_000)
    start = view.step
    assert start == 0 and view.slider.maximum() >= 2
    reads = []
    index = window.source.index
    real = index.top_patches
    monkeypatch.setattr(index, "top_patches", lambda *a, **k: reads.append(k) or real(*a, **k))
    for i in range(1, 3):
        qtbot.keyClick(view.slider, Qt.Key.Key_Right)
        # At once: the picture's step, the firing curve's step line...
        assert view.step == start + i and page.step == start + i
        assert page.step_line.value() == pytest.approx(window.source.t[start + i])
        # ...but no gallery refill: it greys out (its patches are another step's).
        assert reads == [] and not page.gallery.isEnabled()
    # Once the slider rests, the gallery shows the new step's patches, read once.
    qtbot.waitUntil(page.gallery.isEnabled, timeout=5_000)
    assert len(reads) == 1 and reads[0].get("step") == start + 2
    steps = {page.gallery.item(i).data(Qt.ItemDataRole.UserRole)[1]
             for i in range(page.gallery.count())}
    assert steps <= {start + 2}
    assert f"step {start + 3}" in page.gallery_title.text()
