"""Reading maps fast, and streaming Δ rows in a shuffled, reproducible order with bounded memory.

The order is a pure function of the seed: map order from `rng([seed, 0])`, the row shuffle of
buffer g from `rng([seed, 1, g])`. Because each buffer's shuffle has its own generator, a reader
that resumes after `skip` rows jumps over whole buffers without reading them.
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_right
from collections.abc import Callable, Iterator
from threading import Thread

import h5py
import numpy as np

ReadMap = Callable[[int, int, np.ndarray], None]

# A float is NaN or ±inf exactly when its exponent bits are all ones: with the sign bit
# cleared, its bits as an unsigned integer are at least this mask.
_EXPONENT = {np.dtype(np.float16): (np.uint16, 0x7C00), np.dtype(np.float32): (np.uint32, 0x7F800000)}
_CHECK_BLOCK = 1 << 18  # elements per pass: the temporary stays in L2


def nonfinite_message(sample: int, step: int) -> str:
    return (
        f"the map of sample {sample}, step {step} holds NaN or inf (the model overflowed while "
        "collecting it?); training, indexing and evaluation need finite Δ: collect again without "
        "that prompt"
    )


def first_nonfinite(maps: np.ndarray) -> int | None:
    """Index along axis 0 of the first map holding a NaN or inf, or None if all are finite.

    float16/float32 bits are tested in cache-sized blocks (a float is NaN or inf exactly when
    its exponent bits are all ones), ~10 GB/s here, a third of np.isfinite's cost on float16:
    cheap beside what the collector and the index do with a map. The exact search runs only
    once something is found.

    (Not in the token stream: checking each buffer in its reading thread, even with one
    GIL-free torch call, slowed a float16 stream by 12–28% on this 2-core machine. The trainer
    notices NaN in its loss instead, and only then is the store searched.)
    """
    if len(maps) == 0:
        return None
    if maps.dtype in _EXPONENT and maps.flags.c_contiguous:
        uint, exponent = _EXPONENT[maps.dtype]
        bits = maps.reshape(-1).view(uint)
        sign_off = uint(exponent | (exponent - 1))  # every bit but the sign
        tmp = np.empty(min(_CHECK_BLOCK, len(bits)), uint)
        for a in range(0, len(bits), _CHECK_BLOCK):
            part = tmp[: len(bits[a : a + _CHECK_BLOCK])]
            np.bitwise_and(bits[a : a + _CHECK_BLOCK], sign_off, out=part)
            if part.max() >= exponent:
                break
        else:
            return None
    bad = ~np.isfinite(maps.reshape(len(maps), -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def _direct_ok(ds: h5py.Dataset) -> bool:
    """Whether a chunk of `ds` is exactly one map's bytes (unfiltered, one (sample, step))."""
    return (
        not ds.is_virtual
        and ds.chunks == (1, 1, *ds.shape[2:])
        and ds.id.get_create_plist().get_nfilters() == 0
        and ds.dtype.byteorder in "=<|"
    )


class MapReader:
    """Reads (sample, step) maps of one block/branch from the files that physically hold them.

    A joined store's rows live in its shards; reading them there (rather than through the
    virtual dataset) lets every read be one direct chunk read: HDF5's selection machinery costs
    more than the bytes for maps this small, and grows worse than linearly with many chunks in
    one call.
    """

    def __init__(self, parts: list[tuple[h5py.Dataset, int]]):
        self.parts = parts  # (dataset, global row of its first sample), in row order
        self._starts = [start for _, start in parts]
        self._direct = [_direct_ok(ds) for ds, _ in parts]
        self.map_shape = tuple(parts[0][0].shape[2:])
        self.dtype = parts[0][0].dtype
        self._offsets: dict[int, np.ndarray | None] = {}

    def locate(self, sample: int) -> tuple[int, int]:
        """(part index, row within that part's dataset) of a global sample."""
        k = bisect_right(self._starts, sample) - 1
        return k, sample - self._starts[k]

    def chunk_offsets(self, k: int) -> np.ndarray | None:
        """Byte offset in its file of each (row, step) chunk of part k (-1: not allocated yet),
        or None where its maps cannot be read as one chunk each from a plain file.

        One pass of HDF5's chunk index (`chunk_iter`, ~2 µs and 8 bytes a map: ~20 s and 80 MB
        for the paper's 10 M maps per block) the first time, then kept: a trainer streams the
        same maps once per epoch (the demo's SAEs run ~80 epochs of a few thousand maps, where
        the pass was 13% of training). Chunks never move once written; one allocated after the
        pass keeps -1 and is read through `read`.
        """
        if k not in self._offsets:
            ds = self.parts[k][0]
            offsets = None
            if (self._direct[k] and ds.file.driver == "sec2" and hasattr(ds.id, "chunk_iter")
                    and hasattr(os, "preadv")):  # (not on Windows)
                offsets = np.full(ds.shape[:2], -1, np.int64)

                def note(info, offsets=offsets):
                    offsets[info.chunk_offset[0], info.chunk_offset[1]] = info.byte_offset

                ds.id.chunk_iter(note)
            self._offsets[k] = offsets
        return self._offsets[k]

    def read(self, sample: int, step: int, out: np.ndarray) -> None:
        """Fill `out` (contiguous, map-shaped) with the map of (sample, step)."""
        k, local = self.locate(sample)
        ds = self.parts[k][0]
        if self._direct[k]:
            ds.id.read_direct_chunk(
                (local, step) + (0,) * len(self.map_shape), out=out.reshape(-1).view(np.uint8)
            )
        else:
            out[...] = ds[local, step]


