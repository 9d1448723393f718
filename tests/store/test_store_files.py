"""Writer and reader on synthetic stores: layout, commit record, resume checks, bad files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import store_helpers as H

from explorer.store import SCHEMA_VERSION, Store, StoreError, StoreWriter
from explorer.store import schema as S


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_roundtrip_and_only_complete_samples_visible(tmp_path):
    lay = H.layout(n=10, masks=True, previews=True)
    path = tmp_path / "s.h5"
    w = H.create(path, lay)
    H.write_batch(w, 4)
    H.write_batch(w, 4)
    # A batch written but not finished: its samples must stay invisible.
    w.begin_batch(2)
    w.write_step(
        0,
        {
            b: {br: np.ones((2, *g), np.float16) for br in lay.branches}
            for b, g in lay.blocks.items()
        },
        np.zeros((2, *lay.latent_shape), np.float16),
        np.zeros((2, *lay.image_shape), np.uint8),
    )
    with Store.open(path) as store:
        assert store.n_samples == 8 and store.n_planned == 10
        assert store.prompts == [f"prompt {i}" for i in range(8)]
        assert store.seeds.tolist() == list(range(100, 108))
        assert store.index.tolist() == list(range(8))
        assert store.blocks == list(H.BLOCKS) and store.branches == ["uncond", "cond"]
        assert store.t == [1.0, 0.5, 0.0] and store.n_steps == 3 and store.step_for_t(0.4) == 1
        assert store.geometry("up_blocks.1.attentions.0") == (8, 8, 4)
        H.check_synthetic(store)
        assert store.maps("mid_block.attentions.0", "cond", 5).shape == (3, 4, 4, 8)
        assert store.pred_x0(3, 2).tolist() == np.full((4, 2, 2), 2).tolist()
        assert store.preview(3, 1).shape == (8, 8, 3) and store.preview(3, 1).max() == 1
        masks, attrs = H.annotate(5)
        assert np.array_equal(store.masks(5), masks) and store.attributes(5) == attrs
        assert (
            store.meta["model_hash"] == "synthetic"
            and store.meta["schema_version"] == SCHEMA_VERSION
        )
        with pytest.raises(IndexError):
            store.image(8)
        with pytest.raises(IndexError):
            store.activation("mid_block.attentions.0", "cond", 0, 3)
        with pytest.raises(StoreError, match="has no block down"):
            store.activation("down", "cond", 0, 0)
        with pytest.raises(StoreError, match="no 'neg' branch"):
            store.maps("mid_block.attentions.0", "neg", 0)
        fp = store.fingerprint
    w.abandon_batch()
    H.write_batch(w, 2)
    w.close()
    with Store.open(path) as store:
        assert store.n_samples == 10 and store.fingerprint != fp
        H.check_synthetic(store)


def test_metadata_never_changes_after_creation(tmp_path):
    """Crash safety rests on writes touching only pre-allocated raw data (see writer.py)."""
    path = tmp_path / "s.h5"
    w = H.create(path, H.layout(n=8))
    size = path.stat().st_size
    with h5py.File(path, "r", locking=False) as f:
        offset = f[S.N_COMPLETE].id.get_offset()
        block = f[S.block_dataset("mid_block.attentions.0", "cond")]
        chunk = block.id.get_chunk_info_by_coord((7, 2, 0, 0, 0))
    # The commit record: one 8-byte write inside one 512-byte sector, so it cannot be torn.
    assert offset // 512 == (offset + 7) // 512
    assert chunk.byte_offset is not None  # chunks of the last sample exist before it is written
    H.write_batch(w, 4)
    H.write_batch(w, 4)
    w.close()
    assert path.stat().st_size == size  # nothing was allocated by writing


def test_create_refuses_an_existing_file_and_a_second_writer(tmp_path):
    path = tmp_path / "s.h5"
    H.write_store(path, H.layout(n=4))
    before = _digest(path)
    with pytest.raises(StoreError, match="already exists; pass --resume"):
        H.create(path, H.layout(n=4))
    assert _digest(path) == before
    w = StoreWriter.resume(path, H.layout(n=4), {"model_hash": "synthetic", "guidance": 3.0})
    with pytest.raises(StoreError, match="another collection is writing it"):
        StoreWriter(path, H.layout(n=4))
    w.close()


def test_resume_continues_and_refuses_other_settings(tmp_path):
    path = tmp_path / "s.h5"
    lay = H.layout(n=10)
    H.write_store(path, lay, upto=4)
    meta = {"model_hash": "synthetic", "guidance": 3.0}
    before = _digest(path)
    bad = [
        (H.layout(n=10, blocks={"mid_block.attentions.0": (4, 4, 8)}), meta, None, "blocks"),
        (H.layout(n=10, steps=4), meta, None, "timesteps"),
        (H.layout(n=12), meta, None, "n samples 10 in the store, 12 now"),
        (
            lay,
            {"model_hash": "other", "guidance": 3.0},
            None,
            "model hash synthetic in the store, other now",
        ),
        (lay, {"model_hash": "synthetic", "guidance": 7.5}, None, "guidance"),
        (lay, meta, [f"prompt {i}" for i in range(9)] + ["changed"], "the prompts differ"),
    ]
    for other, m, prompts, match in bad:
        with pytest.raises(StoreError, match=match):
            StoreWriter.resume(path, other, m, prompts)
    assert _digest(path) == before
    with StoreWriter.resume(path, lay, meta, [f"prompt {i}" for i in range(10)]) as w:
        assert w.n_complete == 4
        H.write_batch(w, 4)
        H.write_batch(w, 2)
    reference = H.write_store(tmp_path / "ref.h5", lay)
    H.assert_same_files(path, reference)


def test_reader_sees_a_store_while_it_is_written(tmp_path):
    path = tmp_path / "s.h5"
    with H.create(path, H.layout(n=8)) as w:
        H.write_batch(w, 4)
        store = Store.open(path)
        assert store.n_samples == 4
        H.write_batch(w, 4)
        assert store.n_samples == 4 and store.refresh() == 8
        H.check_synthetic(store)
        store.close()


def _one_line_error(path, match):
    with pytest.raises(StoreError) as e:
        Store.open(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert match in msg, msg


def test_bad_files_give_one_clear_line(tmp_path):
    good = H.write_store(tmp_path / "good.h5", H.layout(n=4))
    data = good.read_bytes()

    _one_line_error(tmp_path / "missing.h5", "does not exist")
    (tmp_path / "garbage.h5").write_bytes(os.urandom(5000))
    _one_line_error(tmp_path / "garbage.h5", "is not an HDF5 file")
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    _one_line_error(tmp_path / "truncated.h5",
                    f"is truncated: {len(data) // 2:,} of its {len(data):,} bytes are there")
    with pytest.raises(StoreError) as e:
        Store.open(tmp_path / "truncated.h5")
    assert "sblock" not in str(e.value) and "eof" not in str(e.value)  # HDF5's internals
    for offset in (100, 800, 2100):  # inside the superblock, the root group, the attributes
        damaged = bytearray(data)
        damaged[offset : offset + 1024] = bytes(range(256)) * 4
        (tmp_path / f"damaged{offset}.h5").write_bytes(bytes(damaged))
        _one_line_error(tmp_path / f"damaged{offset}.h5", "damaged")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = 1
    _one_line_error(tmp_path / "plain.h5", "not an activation store")
    newer = tmp_path / "newer.h5"
    newer.write_bytes(data)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    _one_line_error(newer, f"schema version {SCHEMA_VERSION + 1}; this explorer reads version 1")
    claims = tmp_path / "claims.h5"
    claims.write_bytes(data)
    with h5py.File(claims, "r+") as f:
        f[S.N_COMPLETE][()] = 99
    _one_line_error(claims, "claims 99 of 4 samples")


def test_opening_a_10gb_store_is_cheap(tmp_path):
    """A sparse 10.5 GB store (640 samples × 25 steps × 16×16×1280), opened in a fresh process."""
    lay = H.layout(
        n=640, steps=25, blocks={"mid_block.attentions.0": (16, 16, 1280)}, branches=("cond",)
    )
    path = tmp_path / "big.h5"
    H.create(path, lay, check_space=False).close()
    with h5py.File(path, "r+") as f:
        f[S.N_COMPLETE][()] = lay.n_samples  # sparse chunks read as zeros; only the cost matters
    assert path.stat().st_size > 10e9
    # VmHWM: the peak RSS since exec (ru_maxrss would include the forked pytest process).
    code = f"""
