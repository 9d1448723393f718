"""A picture at every step without `--previews`: the store's linear latent → RGB map against the
real VAE decode (the named baseline), on the same stored predicted-x₀ latents.

Measured:
- time per step shown: `LinearPreview.decode` (upsampled to the image size, what the Sample view
  draws) against `decode_latents` (the model's VAE, what `--previews` stores), median ms;
- fidelity: PSNR of the linear picture against the VAE picture of the same latents, per stored
  step (early steps are blurry in both) and over all;
- the fit itself (once per store, then cached in the workspace) and, with `--sd-vae`, one VAE
  decode at SD 1.x's size (64 × 64 × 4 latents → 512 px) with random weights against the linear
  decode to 512 px, for the time a real model's per-step decode would cost.

Store: `--store PATH`, else a fresh one collected here from the bundled model (no previews).

Usage: python bench/bench_preview.py [--store STORE.h5] [--model bundled] [--samples 4] [--sd-vae]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _store(args, tmp: Path, model) -> Path:
    if args.store:
        return Path(args.store)
    from explorer.store.collect import collect
    from explorer.store.sources import shapes_world

    path = tmp / "store.h5"
    t0 = time.perf_counter()
    collect(model, shapes_world(args.prompts), None, path, batch_size=args.prompts, progress=False)
    print(f"collected {args.prompts} prompts with {args.model} (no previews) in "
          f"{time.perf_counter() - t0:.1f} s")
    return path


def bench_store(args, tmp: Path) -> None:
    import torch

    from explorer.engine import load_model
    from explorer.engine.generate import decode_latents
    from explorer.store import Store
    from explorer.store.preview import fit_linear_preview, psnr

    model = load_model(args.model, device="cpu")
    path = _store(args, tmp, model)
    with Store.open(path) as store:
        t0 = time.perf_counter()
        linear = fit_linear_preview(store)
        fit_s = time.perf_counter() - t0
        print(f"store {path}: {store.n_samples} samples × {store.n_steps} steps, image "
              f"{store.layout.image_shape[:2]}, latents {store.layout.latent_shape}")
        print(f"fit on {linear.n_fit} samples' final latents and images: {fit_s * 1000:.0f} ms, "
              f"rmse {linear.rmse:.1f}/255 on the latent grid")
        samples = list(range(min(args.samples, store.n_samples)))
        per_step: dict[int, list[float]] = {s: [] for s in range(store.n_steps)}
        lin_ms, vae_ms = [], []
        with torch.no_grad():
            for i in samples:
                for s in range(store.n_steps):
                    lat = store.pred_x0(i, s)
                    t0 = time.perf_counter()
                    fast = linear.decode(lat)
                    lin_ms.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    slow = decode_latents(model, torch.from_numpy(lat.astype(np.float32))[None])[0]
                    vae_ms.append((time.perf_counter() - t0) * 1000)
                    per_step[s].append(psnr(fast, slow))
        lin, vae = statistics.median(lin_ms), statistics.median(vae_ms)
        print(f"time per step shown (median of {len(lin_ms)}): linear {lin:.2f} ms, "
              f"VAE decode {vae:.1f} ms ({vae / lin:.0f}× the linear)")
        allp = [p for v in per_step.values() for p in v]
        print(f"PSNR linear vs VAE: median {statistics.median(allp):.1f} dB "
              f"(min {min(allp):.1f}, max {max(allp):.1f})")
        t = store.t
        for s in sorted({0, store.n_steps // 4, store.n_steps // 2, 3 * store.n_steps // 4,
                         store.n_steps - 1}):
            print(f"  step {s + 1:>2} (t = {t[s]:.2f}): PSNR {statistics.median(per_step[s]):.1f} dB")
        final = [psnr(linear.decode(store.pred_x0(i, store.n_steps - 1)), store.image(i))
                 for i in samples]
        print(f"  linear at the last step vs the stored final image: {statistics.median(final):.1f} dB")


def bench_sd_vae(repeats: int) -> None:
    """SD 1.x's VAE architecture (random weights: nothing is downloaded) at 512 px."""
    import torch
    from diffusers import AutoencoderKL

    from explorer.store.preview import LinearPreview

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    ).eval()
    z = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        vae.decode(z)  # warm-up
        vae_ms = _median_ms(lambda: vae.decode(z), repeats)
    w = np.random.default_rng(0).normal(0, 30, (5, 3)).astype(np.float32)
    linear = LinearPreview(w, "x", (4, 64, 64), (512, 512, 3), 1, 0.0)
    lat = z[0].numpy().astype(np.float16)
    lin_ms = _median_ms(lambda: linear.decode(lat), max(repeats, 20))
    print(f"SD 1.x VAE architecture (random weights), 64×64×4 → 512×512, torch threads "
          f"{torch.get_num_threads()}: VAE decode {vae_ms:.0f} ms, linear {lin_ms:.1f} ms "
          f"({vae_ms / lin_ms:.0f}×)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", help="a store.h5 (default: collect a small one from --model)")
    p.add_argument("--model", default="bundled", help="the model whose VAE is the baseline")
    p.add_argument("--prompts", type=int, default=8, help="prompts to collect without --store")
    p.add_argument("--samples", type=int, default=4, help="samples whose every step is decoded")
    p.add_argument("--sd-vae", action="store_true", help="also time SD 1.x's VAE at 512 px")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_store(args, Path(tmp))
    if args.sd_vae:
        bench_sd_vae(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
