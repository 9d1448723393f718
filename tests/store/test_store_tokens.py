"""Token streams: every row once, shuffled, reproducible, resumable, bounded; fast reads = slow."""

from __future__ import annotations

import os
import tracemalloc

import h5py
import numpy as np
import pytest
import store_helpers as H

from explorer.store import Store
from explorer.store import tokens as T
from explorer.store.schema import StoreError

BLOCK = "mid_block.attentions.0"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A store whose every row says where it came from: (sample, step, position, branch)."""
    lay = H.layout(n=12, steps=5, blocks={BLOCK: (4, 4, 8)})
    path = tmp_path_factory.mktemp("tokens") / "s.h5"
    with H.create(path, lay) as w:
        while w.n_complete < 12:
            start = w.begin_batch(4)
            for s in range(5):
                x = np.random.default_rng(s).standard_normal((4, 4, 4, 8)).astype(np.float16)
                x[..., 0] = np.arange(start, start + 4)[:, None, None]
                x[..., 1] = s
                x[..., 2] = np.arange(16).reshape(4, 4)
                deltas = {BLOCK: {"cond": x.copy(), "uncond": x.copy()}}
                deltas[BLOCK]["uncond"][..., 3] = -1
                w.write_step(s, deltas, np.zeros((4, 4, 2, 2), np.float16))
            w.finish_batch(np.zeros((4, 8, 8, 3), np.uint8))
    return path


def _ids(batches) -> list[tuple[int, int, int]]:
    rows = np.concatenate(list(batches))
    return [tuple(int(v) for v in r[:3]) for r in rows]


def test_every_row_once_shuffled_and_reproducible(labelled):
    with Store.open(labelled) as store:
        batches = list(store.tokens(BLOCK, "cond", batch_size=50, seed=3, buffer_samples=7))
        assert all(b.dtype == np.float32 and b.shape[1] == 8 for b in batches)
        assert [len(b) for b in batches[:-1]] == [50] * (len(batches) - 1)
        ids = _ids(batches)
        everything = [(i, s, p) for i in range(12) for s in range(5) for p in range(16)]
        assert sorted(ids) == everything and len(ids) == store.n_tokens(BLOCK)
        assert ids != everything  # shuffled
        # A batch mixes rows of several maps.
        assert len({(i, s) for i, s, _ in _ids(batches[:1])}) > 3
        again = list(store.tokens(BLOCK, "cond", batch_size=50, seed=3, buffer_samples=7))
        assert all(np.array_equal(a, b) for a, b in zip(batches, again))
        other = _ids(store.tokens(BLOCK, "cond", batch_size=50, seed=4, buffer_samples=7))
        assert other != ids and sorted(other) == everything
        assert np.all(
            np.concatenate(list(store.tokens(BLOCK, "uncond", batch_size=64)))[:, 3] == -1
        )


def test_steps_samples_and_dtype(labelled):
    with Store.open(labelled) as store:
        ids = _ids(store.tokens(BLOCK, "cond", steps=[0, 4], samples=[1, 5], batch_size=10))
        assert sorted(ids) == [(i, s, p) for i in (1, 5) for s in (0, 4) for p in range(16)]
        assert store.n_tokens(BLOCK, steps=[0, 4], samples=[1, 5]) == len(ids)
        a = list(store.tokens(BLOCK, "cond", batch_size=32, seed=1))
        b = list(store.tokens(BLOCK, "cond", batch_size=32, seed=1, dtype=np.float16))
        assert b[0].dtype == np.float16
        assert all(np.array_equal(x, y.astype(np.float32)) for x, y in zip(a, b))
        drop = list(store.tokens(BLOCK, "cond", batch_size=64, drop_last=True))
        assert all(len(x) == 64 for x in drop) and len(drop) == store.n_tokens(BLOCK) // 64
        with pytest.raises(IndexError):
            store.tokens(BLOCK, "cond", steps=[5])
        with pytest.raises(IndexError):
            store.tokens(BLOCK, "cond", samples=[12])


def test_torch_cast_equals_numpy_cast(labelled, monkeypatch):
    with Store.open(labelled) as store:
        fast = list(store.tokens(BLOCK, "cond", batch_size=48, seed=2))
        monkeypatch.setattr(T, "_torch_cast", lambda dtype: None)  # as without torch loaded
        slow = list(store.tokens(BLOCK, "cond", batch_size=48, seed=2))
    assert len(fast) == len(slow)
    assert all(
        a.dtype == b.dtype == np.float32 and np.array_equal(a, b) for a, b in zip(fast, slow)
    )


@pytest.mark.parametrize("skip", [0, 96, 250, 959, 960])
def test_skip_equals_dropping_rows(labelled, skip):
    with Store.open(labelled) as store:
        kw = dict(batch_size=32, seed=9, buffer_samples=5)
        full = np.concatenate(list(store.tokens(BLOCK, "cond", **kw)))
        skipped = list(store.tokens(BLOCK, "cond", skip=skip, **kw))
        rest = np.concatenate(skipped) if skipped else np.empty((0, 8), np.float32)
        assert np.array_equal(rest, full[skip:])
        if skip % 32 == 0:  # the trainer resumes at batch boundaries: same batches
            assert all(len(b) == 32 for b in skipped[:-1])


def _count_reads(monkeypatch, *readers) -> list[tuple[int, int]]:
    """The (sample, step) of every map the given map readers' calls read, in order."""
    reads = []
    for cls, name in readers:
        real = getattr(cls, name)

        def counting(self, sample, step, out, real=real):
            reads.append((sample, step))
            real(self, sample, step, out)

        monkeypatch.setattr(cls, name, counting)
    return reads


