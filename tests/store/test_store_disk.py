"""A full disk: refused up front when it is known, one clear line when it happens mid-way."""

from __future__ import annotations

import os
import resource
import signal
import subprocess

import pytest
import store_helpers as H

from explorer.store import Store, StoreError, StoreWriter

# 196 KB per sample: a 1 MB file system holds a few samples of a 4 MB store.
BIG = {"mid_block.attentions.0": (16, 16, 64)}


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MB tmpfs (needs root: skipped where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?); the RLIMIT_FSIZE test still runs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_known_shortage_is_refused_before_anything_is_written(small_fs):
    path = small_fs / "s.h5"
    with pytest.raises(StoreError, match=r"needs .* more but only .* is free") as e:
        H.create(path, H.layout(n=20, blocks=BIG))
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert os.listdir(small_fs) == []


def test_disk_full_mid_collection_keeps_complete_samples_and_resumes(small_fs, tmp_path):
    lay = H.layout(n=20, blocks=BIG)
    path = small_fs / "s.h5"
    w = H.create(path, lay, check_space=False)  # as if the space went elsewhere after the check
    with pytest.raises(StoreError) as e:
        while w.n_complete < lay.n_samples:
            H.write_batch(w, 2)
    w.close()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    assert "the disk is full" in msg and "rerun with --resume" in msg, msg
    kept = int(msg.split("keeps its ")[1].split()[0])
    with Store.open(path) as store:
        assert store.n_samples == kept and 0 < kept < lay.n_samples and kept % 2 == 0
        H.check_synthetic(store)
    subprocess.run(["mount", "-o", "remount,size=8M", str(small_fs)], check=True)
    meta = {"model_hash": "synthetic", "guidance": 3.0}
    with StoreWriter.resume(path, lay, meta) as w:
        while w.n_complete < lay.n_samples:
            H.write_batch(w, 2)
    H.assert_same_files(path, H.write_store(tmp_path / "ref.h5", lay, batch=2))


def test_file_size_limit_at_creation_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE (works without root): the pre-allocated file cannot reach its size."""
    path = tmp_path / "s.h5"
    report = tmp_path / "report.txt"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
            try:
                H.create(path, H.layout(n=20, blocks=BIG), check_space=False).close()
                report.write_text("created")
            except StoreError as e:
                report.write_text(str(e))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    msg = report.read_text()
    assert os.waitstatus_to_exitcode(status) == 0, msg
    assert msg.startswith(f"cannot create {path}: the file size limit was reached"), msg
    assert not path.exists() and not (tmp_path / "s.h5.tmp").exists()
