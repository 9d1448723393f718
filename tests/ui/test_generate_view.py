import numpy as np

from explorer.ui.generate_view import GenerateView
from explorer.ui.jobs import ModelHolder
from explorer.ui.workers import WorkerPool


def _view(qtbot, folder):
    pool = WorkerPool()
    view = GenerateView(ModelHolder(folder, "cpu"), pool)
    qtbot.addWidget(view)
    view.steps.setValue(3)
    return view, pool


def test_generate_shows_previews_then_the_image(qtbot, tiny_model_dir):
    view, pool = _view(qtbot, tiny_model_dir)
    steps = []
    view.start()
    view.worker.progressed.connect(lambda u: steps.append(u.get("step")))
    with qtbot.waitSignal(view.worker.returned, timeout=60_000):
        pass
    pool.shutdown()
    assert view.last_image is not None and view.last_image.shape == (64, 64, 3)
    shot = view.canvas.grab().toImage()
    w, h = shot.width(), shot.height()
    colours = {shot.pixel(x, y) for x in range(0, w, 7) for y in range(0, h, 7)}
    assert len(colours) > 20, "the canvas shows no image"
    assert steps.count(None) <= 1 and [s for s in steps if s is not None][-1] == 2


def test_newest_request_cancels_the_running_one(qtbot, tiny_model_dir):
    view, pool = _view(qtbot, tiny_model_dir)
    view.steps.setValue(40)
    view.start()
    first = view.worker
    view.steps.setValue(2)
    with qtbot.waitSignal(first.cancelled, timeout=60_000):
        view.start()
    second = view.worker
    with qtbot.waitSignal(second.returned, timeout=60_000):
        pass
    pool.shutdown()
    assert isinstance(view.last_image, np.ndarray)


def test_errors_reach_the_status_not_a_crash(qtbot, tmp_path):
    view, pool = _view(qtbot, tmp_path / "nowhere")
    messages = []
    view.status.connect(messages.append)
    view.start()
    with qtbot.waitSignal(view.worker.errored, timeout=30_000):
        pass
    qtbot.waitUntil(lambda: any("error" in m for m in messages), timeout=5_000)
    pool.shutdown()
    assert "does not exist" in messages[-1]