def test_skip_does_not_read_skipped_buffers(labelled, monkeypatch):
    reads = _count_reads(monkeypatch, (T.MapReader, "read"), (T.PreadMaps, "__call__"))
    with Store.open(labelled) as store:
        list(store.tokens(BLOCK, "cond", batch_size=16, buffer_samples=6, skip=16 * 6 * 8))
    assert len(reads) == 60 - 8 * 6  # 8 of 10 buffers (96 rows each) skipped unread


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_pread_stream_equals_the_hdf5_stream_and_closes_its_files(labelled, monkeypatch):
    reads = _count_reads(monkeypatch, (T.PreadMaps, "__call__"))
    preads = []
    real_preadv = os.preadv
    monkeypatch.setattr(T.os, "preadv", lambda *a: preads.append(1) or real_preadv(*a))
    with Store.open(labelled) as store:
        before = _open_fds()
        for dtype in (np.float16, np.float32):
            fast = list(store.tokens(BLOCK, "cond", batch_size=50, seed=3, dtype=dtype))
            assert reads and len(preads) == len(reads)  # the fast path ran, with preadv
            store.stream_with_pread = False
            reads.clear()
            slow = list(store.tokens(BLOCK, "cond", batch_size=50, seed=3, dtype=dtype))
            assert not reads
            preads.clear()
            store.stream_with_pread = True
            assert len(fast) == len(slow)
            for a, b in zip(fast, slow, strict=True):
                np.testing.assert_array_equal(a, b)
        # A stream dropped half way closes its descriptors, and so does one never started.
        it = store.tokens(BLOCK, "cond", batch_size=50, seed=3)
        next(it)
        assert _open_fds() > before
        it.close()
        store.tokens(BLOCK, "cond", batch_size=50, seed=3)
        assert _open_fds() == before


