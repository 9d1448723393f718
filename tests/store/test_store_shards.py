"""Shards joined by virtual datasets; `torchrun -m explorer collect` with 2 CPU ranks (gloo)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import store_helpers as H

from explorer.cli import main
from explorer.store import Store, StoreError, StoreWriter
from explorer.store.info import describe_store
from explorer.store.shards import join_shards, shard_path, shard_range
from explorer.store.writer import human_bytes

ROOT = Path(__file__).resolve().parents[2]


def _shard(out: Path, rank: int, world: int, total: int, upto: int) -> None:
    """Shard `rank` of a synthetic collection of `total` samples, `upto` of them complete."""
    start, stop = shard_range(total, rank, world)
    lay = H.layout(n=stop - start)
    meta = {
        "model_hash": "synthetic",
        "guidance": 3.0,
        "shard": json.dumps({"rank": rank, "world": world, "start": start, "stop": stop}),
    }
    w = StoreWriter.create(
        shard_path(out, rank),
        lay,
        meta,
        [f"prompt {i}" for i in range(start, stop)],
        list(range(start, stop)),
        index=range(start, stop),
    )
    with w:
        while w.n_complete < upto:
            H.write_batch(w, 2)


def test_join_exposes_only_complete_samples(tmp_path):
    out = tmp_path / "store.h5"
    _shard(out, 0, 2, 20, upto=6)  # samples 0-9 planned, 0-5 complete
    _shard(out, 1, 2, 20, upto=10)  # samples 10-19, all complete
    assert join_shards(out) == 16
    with Store.open(out) as store:
        assert store.is_joined and store.n_samples == 16
        assert store.index.tolist() == [*range(6), *range(10, 20)]
        assert store.prompts == [f"prompt {i}" for i in store.index]
        with Store.open(shard_path(out, 1)) as s1:
            for j in range(10):
                assert np.array_equal(
                    store.maps("mid_block.attentions.0", "cond", 6 + j),
                    s1.maps("mid_block.attentions.0", "cond", j),
                )
                assert np.array_equal(store.image(6 + j), s1.image(j))
        batches = list(store.tokens("mid_block.attentions.0", "cond", batch_size=100))
        assert sum(len(b) for b in batches) == 16 * 3 * 16
        # The stream reads each shard's chunks with preadv; HDF5's reads give the same rows.
        store.stream_with_pread = False
        slow = list(store.tokens("mid_block.attentions.0", "cond", batch_size=100))
        for a, b in zip(batches, slow, strict=True):
            assert np.array_equal(a, b)
    # Any HDF5 reader (here plain h5py in another process) sees one store through the VDS.
    code = (
        "import h5py, numpy as np, sys\n"
        f"f = h5py.File({str(out)!r})\n"
        "v = f['blocks/up_blocks.1.attentions.0/uncond']\n"
        "np.save(sys.stdout.buffer, v[7, 2]); print(v.is_virtual, v.shape[0], f['prompts'].asstr()[12])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    raw = res.stdout
    with Store.open(out) as store:
        want = store.activation("up_blocks.1.attentions.0", "uncond", 7, 2)
        assert raw.endswith(f"True 16 {store.prompts[12]}\n".encode())
        assert np.array_equal(np.load(__import__("io").BytesIO(raw)), want)

    shard_path(out, 0).rename(tmp_path / "away.h5")
    with pytest.raises(StoreError, match=re.escape("joins store.rank0.h5, which is missing")):
        Store.open(out)
    shard_path(out, 0).unlink(missing_ok=True)
    _shard(out, 0, 2, 20, upto=2)  # the shard started over: the join is stale
    with pytest.raises(
        StoreError, match=re.escape("expects 6 samples in store.rank0.h5, which has 2")
    ):
        Store.open(out)
    assert main(["collect", "--join", "--out", str(out)]) == 0
    with Store.open(out) as store:
        assert store.n_samples == 12


def test_join_refuses_mismatched_shards(tmp_path):
    out = tmp_path / "store.h5"
    _shard(out, 0, 2, 8, upto=4)
    with pytest.raises(StoreError, match=re.escape("shard store.rank1.h5 is missing")):
        join_shards(out, 2)
    _shard(out, 1, 3, 12, upto=4)  # from a run with 3 ranks
    with pytest.raises(StoreError, match=re.escape("store.rank1.h5 is not shard 1 of 2")):
        join_shards(out)
    assert not out.exists()


def test_torchrun_two_ranks_equal_one_process(tiny_model_dir, reference_store, tmp_path):
    out = tmp_path / "store.h5"
    n = H.REFERENCE["n"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd = [*torchrun, "-m", "explorer", *H.collect_args(tiny_model_dir, out)]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert f"joins 2 shards, {n} of {n} samples complete" in res.stdout
    assert shard_path(out, 0).is_file() and shard_path(out, 1).is_file()
    with Store.open(out) as joined, Store.open(reference_store) as single:
        assert joined.is_joined and joined.n_samples == n
        assert joined.index.tolist() == list(range(n))
        H.assert_same_samples(joined, single, n)
        assert joined.meta["model_hash"] == single.meta["model_hash"]
        assert joined.files() == [out, shard_path(out, 0), shard_path(out, 1)]
        assert single.files() == [Path(reference_store)]
        size = sum(p.stat().st_size for p in joined.files())
        assert ", joined from 2 shards" in describe_store(joined)[0]
        assert human_bytes(size) in describe_store(joined)[0]
