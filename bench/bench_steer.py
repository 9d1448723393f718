"""Steering benchmark (P5): slider release → first preview, and the full steered image.

Baseline, measured in the same run on the same model, prompt and seed: plain generation (no
hooks). Steered runs: a spatial edit (SAE encode of the cond half at every step: the costliest
mode) and an additive edit (no encode), both active at every step, 5 features each.

"Slider release → first preview" is timed from the call (edits built, text encoded) to the
first step's predicted clean image decoded to pixels, as the app shows it. Bars: first preview
≤ 0.5 s, full image ≤ 2 s, for the bundled model on this CPU at its default settings (25 steps).

Model: resources/mini-sd-shapes if it is there; otherwise a random-weight pipeline of exactly
the bundled architecture (weights do not change the cost), and the output says so.
SAE: a workspace's mid-block SAE with --workspace, else a random one of the paper's shape
(4·d latents, k = 10).

Late windows (middle, final) are also timed from the unedited run's trajectory, as the app
runs them after the first request of a prompt (the steps before the window are not rerun).

Usage: python bench/bench_steer.py [--quick] [--workspace W] [--steps 25] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# Runnable as `python bench/bench_steer.py` from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BLOCK = "mid_block.attentions.0"
PROMPT = "a large red circle at the top left on a white background"


def _bundled_or_random(tmp: Path) -> tuple[str, str]:
    from explorer.engine.loading import BUNDLED

    if (BUNDLED / "model_index.json").is_file():
        return "bundled", "bundled model (resources/mini-sd-shapes)"
    from explorer.shapes.model import random_pipeline

    folder = random_pipeline(tmp / "random-bundled-architecture", guidance=7.5)
    return str(folder), "NOTE: no bundled model yet; random weights of the bundled architecture"


def _sae(model, workspace: str | None):
    if workspace:
        from explorer.steering.saes import choose_sae, load_entry
        from explorer.steering.windows import PRESETS
        from explorer.workspace import Workspace

        entry, _ = choose_sae(Workspace.open(workspace).saes(), BLOCK, PRESETS["early"], 25)
        return load_entry(entry, model.device), f"workspace SAE {entry.id}"
    from explorer.sae import SAEConfig, TopKSAE

    _, _, d = model.block_geometry(BLOCK)
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=d, d_sae=4 * d, k=10), device=model.device)
    return sae, f"random SAE d_in {d}, {4 * d} latents, k 10"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--model", default=None, help="model folder (default: bundled or random)")
    p.add_argument("--workspace", default=None)
    p.add_argument("--steps", type=int, default=25, help="the P5 bar is for 25 steps")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default=None)
    args = p.parse_args()
    repeats = 2 if args.quick else args.repeats

    from explorer.cli import quiet_libraries

    quiet_libraries()
    from explorer.engine import generate, load_model
    from explorer.steering import FeatureEdit, FeatureStats, Intervention, Rect
    from explorer.steering.steer import steer

    with tempfile.TemporaryDirectory() as tmp:
        path, what = (args.model, args.model) if args.model else _bundled_or_random(Path(tmp))
        model = load_model(path, device=args.device)
    steps = int(args.steps)
    guidance = float(model.defaults.get("guidance", 7.5))
    sae, sae_what = _sae(model, args.workspace)
    stats = FeatureStats(torch.ones(sae.cfg.d_sae))
    feats = tuple(FeatureEdit(f, 1.0) for f in range(5))
    runs = {
        "plain (baseline)": [],
        "spatial, 5 features": [
            Intervention(BLOCK, feats, "spatial", Rect(0.5, 0.0, 1.0, 0.5), "all")
        ],
        "add, 5 features": [
            Intervention(
                BLOCK,
                tuple(FeatureEdit(f, 10.0) for f in range(5)),
                "add",
                Rect(0.5, 0.0, 1.0, 0.5),
                "all",
                "cond+uncond-",
            )
        ],
    }

    from explorer.engine import Trajectory

    # The app keeps the unedited run's trajectory per prompt and seed, so an edit whose window
    # opens late starts there (bit-identical; steering.steer). Measured warm, as after the
    # first request of a prompt.
    trajectory = Trajectory()
    generate(model, [PROMPT], [0], steps, guidance, record=trajectory)
    late = {
        f"spatial, {w} window": (
            [Intervention(BLOCK, feats, "spatial", Rect(0.5, 0.0, 1.0, 0.5), w)],
            trajectory,
        )
        for w in ("middle", "final")
    }

    def once(ivs, traj=None) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = []

        def on_step(info):
            if not first:  # the first step this run computes
                info.preview(model)  # what the app shows after the first step
                first.append(time.perf_counter() - t0)

        steer(model, [PROMPT], [0], ivs, sae, stats, steps, guidance, on_step=on_step,
              trajectory=traj)
        return first[0], time.perf_counter() - t0

    once(runs["plain (baseline)"])  # warm-up
    print(
        f"model: {what}; {steps} steps, guidance {guidance:g}, device {model.device}, "
        f"{torch.get_num_threads()} threads; {sae_what}"
    )
    print(f"load average now: {os.getloadavg()[0]:.1f} (other jobs on the CPU slow every row)")
    print(f"{'run':<28}{'first preview s':>17}{'full image s':>14}{'ratio full':>12}")
    results = {}
    runs = {name: (ivs, None) for name, ivs in runs.items()} | late
    for name, (ivs, traj) in runs.items():
        samples = [once(ivs, traj) for _ in range(repeats)]
        results[name] = (
            statistics.median(s[0] for s in samples),
            statistics.median(s[1] for s in samples),
        )
    base = results["plain (baseline)"][1]
    for name, (first, full) in results.items():
        print(f"{name:<28}{first:>17.3f}{full:>14.3f}{full / base:>12.2f}")
    worst_first = max(r[0] for r in results.values())
    worst_full = max(r[1] for r in results.values())
    print(
        f"P5 first preview ≤ 0.5 s: {'yes' if worst_first <= 0.5 else 'no'} ({worst_first:.3f} s); "
        f"full image ≤ 2 s: {'yes' if worst_full <= 2.0 else 'no'} ({worst_full:.3f} s)"
    )


if __name__ == "__main__":
    main()
