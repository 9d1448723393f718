import pytest


@pytest.fixture(autouse=True)
def no_qthread_left_running(qtbot):
    """Fail a test that leaves a worker thread running (napari's rule)."""
    from explorer.ui.workers import Worker

    yield
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    running = [w for w in QApplication.instance().findChildren(Worker) if w.isRunning()]
    import gc

    running += [o for o in gc.get_objects() if isinstance(o, Worker) and _alive(o)]
    assert not running, f"test left {len(running)} worker thread(s) running"


def _alive(worker) -> bool:
    try:
        return worker.isRunning()
    except RuntimeError:  # the C++ object is already gone
        return False
