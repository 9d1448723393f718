import gc

import pytest


@pytest.fixture(scope="session", autouse=True)
def gc_in_gui_thread(qapp):
    """As the app does (explorer.ui.app.collect_garbage_in_gui_thread): no Qt object is ever
    freed by a collection that starts on a worker thread (a deadlock, seen in this suite)."""
    from explorer.ui.app import collect_garbage_in_gui_thread

    collector = collect_garbage_in_gui_thread()
    yield collector
    collector.timer.stop()
    gc.enable()
    gc.collect()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    """Each test's QSettings (recent files, geometry, each workspace's last view) in its own
    folder. Setting XDG_CONFIG_HOME is not enough: Qt reads it once per process and caches the
    folder, so later tests would restore the views earlier ones left."""
    from PySide6.QtCore import QSettings

    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    yield


@pytest.fixture(autouse=True)
def no_qthread_left_running(qtbot):
    """Fail a test that leaves any QThread running (napari's rule): workers, the model thread."""
    yield
    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    gc.collect()  # this test's Qt garbage goes here, on the GUI thread
    running = [o for o in gc.get_objects() if isinstance(o, QThread) and _alive(o)]
    assert not running, f"test left {len(running)} thread(s) running: {running}"


def _alive(thread) -> bool:
    try:
        return thread.isRunning() and thread is not thread.currentThread()
    except RuntimeError:  # the C++ object is already gone
        return False


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The main window, shown and exposed, with its own settings folder; message boxes are
    recorded in `window.messages` instead of shown (a modal box would wait for a click no test
    makes)."""
    from PySide6.QtWidgets import QMessageBox

    from explorer.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: shown.append(a[2]))
    w = MainWindow(device="cpu")
    w.messages = shown
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
