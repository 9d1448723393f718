"""Linear-probe benchmark: the streamed probe against the obvious full-RAM computation.

Baseline, measured in the same run on the same data: read every map of the block into RAM,
stack each step's fitting rows [Δ, 1] and solve the ridge problem with `np.linalg.lstsq` on
rows augmented by √λ·I (the textbook way), then score the held-out samples the same way. The
streamed probe (`explorer.analysis.linear_probe.block_probe`) accumulates the normal
equations sample by sample, in step groups under its memory budget.

Reported: seconds of each, their ratio, peak memory (max RSS growth of a fresh process doing
only that work) at two store sizes (the streamed probe's should stay flat, the baseline's
grow with the store), and the largest difference between the two curves.

Data: a synthetic store whose Δ holds each object's colour at its position (plus structured
noise), at the bundled mid block's 8×8×128 or, with --sd, SD 1.4's 16×16×1280 down block.

Usage: python bench/bench_probe.py [--quick] [--sd] [--samples N] [--steps S]
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
COLOURS = ("red", "green", "blue", "yellow")
HOLDOUT_EVERY = 4


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def scene(i: int, h: int, w: int) -> tuple[str, np.ndarray]:
    """Sample i's one object: a colour and a square on the grid."""
    rng = np.random.default_rng(1000 + i)
    size = max(1, h // 3)
    y, x = (int(v) for v in rng.integers(0, h - size + 1, 2))
    grid = np.zeros((h, w), bool)
    grid[y : y + size, x : x + size] = True
    return COLOURS[i % len(COLOURS)], grid


class Truth:
    """Ground truth for the scenes, at 4 pixels per grid cell."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w

    def sample(self, i: int):
        from explorer.analysis.truth import ObjectTruth, SampleTruth

        colour, grid = scene(i, self.h, self.w)
        mask = np.kron(grid, np.ones((4, 4), bool))
        return SampleTruth([ObjectTruth([("colour", colour), ("shape", "square")], mask)], shape=mask.shape)


def make_store(path: Path, n: int, steps: int, geometry, seed: int = 0) -> None:
    from explorer.store import Layout, StoreWriter

    h, w, d = geometry
    layout = Layout(
        n_samples=n, blocks={BLOCK: geometry}, branches=("cond",), timesteps=tuple(range(steps)),
        t=tuple(float(x) for x in np.linspace(1, 0, steps)), step_index=tuple(range(steps)),
        sampling_steps=steps, image_shape=(4 * h, 4 * w, 3), latent_shape=(4, h, w),
    )
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((len(COLOURS), d)).astype(np.float32)
    with StoreWriter.create(path, layout, {}, [f"p{i}" for i in range(n)], list(range(n)),
                            check_space=False) as writer:
        while writer.n_complete < n:
            first = writer.n_complete
            size = min(8, n - first)
            writer.begin_batch(size)
            for s in range(steps):
                x = rng.standard_normal((size, h, w, d), dtype=np.float32)
                for j in range(size):
                    colour, grid = scene(first + j, h, w)
                    # The layout strengthens over the steps, as in a real model.
                    x[j][grid] += (s + 1) / steps * directions[COLOURS.index(colour)]
                writer.write_step(s, {BLOCK: {"cond": x.astype(np.float16)}},
                                  np.zeros((size, 4, h, w), np.float16))
            writer.finish_batch(np.zeros((size, 4 * h, 4 * w, 3), np.uint8))


def _split(n: int) -> tuple[list[int], list[int]]:
    from explorer.analysis.index import split_samples

    return split_samples(n, HOLDOUT_EVERY)


# --- the two computations, each run in a fresh process ------------------------------------


def run_stream(store_path: Path) -> dict:
    from explorer.analysis.linear_probe import block_probe
    from explorer.store import Store

    with Store.open(store_path) as store:
        h, w, _ = store.geometry(BLOCK)
        fit, held = _split(store.n_samples)
        base = _rss_mb()
        t0 = time.perf_counter()
        curve = block_probe(store, Truth(h, w), BLOCK, fit, held)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": _rss_mb() - base, "miou": curve.miou, "baseline": curve.baseline}


def run_naive(store_path: Path) -> dict:
    from explorer.analysis.composition import derangement
    from explorer.analysis.linear_probe import RIDGE, object_masks, word_targets
    from explorer.analysis.masks import iou_matrix, to_grid
    from explorer.store import Store

    with Store.open(store_path) as store:
        S, (h, w, d) = store.n_steps, store.geometry(BLOCK)
        truth = Truth(h, w)
        fit, held = _split(store.n_samples)
        base = _rss_mb()
        t0 = time.perf_counter()
        maps = np.stack([store.maps(BLOCK, "cond", i) for i in range(store.n_samples)]).astype(np.float32)
        maps = maps.reshape(store.n_samples, S, h * w, d)
        objects = {i: [(o.query_words, to_grid(o.mask, h, w)) for o in truth.sample(i).objects]
                   for i in range(store.n_samples)}
        vocab: dict[str, int] = {}
        for i in fit:
            for words, _ in objects[i]:
                for x in sorted(words):
                    vocab.setdefault(x, len(vocab))
        y = np.concatenate([word_targets(objects[i], vocab) for i in fit])
        perm = derangement(len(held))
        miou, baseline = [], []
        for s in range(S):
            x = np.concatenate([maps[fit, s].reshape(-1, d), np.ones((len(fit) * h * w, 1), np.float32)], 1)
            lam = RIDGE * float((x.astype(np.float64) ** 2).sum()) / (d + 1)
            rows = np.sqrt(lam) * np.eye(d + 1)[:d]  # the bias is not penalised
            weights = np.linalg.lstsq(np.vstack([x, rows]), np.vstack([y, np.zeros((d, y.shape[1]))]),
                                      rcond=None)[0]
            total, other_total, count = 0.0, 0.0, 0
            for j, i in enumerate(held):
                gts = np.stack([m for _, m in objects[i]])
                for k, target in ((0, i), (1, held[perm[j]])):
                    scores = np.concatenate([maps[target, s], np.ones((h * w, 1), np.float32)], 1) @ weights
                    score = np.diag(iou_matrix(object_masks(scores, objects[i], vocab), gts)).sum()
                    if k == 0:
                        total += score
                    else:
                        other_total += score
                count += len(gts)
            miou.append(float(total / count))
            baseline.append(float(other_total / count))
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": _rss_mb() - base, "miou": miou, "baseline": baseline}


def _child(mode: str, store: Path) -> dict:
    """Run one computation in a fresh interpreter, so its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--child", mode, str(store)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        fn = run_stream if sys.argv[2] == "stream" else run_naive
        print(json.dumps(fn(Path(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    ap.add_argument("--sd", action="store_true", help="SD 1.4's down-block geometry (16×16×1280)")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--steps", type=int)
    args = ap.parse_args()
    if args.sd:
        geometry = (16, 16, 1280)
        n = args.samples or (16 if args.quick else 48)
        steps = args.steps or (3 if args.quick else 10)
    else:
        geometry = (8, 8, 128)
        n = args.samples or (40 if args.quick else 160)
        steps = args.steps or (5 if args.quick else 25)
    print(f"geometry {geometry}, {steps} steps, every {HOLDOUT_EVERY}th sample held out")
    print(f"{'samples':>8} {'stream s':>9} {'naive s':>8} {'ratio':>6} {'stream MB':>10} {'naive MB':>9} "
          f"{'max |Δ mIoU|':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in (n, 2 * n):
            store = tmp / f"store{size}.h5"
            make_store(store, size, steps, geometry)
            s = _child("stream", store)
            b = _child("naive", store)
            diff = max(float(np.max(np.abs(np.array(s[key]) - np.array(b[key])))) for key in ("miou", "baseline"))
            print(f"{size:>8} {s['seconds']:>9.2f} {b['seconds']:>8.2f} {b['seconds'] / s['seconds']:>6.2f} "
                  f"{s['peak_mb']:>10.1f} {b['peak_mb']:>9.1f} {diff:>13.4f}")
    print("ratio = naive seconds ÷ streamed seconds (naive: every map in RAM, lstsq per step on "
          "augmented rows); both score the curve and its other-sample baseline; max |Δ mIoU| "
          "compares both.")


if __name__ == "__main__":
    main()
