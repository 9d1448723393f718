"""Index benchmark: the streaming index build against the naive full-RAM computation.

Baseline, measured in the same run on the same data: read every map of the block into RAM,
dense codes (tokens × d_sae) for all of them, then per (feature, step) `np.argpartition` for
the top N and a mean for the firing rate. The streaming build (`explorer.analysis.index`)
computes the same tables (and more: codes on disk, histograms, means) one sample at a time.

Reported: tokens/s of each, their ratio, and peak memory (max RSS growth of a fresh process
doing only that work) at two store sizes: the streaming build's peak should stay flat, the
baseline's grow with the store. The top-N sets of both are checked for equality.

Data: a synthetic store (Δ = sparse positive mixtures of random directions plus noise, so codes
are structured like real ones) and a random TopK SAE, at the bundled model's 16×16×64 geometry
(512 latents, k = 8) or, with --sd, SD 1.4's 16×16×1280 (5120 latents, k = 10).

Usage: python bench/bench_index.py [--quick] [--sd] [--samples N] [--steps S]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Runnable from a checkout without installing the package.
sys.path.insert(0, str(ROOT))

BLOCK = "mid_block.attentions.0"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_store(path: Path, n: int, steps: int, geometry, seed: int = 0) -> None:
    from explorer.store import Layout, StoreWriter

    h, w, d = geometry
    layout = Layout(
        n_samples=n,
        blocks={BLOCK: geometry},
        branches=("cond",),
        timesteps=tuple(range(steps)),
        t=tuple(float(x) for x in np.linspace(1, 0, steps)),
        step_index=tuple(range(steps)),
        sampling_steps=steps,
        image_shape=(64, 64, 3),
        latent_shape=(4, 16, 16),
    )
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((4 * d, d)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    writer = StoreWriter.create(
        path, layout, {}, [f"p{i}" for i in range(n)], list(range(n)), check_space=False
    )
    with writer:
        while writer.n_complete < n:
            size = min(8, n - writer.n_complete)
            writer.begin_batch(size)
            for s in range(steps):
                idx = rng.integers(0, len(atoms), (size * h * w, 4))
                coef = rng.gamma(2.0, 1.0, (size * h * w, 4)).astype(np.float32)
                x = np.einsum("na,nad->nd", coef, atoms[idx])
                x += 0.1 * rng.standard_normal(x.shape, dtype=np.float32)
                writer.write_step(
                    s,
                    {BLOCK: {"cond": x.reshape(size, h, w, d).astype(np.float16)}},
                    np.zeros((size, 4, 16, 16), np.float16),
                )
            writer.finish_batch(np.zeros((size, 64, 64, 3), np.uint8))


def make_sae(folder: Path, d_in: int, d_sae: int, k: int) -> None:
    import torch

    from explorer.sae import SAEConfig, TopKSAE, save_sae

    torch.manual_seed(0)
    sae = TopKSAE(
        SAEConfig(d_in=d_in, d_sae=d_sae, k=k, block=BLOCK, branch="cond", steps=[0], t=[1.0])
    )
    with torch.no_grad():
        sae.b_enc.fill_(-0.05)
    save_sae(sae, folder)


# --- the two computations, each run in a fresh process ------------------------------------


def run_stream(store_path: Path, sae_dir: Path, out: Path, top_n: int) -> dict:
    from explorer.analysis.index import IndexSettings, build_index
    from explorer.store import Store

    with Store.open(store_path) as store:
        base = _rss_mb()
        t0 = time.perf_counter()
        res = build_index(store, sae_dir, IndexSettings(top_n=top_n), force=True, out=out)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tokens": res.tokens, "peak_mb": _rss_mb() - base}


def run_naive(store_path: Path, sae_dir: Path, out: Path, top_n: int) -> dict:
    import torch

    from explorer.sae import load_sae
    from explorer.store import Store

    sae = load_sae(sae_dir)
    with Store.open(store_path) as store:
        base = _rss_mb()
        t0 = time.perf_counter()
        n, S, (h, w, d) = store.n_samples, store.n_steps, store.geometry(BLOCK)
        maps = np.stack([store.maps(BLOCK, "cond", i) for i in range(n)])  # (n, S, h, w, d)
        with torch.no_grad():
            x = torch.from_numpy(maps.reshape(-1, d).astype(np.float32))
            dense = sae.dense_codes(x).numpy().reshape(n, S, h * w, -1)
        F = dense.shape[-1]
        per_step = dense.transpose(1, 3, 0, 2).reshape(S, F, n * h * w)  # (S, F, tokens of a step)
        top = np.argpartition(-per_step, top_n - 1, axis=-1)[..., :top_n]
        values = np.take_along_axis(per_step, top, axis=-1)
        firing = (per_step > 0).mean(axis=-1)
        seconds = time.perf_counter() - t0
    np.savez(out, top=top, values=values, firing=firing)
    return {"seconds": seconds, "tokens": n * S * h * w, "peak_mb": _rss_mb() - base}


def _child(mode: str, store: Path, sae: Path, out: Path, top_n: int) -> dict:
    """Run one computation in a fresh interpreter, so its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--child", mode, str(store), str(sae), str(out), str(top_n)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def check_equal(index_path: Path, naive_path: Path, n_steps: int) -> bool:
    """The same top-N value sets per (feature, step) (keys differ only among tied values)."""
    import h5py

    with h5py.File(index_path, "r") as f:
        got = f["top/value"][()]  # (F, S, N), −inf where empty
    ref = np.load(naive_path)["values"].transpose(1, 0, 2)  # (F, S, N), 0 where not fired
    got = np.where(np.isfinite(got), got, 0.0)
    return bool(np.allclose(np.sort(got, -1), np.sort(ref, -1), rtol=1e-5, atol=1e-6))


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        mode, store, sae, out, top_n = sys.argv[2:]
        fn = run_stream if mode == "stream" else run_naive
        print(json.dumps(fn(Path(store), Path(sae), Path(out), int(top_n))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    ap.add_argument("--sd", action="store_true", help="SD 1.4 geometry (16×16×1280, 5120 latents)")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--top-n", type=int, default=16)
    args = ap.parse_args()
    if args.sd:
        geometry, d_sae, k = (16, 16, 1280), 5120, 10
        n = args.samples or (8 if args.quick else 32)
        steps = args.steps or (5 if args.quick else 10)
    else:
        geometry, d_sae, k = (16, 16, 64), 512, 8
        n = args.samples or (16 if args.quick else 64)
        steps = args.steps or (10 if args.quick else 25)
    print(f"geometry {geometry}, {d_sae} latents, k = {k}, {steps} steps, top N = {args.top_n}")
    print(
        f"{'samples':>8} {'tokens':>10} {'stream tok/s':>13} {'naive tok/s':>12} {'ratio':>6} "
        f"{'stream MB':>10} {'naive MB':>9} {'equal':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sae = tmp / "sae"
        make_sae(sae, geometry[2], d_sae, k)
        for size in (n, 2 * n):
            store = tmp / f"store{size}.h5"
            make_store(store, size, steps, geometry)
            s = _child("stream", store, sae, tmp / f"index{size}.h5", args.top_n)
            b = _child("naive", store, sae, tmp / f"naive{size}.npz", args.top_n)
            eq = check_equal(tmp / f"index{size}.h5", tmp / f"naive{size}.npz", steps)
            rs, rb = s["tokens"] / s["seconds"], b["tokens"] / b["seconds"]
            print(
                f"{size:>8} {s['tokens']:>10} {rs:>13,.0f} {rb:>12,.0f} {rs / rb:>6.2f} "
                f"{s['peak_mb']:>10.1f} {b['peak_mb']:>9.1f} {eq!s:>6}"
            )
    print(
        "ratio = streaming tokens/s ÷ naive tokens/s (naive: dense codes + argpartition in RAM;"
        " the streaming build also writes every code to disk and keeps histograms)."
    )


if __name__ == "__main__":
    main()
