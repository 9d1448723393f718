"""Autosaver in one process: synchronous and debounced saves, flush, close, errors."""

from __future__ import annotations

import threading
import time

import pytest
from labels_helpers import MID

from explorer.labels import Autosaver, LabelDocument, LabelsError


def on_disk(path, feature):
    lab = LabelDocument.load(path).get(MID, feature)
    return lab.label if lab else None


def autosave_threads():
    return [t for t in threading.enumerate() if t.name == "labels-autosave" and t.is_alive()]


def test_delay_zero_saves_every_change_before_set_returns(tmp_path):
    path = tmp_path / "labels.json"
    doc = LabelDocument()
    with Autosaver(doc, path, delay_s=0):
        doc.set(MID, 1, label="a")
        assert on_disk(path, 1) == "a"
        doc.set(MID, 1, label="b")
        assert on_disk(path, 1) == "b"
        doc.undo()
        assert on_disk(path, 1) == "a"
        assert not doc.dirty and not autosave_threads()


def test_delayed_save_waits_then_writes_the_latest_state(tmp_path):
    path = tmp_path / "labels.json"
    doc = LabelDocument()
    saver = Autosaver(doc, path, delay_s=0.3)
    try:
        doc.set(MID, 1, label="a")
        doc.set(MID, 1, label="b")  # rides along with the first change's timer
        assert saver.pending and not path.exists()
        assert len(autosave_threads()) == 1
        deadline = time.monotonic() + 5
        while doc.dirty and time.monotonic() < deadline:
            time.sleep(0.02)
        assert on_disk(path, 1) == "b"
        assert not saver.pending
    finally:
        saver.close()


def test_flush_saves_at_once_and_cancels_the_timer(tmp_path):
    path = tmp_path / "labels.json"
    doc = LabelDocument()
    saver = Autosaver(doc, path, delay_s=60)
    doc.set(MID, 1, label="a")
    assert not path.exists()
    saver.flush()
    assert on_disk(path, 1) == "a" and not doc.dirty
    assert not autosave_threads()
    saver.close()


def test_close_saves_pending_work_and_leaves_no_thread(tmp_path):
    path = tmp_path / "labels.json"
    before = set(threading.enumerate())
    doc = LabelDocument()
    saver = Autosaver(doc, path, delay_s=30)
    for i in range(20):
        doc.set(MID, i, label=f"v{i}")
    saver.close()
    assert set(threading.enumerate()) <= before
    assert on_disk(path, 19) == "v19"
    # After close the document is no longer watched.
    doc.set(MID, 0, label="late")
    time.sleep(0.05)
    assert on_disk(path, 0) == "v0" and doc.dirty
    assert saver._on_changed not in doc.changed


def test_close_waits_for_a_save_already_running(tmp_path, monkeypatch):
    path = tmp_path / "labels.json"
    doc = LabelDocument()
    saver = Autosaver(doc, path, delay_s=0.01)
    started, release = threading.Event(), threading.Event()
    real_save = doc.save

    def slow_save(p):
        if threading.current_thread() is not threading.main_thread():  # only the timer is slow
            started.set()
            release.wait(5)
        real_save(p)

    monkeypatch.setattr(doc, "save", slow_save)
    doc.set(MID, 1, label="a")
    assert started.wait(5)  # the timer thread is inside save now
    releaser = threading.Timer(0.3, release.set)
    releaser.start()
    saver.close()  # must wait for that save, not return while it still runs
    still_running = autosave_threads()
    releaser.join()
    assert not still_running
    assert on_disk(path, 1) == "a"


def test_errors_in_the_timer_are_reported_and_flush_raises(tmp_path):
    path = tmp_path / "missing-folder" / "labels.json"
    doc = LabelDocument()
    errors = []
    saver = Autosaver(doc, path, delay_s=0.01, on_error=errors.append)
    doc.set(MID, 1, label="a")
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert errors and isinstance(errors[0], LabelsError)
    assert saver.error is errors[0]
    with pytest.raises(LabelsError, match="cannot write"):
        saver.flush()
    path.parent.mkdir()
    saver.close()  # now it works
    assert on_disk(path, 1) == "a"
