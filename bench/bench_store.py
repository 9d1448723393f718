"""Store benchmark: what collecting costs, how fast a store reads, how big it gets.

Baselines, measured in the same run:
- P1: `collect` (generate + capture + write every step of every block to HDF5) against plain
  `generate` of the same prompts, seeds and settings without capture (target ≤ 1.15 on CPU).
  Model: the bundled one if present, else random weights of the bundled architecture.
- P3: one (sample, step) map read through `Store.activation` (median ms, target ≤ 2 ms), and
  `Store.tokens` streaming shuffled float32 batches against a raw read of the same bytes
  (every map's chunk read directly, in file order, no shuffle, no conversion; target ≥ 50%).
  Measured for the bundled geometry (16×16×64 maps) and SD 1.4's (16×16×1280).
- Sizes: bytes per image per block per step, growth with steps × blocks × resolution, and the
  projection for the paper's setting (SD 1.4, 3 blocks, 50 steps, both branches, 200k prompts).

Usage: python bench/bench_store.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FP16 = 2
SD14_BLOCKS = {  # the paper's three blocks at 512 px (PAPER.md)
    "down_blocks.2.attentions.1": (16, 16, 1280),
    "mid_block.attentions.0": (8, 8, 1280),
    "up_blocks.1.attentions.0": (16, 16, 1280),
}


def _bytes(n: float) -> str:
    from explorer.store.writer import human_bytes

    return human_bytes(n)


# --- P1 -------------------------------------------------------------------------------------


def _bench_model(tmp: Path):
    from explorer.engine import BUNDLED, load_model

    if (BUNDLED / "model_index.json").is_file():
        return load_model("bundled", device="cpu"), "bundled"
    from explorer.shapes.model import random_pipeline

    folder = random_pipeline(tmp / "random-bundled")
    return load_model(folder, device="cpu"), "random weights, bundled architecture"


def bench_collect(tmp: Path, n: int, steps: int, batch: int, repeats: int):
    from explorer.engine import generate
    from explorer.store import Store
    from explorer.store.collect import collect
    from explorer.store.sources import shapes_world

    model, what = _bench_model(tmp)
    pset = shapes_world(n, "train", 500_000)
    guidance = float(model.defaults["guidance"])

    def plain():
        for a in range(0, n, batch):
            generate(model, pset.prompts[a : a + batch], pset.seeds[a : a + batch], steps, guidance)

    k = [0]

    def store():
        k[0] += 1
        collect(
            model,
            pset,
            None,
            tmp / f"p1-{k[0]}.h5",
            steps=steps,
            guidance=guidance,
            batch_size=batch,
            progress=False,
        )

    plain()  # warm-up
    t_plain, t_store = [], []
    for _ in range(repeats):  # interleaved: load from other processes hits both alike
        t0 = time.perf_counter()
        plain()
        t_plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store()
        t_store.append(time.perf_counter() - t0)
    with Store.open(tmp / "p1-1.h5") as s:
        size = (tmp / "p1-1.h5").stat().st_size
        geometry = {b: s.geometry(b) for b in s.blocks}
        blocks = s.blocks
    ratio = min(t_store) / min(t_plain)
    print(
        f"P1 model: {model.name} ({what}), {n} images × {steps} steps, batch {batch}, "
        f"blocks {', '.join(blocks)}, best of {repeats}"
    )
    print(f"   generate, no capture   {min(t_plain):8.2f} s  ({n / min(t_plain):.2f} images/s)")
    print(f"   collect to the store   {min(t_store):8.2f} s  ratio {ratio:.3f}  (target ≤ 1.15)")
    print(f"   store file {_bytes(size)} for {n} images ({_bytes(size / n)} per image)")
    return ratio, geometry


# --- P3 -------------------------------------------------------------------------------------


def synthetic_store(path: Path, n: int, steps: int, geometry: tuple[int, int, int],
                    pool: int | None = None) -> None:
    """`n` samples × `steps` random float16 maps of one block, cond only, written by StoreWriter.

    One branch only: the other would double the disk written without changing what is read.
    pool: cycle that many random batches instead of drawing every map (for stores of many GB,
    where drawing the numbers would cost more than writing them; content does not matter).
    """
    from explorer.store import Layout, StoreWriter

    layout = Layout(
        n_samples=n,
        blocks={"block": geometry},
        branches=("cond",),
        timesteps=tuple(range(steps)),
        t=tuple(np.linspace(1, 0, steps)),
        step_index=tuple(range(steps)),
        sampling_steps=steps,
        image_shape=(64, 64, 3),
        latent_shape=(4, 16, 16),
    )
    rng = np.random.default_rng(0)
    batch = 4

    def draw(size: int) -> np.ndarray:
        return rng.standard_normal((size, *geometry), dtype=np.float32).astype(np.float16)

    maps = [draw(batch) for _ in range(pool)] if pool else None
    w = StoreWriter.create(path, layout, {}, [f"p{i}" for i in range(n)], list(range(n)))
    k = 0
    with w:
        while w.n_complete < n:
            size = min(batch, n - w.n_complete)
            w.begin_batch(size)
            for s in range(steps):
                k += 1
                x = maps[k % pool][:size] if maps else draw(size)
                w.write_step(s, {"block": {"cond": x}}, np.zeros((size, 4, 16, 16), np.float16))
            w.finish_batch(np.zeros((size, 64, 64, 3), np.uint8))


def _raw_read(path: Path, n: int, steps: int, geometry) -> tuple[float, float]:
    """Seconds to read every cond map's bytes as stored, in file order, two ways.

    h5py: one `ds[i]` slice per sample (how a plain h5py user reads the dataset);
    direct: one `read_direct_chunk` per map, no selection machinery at all (the floor).
    """
    import h5py

    with h5py.File(path, "r", locking=False) as f:  # as Store opens it
        ds = f["blocks/block/cond"]
        t0 = time.perf_counter()
        for i in range(n):
            ds[i]
        t_h5py = time.perf_counter() - t0
        out = np.empty(geometry, np.float16).reshape(-1).view(np.uint8)
        t0 = time.perf_counter()
        for i in range(n):
            for s in range(steps):
                ds.id.read_direct_chunk((i, s, 0, 0, 0), out=out)
        return t_h5py, time.perf_counter() - t0


def evict(path: Path) -> None:
    """Drop this file (only) from the page cache, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _stream(store, seed: int, dtype=np.float32) -> float:
    t0 = time.perf_counter()
    rows = 0
    for batch in store.tokens("block", "cond", batch_size=4096, seed=seed, dtype=dtype):
        rows += len(batch)
    assert rows == store.n_tokens("block")
    return time.perf_counter() - t0


