"""Scale-out: one shard per torchrun rank, joined by a file of HDF5 virtual datasets.

Rank r of W collects the contiguous range [N·r/W, N·(r+1)/W) of the prompt list into
`<out stem>.rank<r><suffix>` (a complete store of its own). Contiguous ranges make the joined
view, when every shard is complete, the very store a single process would have written (same
samples, same order). After a barrier rank 0 writes `<out>`: every per-sample dataset is a
virtual dataset whose rows map onto the *complete* samples of each shard, and /n_complete is
their sum, so a reader never sees a pending sample even when a shard is unfinished (its
complete samples are then followed directly by the next shard's: `/index` keeps each sample's
place in the full list). The joined file is a snapshot: after resuming a shard, join again
(`explorer collect --join --out <out>`, which rank 0 also does at the end of every run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np

from explorer.atomic import atomic_path
from explorer.errors import UserError
from explorer.store import schema as S
from explorer.store.reader import Store
from explorer.store.schema import StoreError

# Rank 0 waits at the final barrier for the slowest rank: a long collection must not time out.
BARRIER_TIMEOUT = timedelta(days=7)


def dist_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) under torchrun with more than one process, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def shard_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous, balanced share [start, stop) of rank `rank` out of `world`."""
    return n * rank // world, n * (rank + 1) // world


def _per_sample_names(store: Store) -> list[str]:
    names = [S.PROMPTS, S.SEEDS, S.INDEX]
    if store.has_masks:
        names += [S.MASKS, S.OBJECTS]
    return names + list(store.layout.per_sample())


def join_shards(out: str | Path, world: int | None = None) -> int:
    """Write `out` joining shards out.rank0 … out.rank{W-1}; returns the samples it exposes."""
    out = Path(out)
    if world is None:
        first = shard_path(out, 0)
        if not first.is_file():
            raise StoreError(f"no shards of {out} found (expected {first.name})")
        with Store.open(first) as s0:
            world = int(json.loads(s0.meta.get("shard", '{"world": 1}'))["world"])
    stores = []
    try:
        for rank in range(world):
            p = shard_path(out, rank)
            if not p.is_file():
                raise StoreError(f"cannot join {out}: shard {p.name} is missing")
            stores.append(Store.open(p))
        _check_compatible(out, stores)
        with atomic_path(out) as tmp:
            return _write_joined(tmp, stores)
    finally:
        for s in stores:
            s.close()


def _check_compatible(out: Path, stores: list[Store]) -> None:
    first = stores[0]
    for rank, s in enumerate(stores):
        shard = json.loads(s.meta.get("shard", "{}"))
        if shard.get("rank") != rank or shard.get("world") != len(stores):
            raise StoreError(
                f"cannot join {out}: {s.path.name} is not shard {rank} of {len(stores)}"
            )
        diffs = S.meta_differences(first.meta, s.meta)
        a, b = first.layout, s.layout
        if (a.blocks, a.branches, a.timesteps, a.image_shape, a.masks, a.previews) != (
            b.blocks,
            b.branches,
            b.timesteps,
            b.image_shape,
            b.masks,
            b.previews,
        ):
            diffs.append("the layout differs")
        if diffs:
            raise StoreError(
                f"cannot join {out}: {s.path.name} differs from {first.path.name}: {diffs[0]}"
            )


def _write_joined(tmp: Path, stores: list[Store]) -> int:
    counts = [s.n_samples for s in stores]
    total = sum(counts)
    first = stores[0]
    with h5py.File(tmp, "w") as f:
        f.create_dataset(S.N_COMPLETE, data=np.int64(total))
        for key, value in first._f.attrs.items():
            if key != "shard":
                f.attrs[key] = value
        f.attrs["joined_from"] = json.dumps(
            [
                {
                    "file": s.path.name,
                    "n_complete": n,
                    "index_start": int(json.loads(s.meta["shard"])["start"]),
                }
                for s, n in zip(stores, counts)
            ]
        )
        for name in (S.TIMESTEPS, S.T, S.STEP_INDEX):
            f.create_dataset(name, data=first._f[name][()])
        for name in _per_sample_names(first):
            src = first._f[name]
            layout = h5py.VirtualLayout((total, *src.shape[1:]), dtype=src.dtype)
            row = 0
            for s, n in zip(stores, counts):
                if n:
                    shape = s._f[name].shape
                    # Relative names: HDF5 looks for sources beside the joined file first.
                    source = h5py.VirtualSource(s.path.name, name, shape=shape, dtype=src.dtype)
                    layout[row : row + n] = source[0:n]
                    row += n
            f.create_virtual_dataset(name, layout)
    return total


def agree(error: UserError | None) -> None:
    """Every rank raises if any rank failed its checks (so none waits at a barrier forever)."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([0 if error is None else 1])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if error is not None:
        raise error
    if int(flag.item()):
        raise UserError("another rank could not start (see its message)")


def run_sharded(
    out: Path, n: int, resume: bool, job: Callable[[int, int, Path], None], *, join: bool = True
) -> int:
    """Run `job(start, stop, shard_file)` on every rank, then join the shards on rank 0.

    Returns the joined store's complete samples on rank 0, this shard's share elsewhere.
    """
    import torch.distributed as dist

    rank, world, _ = dist_env()
    dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        start, stop = shard_range(n, rank, world)
        path = shard_path(out, rank)
        error = None
        if n < world:
            error = UserError(f"{n} prompts for {world} ranks: use fewer processes")
        elif not resume and path.exists():
            error = StoreError(f"{path} already exists; pass --resume to continue it, or remove it")
        elif rank == 0 and not resume and out.exists():
            error = StoreError(f"{out} already exists; pass --resume to continue it, or remove it")
        agree(error)
        job(start, stop, path)
        dist.barrier()
        total = join_shards(out, world) if rank == 0 and join else stop - start
        dist.barrier()
        return total
    finally:
        dist.destroy_process_group()
