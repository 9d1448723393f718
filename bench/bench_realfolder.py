"""A researcher's SD 1.4 folder on CPU, stage by stage, as the README's real-model recipe runs it.

Model: a folder with SD 1.4's exact architecture (scripts/make_sd14_folder.py writes one with
random weights: nothing can be downloaded here; timings and sizes do not depend on the weights,
the preview's PSNR does). 4 prompts × 4 steps at the model's 512 px, guidance 7.5, both branches,
the paper's three blocks, no previews.

Measured, each heavy stage in its own process (its peak RSS is that process's own):
  collect    `explorer collect` as the recipe writes it: time per image per step (the CLI's own
             collection time, model load apart), peak RSS, store bytes per image per step.
  baseline   diffusers' own StableDiffusionPipeline generating the same prompts, seeds
             and steps (DDIM from the folder's config, as the explorer swaps it), same process
             layout: generation time per image per step and peak RSS.
  recipe     train, index, evaluate as the recipe writes them (with a --batch-size
             that 4 prompts can fill), each timed; evaluate builds the cross-attention
             pseudo-masks (no masks in a real store).
  preview    the Sample view's picture at a step without --previews: the linear latent → RGB
             map fitted on the store (explorer/store/preview.py), time per step shown and PSNR
             against the VAE decode of the same stored latents (the named baseline, which is
             what --previews stores and what the app's refine draws), per step.
  app        the main window opened offscreen on the workspace: time from open_workspace to the
             first sample drawn on the Sample view's canvas, and to the opening job's end.

Usage:
  OMP_NUM_THREADS=2 python bench/bench_realfolder.py --model /tmp/sd14-random --workspace W \\
      [--stages collect,baseline,recipe,preview,app] [--vae-samples 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Runnable from a checkout without installing the package.
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "a red apple on a wooden table",
    "a lighthouse on a cliff above the sea at sunset",
    "a cat sleeping on a blue sofa",
]
STEPS = 4
GUIDANCE = 7.5


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return env


def run_child(cmd: list[str]) -> tuple[str, float, float]:
    """Run `cmd`; (stdout + stderr, wall seconds, peak RSS in GiB of that process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(), cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return out, wall, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def _json(out: str) -> dict:
    """The child's JSON line (libraries may print after it)."""
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def _per_image_step(seconds: float) -> float:
    return seconds / (len(PROMPTS) * STEPS)


# --- children --------------------------------------------------------------------------------
def child_baseline(model: str) -> None:
    """diffusers' own pipeline on the same prompts, seeds and steps; prints JSON."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None,
                                                   requires_safety_checker=False,
                                                   use_safetensors=True)
    cfg = pipe.scheduler.config
    pipe.scheduler = DDIMScheduler.from_config(cfg, clip_sample=bool(cfg.get("clip_sample", False)))
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - t0
    gens = [torch.Generator().manual_seed(s) for s in range(len(PROMPTS))]
    t0 = time.perf_counter()
    with torch.no_grad():
        pipe(PROMPTS, num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=gens,
             output_type="np")
    print(json.dumps({"load_s": load, "generate_s": time.perf_counter() - t0,
                      "threads": torch.get_num_threads()}))


def child_app(workspace: str) -> None:
    """Open the workspace in the main window offscreen; prints JSON."""
    import tempfile

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp) / "config")  # not the user's settings
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        from explorer.ui.main_window import MainWindow

        window = MainWindow(device="cpu")
        window.resize(1600, 1000)
        window.show()
        app.processEvents()
        canvas = window.sample_view.canvas
        t0 = time.perf_counter()
        worker = window.open_workspace(workspace)
        shown = done = None
        deadline = time.time() + 600
        while time.time() < deadline and (shown is None or done is None):
            app.processEvents()
            if shown is None and window.source is not None and canvas.image.image is not None:
                shown = time.perf_counter() - t0
            if done is None and not window.pool.holds(worker):
                done = time.perf_counter() - t0
            time.sleep(0.002)
        if shown is None:
            sys.exit(f"the Sample view showed no picture of {workspace} within 600 s")
        print(json.dumps({"first_sample_s": shown, "open_job_s": done,
                          "status": window.statusBar().currentMessage()}), flush=True)
        # Measured; the view's VAE refine may now be loading the model in the background, which
        # a window close would wait for: nothing more to see here.
        os._exit(0)


# --- stages ----------------------------------------------------------------------------------
def stage_collect(args, ws: Path, prompts: Path) -> None:
    store = ws / "store.h5"
    cmd = [sys.executable, "-m", "explorer", "collect", "--model", args.model, "--prompts",
           str(prompts), "--steps", str(STEPS), "--out", str(store), "--quiet"]
    print("$ " + " ".join(["explorer", *cmd[3:]]), flush=True)
    out, wall, rss = run_child(cmd)
    print(out.strip())
    m = re.search(r"complete \(.*\) in ([0-9.]+) s", out)
    coll = float(m.group(1)) if m else float("nan")
    size = store.stat().st_size
    print(f"collect: {_per_image_step(coll):.2f} s per image per step ({coll:.1f} s for "
          f"{len(PROMPTS)} × {STEPS}; process wall {wall:.1f} s with the model load), peak RSS "
          f"{rss:.2f} GiB, store {size / (len(PROMPTS) * STEPS) / 1e6:.2f} MB per image per step "
          f"({size / 1e6:.1f} MB)", flush=True)


def stage_baseline(args) -> None:
    out, _wall, rss = run_child([sys.executable, __file__, "--child", "baseline", "--model",
                                args.model])
    base = _json(out)
    g = base["generate_s"]
    print(f"baseline (diffusers StableDiffusionPipeline, same prompts, seeds, steps, DDIM): "
          f"{_per_image_step(g):.2f} s per image per step ({g:.1f} s; load {base['load_s']:.1f} "
          f"s), peak RSS {rss:.2f} GiB, {base['threads']} torch threads", flush=True)


def stage_recipe(args, ws: Path) -> None:
    cmds = [
        ["train", "--workspace", str(ws), "--block", args.block, "--latents", "5120", "--k", "10",
         "--batch-size", str(args.batch_size)],
        ["index", "--workspace", str(ws)],
        ["evaluate", "--workspace", str(ws)],
    ]
    for c in cmds:
        print("$ explorer " + " ".join(c), flush=True)
        out, wall, rss = run_child([sys.executable, "-m", "explorer", *c])
        lines = [ln for ln in out.splitlines() if "it/s]" not in ln and "tok/s]" not in ln]
        print("\n".join(lines[-8:]))
        print(f"{c[0]}: {wall:.1f} s (process, with imports and model load), peak RSS "
              f"{rss:.2f} GiB", flush=True)


def stage_preview(args, ws: Path) -> None:
    import numpy as np
    import torch

    from explorer.engine import load_model
    from explorer.engine.generate import decode_latents
    from explorer.store import Store
    from explorer.store.preview import fit_linear_preview, psnr

    with Store.open(ws / "store.h5") as store:
        t0 = time.perf_counter()
        linear = fit_linear_preview(store)
        fit_ms = (time.perf_counter() - t0) * 1000
        lin_ms = []
        for i in range(store.n_samples):
            for s in range(store.n_steps):
                lat = store.pred_x0(i, s)
                t0 = time.perf_counter()
                linear.decode(lat)
                lin_ms.append((time.perf_counter() - t0) * 1000)
        print(f"preview: linear map fitted on {linear.n_fit} samples in {fit_ms:.0f} ms; "
              f"linear decode to {store.layout.image_shape[0]} px median "
              f"{statistics.median(lin_ms):.1f} ms per step shown "
              f"(max {max(lin_ms):.1f}, {len(lin_ms)} steps)", flush=True)
        model = load_model(args.model, device="cpu")
        vae_ms, rows = [], []
        with torch.no_grad():
            for i in range(min(args.vae_samples, store.n_samples)):
                for s in range(store.n_steps):
                    lat = store.pred_x0(i, s)
                    fast = linear.decode(lat)
                    t0 = time.perf_counter()
                    slow = decode_latents(model, torch.from_numpy(lat.astype(np.float32))[None])[0]
                    vae_ms.append((time.perf_counter() - t0) * 1000)
                    rows.append((i, s, float(store.t[s]), psnr(fast, slow)))
        print(f"baseline VAE decode (SD 1.4's VAE, what --previews stores): median "
              f"{statistics.median(vae_ms) / 1000:.1f} s per step shown → linear "
              f"{statistics.median(vae_ms) / statistics.median(lin_ms):.0f}× faster")
        for i, s, t, p in rows:
            print(f"  sample {i} step {s + 1} (t = {t:.2f}): PSNR linear vs VAE {p:.1f} dB")
        print(f"  median PSNR {statistics.median(r[3] for r in rows):.1f} dB", flush=True)


def stage_app(args, ws: Path) -> None:
    out, wall, rss = run_child([sys.executable, __file__, "--child", "app", "--workspace",
                                str(ws)])
    r = _json(out)
    print(f"app: first sample shown {r['first_sample_s']:.2f} s after open_workspace "
          f"(opening job done at {r['open_job_s']:.2f} s); process wall {wall:.1f} s with Qt "
          f"start-up, peak RSS {rss:.2f} GiB; status: {r['status']!r}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="an SD 1.4 folder (scripts/make_sd14_folder.py)")
    p.add_argument("--workspace", help="workspace folder to write (must not hold a store yet)")
    p.add_argument("--stages", default="collect,baseline,recipe,preview,app",
                   help="comma-separated: collect, baseline, recipe, preview, app")
    p.add_argument("--block", default="mid_block.attentions.0", help="the recipe's SAE block")
    p.add_argument("--batch-size", type=int, default=64,
                   help="the recipe's train --batch-size (4 prompts fill no batch of 4096)")
    p.add_argument("--vae-samples", type=int, default=1,
                   help="samples whose every step the VAE decodes for PSNR")
    p.add_argument("--child", choices=["baseline", "app"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "baseline":
        child_baseline(args.model)
        return 0
    if args.child == "app":
        child_app(args.workspace)
        return 0
    if not args.model or not args.workspace:
        p.error("--model and --workspace are required")
    import torch

    ws = Path(args.workspace)
    ws.mkdir(parents=True, exist_ok=True)
    prompts = ws.parent / f"{ws.name}-prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    stages = args.stages.split(",")
    print(f"{args.model}: {len(PROMPTS)} prompts × {STEPS} steps, guidance {GUIDANCE}, CPU, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    if "collect" in stages:
        stage_collect(args, ws, prompts)
    if "baseline" in stages:
        stage_baseline(args)
    if "recipe" in stages:
        stage_recipe(args, ws)
    if "preview" in stages:
        stage_preview(args, ws)
    if "app" in stages:
        stage_app(args, ws)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