def bench_read(tmp: Path, name: str, n: int, steps: int, geometry, repeats: int):
    from explorer.store import Store

    path = tmp / f"p3-{name}.h5"
    synthetic_store(path, n, steps, geometry)
    nbytes = n * steps * int(np.prod(geometry)) * FP16
    rng = np.random.default_rng(1)
    with Store.open(path) as store:
        times = []
        for _ in range(300):
            i, s = int(rng.integers(n)), int(rng.integers(steps))
            t0 = time.perf_counter()
            store.activation("block", "cond", i, s)
            times.append(time.perf_counter() - t0)
        map_ms = statistics.median(times) * 1000
        t_h5py, t_direct, t_stream, t_half = [], [], [], []
        for r in range(repeats):
            a, b = _raw_read(path, n, steps, geometry)
            t_h5py.append(a)
            t_direct.append(b)
            t_stream.append(_stream(store, r))
            t_half.append(_stream(store, r, np.float16))
        cold = None
        if hasattr(os, "posix_fadvise"):
            evict(path)
            cold_raw = _raw_read(path, n, steps, geometry)[0]
            evict(path)
            cold = (cold_raw, _stream(store, 0))
    frac = min(t_h5py) / min(t_stream)
    frac_direct = min(t_direct) / min(t_stream)
    h, w, d = geometry
    print(
        f"P3 {name} maps {h}×{w}×{d} fp16 ({_bytes(nbytes / n / steps)} each), {n} samples × {steps} steps, "
        f"{_bytes(nbytes)} per branch; page cache warm; best of {repeats}"
    )
    print(f"   one map (sample, step) read, median of 300 random: {map_ms:.3f} ms  (target ≤ 2 ms)")
    print(f"   raw h5py read, ds[i] per sample   {nbytes / min(t_h5py) / 1e6:8.0f} MB/s")
    print(f"   raw direct chunk reads           {nbytes / min(t_direct) / 1e6:8.0f} MB/s")
    print(
        f"   tokens(), shuffled float32       {nbytes / min(t_stream) / 1e6:8.0f} MB/s  "
        f"fraction of raw h5py {frac:.2f} (target ≥ 0.50), of direct chunks {frac_direct:.2f}"
    )
    print(
        f"   tokens(dtype=float16), no cast   {nbytes / min(t_half) / 1e6:8.0f} MB/s  "
        f"fraction of raw h5py {min(t_h5py) / min(t_half):.2f}"
    )
    if cold is not None:
        print(
            f"   cold (file evicted from the page cache): raw h5py {nbytes / cold[0] / 1e6:.0f} MB/s, "
            f"tokens() {nbytes / cold[1] / 1e6:.0f} MB/s, fraction {cold[0] / cold[1]:.2f}"
        )
    return map_ms, frac, frac_direct


