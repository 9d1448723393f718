"""Store: a lazy reader of an activation store (one file, or shards joined by a virtual file).

Nothing is read at open but the attributes and the shapes; prompts are read on first use, maps
one chunk at a time. Only samples below `/n_complete` are visible, so a store that is being
written, or was killed mid-batch, reads as the samples it has finished.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from explorer.store import schema as S
from explorer.store.schema import Layout, StoreError, attr_str
from explorer.store.tokens import (
    MapReader,
    PreadMaps,
    first_nonfinite,
    nonfinite_message,
    token_stream,
)

# The shuffle buffer of `tokens` holds at most this many bytes of maps unless told otherwise.
# Default shuffle buffer of `tokens`: enough maps for 32 batches (so a batch mixes rows of
# hundreds of maps), at least 64 maps, at most 128 MiB; two buffers are held (one being read).
BUFFER_BATCHES = 32
BUFFER_MIN_MAPS = 64
BUFFER_MAX_BYTES = 128 << 20


def default_buffer_maps(map_shape: tuple[int, int, int], itemsize: int, batch_size: int) -> int:
    h, w, d = map_shape
    want = max(BUFFER_MIN_MAPS, -(-BUFFER_BATCHES * batch_size // (h * w)))
    return max(1, min(want, BUFFER_MAX_BYTES // (h * w * d * itemsize)))


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file read-only without HDF5's file lock.

    No lock: the writer never changes metadata, so reading beside it is safe, and the app may
    watch a collection as it runs. HDF5 refuses a second open of a file in one process with
    other locking flags, so a file someone already opened the default way is opened that way.
    """
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as e:
        if "locking flag values don't match" not in str(e):
            raise
        return h5py.File(path, "r")


def _open_error(path: Path, e: OSError) -> StoreError:
    msg = str(e)
    if "truncated file" in msg:
        # HDF5 says "truncated file: eof = 1000, sblock->base_addr = 0, stored_eof = 1384008":
        # the sizes are what a person can check against the original; the rest is HDF5's own.
        sizes = re.search(r"\beof = (\d+).*stored_eof = (\d+)", msg)
        have = (f": {int(sizes[1]):,} of its {int(sizes[2]):,} bytes are there" if sizes else "")
        return StoreError(f"{path} is truncated{have} (an interrupted copy?)")
    if "signature not found" in msg:
        return StoreError(f"{path} is not an HDF5 file")
    return StoreError(f"{path} is damaged or not a store (HDF5: {_hdf5_reason(msg)})")


def _hdf5_reason(msg: str) -> str:
    # h5py: "Unable to synchronously open file (truncated file: eof = 1, ...)" → the parenthesis.
    inner = msg[msg.find("(") + 1 : msg.rfind(")")] if "(" in msg else msg
    return inner.strip().splitlines()[0] if inner.strip() else "unknown HDF5 error"


