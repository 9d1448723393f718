import numpy as np

from explorer.ui.generate_view import GenerateView
from explorer.ui.jobs import ModelHolder
from explorer.ui.service import GenerationService


def _view(qtbot, folder):
    service = GenerationService()
    view = GenerateView(ModelHolder(folder, "cpu"), service)
    qtbot.addWidget(view)
    view.steps.setValue(3)
    return view, service


def _wait_done(qtbot, view):
    qtbot.waitUntil(lambda: view.request is None, timeout=60_000)


def test_generate_shows_previews_then_the_image(qtbot, tiny_model_dir):
    view, service = _view(qtbot, tiny_model_dir)
    steps, shown = [], []

    def on_progress(rid, u):  # connected after the view's own slot, so it runs after it
        steps.append(u.get("step"))
        if u.get("step") is not None:
            shown.append((u["step"], u["preview"].copy(), view.canvas.image.image.copy(),
                          view.caption.text()))

    service.progressed.connect(on_progress)
    view.start()
    _wait_done(qtbot, view)
    service.shutdown()
    assert view.last_image is not None and view.last_image.shape == (64, 64, 3)
    # Every step's predicted x₀ was on the canvas, with its step in the caption.
    assert [s for s, *_ in shown] == [0, 1, 2]
    for step, preview, on_canvas, caption in shown:
        np.testing.assert_array_equal(on_canvas, preview)
        assert caption.startswith(f"predicted x₀ at step {step + 1} ")
    assert not np.array_equal(shown[0][1], view.last_image)  # a preview, not the final image
    shot = view.canvas.grab().toImage()
    w, h = shot.width(), shot.height()
    colours = {shot.pixel(x, y) for x in range(0, w, 7) for y in range(0, h, 7)}
    assert len(colours) > 20, "the canvas shows no image"
    assert steps.count(None) <= 1 and [s for s in steps if s is not None][-1] == 2


def test_newest_request_cancels_the_running_one(qtbot, tiny_model_dir):
    view, service = _view(qtbot, tiny_model_dir)
    cancelled, returned = [], []
    service.cancelled.connect(cancelled.append)
    service.returned.connect(lambda rid, v: returned.append(rid))
    view.steps.setValue(200)
    first = view.start()
    qtbot.waitUntil(lambda: service.busy, timeout=5_000)
    view.steps.setValue(2)
    second = view.start()
    _wait_done(qtbot, view)
    # The service's signals reach each receiver as its own queued event: the view's slot can
    # run (and end the wait above) before this test's collector has been called.
    qtbot.waitUntil(lambda: len(returned) > 0, timeout=10_000)
    service.shutdown()
    assert first in cancelled and returned == [second]
    assert isinstance(view.last_image, np.ndarray)


def test_errors_reach_the_status_not_a_crash(qtbot, tmp_path):
    view, service = _view(qtbot, tmp_path / "nowhere")
    messages = []
    view.status.connect(messages.append)
    view.start()
    qtbot.waitUntil(lambda: any("error" in m for m in messages), timeout=30_000)
    service.shutdown()
    assert "does not exist" in messages[-1]


def test_settings_are_the_models_own_until_a_workspace_gives_its_own(qtbot, tiny_model_dir):
    # The bundled model's explorer.json says 25 steps at guidance 4.5 (the tab said 4.0).
    view = GenerateView(ModelHolder("bundled", "cpu"), service := GenerationService())
    qtbot.addWidget(view)
    service.shutdown()
    assert (view.steps.value(), view.guidance.value()) == (25, 4.5)
    # The tiny test model's folder says 4 steps at 3.0.
    other = GenerateView(ModelHolder(tiny_model_dir, "cpu"), service := GenerationService())
    qtbot.addWidget(other)
    service.shutdown()
    assert (other.steps.value(), other.guidance.value()) == (4, 3.0)
    # A workspace's store: its sampling steps, and its guidance unless it recorded none.
    other.set_sae(None, {"steps": 7, "guidance": 5.5, "step_index": list(range(7))})
    assert (other.steps.value(), other.guidance.value()) == (7, 5.5)
    other.set_sae(None, {"steps": 9, "guidance": None, "step_index": list(range(9))})
    assert (other.steps.value(), other.guidance.value()) == (9, 5.5)