def test_chunk_offsets_are_found_once_per_dataset_and_equal_hdf5s_own(labelled, monkeypatch):
    used = []  # the offsets arrays each fast stream read with
    real_init = T.PreadMaps.__init__

    def spy(self, reader):
        real_init(self, reader)
        used.append((reader, self._offsets[0]))

    monkeypatch.setattr(T.PreadMaps, "__init__", spy)
    with Store.open(labelled) as store:
        for branch in ("cond", "cond", "uncond"):
            assert len(list(store.tokens(BLOCK, branch, batch_size=50, seed=1))) > 0
        (r1, a), (r2, b), (r3, c) = used
        assert r1 is r2 and a is b  # the second epoch reused the first one's pass
        assert r3 is not r1 and c is not a
        with h5py.File(labelled, "r", locking=False) as f:  # as Store opens it
            for branch, offsets in (("cond", a), ("uncond", c)):
                ds = f[f"blocks/{BLOCK}/{branch}"]
                assert offsets.shape == ds.shape[:2]
                for i in range(ds.shape[0]):
                    for s in range(ds.shape[1]):
                        info = ds.id.get_chunk_info_by_coord((i, s, 0, 0, 0))
                        assert offsets[i, s] == info.byte_offset


_COLD_FLAGS = hasattr(os, "RWF_NOWAIT") and hasattr(os, "posix_fadvise")