class PreadMaps:
    """Reads maps for a token stream with `os.preadv` at each chunk's byte offset.

    HDF5 calls hold the GIL, so a buffer read by `read_direct_chunk` in the stream's reading
    thread stops the consumer's gather and cast; `preadv` releases it, and the two overlap on
    two cores. The offsets are `MapReader.chunk_offsets` (one pass of HDF5's chunk index, the
    first time a stream of that block and branch starts). Only for parts whose chunks are
    exactly one map (`_direct_ok`) in a plain file; anything else (or a chunk not yet
    allocated) is read through `MapReader.read`. Call `close()` when the stream ends.

    Cold files: a buffer's maps are scattered over the file, and read one by one each waits
    for the disk. So `begin` is told each buffer's maps, each read asks for its map without
    waiting (`RWF_NOWAIT`) until one is not in the page cache, and then the whole buffer is
    announced with `posix_fadvise(WILLNEED)` so the kernel fetches it at once (measurements:
    docs/store.md). A file in the page cache costs nothing more: the probe is the read itself.
    """

    def __init__(self, reader: MapReader):
        self.reader = reader
        self._fds: list[int | None] = []
        self._offsets: list[np.ndarray | None] = []
        try:
            for k, (ds, _) in enumerate(reader.parts):
                offsets = reader.chunk_offsets(k)
                self._fds.append(None if offsets is None else os.open(ds.file.filename, os.O_RDONLY))
                self._offsets.append(offsets)
        except BaseException:
            self.close()
            raise
        self._nbytes = int(np.prod(reader.map_shape)) * reader.dtype.itemsize
        self._probe = hasattr(os, "RWF_NOWAIT") and hasattr(os, "posix_fadvise")
        self._buffer: tuple[np.ndarray, np.ndarray] | None = None

    def begin(self, samples: np.ndarray, steps: np.ndarray) -> None:
        """The maps of the buffer about to be read, in the order they will be read."""
        self._buffer = (samples, steps)

    def _advise(self) -> None:
        """Ask the kernel to fetch every map of the current buffer (they are read next)."""
        samples, steps = self._buffer
        self._buffer = None
        for sample, step in zip(samples.tolist(), steps.tolist(), strict=True):
            k, local = self.reader.locate(sample)
            fd, offsets = self._fds[k], self._offsets[k]
            if fd is not None and offsets[local, step] >= 0:
                os.posix_fadvise(fd, int(offsets[local, step]), self._nbytes,
                                 os.POSIX_FADV_WILLNEED)

    def __call__(self, sample: int, step: int, out: np.ndarray) -> None:
        k, local = self.reader.locate(sample)
        fd, offsets = self._fds[k], self._offsets[k]
        if fd is None or offsets[local, step] < 0:
            self.reader.read(sample, step, out)
            return
        view = out.reshape(-1).view(np.uint8)
        offset = int(offsets[local, step])
        if self._buffer is not None and self._probe:
            # Until the buffer's first miss: is this map in the page cache? A hit is the read.
            try:
                got = os.preadv(fd, [view], offset, os.RWF_NOWAIT)
            except BlockingIOError:
                got = 0
            except OSError:  # RWF_NOWAIT not supported here: read as before
                self._probe = False
                got = 0
            if got == view.nbytes:
                return
            if self._probe:
                self._advise()
            view, offset = view[got:], offset + got
        if os.preadv(fd, [view], offset) != view.nbytes:
            raise OSError(f"{self.reader.parts[k][0].file.filename}: map ({sample}, {step}) "
                          "is cut short (truncated file?)")

    def close(self) -> None:
        for fd in self._fds:
            if fd is not None:
                os.close(fd)
        self._fds = [None] * len(self._fds)


class _Fill(Thread):
    """Reads one buffer in the background. A daemon thread of its own per buffer: when a
    consumer abandons the stream, nothing outlives the one read in flight."""

    def __init__(self, fill: Callable[[int, np.ndarray], int], k: int, ids: np.ndarray):
        super().__init__(name="store-tokens", daemon=True)
        self._args = (fill, k, ids)
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        fill, k, ids = self._args
        try:
            fill(k, ids)
        except BaseException as e:  # re-raised in the consumer by result()
            self._error = e

    def result(self) -> int:
        self.join()
        if self._error is not None:
            raise self._error
        return self._args[1]


