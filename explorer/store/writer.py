"""StoreWriter: creates a store, writes it batch by batch, resumes it after a crash.

Crash safety (kill -9 at any moment leaves a store that opens and reports its complete samples)
rests on three choices, each checked by tests/store/test_crash.py:

1. The file is built in `<out>.tmp` (prompts, seeds, masks, every dataset) and renamed into
   place only when whole, so a kill during creation leaves no half-made store.
2. Every big dataset is allocated in full at creation (HDF5 early allocation, no fill: the file
   is sparse until written). Writing a sample then only writes raw bytes at addresses fixed at
   creation: no HDF5 metadata (chunk index, object headers, free space) changes after the
   rename, so nothing a kill can interrupt can leave the file's structure inconsistent.
3. The commit record is `/n_complete`, an int64 *dataset* (not an attribute, whose update would
   rewrite the root object header) at a fixed 8-byte address that does not cross a sector. A
   batch is written, flushed, and only then is `/n_complete` advanced and flushed again.
   Samples beyond it may hold anything; readers never look there; a resume overwrites them.

The file keeps HDF5's default (earliest) format: the v3 superblock of `libver="latest"` marks a
file "open for writing" and refuses to open it after a crash until `h5clear` is run.
Durability against power loss (not just a killed process) needs `fsync=True`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from explorer.store import schema as S
from explorer.store.schema import Layout, StoreError
from explorer.store.tokens import first_nonfinite

# (position in this file's prompt list) → (object masks (objects, H, W) bool, object attributes)
Annotate = Callable[[int], tuple[np.ndarray, list[dict]]]
# No chunk cache: every write is of whole chunks, so caching buys nothing, and without it a
# failed write (disk full) fails in the call that made it, leaving nothing dirty that HDF5 would
# retry (and fail, or crash in HDF5 2.0) when the file is closed.
CHUNK_CACHE = 0
_MASK_SLAB = 512


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def describe_os_error(e: BaseException) -> tuple[str, int | None]:
    """One line for an OS/HDF5 error, and its errno where it can be found (h5py hides it)."""
    code = getattr(e, "errno", None)
    if not code:
        m = re.search(r"errno = (\d+)", str(e))
        code = int(m.group(1)) if m else None
    if code == errno.ENOSPC:
        return "the disk is full", code
    if code == errno.EFBIG:
        return "the file size limit was reached", code
    if code:
        return os.strerror(code).lower(), code
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return first, None


def check_free_space(path: Path, needed: int) -> None:
    """Refuse to start a collection the disk cannot hold (the file is sparse, so HDF5 won't)."""
    folder = path.resolve().parent
    while not folder.exists():  # the folder is created later; its file system is an ancestor's
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise StoreError(
            f"{path}: the store needs {human_bytes(needed)} more but only {human_bytes(free)} "
            f"is free on {folder}"
        )


def _lock(path: Path) -> int | None:
    """An exclusive advisory lock on the store, held while writing: one writer at a time."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one writer is the user's business there
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(f"cannot write {path}: another collection is writing it") from None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases its flock


def _preallocated(f: h5py.File, name: str, shape, chunks, dtype) -> h5py.Dataset:
    """A chunked dataset whose chunks all exist from now on (and are never filled)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(tuple(int(c) for c in chunks))
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(tuple(int(s) for s in shape))
    group = f.require_group(name.rsplit("/", 1)[0]) if "/" in name else f
    dsid = h5py.h5d.create(
        group.id,
        name.rsplit("/", 1)[-1].encode(),
        h5py.h5t.py_create(np.dtype(dtype)),
        space,
        dcpl=dcpl,
    )
    return h5py.Dataset(dsid)


class StoreWriter:
    """Writes samples into a store; `n_complete` only ever counts samples written in full."""

    def __init__(self, path: Path, layout: Layout, fsync: bool = False):
        """Open an existing store for writing; use `create` or `resume` (they check it)."""
        self.path = Path(path)
        self.layout = layout
        self.fsync = fsync
        self._broken = False
        self._batch: dict | None = None
        self._lock_fd = _lock(self.path)
        try:
            # HDF5's own lock is off, as in the reader: HDF5 refuses to open one file twice in a
            # process with different locking flags, and the app reads a store it is writing.
            self._f = h5py.File(self.path, "r+", rdcc_nbytes=CHUNK_CACHE, locking=False)
        except OSError as e:
            _unlock(self._lock_fd)
            reason, _ = describe_os_error(e)
            raise StoreError(f"cannot write {self.path}: {reason}") from None
        self._ds = {name: self._f[name] for name in layout.per_sample()}
        self._commit = self._f[S.N_COMPLETE]
        # Read under the lock: the count is the writer's own from here on.
        self._n_complete = int(self._commit[()])

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        layout: Layout,
        meta: Mapping[str, object],
        prompts: Sequence[str],
        seeds: Sequence[int],
        index: Sequence[int] | None = None,
        annotate: Annotate | None = None,
        *,
        check_space: bool = True,
        fsync: bool = False,
    ) -> StoreWriter:
        """Create a new store at `path` (which must not exist), every sample pending."""
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path} already exists; pass --resume to continue it, or remove it")
        n = layout.n_samples
        if len(prompts) != n or len(seeds) != n:
            raise StoreError(
                f"{path}: {len(prompts)} prompts and {len(seeds)} seeds for {n} samples"
            )
        if (annotate is None) != (layout.masks is None):
            raise ValueError("masks in the layout and an annotate function go together")
        if check_space:
            check_free_space(path, n * layout.bytes_per_sample())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path(path)
        tmp.unlink(missing_ok=True)
        try:
            _build(tmp, layout, meta, prompts, seeds, index, annotate)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            reason, _ = describe_os_error(e)
            raise StoreError(f"cannot create {path}: {reason}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return cls(path, layout, fsync=fsync)

    @classmethod
    def resume(
        cls,
        path: str | Path,
        layout: Layout,
        meta: Mapping[str, object],
        prompts: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        *,
        check_space: bool = True,
        fsync: bool = False,
    ) -> StoreWriter:
        """Reopen a store to continue it after its last complete sample.

        Refuses (StoreError, file untouched) unless the store was made with the same layout,
        model, scheduler and guidance, and the same prompts and seeds (when given).
        """
        from explorer.store.reader import Store

        path = Path(path)
        with Store.open(path) as store:
            if store.is_joined:
                raise StoreError(
                    f"{path} joins shards; resume the shards with the same torchrun command instead"
                )
            diffs = store.layout.differences(layout) + S.meta_differences(store.meta, meta)
            n_done = store.n_samples
            if not diffs and prompts is not None and list(prompts) != store.all_prompts():
                diffs.append("the prompts differ")
            if (
                not diffs
                and seeds is not None
                and list(map(int, seeds)) != store.all_seeds().tolist()
            ):
                diffs.append("the seeds differ")
        if diffs:
            raise StoreError(
                f"cannot resume {path}: {diffs[0]}"
                + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")
            )
        if check_space and n_done < layout.n_samples:
            check_free_space(path, (layout.n_samples - n_done) * layout.bytes_per_sample())
        return cls(path, layout, fsync=fsync)

    # --- writing ------------------------------------------------------------------------------

    @property
    def n_complete(self) -> int:
        return self._n_complete

    def begin_batch(self, size: int) -> int:
        """Start the next `size` samples (they follow the complete ones); returns the first."""
        if self._batch is not None:
            raise RuntimeError("the previous batch was not finished")
        start = self._n_complete
        if size <= 0 or start + size > self.layout.n_samples:
            raise ValueError(f"batch of {size} at {start} overruns {self.layout.n_samples} samples")
        self._batch = {
            "start": start,
            "size": size,
            "steps": set(),
            "pred_x0": np.zeros((size, self.layout.n_steps, *self.layout.latent_shape), np.float16),
            "nonfinite": {},
        }
        return start

    def write_step(
        self,
        step: int,
        deltas: Mapping[str, Mapping[str, np.ndarray]],
        pred_x0: np.ndarray,
        previews: np.ndarray | None = None,
    ) -> None:
        """Write stored step `step` of the current batch: Δ block → branch → (B, h, w, d)."""
        b = self._batch
        if b is None:
            raise RuntimeError("begin_batch first")
        sl = slice(b["start"], b["start"] + b["size"])
        for block, (h, w, d) in self.layout.blocks.items():
            for branch in self.layout.branches:
                shape = deltas[block][branch].shape
                if shape != (b["size"], h, w, d):
                    raise StoreError(
                        f"{self.path}: Δ of {block} ({branch}) is {shape}, the store expects "
                        f"{(b['size'], h, w, d)}"
                    )
        with self._io("writing activations"):
            for block in self.layout.blocks:
                for branch in self.layout.branches:
                    data = np.ascontiguousarray(deltas[block][branch], dtype=self.layout.dtype)
                    self._ds[S.block_dataset(block, branch)][sl, step] = data
                    if first_nonfinite(data) is not None:  # ~0.1 ms a MB: stays off P1
                        self._note_nonfinite(data, block, branch, step)
            if self.layout.previews:
                self._ds[S.PREVIEWS][sl, step] = previews
        b["pred_x0"][:, step] = pred_x0
        b["steps"].add(step)

    def _note_nonfinite(self, data: np.ndarray, block: str, branch: str, step: int) -> None:
        """Remember, per sample of the batch, the first stored map that holds NaN or inf."""
        b = self._batch
        for j in range(len(data)):
            if first_nonfinite(data[j : j + 1]) is not None:
                b["nonfinite"].setdefault(b["start"] + j, (block, branch, step))

    @property
    def batch_nonfinite(self) -> dict[int, tuple[str, str, int]]:
        """sample → (block, branch, step) of its first map with NaN or inf, in this batch so far
        (the store keeps them as they are; training, indexing and evaluation refuse them, naming
        them)."""
        return dict(self._batch["nonfinite"]) if self._batch is not None else {}

    def finish_batch(self, images: np.ndarray) -> int:
        """Write the batch's images, flush, then commit it; returns the new `n_complete`."""
        b = self._batch
        if b is None:
            raise RuntimeError("begin_batch first")
        missing = set(range(self.layout.n_steps)) - b["steps"]
        if missing:
            raise RuntimeError(f"steps {sorted(missing)} of the batch were not written")
        sl = slice(b["start"], b["start"] + b["size"])
        with self._io("writing images"):
            self._ds[S.IMAGES][sl] = images
            self._ds[S.PRED_X0][sl] = b["pred_x0"]
            self._flush()
        # Only now, with every byte of the batch in the file, does the batch count.
        with self._io("committing the batch"):
            self._commit[()] = sl.stop
            self._flush()
        self._n_complete = sl.stop
        self._batch = None
        return sl.stop

    def abandon_batch(self) -> None:
        """Forget a batch that will not be finished (cancelled): the store keeps what it had."""
        self._batch = None

    def close(self) -> None:
        f, self._f = getattr(self, "_f", None), None
        if f is None:
            return
        self._ds, self._commit = {}, None  # dataset handles go before the file does
        try:
            f.close()
        except (OSError, RuntimeError):
            if not self._broken:
                raise
        finally:
            _unlock(self._lock_fd)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _flush(self) -> None:
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.id.get_vfd_handle())

    @contextmanager
    def _io(self, what: str):
        try:
            yield
        except OSError as e:
            self._broken = True
            reason, code = describe_os_error(e)
            hint = (
                "; free some space and rerun with --resume"
                if code in (errno.ENOSPC, errno.EFBIG)
                else ""
            )
            raise StoreError(
                f"{self.path}: {reason} while {what}; the store keeps its "
                f"{self._n_complete} complete samples{hint}"
            ) from None


