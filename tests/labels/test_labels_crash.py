"""Autosave against real crashes: a child process edits labels and is killed with SIGKILL.

Children run `sys.executable -S -c` (no site-packages: a quicker start on a busy machine) with
the repository on sys.path, so they import exactly this checkout.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labels_helpers import MID

from explorer.labels import LabelDocument

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from explorer.labels import Autosaver, LabelDocument
path, delay = sys.argv[1], float(sys.argv[2])
SAE = {MID!r}
doc = LabelDocument.load(path)
saver = Autosaver(doc, path, delay_s=delay)
"""


class Child:
    """A child Python process running PRELUDE + `body`, whose stdout lines we wait for."""

    def __init__(self, body: str, path: Path, delay: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", PRELUDE + body, str(path), str(delay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.buf = b""

    def expect(self, word: str, timeout: float = 60) -> None:
        """Wait for the next stdout line and check it is `word`; never hang on a stuck child."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                self.proc.kill()
                _, err = self.proc.communicate(timeout=10)
                pytest.fail(f"child never said {word!r} (got {self.buf!r}): {err.decode()}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        assert line.decode().strip() == word

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL  # it died; it did not exit cleanly


def test_edit_survives_sigkill_after_flush(tmp_path):
    path = tmp_path / "labels.json"
    # delay 60 s: only flush() can have saved the edit before the kill.
    child = Child(
        "doc.set(SAE, 7, label='striped', tags=['texture'])\n"
        "saver.flush()\n"
        "print('saved', flush=True)\n"
        "time.sleep(60)\n",
        path, 60,
    )
    child.expect("saved")
    child.kill()
    lab = LabelDocument.load(path).get(MID, 7)
    assert lab is not None and lab.content == ("striped", "", ("texture",))


def test_edit_survives_sigkill_once_the_timer_saved(tmp_path):
    path = tmp_path / "labels.json"
    child = Child(
        "doc.set(SAE, 3, label='first')\n"
        "saver.flush()\n"
        "doc.set(SAE, 3, label='second')\n"  # left to the debounce timer
        "print('edited', flush=True)\n"
        "end = time.monotonic() + 30\n"
        "while doc.dirty and time.monotonic() < end: time.sleep(0.01)\n"
        "print('still dirty' if doc.dirty else 'saved', flush=True)\n"
        "time.sleep(60)\n",
        path, 0.1,
    )
    child.expect("edited")
    child.expect("saved")
    child.kill()
    assert LabelDocument.load(path).get(MID, 3).label == "second"


# Big notes make every save write ~0.5 MB, so a kill can land in the middle of a write.
RAPID = """
if doc.get(SAE, 0) is None:
    doc.set(SAE, 0, notes="x" * 500_000)
    saver.flush()
i = max(f for (s, f) in [lab.key for lab in doc.items()])
print("go", flush=True)
while True:
    i += 1
    doc.set(SAE, i, label=f"v{i}")
"""


def check_consistent(path: Path) -> int:
    """The file must be whole JSON holding a prefix of the edits; returns the last edit."""
    data = json.loads(path.read_text(encoding="utf-8"))  # never a torn file
    doc = LabelDocument.load(path)
    assert doc.get(MID, 0).notes == "x" * 500_000
    features = sorted(lab.feature for lab in doc.items())
    n = features[-1]
    assert features == list(range(n + 1)), "edits must land in order, none lost in between"
    assert all(doc.get(MID, i).label == f"v{i}" for i in range(1, n + 1))
    assert len(data["labels"]) == n + 1
    return n


def test_file_is_always_whole_when_killed_during_rapid_edits(tmp_path):
    rng = random.Random(0)
    # Several children at once (one file each), so their slow start-ups on a busy machine
    # overlap: synchronous saves (delay 0) and near-synchronous debounced ones.
    delays = [0.0, 0.0, 0.002, 0.002]
    paths = [tmp_path / f"labels{i}.json" for i in range(len(delays))]
    children = [Child(RAPID, p, d) for p, d in zip(paths, delays)]
    for child in children:
        child.expect("go")
    for child in children:
        time.sleep(rng.uniform(0.02, 0.15))
        child.kill()
    for path in paths:
        assert check_consistent(path) >= 1, "the child never saved: the test proved nothing"
        # The folder may hold a stray tmp file from the kill, never a second labels file.
        assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    # A killed session's leftovers do not stop the next one from loading and saving.
    doc = LabelDocument.load(paths[0])
    doc.set(MID, 10**6, label="after the crash")
    doc.save(paths[0])
    assert LabelDocument.load(paths[0]).get(MID, 10**6).label == "after the crash"