def _torch_cast(dtype: np.dtype):
    """torch, when it is already loaded and the cast is float16 → float32; else None.

    numpy casts float16 with scalar code (several times slower than torch's vectorised cast
    here); the SAE trainer has torch loaded anyway, while a plain reader should not import it.
    """
    torch = sys.modules.get("torch")
    return torch if torch is not None and dtype == np.float32 else None


def _cast(rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    torch = _torch_cast(dtype)
    if torch is not None:
        return torch.from_numpy(rows).to(torch.float32).numpy()
    return rows.astype(dtype, copy=False)  # rows is always a fresh array here


class _Rows:
    """The rows of a buffer in shuffled order, gathered batch by batch and cast."""

    def __init__(self, rows: np.ndarray, perm: np.ndarray, dtype: np.dtype):
        self.rows, self.perm, self.dtype = rows, perm, dtype
        self._torch = _torch_cast(dtype)
        if self._torch is not None:
            self._rows_t = self._torch.from_numpy(rows)
            self._perm_t = self._torch.from_numpy(perm)

    def take(self, a: int, b: int) -> np.ndarray:
        """Rows perm[a:b] in the stored dtype (for the carry)."""
        return np.take(self.rows, self.perm[a:b], axis=0)

    def batch(self, a: int, b: int) -> np.ndarray:
        """Rows perm[a:b], cast: gathered while small enough to sit in cache, then cast."""
        if self._torch is not None:
            t = self._rows_t.index_select(0, self._perm_t[a:b])
            return t.to(self._torch.float32).numpy()
        return self.take(a, b).astype(self.dtype, copy=False)


def token_stream(
    read_map: ReadMap,
    map_shape: tuple[int, int, int],
    map_dtype: np.dtype,
    samples: np.ndarray,
    steps: np.ndarray,
    batch_size: int,
    seed: int,
    buffer_maps: int,
    *,
    skip: int = 0,
    dtype: np.dtype | type = np.float32,
    drop_last: bool = False,
    open_fast: Callable[[], ReadMap] | None = None,
) -> Iterator[np.ndarray]:
    """See `Store.tokens`. Reads buffer g + 1 in a thread while buffer g is being consumed.

    `open_fast`, if given, makes the map reader this stream uses instead of `read_map` (a
    `PreadMaps`): made when the stream starts, closed when it ends or is dropped."""
    dtype = np.dtype(dtype)
    h, w, d = map_shape
    hw = h * w
    n_steps = len(steps)
    n_maps = len(samples) * n_steps
    order = np.random.default_rng([seed, 0]).permutation(n_maps)
    plan = []  # (buffer index g, its map ids in file order, rows to skip in it)
    for g, a in enumerate(range(0, n_maps, buffer_maps)):
        ids = order[a : a + buffer_maps]
        if skip >= len(ids) * hw:
            skip -= len(ids) * hw
            continue
        plan.append((g, np.sort(ids), skip))
        skip = 0
    if not plan:
        return
    bufs = [
        np.empty((min(buffer_maps, n_maps), h, w, d), map_dtype) for _ in range(min(2, len(plan)))
    ]

    read = open_fast() if open_fast is not None else read_map

    def fill(k: int, ids: np.ndarray) -> int:
        map_samples, map_steps = samples[ids // n_steps], steps[ids % n_steps]
        if read is not read_map:
            read.begin(map_samples, map_steps)
        for j, (i, s) in enumerate(zip(map_samples.tolist(), map_steps.tolist())):
            read(i, s, bufs[k][j])
        return k

    carry = np.empty((0, d), map_dtype)
    pending = None
    try:
        pending = _Fill(fill, 0, plan[0][1])
        for n, (g, ids, skip) in enumerate(plan):
            k = pending.result()
            if n + 1 < len(plan):
                pending = _Fill(fill, 1 - k, plan[n + 1][1])
            n_rows = len(ids) * hw
            perm = np.random.default_rng([seed, 1, g]).permutation(n_rows)[skip:]
            rows = _Rows(bufs[k][: len(ids)].reshape(n_rows, d), perm, dtype)
            # Batches are gathered straight from the buffer, never the shuffled buffer whole.
            pos = 0
            if len(carry):
                need = batch_size - len(carry)
                if len(perm) < need:
                    carry = np.concatenate([carry, rows.take(0, len(perm))])
                    continue
                yield _cast(np.concatenate([carry, rows.take(0, need)]), dtype)
                pos = need
            n_full = pos + (len(perm) - pos) // batch_size * batch_size
            for b in range(pos, n_full, batch_size):
                yield rows.batch(b, b + batch_size)
            carry = rows.take(n_full, len(perm))
    finally:
        if pending is not None:
            pending.join()  # never leave a read running into a buffer that is being dropped
        if read is not read_map:
            read.close()  # the fast reader's file descriptors
    if len(carry) and not drop_last:
        yield _cast(carry, dtype)