def _build(tmp: Path, layout: Layout, meta, prompts, seeds, index, annotate) -> None:
    n = layout.n_samples
    with h5py.File(tmp, "w") as f:
        # The commit record first: the lowest raw-data address in the file, well inside a sector.
        f.create_dataset(S.N_COMPLETE, data=np.int64(0), track_times=False)
        f.attrs["schema"] = S.SCHEMA_NAME
        f.attrs["schema_version"] = S.SCHEMA_VERSION
        f.attrs["blocks"] = json.dumps(list(layout.blocks))
        f.attrs["branches"] = json.dumps(list(layout.branches))
        f.attrs["sampling_steps"] = layout.sampling_steps
        for key, value in meta.items():
            if value is not None:
                f.attrs[key] = value
        f.create_dataset(S.PROMPTS, data=list(prompts), dtype=h5py.string_dtype())
        f.create_dataset(S.SEEDS, data=np.asarray(seeds, np.int64).reshape(n))
        f.create_dataset(S.INDEX, data=np.asarray(range(n) if index is None else index, np.int64))
        f.create_dataset(S.TIMESTEPS, data=np.asarray(layout.timesteps, np.int64))
        f.create_dataset(S.T, data=np.asarray(layout.t, np.float64))
        f.create_dataset(S.STEP_INDEX, data=np.asarray(layout.step_index, np.int64))
        if annotate is not None:
            _write_annotations(f, layout, annotate)
        for name, (shape, chunks, dtype) in layout.per_sample().items():
            _preallocated(f, name, (n, *shape), (1, *chunks), dtype)


def _write_annotations(f: h5py.File, layout: Layout, annotate: Annotate) -> None:
    """Masks and object attributes are known before generation: written once, at creation."""
    n = layout.n_samples
    o, h, w = layout.masks
    # Written before the store exists, so they may be compressed (bool masks shrink ~20×).
    masks = f.create_dataset(S.MASKS, (n, o, h, w), bool, chunks=(1, o, h, w), compression="gzip")
    objects = f.create_dataset(S.OBJECTS, (n,), h5py.string_dtype())
    for a in range(0, n, _MASK_SLAB):
        b = min(n, a + _MASK_SLAB)
        buf = np.zeros((b - a, o, h, w), bool)
        attrs = []
        for k in range(a, b):
            m, at = annotate(k)
            if len(m) > o:
                raise ValueError(f"sample {k} has {len(m)} objects, more than {o}")
            buf[k - a, : len(m)] = m
            attrs.append(json.dumps(at))
        masks[a:b] = buf
        objects[a:b] = attrs