# --- sizes ----------------------------------------------------------------------------------


def sizes(bundled_blocks: dict[str, tuple[int, int, int]]) -> None:
    print("Sizes (Δ only, float16; images, pred_x0 and prompts add < 1% at SD 1.4 scale)")
    for name, (h, w, d) in bundled_blocks.items():
        b = h * w * d * FP16
        print(
            f"   bundled {name:<28} {h}×{w}×{d}: {_bytes(b)} per image per step per branch, "
            f"{_bytes(2 * b)} both branches"
        )
    for name, (h, w, d) in SD14_BLOCKS.items():
        b = h * w * d * FP16
        print(
            f"   SD 1.4  {name:<28} {h}×{w}×{d}: {_bytes(b)} per image per step per branch, "
            f"{_bytes(2 * b)} both branches"
        )
    print("   growth: bytes = N × steps × branches × Σ_blocks h·w·d × 2; h·w ∝ resolution²:")
    per = sum(h * w * d for h, w, d in SD14_BLOCKS.values()) * FP16
    for steps, n_blocks, res in (
        (25, 3, 512),
        (50, 3, 512),
        (50, 1, 512),
        (50, 3, 768),
        (50, 3, 1024),
    ):
        factor = n_blocks / 3 * (res / 512) ** 2
        print(
            f"     SD-like, {steps:>2} steps × {n_blocks} blocks × {res} px: "
            f"{_bytes(steps * 2 * per * factor)} per image"
        )
    n = 200_000
    full = n * 50 * 2 * per
    paper = n * 3 * 1 * per
    print(
        f"   projection, the paper's setting (SD 1.4, 3 blocks, 50 steps, 2 branches, 200k prompts): "
        f"{_bytes(full)} ({_bytes(50 * 2 * per)} per prompt)"
    )
    print(
        f"   the same keeping only the SAE steps t ∈ {{1, 0.5, 0}} and cond "
        f"(--keep-steps 0,25,49 --branches cond): {_bytes(paper)}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a minute on 2 CPU cores)")
    p.add_argument("--skip-p1", action="store_true", help="only the reading and size parts")
    args = p.parse_args()

    from explorer.cli import quiet_libraries

    quiet_libraries()
    import torch  # loaded, as in the SAE trainer: tokens() casts through it

    q = args.quick
    # The stream reads in one thread while the caller gathers in another: say how many CPUs this
    # process may use (a shell pinned to one CPU by taskset halves what it measures).
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"threads {torch.get_num_threads()}, CPUs usable {cpus}; {'quick' if q else 'full'} run")
    p1, geometry = float("nan"), {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_p1:
            p1, geometry = bench_collect(
                tmp, n=8 if q else 32, steps=10 if q else 25, batch=8, repeats=2 if q else 3
            )
        r1 = bench_read(
            tmp, "bundled", n=64 if q else 256, steps=25, geometry=(16, 16, 64), repeats=3
        )
        r2 = bench_read(
            tmp, "SD 1.4", n=8 if q else 32, steps=50, geometry=(16, 16, 1280), repeats=3
        )
    sizes(geometry)
    print(
        f"SUMMARY P1 collect/generate {p1:.3f} | P3 map read {r1[0]:.3f} ms (bundled), "
        f"{r2[0]:.3f} ms (SD 1.4) | streaming / raw h5py {r1[1]:.2f} (bundled), "
        f"{r2[1]:.2f} (SD 1.4); / direct chunks {r1[2]:.2f}, {r2[2]:.2f}"
    )


if __name__ == "__main__":
    main()