class Store:
    """A lazily read activation store. Open with `Store.open(path)`; a context manager."""

    def __init__(self, path: Path, f: h5py.File):
        self.path = path
        self._f = f
        self._readers: dict[str, MapReader] = {}
        # Dataset handles by name, looked up once (per-step reads of the Sample view: a lookup
        # by path costs about as much as the read itself); cleared with the file.
        self._datasets: dict[str, h5py.Dataset] = {}
        self._shard_files: list[h5py.File] = []
        # Token streams read maps with preadv (GIL released, so reading overlaps the consumer);
        # False reads them through HDF5 (the reference the tests compare with).
        self.stream_with_pread = True
        self.layout: Layout = S.read_layout(f)
        self._n = int(f[S.N_COMPLETE][()])
        if not 0 <= self._n <= self.layout.n_samples:
            raise StoreError(
                f"{path} is damaged: it claims {self._n} of {self.layout.n_samples} samples"
            )

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open a store for reading; StoreError (one line) if it is not a usable store."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(
                f"{path} does not exist" if not path.exists() else f"{path} is not a file"
            )
        try:
            f = open_h5(path)
        except OSError as e:
            raise _open_error(path, e) from None
        try:
            _check_schema(path, f)
            store = cls(path, f)
            store._check_shards()
        except StoreError:
            f.close()
            raise
        except (KeyError, ValueError, OSError, TypeError) as e:
            f.close()
            raise StoreError(
                f"{path} is damaged or incomplete (HDF5: {_hdf5_reason(str(e))})"
            ) from None
        return store

    def close(self) -> None:
        for g in self._shard_files:
            g.close()
        self._shard_files.clear()
        self._readers.clear()
        self._datasets.clear()
        self._f.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def refresh(self) -> int:
        """Re-read the number of complete samples (of a store still being written)."""
        self.close()
        self._f = open_h5(self.path)
        self._n = int(self._f[S.N_COMPLETE][()])
        for cached in ("prompts", "seeds", "fingerprint"):
            self.__dict__.pop(cached, None)
        return self._n

    # --- what the store holds -----------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        """Complete samples: the only ones a reader sees."""
        return self._n

    @property
    def n_planned(self) -> int:
        return self.layout.n_samples

    @property
    def blocks(self) -> list[str]:
        return list(self.layout.blocks)

    @property
    def branches(self) -> list[str]:
        return list(self.layout.branches)

    @property
    def n_steps(self) -> int:
        return self.layout.n_steps

    @property
    def timesteps(self) -> list[int]:
        return list(self.layout.timesteps)

    @property
    def t(self) -> list[float]:
        return list(self.layout.t)

    @property
    def has_previews(self) -> bool:
        return self.layout.previews

    @property
    def has_masks(self) -> bool:
        return self.layout.masks is not None

    @property
    def is_joined(self) -> bool:
        return "joined_from" in self._f.attrs

    def geometry(self, block: str) -> tuple[int, int, int]:
        """(h, w, d) of the block's maps."""
        self._check_block(block)
        return tuple(self.layout.blocks[block])

    def dtype(self, block: str) -> np.dtype:
        """The dtype Δ of the block is stored in (float16 unless collected otherwise)."""
        self._check_block(block)
        return np.dtype(self._map_reader(block, self.branches[0]).dtype)

    @cached_property
    def meta(self) -> dict:
        """Root attributes: provenance (model, scheduler, guidance, …) and schema fields."""
        return {
            k: (attr_str(v) if isinstance(v, str | bytes) else _py(v))
            for k, v in self._f.attrs.items()
        }

    @cached_property
    def prompts(self) -> list[str]:
        return self._f[S.PROMPTS].asstr()[: self._n].tolist()

    @cached_property
    def seeds(self) -> np.ndarray:
        return self._f[S.SEEDS][: self._n]

    def all_prompts(self) -> list[str]:
        """Every planned prompt, complete or not (what a resume must match)."""
        return self._f[S.PROMPTS].asstr()[()].tolist()

    def all_seeds(self) -> np.ndarray:
        return self._f[S.SEEDS][()]

    def all_index(self) -> np.ndarray:
        return self._f[S.INDEX][()]

    @property
    def index(self) -> np.ndarray:
        """Each sample's position in the full prompt list of the collection."""
        return self._f[S.INDEX][: self._n]

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of what the store holds (model, settings, prompts, seeds, count)."""
        h = hashlib.sha256()
        for key in ("model_hash", "guidance"):
            h.update(str(self.meta.get(key)).encode())
        h.update(json.dumps([self.blocks, self.branches, self.timesteps, self.n_samples]).encode())
        h.update("\0".join(self.prompts).encode())
        h.update(np.asarray(self.seeds, np.int64).tobytes())
        return h.hexdigest()[:16]

    def step_for_t(self, t: float) -> int:
        """The stored step whose t is nearest to `t` (t = 1.0 first step, 0.0 last)."""
        return int(np.argmin(np.abs(np.asarray(self.layout.t) - t)))

    # --- per sample ---------------------------------------------------------------------------

    def image(self, sample: int) -> np.ndarray:
        """The final image, (H, W, 3) uint8."""
        return self._read(S.IMAGES, (self._sample(sample),))

    def pred_x0(self, sample: int, step: int | None = None) -> np.ndarray:
        """The predicted clean latent, (c, h, w) float16 at one step or (S, c, h, w)."""
        if step is None:
            return self._read(S.PRED_X0, (self._sample(sample),))
        return self._read(S.PRED_X0, (self._sample(sample), self._step(step)))

    def preview(self, sample: int, step: int) -> np.ndarray:
        """pred_x0 decoded to pixels at `step`, (H, W, 3) uint8, if the store has previews."""
        if not self.has_previews:
            raise StoreError(
                f"{self.path} has no previews (collect with --previews); decode pred_x0"
            )
        return self._read(S.PREVIEWS, (self._sample(sample), self._step(step)))

    def masks(self, sample: int) -> np.ndarray:
        """(objects, H, W) bool, one exact mask per object of the prompt."""
        if not self.has_masks:
            raise StoreError(f"{self.path} has no object masks")
        m = self._read(S.MASKS, (self._sample(sample),))
        return m[: len(self.attributes(sample))]

    def attributes(self, sample: int) -> list[dict]:
        """Object attributes of the sample's prompt (shape, colour, size, place for the shapes world)."""
        if not self.has_masks:
            raise StoreError(f"{self.path} has no object attributes")
        return json.loads(self._read(S.OBJECTS, (self._sample(sample),)))

    def activation(self, block: str, branch: str, sample: int, step: int) -> np.ndarray:
        """Δ of `block` in `branch` for one sample at one stored step: (h, w, d) float16."""
        reader = self._map_reader(block, branch)
        out = np.empty(reader.map_shape, reader.dtype)
        with self._reading(block):
            reader.read(self._sample(sample), self._step(step), out)
        return out

    def maps(self, block: str, branch: str, sample: int, steps: Sequence[int] | None = None) -> np.ndarray:
        """Δ of `block` in `branch` for one sample at `steps` (default: every stored step):
        (len(steps), h, w, d) float16.

        A map holding NaN or inf is a StoreError naming it (the index, which reads whole
        samples, would otherwise write NaN codes; the check costs ~0.1 ms a MB)."""
        i = self._sample(sample)
        steps = list(range(self.n_steps)) if steps is None else [self._step(s) for s in steps]
        out = self._read_steps(block, branch, i, steps)
        bad = first_nonfinite(out)
        if bad is not None:
            raise self.nonfinite_error(block, branch, i, steps[bad])
        return out

    def find_nonfinite(
        self, block: str, branch: str, steps: Sequence[int] | None = None, samples=None
    ) -> tuple[int, int] | None:
        """(sample, step) of the first map of `steps` × `samples` holding NaN or inf, or None.

        A full pass over those maps: what a trainer runs once its loss turned NaN, to say why.
        """
        steps = self._steps(steps)
        out = None
        for i in range(self._n) if samples is None else sorted(samples):
            out = self._read_steps(block, branch, self._sample(i), steps, out)
            bad = first_nonfinite(out)
            if bad is not None:
                return int(i), steps[bad]
        return None

    def _read_steps(self, block: str, branch: str, sample: int, steps, out=None) -> np.ndarray:
        """The maps of one (checked) sample at `steps`, into `out` when it is given."""
        reader = self._map_reader(block, branch)
        if out is None:
            out = np.empty((len(steps), *reader.map_shape), reader.dtype)
        with self._reading(block):
            for j, s in enumerate(steps):
                reader.read(sample, s, out[j])
        return out

    def nonfinite_error(self, block: str, branch: str, sample: int, step: int) -> StoreError:
        return StoreError(f"{self.path} ({block}/{branch}): {nonfinite_message(sample, step)}")

    # --- streaming ----------------------------------------------------------------------------

    def n_tokens(self, block: str, steps: Sequence[int] | None = None, samples=None) -> int:
        h, w, _ = self.geometry(block)
        n_samples = self._n if samples is None else len(samples)
        return n_samples * len(self._steps(steps)) * h * w

    def tokens(
        self,
        block: str,
        branch: str = "cond",
        steps: Sequence[int] | None = None,
        batch_size: int = 4096,
        seed: int = 0,
        buffer_samples: int | None = None,
        *,
        samples: Sequence[int] | None = None,
        skip: int = 0,
        dtype=np.float32,
        drop_last: bool = False,
    ) -> Iterator[np.ndarray]:
        """One shuffled epoch of Δ rows (one per position of each map) as (batch, d) arrays.

        The (sample, step) maps of `steps` (default: all) and `samples` (default: all complete)
        are visited in a random order; `buffer_samples` maps at a time (the shuffle buffer, in
        (sample, step) maps; default: enough for 32 batches, at most 128 MiB) are read, their
        rows shuffled together and cut into batches, a remainder carried into the next buffer.
        The next buffer is read in a thread while this one is consumed; memory stays at two
        buffers. The order depends only on `seed` and the arguments, so the same call yields
        the same rows in the same order; `skip` drops the first rows without reading the
        buffers they came from (resume). dtype=np.float16 skips the cast (e.g. to cast on a GPU).
        """
        reader = self._map_reader(block, branch)
        steps = self._steps(steps)
        if samples is None:
            samples = np.arange(self._n)
        else:
            samples = np.unique(np.asarray(samples, np.int64))
            if len(samples) and (samples[0] < 0 or samples[-1] >= self._n):
                raise IndexError(f"samples must lie in [0, {self._n})")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        h, w, d = self.layout.blocks[block]
        if buffer_samples is None:
            buffer_samples = default_buffer_maps((h, w, d), reader.dtype.itemsize, batch_size)
        if buffer_samples <= 0:
            raise ValueError(f"buffer_samples must be positive, got {buffer_samples}")
        return token_stream(
            reader.read,
            reader.map_shape,
            reader.dtype,
            samples,
            np.asarray(steps, np.int64),
            batch_size,
            seed,
            int(buffer_samples),
            skip=skip,
            dtype=np.dtype(dtype),
            drop_last=drop_last,
            open_fast=(lambda: PreadMaps(reader)) if self.stream_with_pread else None,
        )

    # --- checks and reads ---------------------------------------------------------------------

    def _dataset(self, block: str, branch: str) -> str:
        self._check_block(block)
        if branch not in self.layout.branches:
            raise StoreError(
                f"{self.path} has no {branch!r} branch; it has {', '.join(self.branches)}"
            )
        return S.block_dataset(block, branch)

    def _map_reader(self, block: str, branch: str) -> MapReader:
        name = self._dataset(block, branch)
        if name not in self._readers:
            if self.is_joined:
                parts, row = [], 0
                for shard in self._shards():
                    if shard["n_complete"]:
                        g = open_h5(self.path.parent / shard["file"])
                        self._shard_files.append(g)
                        parts.append((g[name], row))
                        row += shard["n_complete"]
            else:
                parts = [(self._f[name], 0)]
            self._readers[name] = MapReader(parts)
        return self._readers[name]

    def regeneration(self) -> dict:
        """What regenerates its samples as they were collected, besides each one's prompt and
        seed: the sampling steps, the guidance (None when not recorded: the model's default) and
        the positions of the stored steps in the schedule."""
        guidance = self.meta.get("guidance")
        return {"steps": int(self.layout.sampling_steps),
                "guidance": None if guidance is None else float(guidance),
                "step_index": [int(s) for s in self.layout.step_index]}

    def files(self) -> list[Path]:
        """The store's file and, for a store joined from shards, those of its shards that exist."""
        path = Path(self.path)
        if not self.is_joined:
            return [path]
        return [path] + [path.parent / s["file"] for s in self._shards()
                         if (path.parent / s["file"]).is_file()]

    def _shards(self) -> list[dict]:
        return json.loads(attr_str(self._f.attrs["joined_from"]))

    @contextmanager
    def _reading(self, what: str):
        try:
            yield
        except OSError as e:
            raise StoreError(
                f"{self.path} cannot be read ({what}): {_hdf5_reason(str(e))}"
            ) from None

    def _check_block(self, block: str) -> None:
        if block not in self.layout.blocks:
            raise StoreError(f"{self.path} has no block {block}; it has {', '.join(self.blocks)}")

    def _sample(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self._n:
            raise IndexError(f"sample {i} is not in {self.path} ({self._n} complete samples)")
        return i

    def _step(self, s: int) -> int:
        s = int(s)
        if not 0 <= s < self.n_steps:
            raise IndexError(f"step {s} is not in {self.path} ({self.n_steps} steps)")
        return s

    def _steps(self, steps) -> list[int]:
        if steps is None:
            return list(range(self.n_steps))
        out = sorted({self._step(s) for s in steps})
        if not out:
            raise ValueError("no steps chosen")
        return out

    def _read(self, name: str, index: tuple):
        try:
            ds = self._datasets.get(name)
            if ds is None:
                ds = self._datasets[name] = self._f[name]
            return ds[index]
        except OSError as e:
            raise StoreError(
                f"{self.path} cannot be read ({name}): {_hdf5_reason(str(e))}"
            ) from None

    def _check_shards(self) -> None:
        """A joined store must find each shard beside it, holding at least what it joined."""
        if not self.is_joined:
            return
        from explorer.safepaths import UnsafePathError, inside, safe_component

        for shard in self._shards():
            # A name from the file: a plain file name beside the store, never a path elsewhere.
            try:
                p = self.path.parent / safe_component(shard["file"], "shard", self.path)
                inside(self.path.parent, p, "the shard")
            except UnsafePathError as e:
                raise StoreError(str(e)) from None
            if not p.is_file():
                raise StoreError(f"{self.path} joins {shard['file']}, which is missing beside it")
            try:
                with open_h5(p) as g:
                    n = int(g[S.N_COMPLETE][()])
            except (OSError, KeyError) as e:
                raise StoreError(
                    f"{self.path}: its shard {p.name} cannot be read ({_hdf5_reason(str(e))})"
                ) from None
            if n < shard["n_complete"]:
                raise StoreError(
                    f"{self.path} expects {shard['n_complete']} samples in {p.name}, which has {n}; "
                    "join the shards again"
                )


def _check_schema(path: Path, f: h5py.File) -> None:
    name = f.attrs.get("schema")
    if name is None or attr_str(name) != S.SCHEMA_NAME:
        raise StoreError(f"{path} is an HDF5 file but not an activation store")
    version = int(f.attrs.get("schema_version", -1))
    if version != S.SCHEMA_VERSION:
        newer = " (written by a newer explorer; upgrade)" if version > S.SCHEMA_VERSION else ""
        raise StoreError(
            f"{path} has store schema version {version}; this explorer reads version "
            f"{S.SCHEMA_VERSION}{newer}"
        )


def _py(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v
