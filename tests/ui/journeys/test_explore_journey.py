"""Journey: explore a new prompt as a person does, by typing and clicking only.

Open the tiny workspace (File → Open with the folder dialog answered), go to the Explore tab, type
a prompt, press Explore, and read which of the SAE's features fire on the new image, where and
when: the ranked list, a feature's map at a step, the scrubber, click-to-list, and the feature's
page in the main window. Nothing may be written into the workspace.
"""

import numpy as np
import pytest
from journey_helpers import action, cell_pos, open_and_wait, point_at_cell, settled_cell_pos
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

PROMPT = "a small red circle at the top left"


@pytest.fixture(params=[(1600, 1000), (1280, 800)], ids=lambda s: f"{s[0]}x{s[1]}")
def window(window, qtbot, request):
    """The shared window (tests/ui/conftest.py) at each size; no run outlives the test."""
    window.resize(*request.param)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == request.param, timeout=5_000)
    yield window
    qtbot.waitUntil(lambda: not window.service.busy, timeout=60_000)


def _snapshot(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


def _click_row(qtbot, lst, row, double=False):
    lst.scrollToItem(lst.item(row))
    pos = lst.visualItemRect(lst.item(row)).center()
    click = qtbot.mouseDClick if double else qtbot.mouseClick
    if double:
        qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    click(lst.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def _click_image(qtbot, canvas, y, x):
    """Click the centre of overlay cell (y, x) of the canvas, as a mouse would."""
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=cell_pos(canvas, y, x))


def _choose_sae(qtbot, window, index):
    """Step the window's SAE box to `index` with the arrow keys, as a person would."""
    combo = window.sae_combo
    combo.setFocus()
    while combo.currentIndex() != index:
        key = Qt.Key.Key_Down if combo.currentIndex() < index else Qt.Key.Key_Up
        qtbot.keyClick(combo, key)
    assert window.entry.id == combo.itemData(index)
    return window.entry


def _other_sae(window, same_block):
    """The index of another SAE in the window's box, of the shown one's block or of another."""
    combo, entry = window.sae_combo, window.entry
    for i in range(combo.count()):
        other = window.workspace.sae(combo.itemData(i))
        if other.id != entry.id and (other.block == entry.block) == same_block:
            return i
    raise AssertionError(f"the workspace has no SAE {'of' if same_block else 'outside'} "
                         f"{entry.block} besides {entry.id}")


def _explore(qtbot, view):
    qtbot.mouseClick(view.go, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.request is None, timeout=120_000)
    assert view.result is not None, view.progress.format()


def _visible(widget) -> bool:
    """Shown and wholly on screen: not cut off by the window or a scroll area."""
    target = getattr(widget, "viewport", lambda: widget)()  # a scroll area's children cover it
    if not widget.isVisible():
        return False
    region = target.visibleRegion().boundingRect()
    return region.size() == target.rect().size()


def test_explore_a_prompt_by_clicks(qtbot, window, tiny_workspace, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tiny_workspace))
    action(window, "File", "Open Workspace…").trigger()
    qtbot.waitUntil(lambda: window.source is not None or bool(window.messages), timeout=60_000)
    assert window.source is not None, window.messages
    before = _snapshot(tiny_workspace)

    tabs = window.tabs
    titles = [tabs.tabText(i) for i in range(tabs.count())]
    assert "Explore" in titles and "Generate" not in titles
    bar = tabs.tabBar()
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton,
                     pos=bar.tabRect(titles.index("Explore")).center())
    view = window.generate_view
    assert tabs.currentWidget().widget() is view
    # The workspace's own sampling settings, not a hard-wired 4.0 guidance.
    regen = window.source.store.regeneration()
    assert view.steps.value() == regen["steps"]
    assert view.guidance.value() == pytest.approx(regen["guidance"])
    assert window.entry.label in view.sae_label.toolTip()
    # One-line labels never stop mid-word: whole, or cut with "…" and whole in the tooltip
    # (at 1280 × 800 the click hint read "…the features activ").
    for label in (view.sae_label, view.pos_title, view.caption):
        shown, whole = label.text(), label.toolTip()
        assert shown == whole or (shown.endswith("…") and whole.startswith(shown[:-1])), shown
        assert label.fontMetrics().horizontalAdvance(shown) <= label.width()

    view.prompt.setFocus()
    qtbot.keyClick(view.prompt, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(view.prompt, PROMPT)
    assert view.prompt.text() == PROMPT
    assert _visible(view.go)
    qtbot.mouseClick(view.go, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.request is None, timeout=120_000)
    assert view.result is not None, view.progress.format()
    ex = view.exploration
    n = regen["steps"]
    assert ex.n_steps == n and len(view.result["previews"]) == n

    # The ranked list: every feature that fired, most activation first.
    assert view.ranked.count() == len(ex.ranking) > 3
    ranked = [view.ranked.item(r).data(Qt.ItemDataRole.UserRole) for r in range(view.ranked.count())]
    assert ranked == ex.ranking.tolist()
    assert all(a >= b for a, b in zip(ex.totals, ex.totals[1:]))
    for widget in (view.ranked, view.canvas, view.positions, view.slider, view.open_page):
        assert _visible(widget), f"{type(widget).__name__} is cut off or scrolled away"

    # Click a row (not the first, which is shown already) whose feature fires at this step.
    step = view.slider.value()
    assert step == n - 1
    row = next(r for r in range(1, len(ranked)) if ex.feature_map(step, ranked[r]).max() > 0)
    f = ranked[row]
    _click_row(qtbot, view.ranked, row)
    assert view.feature == f and view.mode.currentData() == "feature"
    assert view.canvas.overlay.isVisible()
    np.testing.assert_array_equal(view.canvas.overlay.image, ex.feature_map(step, f))
    assert view.open_page.isEnabled()
    assert view.feature_info.text().startswith(f"#{f}") and f"step {n}:" in view.feature_info.text()

    # The map's colour bar spans the feature's shown range on this image (10% of its peak over
    # every step up to the peak), and the pointer over a cell reads that cell's value.
    vmax = float(ex.step_max[:, f].max())
    bar = view.canvas.colorbar
    assert bar is not None and bar.isVisible()
    assert bar.levels() == pytest.approx((0.1 * vmax, vmax), rel=1e-5)
    fmap = ex.feature_map(step, f)
    gy, gx = np.unravel_index(int(fmap.argmax()), fmap.shape)
    point_at_cell(qtbot, view.canvas, gy, gx)
    qtbot.waitUntil(lambda: f"({gy}, {gx})" in view.value_label.text(), timeout=10_000)
    assert _visible(view.value_label), "the value under the pointer is cut off"
    assert view.value_label.text() == f"#{f}{' ' + view.labels[f] if view.labels.get(f) else ''}" \
        f" at ({gy}, {gx}): {float(fmap[gy, gx]):.3g}"

    # The scrubber: Home goes to the first step, Right one step on; the picture and map follow.
    view.slider.setFocus()
    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    assert view.slider.value() == 0
    qtbot.keyClick(view.slider, Qt.Key.Key_Right)
    assert view.slider.value() == 1 and view.step_label.text().startswith(f"step 2/{n}")
    # The pointer has not moved: its reading follows the step, on the same scale.
    assert view.value_label.text().endswith(
        f"at ({gy}, {gx}): {float(ex.feature_map(1, f)[gy, gx]):.3g}")
    assert bar.levels() == pytest.approx((0.1 * vmax, vmax), rel=1e-5)
    np.testing.assert_array_equal(view.canvas.image.image, view.result["previews"][1])
    want = ex.feature_map(1, f)
    if want.max() > 0:
        np.testing.assert_array_equal(view.canvas.overlay.image, want)
    else:
        assert not view.canvas.overlay.isVisible()

    # Click on the image where the feature is strongest at the last step: the features active
    # there, strongest first, with this feature among them.
    qtbot.keyClick(view.slider, Qt.Key.Key_End)
    fmap = ex.feature_map(n - 1, f)
    y, x = np.unravel_index(int(fmap.argmax()), fmap.shape)
    assert view.positions.count() == 0
    _click_image(qtbot, view.canvas, int(y), int(x))
    assert view.positions.count() > 0
    listed = [view.positions.item(r).data(Qt.ItemDataRole.UserRole)
              for r in range(view.positions.count())]
    assert listed == [g for g, _ in ex.active_at(n - 1, int(y), int(x))] and f in listed
    assert f"({y}, {x}), step {n}" in view.pos_title.text()

    # The concept map: every position coloured by its strongest feature at this step.
    view.mode.setFocus()
    qtbot.keyClick(view.mode, Qt.Key.Key_Down)
    assert view.mode.currentData() == "concepts" and view.canvas.overlay.isVisible()
    top_f, top_v = ex.concept_map(n - 1)
    np.testing.assert_array_equal(view.canvas.overlay.image[..., 3] > 0, top_v > 0)
    # Categorical colours: no colour bar; the pointer reads the top feature and its value.
    assert not bar.isVisible()
    point_at_cell(qtbot, view.canvas, y, x)
    qtbot.waitUntil(lambda: "top feature" in view.value_label.text()
                    or "no feature" in view.value_label.text(), timeout=10_000)
    if top_v[y, x] > 0:
        assert f"at ({y}, {x}): #{int(top_f[y, x])}" in view.value_label.text()
        assert view.value_label.text().endswith(f"= {float(top_v[y, x]):.3g}")

    # Double-click a ranked feature: the main window's browser and feature page show it.
    g = ranked[0]
    _click_row(qtbot, view.ranked, 0, double=True)
    qtbot.waitUntil(lambda: window.feature_page.feature == g, timeout=5_000)
    assert window.feature_page.title.text().startswith(f"Feature #{g}")

    w, h = window.width(), window.height()
    settled_cell_pos(qtbot, view.canvas, 0, 0)  # the picture as a person sees it, bar laid out
    window.grab().save("/tmp/explore.png" if w == 1600 else f"/tmp/explore-{w}x{h}.png")

    # Another SAE of the same block chosen in the window: the activations this image captured
    # are encoded by it, with no new generation (the very previews stay), and its features
    # replace the old SAE's.
    previews, image = view.result["previews"], view.result["image"]
    old_entry = window.entry
    started = []
    window.service.started.connect(lambda rid, kind: started.append(rid))
    new = _choose_sae(qtbot, window, _other_sae(window, same_block=True))
    assert new.id != old_entry.id and new.label in view.sae_label.text()
    qtbot.waitUntil(lambda: view.request is None, timeout=60_000)
    assert view.result["previews"] is previews and view.result["image"] is image
    assert view.result["sae"] == new.id and len(started) == 1
    encoded = view.exploration
    assert encoded is not ex and view.ranked.count() == len(encoded.ranking) > 0
    assert [view.ranked.item(r).data(Qt.ItemDataRole.UserRole)
            for r in range(view.ranked.count())] == encoded.ranking.tolist()
    assert view.feature == int(encoded.ranking[0]) and new.label in view.caption.text()
    # The obvious slow way, a new generation with the new SAE, gives the same codes.
    _explore(qtbot, view)
    again = view.exploration
    np.testing.assert_array_equal(again.indices, encoded.indices)
    np.testing.assert_allclose(again.values, encoded.values, rtol=1e-6, atol=1e-6)
    assert again.ranking.tolist() == encoded.ranking.tolist()

    # An SAE of another block cannot read this image's activations: its stale panels go blank
    # and the caption says plainly why and what to do.
    other = _choose_sae(qtbot, window, _other_sae(window, same_block=False))
    assert other.label in view.sae_label.text()
    assert view.ranked.count() == 0 and view.feature is None and view.exploration is None
    assert not view.canvas.overlay.isVisible() and not bar.isVisible()
    # The action shows first, whatever the panel's width; the whole reason is in the tooltip.
    assert view.caption.text().startswith("Press Explore to generate it again")
    whole = view.caption.toolTip()
    assert new.block in whole and other.block in whole
    assert view.request is None  # nothing was started for it
    qtbot.waitUntil(lambda: not window.service.busy, timeout=60_000)
    assert _snapshot(tiny_workspace) == before, "exploring wrote into the workspace"


def test_an_sae_chosen_during_the_run_encodes_the_result(qtbot, window, tiny_workspace,
                                                          monkeypatch):
    """Switched while the image is still generating: what comes back is shown with the SAE
    chosen now, not the one the run started with."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tiny_workspace))
    action(window, "File", "Open Workspace…").trigger()
    qtbot.waitUntil(lambda: window.source is not None or bool(window.messages), timeout=60_000)
    assert window.source is not None, window.messages
    tabs, view = window.tabs, window.generate_view
    bar = tabs.tabBar()
    titles = [tabs.tabText(i) for i in range(tabs.count())]
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton,
                     pos=bar.tabRect(titles.index("Explore")).center())
    qtbot.mouseClick(view.go, Qt.MouseButton.LeftButton)
    new = _choose_sae(qtbot, window, _other_sae(window, same_block=True))
    qtbot.waitUntil(lambda: view.request is None and not window.service.busy, timeout=120_000)
    assert view.result is not None and view.result["sae"] == new.id, view.caption.text()
    assert view.ranked.count() == len(view.exploration.ranking) > 0
    assert new.label in view.caption.text()


def test_save_keeps_the_explored_image_and_its_ranked_features(qtbot, window, tiny_workspace,
                                                                tmp_path, monkeypatch):
    """Save… beside Explore: the image as made and a JSON of its settings and the features that
    fired most, ranked as the list shows them; nothing before a run, nothing in the workspace."""
    import json

    from PIL import Image

    open_and_wait(qtbot, window, tiny_workspace)
    before = _snapshot(tiny_workspace)
    bar = window.tabs.tabBar()
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(titles.index("Explore")).center())
    view = window.generate_view
    assert _visible(view.save) and not view.save.isEnabled()
    _explore(qtbot, view)
    assert view.save.isEnabled()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "seen.png"), ""))
    qtbot.mouseClick(view.save, Qt.MouseButton.LeftButton)
    record = json.loads((tmp_path / "seen.json").read_text())
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "seen.png")), view.last_image)
    s = record["settings"]
    assert (s["prompt"], s["seed"], s["steps"]) == (view.prompt.text(), view.seed.value(),
                                                    view.steps.value())
    assert s["sae"] == window.entry.id and s["block"] == window.entry.block
    ex = view.exploration
    shown = [view.ranked.item(r).data(Qt.ItemDataRole.UserRole)
             for r in range(min(view.ranked.count(), len(record["features"])))]
    assert [x["feature"] for x in record["features"]] == shown
    assert record["n_fired"] == view.ranked.count()
    top = record["features"][0]
    maps = [ex.feature_map(t, top["feature"]) for t in range(ex.n_steps)]  # the slow path
    assert top["total"] == pytest.approx(float(sum(m.sum() for m in maps)), rel=1e-4)
    assert top["peak"] == pytest.approx(max(float(m.max()) for m in maps), rel=1e-5)
    assert maps[top["peak_step"]].max() == pytest.approx(top["peak"], rel=1e-5)
    assert "seen.png" in window.statusBar().currentMessage()
    assert _snapshot(tiny_workspace) == before
