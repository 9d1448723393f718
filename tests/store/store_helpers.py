"""Small stores for tests: synthetic ones (no model) and comparisons between stores."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from explorer.store import Layout, Store, StoreWriter
from explorer.store import schema as S

# The reference collection: 8 shapes-world prompts in batches of 2 on the tiny model, with the
# model's explorer.json settings (4 steps, guidance 3, three blocks). Tests that kill, resume,
# cancel or shard a collection must end with exactly this store.
REFERENCE = {"n": 8, "batch_size": 2}


def collect_args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    """`explorer collect` arguments (after the program) for the reference collection into `out`."""
    return [
        "collect",
        "--model",
        str(model_dir),
        "--num-prompts",
        str(REFERENCE["n"]),
        "--batch-size",
        str(REFERENCE["batch_size"]),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]

BLOCKS = {"mid_block.attentions.0": (4, 4, 8), "up_blocks.1.attentions.0": (8, 8, 4)}


def layout(n: int = 10, steps: int = 3, masks: bool = False, blocks=None, **kw) -> Layout:
    return Layout(
        n_samples=n,
        blocks=dict(blocks or BLOCKS),
        branches=kw.pop("branches", ("uncond", "cond")),
        timesteps=tuple(range(999, 0, -(999 // steps)))[:steps],
        t=tuple(np.linspace(1.0, 0.0, steps).tolist()),
        step_index=tuple(range(steps)),
        sampling_steps=steps,
        image_shape=(8, 8, 3),
        latent_shape=(4, 2, 2),
        masks=(2, 8, 8) if masks else None,
        **kw,
    )


def sample_map(sample: int, step: int, block_i: int, branch_i: int, shape) -> np.ndarray:
    """The synthetic Δ of one (sample, step, block, branch): a pure function of those."""
    rng = np.random.default_rng([sample, step, block_i, branch_i])
    return rng.standard_normal(shape).astype(np.float16)


def sample_image(sample: int, shape=(8, 8, 3)) -> np.ndarray:
    return np.full(shape, sample % 256, np.uint8)


def annotate(k: int) -> tuple[np.ndarray, list[dict]]:
    n = 1 + k % 2
    masks = np.zeros((n, 8, 8), bool)
    masks[:, k % 8, :] = True
    return masks, [{"shape": "circle", "k": k}] * n


def create(path: Path, lay: Layout, **kw) -> StoreWriter:
    n = lay.n_samples
    return StoreWriter.create(
        path,
        lay,
        {"model_hash": "synthetic", "guidance": 3.0, "batch_size": 4},
        [f"prompt {i}" for i in range(n)],
        list(range(100, 100 + n)),
        annotate=annotate if lay.masks else None,
        **kw,
    )


def write_batch(w: StoreWriter, size: int) -> int:
    """Write the next `size` synthetic samples and commit them."""
    lay = w.layout
    start = w.begin_batch(size)
    for s in range(lay.n_steps):
        deltas = {
            block: {
                br: np.stack([sample_map(start + k, s, bi, ri, g) for k in range(size)])
                for ri, br in enumerate(lay.branches)
            }
            for bi, (block, g) in enumerate(lay.blocks.items())
        }
        pred = np.full((size, *lay.latent_shape), s, np.float16)
        prev = np.full((size, *lay.image_shape), s, np.uint8) if lay.previews else None
        w.write_step(s, deltas, pred, prev)
    return w.finish_batch(np.stack([sample_image(start + k, lay.image_shape) for k in range(size)]))


def write_store(path: Path, lay: Layout, upto: int | None = None, batch: int = 4, **kw) -> Path:
    with create(path, lay, **kw) as w:
        upto = lay.n_samples if upto is None else upto
        while w.n_complete < upto:
            write_batch(w, min(batch, lay.n_samples - w.n_complete))
    return path


def check_synthetic(store: Store, samples=None) -> None:
    """The samples (default: every visible one) hold exactly the synthetic data."""
    lay = store.layout
    for i in range(store.n_samples) if samples is None else samples:
        assert np.array_equal(store.image(i), sample_image(i, lay.image_shape))
        for bi, (block, g) in enumerate(lay.blocks.items()):
            for ri, br in enumerate(lay.branches):
                for s in range(lay.n_steps):
                    assert np.array_equal(
                        store.activation(block, br, i, s), sample_map(i, s, bi, ri, g)
                    )


def assert_same_samples(a: Store, b: Store, n: int) -> None:
    """The first n samples of two stores are identical, bit for bit."""
    assert a.blocks == b.blocks and a.branches == b.branches and a.timesteps == b.timesteps
    assert a.prompts[:n] == b.prompts[:n]
    assert np.array_equal(a.seeds[:n], b.seeds[:n])
    for i in range(n):
        assert np.array_equal(a.image(i), b.image(i)), f"image {i}"
        assert np.array_equal(a.pred_x0(i), b.pred_x0(i)), f"pred_x0 {i}"
        for block in a.blocks:
            for br in a.branches:
                assert np.array_equal(a.maps(block, br, i), b.maps(block, br, i)), (
                    f"{block} {br} {i}"
                )
        if a.has_masks:
            assert np.array_equal(a.masks(i), b.masks(i)) and a.attributes(i) == b.attributes(i)


def assert_same_files(a: Path, b: Path, ignore_attrs=("created",)) -> None:
    """Two store files hold the same datasets and attributes (all samples, pending ones too)."""
    with h5py.File(a, "r", locking=False) as fa, h5py.File(b, "r", locking=False) as fb:
        names_a, names_b = [], []
        fa.visit(lambda n: names_a.append(n) if isinstance(fa[n], h5py.Dataset) else None)
        fb.visit(lambda n: names_b.append(n) if isinstance(fb[n], h5py.Dataset) else None)
        assert sorted(names_a) == sorted(names_b)
        n = int(fa[S.N_COMPLETE][()])
        assert n == int(fb[S.N_COMPLETE][()])
        for name in names_a:
            x, y = fa[name], fb[name]
            if x.ndim and x.shape[0] == fa[S.PROMPTS].shape[0]:
                x, y = x[:n], y[:n]  # rows beyond n_complete are never read
            else:
                x, y = x[()], y[()]
            assert np.array_equal(x, y), name
        keys = set(fa.attrs) - set(ignore_attrs)
        assert keys == set(fb.attrs) - set(ignore_attrs)
        for k in keys:
            assert fa.attrs[k] == fb.attrs[k], k


@contextmanager
def torch_threads(n: int):
    """Bit-identical comparisons need the same intra-op thread count on both sides."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