import re, sys
from explorer.store import Store
s = Store.open({str(path)!r})
assert len(s.prompts) == 640 and s.n_samples == 640
for i in range(0, 640, 7):
    s.activation("mid_block.attentions.0", "cond", i, i % 25)
s.maps("mid_block.attentions.0", "cond", 5)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(peak_kb // 1024, "torch" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 0, res.stderr
    rss_mb, torch_loaded = res.stdout.split()
    assert int(rss_mb) < 300, f"{rss_mb} MB"
    assert torch_loaded == "False"  # the reader never imports torch


def test_layout_bytes_and_differences(tmp_path):
    lay = H.layout(n=10)
    per = sum(3 * h * w * d * 2 * 2 for h, w, d in H.BLOCKS.values())
    assert lay.activation_bytes_per_sample() == per
    assert lay.bytes_per_sample() == per + 8 * 8 * 3 + 3 * 4 * 2 * 2 * 2
    assert lay.differences(lay) == []
    # Block names with dots are plain HDF5 names: one group per block, one dataset per branch.
    path = H.write_store(tmp_path / "s.h5", H.layout(n=4))
    with h5py.File(path, "r", locking=False) as f:
        assert sorted(f["blocks"]) == sorted(lay.blocks)
        for block in lay.blocks:
            assert f"blocks/{block}/cond" in f and f"blocks/{block}/uncond" in f


def test_info_gives_an_interrupted_store_s_true_size_per_sample(tmp_path, capsys):
    # The file is allocated for every planned sample: its size over the complete samples would
    # make an interrupted store's sample look three times its size.
    import re

    from explorer.cli import main

    sizes = {n: H.write_store(tmp_path / f"full{n}.h5", H.layout(n=n)).stat().st_size
             for n in (4, 16)}
    measured = (sizes[16] - sizes[4]) / 12  # what one more sample costs on disk
    cut = H.write_store(tmp_path / "cut.h5", H.layout(n=12), upto=4)
    assert main(["info", str(cut)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "4/12 samples complete" in first and "allocated for all 12" in first, first
    value, unit = re.search(r", ([\d.]+) (B|KB|MB) per sample\)", first).groups()
    shown = float(value) * {"B": 1, "KB": 1e3, "MB": 1e6}[unit]
    assert abs(shown - measured) <= 0.05 * measured, (first, measured)
    assert cut.stat().st_size / 4 > 2 * measured  # the old reading, far off
