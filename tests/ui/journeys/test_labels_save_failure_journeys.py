"""A label save that fails, as a person meets it (issue 19, Deliver 1): the workspace folder
stops being writable or the disk is full while labelling. The failure shows at once (status bar
naming the file, a red indicator), nothing typed is lost, File → Save Labels As… writes the labels
elsewhere, and closing the window or switching workspace asks Save Labels As… / Discard / Cancel.

The tests run as root, whom chmod does not stop: the folder is made unwritable by moving it away
and putting a regular file in its place (every write below it then fails with ENOTDIR), and a
full disk is a real size-limited tmpfs where mounting is allowed, else an fsync that reports
ENOSPC as a full disk does."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess

import pytest
from labels_journey_helpers import action, click_when_asked, open_by_menu, stop_clickers
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from explorer.labels import LabelDocument, import_labels


@pytest.fixture
def ws(tiny_workspace, tmp_path):
    return shutil.copytree(tiny_workspace, tmp_path / "ws")


@pytest.fixture
def window(window):
    """The shared window (tests/ui/conftest.py); the message-box clickers stop with it."""
    yield window
    stop_clickers()


class Unwritable:
    """The workspace folder replaced by a regular file (as root, the one sure way to refuse)."""

    def __init__(self, folder):
        self.folder = folder
        self.moved = folder.with_name(folder.name + ".moved")

    def __enter__(self):
        self.folder.rename(self.moved)
        self.folder.write_text("not a folder any more")
        return self

    def restore(self):
        if self.moved.exists():
            self.folder.unlink()
            self.moved.rename(self.folder)

    def __exit__(self, *exc):
        self.restore()


def label_by_typing(qtbot, window, text):
    page = window.feature_page
    qtbot.mouseClick(page.label, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(page.label, text)
    qtbot.keyClick(page.label, Qt.Key.Key_Return)
    return window.entry.id, page.feature


def wait_for_failure(qtbot, window):
    qtbot.waitUntil(lambda: window.labels_state.isVisible(), timeout=5_000)
    message = window.statusBar().currentMessage()
    assert "Labels NOT saved" in message and "labels.json" in message, message
    assert "Save Labels As" in message
    return message


def save_dialog_answers(monkeypatch, path):
    asked = []

    def answer(*args, **kwargs):
        asked.append(args)
        return (str(path), "Labels (*.json)") if path else ("", "")

    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer)
    return asked


def labels_in(path):
    doc = LabelDocument()
    import_labels(doc, path)
    return {lab.key: lab.label for lab in doc.items()}


def test_an_unwritable_folder_is_shown_at_once_and_close_offers_save_as(
    qtbot, window, ws, tmp_path, monkeypatch
):
    open_by_menu(qtbot, window, ws, monkeypatch)
    assert not window.labels_state.isVisible()
    before = _bytes(ws / "labels.json")
    with Unwritable(ws):
        key = label_by_typing(qtbot, window, "red things")
        wait_for_failure(qtbot, window)
        assert str(ws / "labels.json") in window.labels_state.toolTip()
        # Nothing lost: the label is in the app, in the browser, and still editable.
        assert window.labels.get(*key).label == "red things"
        assert window.browser.model.labels[key[1]] == "red things"
        rescued = tmp_path / "rescued.json"
        asked = save_dialog_answers(monkeypatch, rescued)
        seen: list[str] = []
        click_when_asked(qtbot, "Save Labels As…", seen)
        window.close()
        assert len(seen) == 1 and "could not be saved" in seen[0] and "labels.json" in seen[0]
        assert len(asked) == 1
        assert not window.isVisible()
        assert labels_in(rescued) == {key: "red things"}
    assert _bytes(ws / "labels.json") == before  # the workspace's file was never written


def test_cancel_keeps_the_window_and_the_edits_then_a_writable_folder_saves_them(
    qtbot, window, ws, monkeypatch
):
    open_by_menu(qtbot, window, ws, monkeypatch)
    blocked = Unwritable(ws).__enter__()
    try:
        key = label_by_typing(qtbot, window, "kept")
        wait_for_failure(qtbot, window)
        seen: list[str] = []
        click_when_asked(qtbot, "Cancel", seen)
        window.close()
        assert seen and window.isVisible()  # asked, and still open
        assert window.labels.get(*key).label == "kept"
    finally:
        blocked.restore()
    # The folder is back: closing saves without a question.
    seen = []
    click_when_asked(qtbot, "Discard", seen, tries=50)
    window.close()
    stop_clickers()
    assert not seen and not window.isVisible()
    saved = json.loads((ws / "labels.json").read_text())["labels"]
    assert [(x["sae_id"], x["feature"], x["label"]) for x in saved] == [(*key, "kept")]


def test_discard_closes_and_writes_nothing(qtbot, window, ws, monkeypatch):
    open_by_menu(qtbot, window, ws, monkeypatch)
    before = _bytes(ws / "labels.json")
    with Unwritable(ws):
        label_by_typing(qtbot, window, "thrown away")
        wait_for_failure(qtbot, window)
        seen: list[str] = []
        click_when_asked(qtbot, "Discard", seen)
        window.close()
        assert seen and not window.isVisible()
    assert _bytes(ws / "labels.json") == before


def _bytes(path):
    return path.read_bytes() if path.exists() else None


def test_save_labels_as_from_the_menu_then_close_without_a_question(
    qtbot, window, ws, tmp_path, monkeypatch
):
    open_by_menu(qtbot, window, ws, monkeypatch)
    with Unwritable(ws):
        key = label_by_typing(qtbot, window, "copied")
        wait_for_failure(qtbot, window)
        copy = tmp_path / "copy.json"
        save_dialog_answers(monkeypatch, copy)
        action(window, "File", "Save Labels As…").trigger()
        assert labels_in(copy) == {key: "copied"}
        assert str(copy) in window.labels_state.text()  # still not in the workspace; says where
        seen: list[str] = []
        click_when_asked(qtbot, "Discard", seen, tries=50)
        window.close()  # every edit is in the copy: nothing to ask
        stop_clickers()
        assert not seen and not window.isVisible()


def test_switching_workspace_with_unsaved_labels_asks_first(
    qtbot, window, ws, tiny_workspace, tmp_path, monkeypatch
):
    open_by_menu(qtbot, window, ws, monkeypatch)
    other = shutil.copytree(tiny_workspace, tmp_path / "other")
    with Unwritable(ws):
        key = label_by_typing(qtbot, window, "stay")
        wait_for_failure(qtbot, window)
        seen: list[str] = []
        click_when_asked(qtbot, "Cancel", seen)
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(other))
        action(window, "File", "Open Workspace…").trigger()
        qtbot.waitUntil(lambda: bool(seen or window.messages), timeout=120_000)
        assert seen, window.messages
        qtbot.waitUntil(lambda: not window.pool.running(), timeout=60_000)
        assert window.workspace.root == ws and window.labels.get(*key).label == "stay"
        # Then Discard: the other workspace opens.
        click_when_asked(qtbot, "Discard", seen)
        action(window, "File", "Open Workspace…").trigger()
        qtbot.waitUntil(lambda: window.workspace.root == other, timeout=60_000)
        assert len(seen) == 2 and not window.labels_state.isVisible()


def test_a_full_disk_while_labelling(qtbot, window, ws, tmp_path, monkeypatch):
    """ENOSPC on the file's fsync, as a full disk reports it (runs everywhere)."""
    real_fsync = os.fsync
    full = {"on": False}

    def fsync(fd):
        if full["on"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    open_by_menu(qtbot, window, ws, monkeypatch)
    monkeypatch.setattr(os, "fsync", fsync)
    full["on"] = True
    key = label_by_typing(qtbot, window, "full")
    message = wait_for_failure(qtbot, window)
    assert "No space left on device" in message
    assert not list(ws.glob(".labels.json*"))  # no temp file left behind
    full["on"] = False  # space freed: the next edit saves everything, and the warning goes
    page = window.feature_page
    qtbot.mouseClick(page.tags, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(page.tags, "disk")
    qtbot.keyClick(page.tags, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.labels_state.isVisible(), timeout=5_000)
    assert labels_in(ws / "labels.json") == {key: "full"}


def _mount_tmpfs(folder, size):
    folder.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_real_full_tmpfs_while_labelling(qtbot, window, tiny_workspace, tmp_path, monkeypatch):
    """The same on a real size-limited file system, where this process may mount one."""
    disk = tmp_path / "disk"
    need = sum(f.stat().st_size for f in tiny_workspace.rglob("*") if f.is_file())
    if not _mount_tmpfs(disk, need + (4 << 20)):
        pytest.skip("mounting a tmpfs is not permitted here (the fsync ENOSPC test covers this)")
    try:
        ws = shutil.copytree(tiny_workspace, disk / "ws")
        open_by_menu(qtbot, window, ws, monkeypatch)
        # Unbuffered: a buffered file keeps the chunk that did not fit and raises ENOSPC again
        # when the block closes it.
        with (disk / "filler").open("wb", buffering=0) as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
        key = label_by_typing(qtbot, window, "no room")
        message = wait_for_failure(qtbot, window)
        assert "No space left on device" in message
        rescued = tmp_path / "rescued.json"
        save_dialog_answers(monkeypatch, rescued)
        seen: list[str] = []
        click_when_asked(qtbot, "Save Labels As…", seen)
        window.close()
        assert seen and not window.isVisible()
        assert labels_in(rescued) == {key: "no room"}
    finally:
        window.close()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)
