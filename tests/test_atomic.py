"""explorer.atomic: a replaced file is whole (old or new) after kill -9 at any moment, temp
names never collide, a failed write leaves nothing, and permissions are a plain file's."""

from __future__ import annotations

import os
import random
import signal
import stat
import threading
import time

import pytest

from explorer.atomic import atomic_path, atomic_write_bytes, atomic_write_text, temp_files

KILL_RNG = random.Random()
CHUNK = 64 << 10
SIZE = 16 << 20  # written in 256 chunks: a write takes long enough for kills to land inside


def _slow_write(f, version: int) -> None:
    block = bytes([version % 251]) * CHUNK
    for _ in range(SIZE // CHUNK):
        f.write(block)
        f.flush()


def _kill_rounds(path, writer, rounds: int = 12) -> list[str]:
    """Fork children that rewrite `path` with versions 1, 2, … via `writer`, kill each at a
    random moment; the problems a reader then saw (a torn or empty file)."""
    problems = []
    for r in range(rounds):
        pid = os.fork()
        if pid == 0:
            try:
                for v in range(1, 10_000):
                    writer(path, r * 10_000 + v)
            finally:
                os._exit(0)
        time.sleep(KILL_RNG.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        data = path.read_bytes()
        if len(data) != SIZE or len(set(data[:: CHUNK // 4])) != 1:
            problems.append(f"round {r}: {len(data)} bytes, {len(set(data))} distinct values")
    return problems


def _atomic(path, version):
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        _slow_write(f, version)


def _in_place(path, version):
    with path.open("wb") as f:
        _slow_write(f, version)


def test_kill_9_leaves_a_whole_file_and_the_check_sees_torn_ones(tmp_path):
    path = tmp_path / "f.bin"
    _atomic(path, 0)
    assert _kill_rounds(path, _atomic) == []
    # The control: the same kills on an in-place writer do tear the file, so the check above
    # can fail.
    torn = tmp_path / "g.bin"
    _in_place(torn, 0)
    assert _kill_rounds(torn, _in_place, rounds=6), "the kills never landed inside a write"


def test_threads_writing_one_file_need_no_lock(tmp_path):
    path = tmp_path / "shared.txt"
    errors = []

    def write(n):
        try:
            for i in range(50):
                atomic_write_text(path, f"{n}:{i}\n" * 1000)
        except Exception as e:  # collected: a thread's error must fail the test
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = set(path.read_text().splitlines())
    assert len(lines) == 1  # one writer's whole text, never two interleaved
    assert temp_files(path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and temp_files(path) == []
    with pytest.raises(OSError):  # a folder in the way: refused, nothing left beside it
        atomic_write_text(tmp_path, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_permissions_are_a_plain_files(tmp_path):
    old = os.umask(0o027)
    try:
        import importlib

        import explorer.atomic as atomic

        importlib.reload(atomic)  # reads the umask at import
        atomic.atomic_write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
        importlib.reload(atomic)
    assert stat.S_IMODE((tmp_path / "p.txt").stat().st_mode) == 0o640


def test_an_index_being_written_is_told_apart_from_a_missing_one(tmp_path):
    from explorer.analysis.errors import IndexFileError
    from explorer.analysis.reader import FeatureIndex

    path = tmp_path / "index.h5"
    with pytest.raises(IndexFileError, match="does not exist"):
        FeatureIndex.open(path)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:  # what build_index holds
        assert tmp.name.startswith(".index.h5.") and tmp.suffix == ".tmp"
        with pytest.raises(IndexFileError, match="still being built"):
            FeatureIndex.open(path)
        raise RuntimeError("build cancelled")
    with pytest.raises(IndexFileError, match="does not exist"):
        FeatureIndex.open(path)