def _stream_pair(store, **kw):
    """The fast (preadv) stream and the HDF5 one, same arguments."""
    fast = list(store.tokens(BLOCK, "cond", **kw))
    store.stream_with_pread = False
    slow = list(store.tokens(BLOCK, "cond", **kw))
    store.stream_with_pread = True
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not _COLD_FLAGS, reason="RWF_NOWAIT and posix_fadvise are Linux's")
def test_a_cold_buffer_is_announced_to_the_kernel_once_and_read_right(labelled, monkeypatch):
    real = os.preadv
    probes = []

    def cold(fd, buffers, offset, flags=0):
        if flags & os.RWF_NOWAIT:
            probes.append(offset)
            if len(probes) % 2:  # not cached at all
                raise BlockingIOError()
            half = memoryview(buffers[0])[: len(buffers[0]) // 2]  # half of it cached
            return real(fd, [half], offset)
        return real(fd, buffers, offset)

    advised = []
    monkeypatch.setattr(T.os, "preadv", cold)
    monkeypatch.setattr(T.os, "posix_fadvise", lambda fd, off, n, advice: advised.append((off, n, advice)))
    with Store.open(labelled) as store:
        _stream_pair(store, batch_size=50, seed=3, buffer_samples=7)
    n_buffers = -(-12 * 5 // 7)
    assert len(probes) == n_buffers  # each buffer: its first map missed, so no more probes
    assert len(advised) == 12 * 5 and len({off for off, _, _ in advised}) == 12 * 5  # every map once
    assert {(n, advice) for _, n, advice in advised} == {(4 * 4 * 8 * 2, os.POSIX_FADV_WILLNEED)}


@pytest.mark.skipif(not _COLD_FLAGS, reason="RWF_NOWAIT and posix_fadvise are Linux's")
def test_a_cached_file_is_read_without_advice_and_a_refused_probe_falls_back(labelled, monkeypatch):
    advised = []
    monkeypatch.setattr(T.os, "posix_fadvise", lambda *a: advised.append(a))
    with Store.open(labelled) as store:
        _stream_pair(store, batch_size=50, seed=4, buffer_samples=7)  # just written: cached
        assert advised == []
        real = os.preadv

        def refused(fd, buffers, offset, flags=0):
            if flags:
                raise OSError(95, "Operation not supported")  # EOPNOTSUPP
            return real(fd, buffers, offset)

        monkeypatch.setattr(T.os, "preadv", refused)
        _stream_pair(store, batch_size=50, seed=4, buffer_samples=7)
        assert advised == []


def test_memory_is_bounded_by_the_buffers(tmp_path):
    lay = H.layout(n=40, steps=10, blocks={BLOCK: (8, 8, 64)}, branches=("cond",))
    path = H.write_store(tmp_path / "s.h5", lay, batch=8)
    map_bytes = 8 * 8 * 64 * 2
    with Store.open(path) as store:
        tracemalloc.start()
        n = 0
        for batch in store.tokens(
            BLOCK, "cond", batch_size=256, buffer_samples=10, dtype=np.float16
        ):
            n += len(batch)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert n == 400 * 64
    # Two buffers of 10 maps, a batch and the shuffle indices; the store holds 400 maps.
    assert peak < 2 * 10 * map_bytes + 4 * 256 * 64 * 2 + 64 * 1024, peak


def test_fast_map_reads_equal_h5py_slices(labelled, tmp_path):
    with h5py.File(labelled, "r", locking=False) as f:
        ds = f[f"blocks/{BLOCK}/cond"]
        fast = T.MapReader([(ds, 0)])
        assert fast._direct == [True]
        out = np.empty((4, 4, 8), np.float16)
        for i in range(12):
            for s in range(5):
                fast.read(i, s, out)
                assert np.array_equal(out, ds[i, s])
        # The slow path (any dataset not chunked one map per chunk) reads the same.
        f2 = h5py.File(tmp_path / "plain.h5", "w")
        plain = f2.create_dataset("x", data=ds[()])
        slow = T.MapReader([(plain, 0)])
        assert slow._direct == [False]
        slow.read(7, 3, out)
        assert np.array_equal(out, ds[7, 3])
        f2.close()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_first_nonfinite_equals_isfinite(dtype):
    """The bit test (float16/32, in blocks) against np.isfinite, map by map."""
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((40, 8, 8, 128)).astype(dtype)
    assert T.first_nonfinite(maps) is None and T.first_nonfinite(maps[:0]) is None
    # Large finite values and -0.0 are not flagged; the float16 maximum sits next to inf.
    maps[1, 0, 0, 0] = np.finfo(dtype).max
    maps[2, 0, 0, 0] = -np.finfo(dtype).max
    maps[3, 0, 0, 0] = -0.0
    assert T.first_nonfinite(maps) is None
    for value in (np.nan, -np.nan, np.inf, -np.inf):
        for where in [(0, 0, 0, 0), (17, 3, 5, 99), (39, 7, 7, 127)]:
            bad = maps.copy()
            bad[where] = value
            # Beyond the first block of the bit test too (40 maps of 8·8·128 > 2¹⁸ elements).
            expect = int(np.argmax(~np.isfinite(bad.reshape(40, -1)).all(axis=1)))
            assert T.first_nonfinite(bad) == expect == where[0], (value, where)
    # A NaN whose payload sets every bit (0xFFFF as float16).
    bad = maps.copy()
    bad.reshape(-1).view({np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64}[dtype])[
        -1
    ] = np.iinfo({np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64}[dtype]).max
    assert T.first_nonfinite(bad) == 39
    # Not contiguous (the slow path): the odd channel holding that NaN is not in the view.
    assert T.first_nonfinite(bad[:, :, :, ::2]) is None
    bad[20, 1, 1, 2] = np.inf
    assert T.first_nonfinite(bad[:, :, :, ::2]) == 20


def test_a_map_holding_nan_is_found_and_named(tmp_path):
    lay = H.layout(n=8, steps=3, blocks={BLOCK: (4, 4, 8)}, branches=("cond",))
    path = tmp_path / "s.h5"
    with H.create(path, lay) as w:
        H.write_batch(w, 4)
        start = w.begin_batch(4)
        for s in range(3):
            x = np.ones((4, 4, 4, 8), np.float16)
            if s == 2:
                x[1, 2, 3, 4] = np.inf  # sample 5, step 2
            w.write_step(s, {BLOCK: {"cond": x}}, np.zeros((4, 4, 2, 2), np.float16))
        assert w.batch_nonfinite == {start + 1: (BLOCK, "cond", 2)}
        w.finish_batch(np.zeros((4, 8, 8, 3), np.uint8))
    with Store.open(path) as store:
        assert store.find_nonfinite(BLOCK, "cond") == (5, 2)
        assert store.find_nonfinite(BLOCK, "cond", steps=[0, 1]) is None
        assert store.find_nonfinite(BLOCK, "cond", samples=[0, 1, 2, 3, 4, 6, 7]) is None
        with pytest.raises(StoreError, match=r"s\.h5 \(mid_block.attentions.0/cond\): the map of sample 5, step 2 holds NaN or inf"):
            store.maps(BLOCK, "cond", 5)
        assert np.isfinite(store.maps(BLOCK, "cond", 4)).all()
