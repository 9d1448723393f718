"""Schema v1 of the activation store: dataset names, the fixed layout of a file, its checks.

One HDF5 file holds N samples (a prompt, a seed, the image) planned at creation:

    /n_complete                  () int64   samples [0, n_complete) are complete (the commit record)
    /prompts                     (N,) utf-8
    /seeds, /index               (N,) int64 (index: the sample's position in the full prompt list)
    /images                      (N, H, W, 3) uint8
    /pred_x0                     (N, S, c, h, w) float16   the scheduler's predicted clean latent
    /previews                    (N, S, H, W, 3) uint8     optional: pred_x0 decoded to pixels
    /masks, /objects             optional: (N, O, H, W) bool object masks, (N,) JSON attributes
    /timesteps, /t, /step_index  (S,)  scheduler timestep, t ∈ [0, 1], index in the schedule
    /blocks/<block>/<branch>     (N, S, h, w, d) float16, one chunk per (sample, step)

Block names contain dots (`mid_block.attentions.0`): legal in HDF5 names, so a block's group is
its name verbatim. Root attributes carry the schema name and version and the provenance (model
folder and hash, scheduler, guidance, resolution, code version, batch size, prompt source).
This module imports neither torch nor the engine: readers stay light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from explorer.errors import UserError

SCHEMA_NAME = "concept-explorer/activation-store"
SCHEMA_VERSION = 1
DTYPES = ("float16",)

N_COMPLETE = "n_complete"
PROMPTS = "prompts"
SEEDS = "seeds"
INDEX = "index"
IMAGES = "images"
PRED_X0 = "pred_x0"
PREVIEWS = "previews"
MASKS = "masks"
OBJECTS = "objects"
TIMESTEPS = "timesteps"
T = "t"
STEP_INDEX = "step_index"
BLOCKS = "blocks"

# Provenance that must agree for `--resume` to continue a store (the folder may have moved).
RESUME_META = ("model_hash", "model_kind", "resolution", "guidance", "scheduler")


class StoreError(UserError):
    """A store that cannot be used as asked; the message names the file and the problem."""


def block_dataset(block: str, branch: str) -> str:
    return f"{BLOCKS}/{block}/{branch}"


@dataclass(frozen=True)
class Layout:
    """Everything fixed when a store is created: what is stored, and the shape of each part."""

    n_samples: int  # planned N; /n_complete says how many are done
    blocks: Mapping[str, tuple[int, int, int]]  # block → (h, w, d), in capture order
    branches: tuple[str, ...]
    timesteps: tuple[int, ...]  # of the stored steps
    t: tuple[float, ...]
    step_index: tuple[int, ...]  # position of each stored step in the sampling schedule
    sampling_steps: int
    image_shape: tuple[int, int, int]
    latent_shape: tuple[int, int, int]
    previews: bool = False
    masks: tuple[int, int, int] | None = None  # (objects, H, W): the store has /masks, /objects
    dtype: str = "float16"
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise UserError(f"store dtype must be one of {', '.join(DTYPES)}, got {self.dtype}")
        if not self.blocks:
            raise UserError("a store needs at least one block")
        if not self.branches:
            raise UserError("a store needs at least one guidance branch")
        if not (len(self.timesteps) == len(self.t) == len(self.step_index) > 0):
            raise UserError("a store needs at least one step")

    @property
    def n_steps(self) -> int:
        return len(self.timesteps)

    def per_sample(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], np.dtype]]:
        """Dataset name → (shape without N, chunk shape without N, dtype), for the big arrays.

        These are the datasets pre-allocated at creation and written batch by batch.
        """
        S = self.n_steps
        out = {
            IMAGES: (self.image_shape, self.image_shape, np.dtype(np.uint8)),
            PRED_X0: ((S, *self.latent_shape), (S, *self.latent_shape), np.dtype(np.float16)),
        }
        if self.previews:
            out[PREVIEWS] = ((S, *self.image_shape), (1, *self.image_shape), np.dtype(np.uint8))
        for block, (h, w, d) in self.blocks.items():
            for branch in self.branches:
                # One chunk per (sample, step): reading one map is one chunk read.
                out[block_dataset(block, branch)] = (
                    (S, h, w, d),
                    (1, h, w, d),
                    np.dtype(self.dtype),
                )
        return out

    def bytes_per_sample(self) -> int:
        return sum(int(np.prod(shape)) * dt.itemsize for shape, _, dt in self.per_sample().values())

    def activation_bytes_per_sample(self) -> int:
        return sum(
            int(np.prod(shape)) * dt.itemsize
            for name, (shape, _, dt) in self.per_sample().items()
            if name.startswith(BLOCKS + "/")
        )

    def differences(self, other: Layout) -> list[str]:
        """Human-readable differences that stop a store with layout `self` from taking `other`."""
        diffs = []
        for name in (
            "n_samples",
            "branches",
            "timesteps",
            "step_index",
            "sampling_steps",
            "image_shape",
            "latent_shape",
            "previews",
            "masks",
            "dtype",
        ):
            a, b = getattr(self, name), getattr(other, name)
            if _norm(a) != _norm(b):
                diffs.append(f"{name.replace('_', ' ')} {_show(a)} in the store, {_show(b)} now")
        if list(self.blocks) != list(other.blocks):
            diffs.append(
                f"blocks {','.join(self.blocks)} in the store, {','.join(other.blocks)} now"
            )
        else:
            for block in self.blocks:
                if tuple(self.blocks[block]) != tuple(other.blocks[block]):
                    diffs.append(
                        f"block {block} is {self.blocks[block]} in the store, {other.blocks[block]} now"
                    )
        return diffs


def _norm(v):
    if isinstance(v, tuple | list):
        return [_norm(x) for x in v]
    if isinstance(v, float):
        return round(v, 9)
    return v


def _show(v) -> str:
    if isinstance(v, tuple | list):
        s = ",".join(str(x) for x in v)
        return s if len(s) <= 60 else s[:57] + "…"
    return str(v)


def meta_differences(stored: Mapping, now: Mapping) -> list[str]:
    """Provenance that differs between a store and a run that wants to resume it."""
    diffs = []
    for key in RESUME_META:
        a, b = stored.get(key), now.get(key)
        if key == "guidance" and a is not None and b is not None:
            same = abs(float(a) - float(b)) < 1e-9
        elif key == "scheduler":
            same = _scheduler_class(a) == _scheduler_class(b)
        else:
            same = a == b
        if not same:
            if key == "scheduler":
                a, b = _scheduler_class(a), _scheduler_class(b)
            diffs.append(f"{key.replace('_', ' ')} {a} in the store, {b} now")
    return diffs


def _scheduler_class(cfg) -> str | None:
    try:
        return json.loads(cfg).get("_class_name") if cfg else None
    except (TypeError, ValueError):
        return str(cfg)


def attr_str(v) -> str:
    """HDF5 string attributes come back as str or bytes depending on how they were written."""
    return v.decode() if isinstance(v, bytes) else str(v)


# Far beyond any real store (1000 steps, one map of 64 MiB), small enough that a file claiming
# more is refused before anything is read or allocated from its shapes.
MAX_STEPS = 1000
MAX_MAP_BYTES = 64 << 20


def read_layout(f) -> Layout:
    """The layout of an open store file (h5py.File); KeyError/ValueError if a part is missing,
    StoreError if the datasets' shapes disagree with each other (a damaged or forged file)."""
    blocks_order = json.loads(attr_str(f.attrs["blocks"]))
    branches = tuple(json.loads(attr_str(f.attrs["branches"])))
    if not isinstance(blocks_order, list) or not all(isinstance(b, str) for b in blocks_order):
        raise _damaged(f, "its 'blocks' attribute is not a list of names")
    for name in (TIMESTEPS, T, STEP_INDEX):  # checked before they are read whole
        if f[name].ndim != 1 or f[name].shape[0] > MAX_STEPS:
            raise _damaged(f, f"/{name} has shape {f[name].shape}, not (steps ≤ {MAX_STEPS},)")
    blocks = {}
    dtype = None
    for block in blocks_order:
        shape = f[block_dataset(block, branches[0])].shape
        blocks[block] = tuple(int(x) for x in shape[2:])
        dtype = str(f[block_dataset(block, branches[0])].dtype)
    masks = tuple(int(x) for x in f[MASKS].shape[1:]) if MASKS in f else None
    layout = Layout(
        n_samples=int(f[PROMPTS].shape[0]),
        blocks=blocks,
        branches=branches,
        timesteps=tuple(int(x) for x in f[TIMESTEPS][()]),
        t=tuple(float(x) for x in f[T][()]),
        step_index=tuple(int(x) for x in f[STEP_INDEX][()]),
        sampling_steps=int(f.attrs["sampling_steps"]),
        image_shape=tuple(int(x) for x in f[IMAGES].shape[1:]),
        latent_shape=tuple(int(x) for x in f[PRED_X0].shape[2:]),
        previews=PREVIEWS in f,
        masks=masks,
        dtype=dtype or "float16",
    )
    _check_shapes(f, layout)
    return layout


def _damaged(f, problem: str) -> StoreError:
    return StoreError(f"{f.filename} is damaged: {problem}")


def _check_shapes(f, layout: Layout) -> None:
    """StoreError unless every per-sample dataset holds (n_samples, *its layout shape) and the
    step lists agree: readers size buffers from these shapes."""
    n, steps = layout.n_samples, layout.n_steps
    if not (len(layout.t) == len(layout.step_index) == steps):
        raise _damaged(f, "/t, /step_index and /timesteps disagree on the number of steps")
    for name in (SEEDS, INDEX):
        if f[name].shape != (n,):
            raise _damaged(f, f"/{name} has shape {f[name].shape}, not ({n},) like /prompts")
    for name, (shape, _, dtype) in layout.per_sample().items():
        got = f[name].shape
        if got != (n, *shape):
            raise _damaged(f, f"/{name} has shape {got}, not {(n, *shape)}")
        one = shape if name == IMAGES else shape[1:]  # one image, or one step's map
        map_bytes = int(np.prod(one, dtype=np.float64)) * np.dtype(dtype).itemsize
        if map_bytes > MAX_MAP_BYTES:
            raise _damaged(f, f"/{name} has absurd per-sample shape {shape}")
