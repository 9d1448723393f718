import gc

import pytest


@pytest.fixture(autouse=True)
def no_qthread_left_running(qtbot):
    """Fail a test that leaves any QThread running (napari's rule): workers, the model thread."""
    yield
    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    running = [o for o in gc.get_objects() if isinstance(o, QThread) and _alive(o)]
    assert not running, f"test left {len(running)} thread(s) running: {running}"


def _alive(thread) -> bool:
    try:
        return thread.isRunning() and thread is not thread.currentThread()
    except RuntimeError:  # the C++ object is already gone
        return False
